import asyncio
from typing import Sequence

from .._spead_xdp import BytesStream as _BytesStream
from .._spead_xdp import GroupMode, Heap, HeapReference, HeapReferenceList
from .._spead_xdp import InprocStream as _InprocStream
from .._spead_xdp import TcpStream as _TcpStream
from .._spead_xdp import UdpStream as _UdpStream
from .._spead_xdp import XdpStream as _XdpStream

class _AsyncStream:
    def async_send_heap(
        self, heap: Heap, cnt: int = -1, substream_index: int = 0, rate: float = -1.0
    ) -> asyncio.Future[int]: ...
    def async_send_heaps(
        self, heaps: HeapReferenceList | Sequence[HeapReference], mode: GroupMode
    ) -> asyncio.Future[int]: ...
    async def async_flush(self) -> None: ...

class UdpStream(_AsyncStream, _UdpStream): ...
class TcpStream(_AsyncStream, _TcpStream):
    @classmethod
    async def connect(
        cls, thread_pool: object, endpoints: Sequence[tuple[str, int]], config: object = None,
        buffer_size: int = ..., interface_address: str = ""
    ) -> TcpStream: ...
class XdpStream(_AsyncStream, _XdpStream): ...
class InprocStream(_AsyncStream, _InprocStream): ...
class BytesStream(_AsyncStream, _BytesStream): ...
