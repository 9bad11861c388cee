"""spead-xdp: SPEAD senders byte-compatible with spead2, with spead2's
Python send API (``import spead_xdp as spead2``).

``spead_xdp.send`` (and ``.asyncio``): spead2's send API, with UDP, TCP,
in-memory, in-process and AF_XDP streams. ``spead_xdp.recv`` (and
``.asyncio``): a receiving stream for monitors. ``spead_xdp.sock``: the
one-line multicast pair for raw datagrams.
"""

import atexit

from ._flavour import Flavour
from ._spead_xdp import Empty, InprocQueue, Stopped, __version__, _prepare_exit

# Completions reach Python from a thread per stream; at exit they stop
# first, so none takes the GIL while the interpreter finalizes.
atexit.register(_prepare_exit)
from ._items import Descriptor, Item, ItemGroup



# Item IDs and stream-control values, as spead2 names them.
NULL_ID = 0x00
HEAP_CNT_ID = 0x01
HEAP_LENGTH_ID = 0x02
PAYLOAD_OFFSET_ID = 0x03
PAYLOAD_LENGTH_ID = 0x04
DESCRIPTOR_ID = 0x05
STREAM_CTRL_ID = 0x06
DESCRIPTOR_NAME_ID = 0x10
DESCRIPTOR_DESCRIPTION_ID = 0x11
DESCRIPTOR_SHAPE_ID = 0x12
DESCRIPTOR_FORMAT_ID = 0x13
DESCRIPTOR_ID_ID = 0x14
DESCRIPTOR_DTYPE_ID = 0x15
CTRL_STREAM_START = 0
CTRL_DESCRIPTOR_REISSUE = 1
CTRL_STREAM_STOP = 2
CTRL_DESCRIPTOR_UPDATE = 3
# spead2's bug-compatibility flags: only 0 (none) is supported here.
BUG_COMPAT_DESCRIPTOR_WIDTHS = 1
BUG_COMPAT_SHAPE_BIT_1 = 2
BUG_COMPAT_SWAP_ENDIAN = 4
BUG_COMPAT_PYSPEAD_0_5_2 = 7


class ThreadPool:
    """spead2's ``ThreadPool``: here each stream has a worker thread of its
    own, pinned to the first core of ``affinity`` when one is given."""

    def __init__(self, threads: int = 1, affinity=()):
        if threads < 1:
            raise ValueError("at least one thread is required")
        self.threads = threads
        self.affinity = [int(core) for core in affinity]

    def stop(self) -> None:
        """Accepted for spead2's API: streams stop their own workers."""


from . import recv, send, sock  # noqa: E402  (spead2's layout: spead_xdp.send, .recv)


def install_as_spead2():
    """Makes ``import spead2`` and its ``send``, ``send.asyncio``,
    ``recv`` and ``recv.asyncio`` give this package (opt-in)."""
    import sys

    sys.modules["spead2"] = sys.modules[__name__]
    sys.modules["spead2.send"] = send
    sys.modules["spead2.send.asyncio"] = send.asyncio
    sys.modules["spead2.recv"] = recv
    sys.modules["spead2.recv.asyncio"] = recv.asyncio

__all__ = [
    "Descriptor",
    "Empty",
    "InprocQueue",
    "Stopped",
    "recv",
    "sock",
    "Flavour",
    "Item",
    "ItemGroup",
    "ThreadPool",
    "install_as_spead2",
    "send",
    "__version__",
]
