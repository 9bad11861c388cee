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
    XdpStream,
)

from .._enums import GroupMode, RateMethod
from .._items import HeapGenerator
from .._items import SendItemGroup as ItemGroup

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
