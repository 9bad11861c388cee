"""spead2's ``spead2.recv``, enough of it for a monitor: a receiving
``Stream`` over UDP (unicast, or a multicast group joined on an
interface), pcap files and in-process queues, giving heaps that
``spead_xdp.ItemGroup.update`` turns into numpy values.

Each source has a reader thread of the library's (``recvmmsg`` batches, no
allocation per packet); heaps reach Python through a bounded ring, and a
heap the ring has no room for is dropped and counted (``stats.ring_drops``)
rather than letting the socket overflow."""

from .._spead_xdp import Empty, Stopped
from .._spead_xdp import RecvHeap as Heap
from .._spead_xdp import RawDescriptor, RawItem, RecvStats
from .._spead_xdp import _RecvStream


class StreamConfig:
    """spead2's ``recv.StreamConfig`` (keyword-only). ``max_heaps`` (heaps
    under reassembly at once) is used; the others are accepted for
    spead2's API: heaps are reassembled in any order, a stop heap always
    ends the stream, and reading starts at ``start()`` or the first
    ``get``, whatever ``explicit_start`` says."""

    DEFAULT_MAX_HEAPS = 4

    def __init__(self, *, max_heaps=DEFAULT_MAX_HEAPS, substreams=1, bug_compat=0, memcpy=0,
                 memory_allocator=None, stop_on_stop_item=True, allow_unsized_heaps=True,
                 allow_out_of_order=False, stream_id=0, explicit_start=False):
        if int(max_heaps) < 1:
            raise ValueError("max_heaps must be positive")
        if bug_compat != 0:
            raise ValueError("bug_compat flags are not supported (only 0)")
        if not stop_on_stop_item:
            raise ValueError("stop_on_stop_item=False is not supported: a stop heap ends the stream")
        self.max_heaps = int(max_heaps)
        self.substreams = substreams
        self.bug_compat = bug_compat
        self.memcpy = memcpy
        self.memory_allocator = memory_allocator
        self.stop_on_stop_item = stop_on_stop_item
        self.allow_unsized_heaps = allow_unsized_heaps
        self.allow_out_of_order = allow_out_of_order
        self.stream_id = stream_id
        self.explicit_start = explicit_start


class RingStreamConfig:
    """spead2's ``recv.RingStreamConfig``: ``heaps`` the ring holds (at
    least 16 here: a monitor's Python loop is slower than spead2's C++
    consumers), and ``contiguous_only`` (False: incomplete heaps are
    delivered too)."""

    DEFAULT_HEAPS = 4

    def __init__(self, *, heaps=DEFAULT_HEAPS, contiguous_only=True, incomplete_keep_payload_ranges=False):
        if int(heaps) < 1:
            raise ValueError("heaps must be positive")
        self.heaps = int(heaps)
        self.contiguous_only = bool(contiguous_only)
        self.incomplete_keep_payload_ranges = incomplete_keep_payload_ranges


class Stream:
    """spead2's ``recv.Stream``: add readers, then iterate (or ``get``)
    over heaps until the stream ends (a stop heap, every file read, or
    ``stop()``). Readers are added before the first heap is taken."""

    DEFAULT_UDP_MAX_SIZE = 9200
    DEFAULT_UDP_BUFFER_SIZE = 8 * 1024 * 1024

    def __init__(self, thread_pool=None, config=None, ring_config=None):
        self.config = config if config is not None else StreamConfig()
        self.ring_config = ring_config if ring_config is not None else RingStreamConfig()
        self._native = _RecvStream(self.config.max_heaps, max(self.ring_config.heaps, 16),
                                   self.ring_config.contiguous_only)

    def add_udp_reader(self, *args, **kwargs):
        """spead2's overloads: ``(port, max_size=9200, buffer_size=8 MiB,
        bind_hostname='')``; ``(socket, max_size=9200)``;
        ``(multicast_group, port, max_size=9200, buffer_size=8 MiB,
        interface_address='0.0.0.0')`` (joined on that interface)."""
        if args and hasattr(args[0], "fileno"):
            self._native._add_socket(args[0])
            return
        if args and isinstance(args[0], str):
            names = ("multicast_group", "port", "max_size", "buffer_size", "interface_address")
            given = dict(zip(names, args), **kwargs)
            if "interface_index" in given:
                raise ValueError("IPv6 multicast (interface_index) is not supported here")
            group = given["multicast_group"]
            self._native._add_udp(group, _port(given["port"]), _size(given, "buffer_size"),
                                  given.get("interface_address", ""))
            return
        names = ("port", "max_size", "buffer_size", "bind_hostname")
        given = dict(zip(names, args), **kwargs)
        if "port" not in given:
            raise TypeError("add_udp_reader() needs a port, a socket, or a multicast group and port")
        self._native._add_udp(given.get("bind_hostname", ""), _port(given["port"]),
                              _size(given, "buffer_size"), "")

    def add_udp_pcap_file_reader(self, filename, filter=""):
        """A pcap file of Ethernet/IPv4/UDP frames, read to its end
        (``filter`` must be empty: BPF filters are not supported)."""
        if filter:
            raise ValueError("pcap filters are not supported")
        self._native._add_pcap(str(filename))

    def add_inproc_reader(self, queue):
        """An ``InprocQueue``; its ``stop()`` ends this reader."""
        self._native._add_inproc(queue)

    def start(self):
        """Starts reading (done by the first ``get`` otherwise)."""
        self._native.start()

    def get(self):
        """The next heap, waiting for it; ``Stopped`` once the stream has
        ended."""
        return self._native._get(None)

    def get_nowait(self):
        """The next heap if one is ready; ``Empty`` otherwise."""
        return self._native._get(0.0)

    def stop(self):
        """Stops the stream: readers stop, sockets close (groups are
        left)."""
        self._native.stop()

    @property
    def stats(self):
        """The stream's figures (``RecvStats``): packets, bytes, heaps,
        incomplete heaps, malformed, duplicates, cnt gaps, kernel and ring
        drops."""
        return self._native.stats

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return self.get()
        except Stopped:
            raise StopIteration from None


def _port(port):
    port = int(port)
    if not 0 <= port <= 65535:
        raise TypeError(f"port {port} is not in 0..65535")
    return port


def _size(given, name):
    size = int(given.get(name, Stream.DEFAULT_UDP_BUFFER_SIZE))
    if size < 0:
        raise TypeError(f"{name} must be a non-negative int, not {size}")
    return size


__all__ = ["Empty", "Heap", "RawDescriptor", "RawItem", "RecvStats", "RingStreamConfig", "Stopped",
           "Stream", "StreamConfig"]

from . import asyncio  # noqa: E402  (spead2's layout: spead_xdp.recv.asyncio)
