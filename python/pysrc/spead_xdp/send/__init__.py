"""spead2's ``spead2.send``: heaps, heap references and send streams."""

from .._spead_xdp import (
    BytesStream,
    Heap,
    HeapReference,
    HeapReferenceList,
    InprocStream,
    PacketGenerator,
    Stream,
    StreamConfig,
    TcpStream,
    UdpStream,
    XdpConfig,
)
from .._spead_xdp import XdpStream as _XdpStream

from .._enums import GroupMode, RateMethod
from .._items import HeapGenerator
from .._items import SendItemGroup as ItemGroup


class XdpStream(_XdpStream):
    """A stream over AF_XDP (root or CAP_NET_RAW), on any Linux NIC:
    spead2's ``UdpIbvStream`` counterpart, unicast and multicast.
    ``XdpStream(thread_pool, config, xdp_config)``."""

    def allocate(self, shape, dtype):
        """A zeroed numpy array in the stream's UMEM, drawn from
        ``XdpConfig.user_buffer_size`` (``MemoryError`` when that runs
        out). A packet whose payload lies wholly in such arrays goes out by
        reference: the kernel (or, with a zero-copy driver, the NIC) reads
        the array, and no copy is made in user space. The memory stays
        valid while the array, or any view of it, lives."""
        import ctypes
        import operator
        import weakref

        import numpy as np

        dtype = np.dtype(dtype)
        try:
            shape = (operator.index(shape),)
        except TypeError:
            shape = tuple(operator.index(dim) for dim in shape)
        count = 1
        for dim in shape:
            if dim < 0:
                raise ValueError(f"negative dimension in shape {shape}")
            count *= dim
        nbytes = count * dtype.itemsize
        address, owner = self._allocate(nbytes)
        raw = (ctypes.c_ubyte * max(nbytes, 1)).from_address(address)
        # The array keeps `raw`; the finalizer keeps the UMEM mapping
        # (`owner`) until `raw` goes, out of reach of the array's users.
        weakref.finalize(raw, _keep_until_collected, owner)
        return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)


def _keep_until_collected(owner):
    """A finalizer that only holds `owner` until its object is collected."""


__all__ = [
    "HeapGenerator",
    "ItemGroup",
    "BytesStream",
    "GroupMode",
    "Heap",
    "HeapReference",
    "HeapReferenceList",
    "InprocStream",
    "PacketGenerator",
    "RateMethod",
    "Stream",
    "StreamConfig",
    "TcpStream",
    "UdpStream",
    "XdpConfig",
    "XdpStream",
]

from . import asyncio  # noqa: E402  (spead2's layout: spead_xdp.send.asyncio)
