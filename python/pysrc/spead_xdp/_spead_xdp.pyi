"""Type stubs of the native module (spead2's send API over spead-xdp)."""

from typing import Any, Callable, Iterable, Sequence, final, overload

from ._enums import GroupMode, RateMethod
from ._flavour import Flavour

__version__: str

class _Flavour:
    def __init__(
        self,
        version: int | None = ...,
        item_pointer_bits: int | None = ...,
        heap_address_bits: int | None = ...,
        bug_compat: int = 0,
    ) -> None: ...
    @property
    def version(self) -> int: ...
    @property
    def item_pointer_bits(self) -> int: ...
    @property
    def heap_address_bits(self) -> int: ...
    @property
    def bug_compat(self) -> int: ...

class StreamConfig:
    DEFAULT_MAX_PACKET_SIZE: int
    DEFAULT_MAX_HEAPS: int
    DEFAULT_BURST_SIZE: int
    DEFAULT_BURST_RATE_RATIO: float
    DEFAULT_RATE_METHOD: RateMethod
    max_packet_size: int
    rate: float
    burst_size: int
    max_heaps: int
    burst_rate_ratio: float
    rate_method: RateMethod
    def __init__(
        self,
        *,
        max_packet_size: int = 1472,
        rate: float = 0.0,
        burst_size: int = 65536,
        max_heaps: int = 4,
        burst_rate_ratio: float = 1.05,
        rate_method: RateMethod = ...,
    ) -> None: ...
    @property
    def burst_rate(self) -> float: ...

class Heap:
    repeat_pointers: bool
    def __init__(self, flavour: Flavour | None = None) -> None: ...
    @property
    def flavour(self) -> Flavour: ...
    def add_item(self, item: Any) -> None: ...
    def add_descriptor(self, descriptor: Any) -> None: ...
    def add_start(self) -> None: ...
    def add_end(self) -> None: ...

class HeapReference:
    cnt: int
    substream_index: int
    rate: float
    def __init__(self, heap: Heap, *, cnt: int = -1, substream_index: int = 0, rate: float = -1.0) -> None: ...
    @property
    def heap(self) -> Heap: ...

class HeapReferenceList:
    def __init__(self, heaps: Iterable[HeapReference]) -> None: ...
    def __len__(self) -> int: ...
    def __getitem__(self, index: slice) -> HeapReferenceList: ...

@final
class StreamStats:
    @property
    def heaps(self) -> int: ...
    @property
    def errors(self) -> int: ...
    @property
    def queue_full(self) -> int: ...
    @property
    def packets(self) -> int: ...
    @property
    def bytes(self) -> int: ...
    @property
    def ring_stalls(self) -> int: ...
    @property
    def elapsed(self) -> float: ...
    def to_prometheus(self) -> str: ...

class MetricsServer:
    @property
    def address(self) -> tuple[str, int]: ...
    def close(self) -> None: ...

class Stream:
    def send_heap(self, heap: Heap, cnt: int = -1, substream_index: int = 0, rate: float = -1.0) -> int: ...
    def send_heaps(self, heaps: HeapReferenceList | Sequence[HeapReference], mode: GroupMode) -> int: ...
    def set_cnt_sequence(self, next: int, step: int) -> None: ...
    def flush(self) -> None: ...
    @property
    def num_substreams(self) -> int: ...
    @property
    def stats(self) -> StreamStats: ...
    def serve_metrics(self, host: str, port: int) -> MetricsServer: ...
    def _submit_heap(
        self, heap: Heap, cnt: int, substream_index: int, rate: float, callback: Callable[[BaseException | None, int], None]
    ) -> None: ...
    def _submit_heaps(
        self,
        heaps: HeapReferenceList | Sequence[HeapReference],
        mode: GroupMode,
        callback: Callable[[BaseException | None, int], None],
    ) -> None: ...

class BytesStream(Stream):
    def __init__(self, thread_pool: Any, config: StreamConfig | None = None) -> None: ...
    def getvalue(self) -> bytes: ...

class UdpStream(Stream):
    DEFAULT_BUFFER_SIZE: int
    @overload
    def __init__(
        self,
        thread_pool: Any,
        endpoints: Sequence[tuple[str, int]],
        config: StreamConfig | None = None,
        buffer_size: int = ...,
        interface_address: str = "",
    ) -> None: ...
    @overload
    def __init__(
        self,
        thread_pool: Any,
        endpoints: Sequence[tuple[str, int]],
        config: StreamConfig | None = None,
        buffer_size: int = ...,
        *,
        ttl: int,
        interface_address: str = "",
    ) -> None: ...
    @overload
    def __init__(
        self,
        thread_pool: Any,
        endpoints: Sequence[tuple[str, int]],
        config: StreamConfig,
        buffer_size: int,
        ttl: int,
        interface_address: str = "",
    ) -> None: ...
    @overload
    def __init__(
        self,
        thread_pool: Any,
        endpoints: Sequence[tuple[str, int]],
        config: StreamConfig,
        buffer_size: int,
        ttl: int,
        interface_index: int,
    ) -> None: ...
    @overload
    def __init__(
        self,
        thread_pool: Any,
        endpoints: Sequence[tuple[str, int]],
        config: StreamConfig | None = None,
        buffer_size: int = ...,
        *,
        ttl: int,
        interface_index: int,
    ) -> None: ...
    @overload
    def __init__(self, thread_pool: Any, socket: Any, endpoints: Sequence[tuple[str, int]],
                 config: StreamConfig | None = None) -> None: ...

class XdpConfig:
    DEFAULT_BUFFER_SIZE: int
    DEFAULT_TTL: int
    endpoints: list[tuple[str, int]]
    interface_address: str
    interface: str
    buffer_size: int
    ttl: int
    queue: int
    huge_pages: str
    mode: str
    user_buffer_size: int
    memory_regions: list[Any]
    comp_vector: int
    max_poll: int
    def __init__(
        self,
        *,
        endpoints: Sequence[tuple[str, int]] = ...,
        interface_address: str = "",
        interface: str = "",
        buffer_size: int = ...,
        ttl: int = 1,
        queue: int = 0,
        huge_pages: str = "auto",
        mode: str = "auto",
        user_buffer_size: int = 0,
        memory_regions: Sequence[Any] = ...,
        comp_vector: int = 0,
        max_poll: int = 10,
    ) -> None: ...

class XdpStream(Stream):
    def __init__(self, thread_pool: Any, config: StreamConfig, xdp_config: XdpConfig) -> None: ...
    def _allocate(self, nbytes: int) -> tuple[int, UmemAllocation]: ...
    @property
    def xdp_packets(self) -> tuple[int, int]: ...

@final
class UmemAllocation: ...

class TcpStream(Stream):
    DEFAULT_BUFFER_SIZE: int
    def __init__(
        self,
        thread_pool: Any,
        endpoints_or_socket: Any,
        config: StreamConfig | None = None,
        buffer_size: int = ...,
        interface_address: str = "",
    ) -> None: ...

class PacketGenerator:
    def __init__(self, heap: Heap, cnt: int, max_packet_size: int) -> None: ...
    def __iter__(self) -> PacketGenerator: ...
    def __next__(self) -> bytes: ...

@final
class InprocQueue:
    DEFAULT_CAPACITY: int
    def __init__(self, capacity: int = ...) -> None: ...
    def add_packet(self, packet: bytes | bytearray | memoryview) -> None: ...
    def stop(self) -> None: ...

class InprocStream(Stream):
    def __init__(self, thread_pool: Any, queues: Sequence[InprocQueue], config: StreamConfig | None = None) -> None: ...
    @property
    def queues(self) -> list[InprocQueue]: ...

class Stopped(Exception): ...
class Empty(Exception): ...

@final
class RawItem:
    id: int
    is_immediate: bool
    immediate_value: int | None
    value: bytes

@final
class RawDescriptor:
    id: int
    name: str
    description: str
    shape: list[int]
    format: list[tuple[str, int]]
    numpy_header: str

@final
class RecvHeap:
    @property
    def cnt(self) -> int: ...
    @property
    def flavour(self) -> Flavour: ...
    def is_complete(self) -> bool: ...
    def get_items(self) -> list[RawItem]: ...
    def get_descriptors(self) -> list[RawDescriptor]: ...
    def is_start_of_stream(self) -> bool: ...
    def is_end_of_stream(self) -> bool: ...

@final
class RecvStats:
    packets: int
    bytes: int
    heaps: int
    incomplete_heaps: int
    malformed: int
    duplicates: int
    cnt_gaps: int
    kernel_drops: int
    ring_drops: int

class _RecvStream:
    def __init__(self, max_heaps: int, ring_heaps: int, contiguous_only: bool) -> None: ...
    def _add_udp(self, address: str, port: int, buffer_size: int, interface_address: str) -> None: ...
    def _add_socket(self, socket: Any) -> None: ...
    def _add_pcap(self, path: str) -> None: ...
    def _add_inproc(self, queue: InprocQueue) -> None: ...
    def start(self) -> None: ...
    def _get(self, timeout: float | None = None) -> RecvHeap: ...
    def stop(self) -> None: ...
    @property
    def stats(self) -> RecvStats: ...
