"""spead2's ``spead2.send``: heaps, heap references and send streams."""

from .._spead_xdp import (
    BytesStream,
    Heap,
    HeapReference,
    HeapReferenceList,
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
        """A zeroed numpy array in the stream's UMEM: items whose values are
        such arrays (or views of them) go out by reference, copied by no
        one. Draws on ``XdpConfig.user_buffer_size`` bytes, which the
        stream keeps for this; ``MemoryError`` when they run out. The
        memory stays valid while the array (or any view of it) lives."""
        import ctypes

        import numpy as np

        dtype = np.dtype(dtype)
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        count = 1
        for dim in shape:
            count *= int(dim)
        nbytes = count * dtype.itemsize
        address, owner = self._allocate(nbytes)
        raw = (ctypes.c_ubyte * max(nbytes, 1)).from_address(address)
        # The array keeps `raw`, and `raw` keeps the UMEM mapping.
        raw._umem = owner
        return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)

__all__ = [
    "HeapGenerator",
    "ItemGroup",
    "BytesStream",
    "GroupMode",
    "Heap",
    "HeapReference",
    "HeapReferenceList",
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
