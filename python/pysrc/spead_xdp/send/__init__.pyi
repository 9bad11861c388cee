from typing import Any, Sequence

from . import asyncio as asyncio
from .._enums import GroupMode as GroupMode
from .._enums import RateMethod as RateMethod
from .._items import HeapGenerator as HeapGenerator
from .._items import SendItemGroup as ItemGroup
from .._spead_xdp import BytesStream as BytesStream
from .._spead_xdp import Heap as Heap
from .._spead_xdp import HeapReference as HeapReference
from .._spead_xdp import HeapReferenceList as HeapReferenceList
from .._spead_xdp import InprocStream as InprocStream
from .._spead_xdp import PacketGenerator as PacketGenerator
from .._spead_xdp import Stream as Stream
from .._spead_xdp import StreamConfig as StreamConfig
from .._spead_xdp import TcpStream as TcpStream
from .._spead_xdp import UdpStream as UdpStream
from .._spead_xdp import XdpConfig as XdpConfig
from .._spead_xdp import XdpStream as _XdpStream

class XdpStream(_XdpStream):
    def allocate(self, shape: int | Sequence[int], dtype: Any) -> Any: ...
