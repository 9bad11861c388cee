"""spead_xdp.send against spead2 4.5.1 from PyPI: the same heaps through
both packages' streams give the same bytes, and bad arguments raise what
spead2 raises."""

import errno
import socket

import numpy as np
import pytest
import spead2
import spead2.recv
import spead2.send

import spead_xdp
import spead_xdp.send
from _harness import privileged, veth


class RawItem:
    """The item interface spead2's Heap.add_item reads: id, to_buffer(),
    allow_immediate()."""

    def __init__(self, id, data, immediate=False):
        self.id = id
        self.data = np.frombuffer(bytes(data), dtype=np.uint8)
        self.immediate = immediate

    def to_buffer(self):
        return self.data

    def allow_immediate(self):
        return self.immediate


FLAVOURS = [(4, 64, 40, 0), (4, 64, 48, 0)]


def heap(package, flavour, seed, repeat_pointers=False):
    """A heap of a 5000-byte item, an inline immediate (as wide as the
    heap address) and a 3-byte item."""
    h = package.send.Heap(package.Flavour(*flavour))
    width = flavour[2] // 8
    h.add_item(RawItem(0x1000, bytes((seed + i) % 256 for i in range(5000))))
    h.add_item(RawItem(0x1001, bytes(range(seed, seed + width)), immediate=True))
    h.add_item(RawItem(0x1002, b"abc"))
    h.repeat_pointers = repeat_pointers
    return h


def end_heap(package, flavour):
    h = package.send.Heap(package.Flavour(*flavour))
    h.add_end()
    return h


def bytes_of(package, send, config=None):
    """What `send(stream)` puts into a BytesStream of `package`."""
    config = config or package.send.StreamConfig()
    stream = package.send.BytesStream(package.ThreadPool(), config)
    send(stream)
    return stream.getvalue()


def both(send, **config):
    """The bytes spead2 and spead_xdp send for `send(package, stream)`."""
    return [
        bytes_of(package, lambda s: send(package, s), package.send.StreamConfig(**config))
        for package in (spead2, spead_xdp)
    ]


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("packet", [1472, 4000])
def test_heaps_sent_one_by_one_are_spead2s_bytes(flavour, packet):
    def send(package, stream):
        for seed in range(3):
            assert stream.send_heap(heap(package, flavour, seed)) > 5000
        stream.send_heap(end_heap(package, flavour))

    theirs, ours = both(send, max_packet_size=packet)
    assert len(theirs) > 15000
    assert ours == theirs


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_repeat_pointers_explicit_cnts_and_cnt_sequences_match(flavour):
    def send(package, stream):
        stream.set_cnt_sequence(10, 3)
        stream.send_heap(heap(package, flavour, 1, repeat_pointers=True))
        stream.send_heap(heap(package, flavour, 2), cnt=99)
        stream.send_heap(heap(package, flavour, 3))

    theirs, ours = both(send)
    assert ours == theirs


@pytest.mark.parametrize("mode", ["ROUND_ROBIN", "SERIAL"])
def test_groups_match_in_both_modes(mode):
    flavour = (4, 64, 48, 0)

    def send(package, stream):
        refs = [
            package.send.HeapReference(heap(package, flavour, seed), cnt=seed + 1)
            for seed in range(3)
        ]
        group = package.send.HeapReferenceList(refs)
        assert len(group) == 3
        assert len(group[1:]) == 2 and len(group[::2]) == 2 and len(group[5:]) == 0
        sent = stream.send_heaps(group, getattr(package.send.GroupMode, mode))
        assert sent > 15000
        stream.send_heaps(refs[:1], mode=getattr(package.send.GroupMode, mode))

    theirs, ours = both(send)
    assert ours == theirs


def receive_all(sock):
    sock.settimeout(2)
    got = []
    try:
        while True:
            got.append(sock.recv(65536))
    except socket.timeout:
        return got


def test_udp_datagrams_are_spead2s():
    flavour = (4, 64, 48, 0)
    datagrams = []
    for package in (spead2, spead_xdp):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind(("127.0.0.1", 0))
        stream = package.send.UdpStream(package.ThreadPool(), [sock.getsockname()])
        assert stream.num_substreams == 1
        for seed in range(4):
            stream.send_heap(heap(package, flavour, seed))
        stream.send_heap(end_heap(package, flavour))
        datagrams.append(receive_all(sock))
        sock.close()
    theirs, ours = datagrams
    assert len(theirs) == 4 * 4 + 1
    assert ours == theirs


def test_flavours_as_spead2_makes_them():
    assert spead_xdp.Flavour() == spead_xdp.Flavour(4, 64, 40, 0)
    f = spead_xdp.Flavour(version=4, item_pointer_bits=64, heap_address_bits=48)
    assert (f.version, f.item_pointer_bits, f.heap_address_bits, f.bug_compat) == (4, 64, 48, 0)
    assert spead_xdp.send.Heap().flavour == spead_xdp.Flavour()
    assert isinstance(spead_xdp.send.Heap(f).flavour, spead_xdp.Flavour)
    for bad, says in [
        ((5, 64, 48), "Version is not supported"),
        ((4, 32, 48), "item_pointer_bits not supported"),
        ((4, 64, 41), "heap_address_bits not a multiple of 8"),
        ((4, 64, 64), "heap_address_bits out of range"),
    ]:
        with pytest.raises(ValueError, match=says):
            spead2.Flavour(*bad)
        with pytest.raises(ValueError, match=says):
            spead_xdp.Flavour(*bad)


def test_stream_config_is_checked_as_spead2_checks_it():
    config = spead_xdp.send.StreamConfig(rate=1e6)
    assert config.burst_rate == pytest.approx(1.05e6)
    assert config.max_packet_size == 1472 and config.max_heaps == 4
    for field, value, says in [
        ("rate", -1.0, "rate must be non-negative"),
        ("max_heaps", 0, "max_heaps must be positive"),
        ("burst_rate_ratio", 0.5, "burst rate ratio must be at least 1.0"),
    ]:
        with pytest.raises(ValueError, match=says):
            spead_xdp.send.StreamConfig(**{field: value})
        with pytest.raises(ValueError, match=says):
            setattr(config, field, value)
    with pytest.raises(TypeError):
        spead_xdp.send.StreamConfig(1472)


def test_bad_sends_raise_what_spead2_raises():
    pool = spead_xdp.ThreadPool()
    with pytest.raises(ValueError, match="Endpoint list must be non-empty"):
        spead_xdp.send.UdpStream(pool, [])
    with pytest.raises(ValueError, match="endpoint is not a multicast address"):
        spead_xdp.send.UdpStream(pool, [("127.0.0.1", 8888)], ttl=4)
    stream = spead_xdp.send.BytesStream(pool)
    h = heap(spead_xdp, (4, 64, 48, 0), 0)
    with pytest.raises(OSError) as refused:
        stream.send_heap(h, substream_index=3)
    assert refused.value.errno == errno.EINVAL
    with pytest.raises(OSError) as empty:
        stream.send_heaps([], spead_xdp.send.GroupMode.SERIAL)
    assert empty.value.errno == errno.EINVAL
    with pytest.raises(TypeError):
        stream.send_heaps([h], 1)
    # The stream goes on after a refusal.
    assert stream.send_heap(h) > 5000


def test_asyncio_futures_are_queued_at_call_time_and_resolve_in_order():
    import asyncio

    import spead2.send.asyncio

    import spead_xdp.send.asyncio

    flavour = (4, 64, 48, 0)

    async def send(package):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind(("127.0.0.1", 0))
        stream = package.send.asyncio.UdpStream(
            package.ThreadPool(), [sock.getsockname()], package.send.StreamConfig(max_heaps=8)
        )
        futures = [stream.async_send_heap(heap(package, flavour, seed)) for seed in range(3)]
        assert all(isinstance(f, asyncio.Future) for f in futures)
        refs = [package.send.HeapReference(heap(package, flavour, 7), cnt=50)]
        futures.append(stream.async_send_heaps(heaps=refs, mode=package.send.GroupMode.SERIAL))
        # A bad substream: the future fails, the others are unaffected.
        bad = stream.async_send_heap(heap(package, flavour, 9), substream_index=5)
        await stream.async_flush()
        sent = [await f for f in futures]
        with pytest.raises(OSError) as refused:
            await bad
        assert refused.value.errno == errno.EINVAL
        got = receive_all(sock)
        sock.close()
        return sent, got

    theirs = asyncio.run(send(spead2))
    ours = asyncio.run(send(spead_xdp))
    assert all(n > 5000 for n in ours[0])
    assert ours == theirs


def test_asyncio_queue_full_fails_the_future_not_the_call():
    import asyncio

    import spead_xdp.send.asyncio

    async def send():
        stream = spead_xdp.send.asyncio.BytesStream(
            spead_xdp.ThreadPool(), spead_xdp.send.StreamConfig(max_heaps=1, rate=1e6)
        )
        big = spead_xdp.send.Heap(spead_xdp.Flavour(4, 64, 48, 0))
        big.add_item(RawItem(0x1000, bytes(200_000)))
        first = stream.async_send_heap(big)
        second = stream.async_send_heap(big)
        with pytest.raises(BlockingIOError):
            await second
        assert await first > 200_000

    asyncio.run(send())


def item_group_heaps(package, flavour):
    """Heaps of an item group as katgpucbf builds them: a 48-bit timestamp
    (format), numpy arrays in C and Fortran order, a 10-bit signed format
    item, descriptors every third heap, values when changed."""
    group = package.send.ItemGroup(descriptor_frequency=3, flavour=package.Flavour(*flavour))
    group.add_item(0x1600, "timestamp", "ADC sample count", (), format=[("u", 48)], value=0)
    group.add_item(0x1800, "spectrum", "channels", (4, 256), dtype=np.uint16, value=np.zeros((4, 256), np.uint16))
    group.add_item(None, "gains", "per channel", (3, 2), dtype="<f4", order="F", value=np.ones((3, 2), np.float32))
    group.add_item(0x1700, "offset", "10-bit signed", (), format=[("i", 10)], value=-5)
    heaps = []
    for t in range(5):
        group["timestamp"].value = t * 8192
        if t == 2:
            group["spectrum"].value = np.arange(1024, dtype=np.uint16).reshape(4, 256)
        heaps.append(group.get_heap())
    heaps.append(group.get_heap(descriptors="all", data="none"))
    heaps.append(group.get_heap(descriptors="none", data="all"))
    heaps.append(group.get_end())
    return heaps


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_item_group_heaps_are_spead2s(flavour):
    def send(package, stream):
        for h in item_group_heaps(package, flavour):
            stream.send_heap(h)

    theirs, ours = both(send)
    assert len(theirs) > 3 * 2048
    assert ours == theirs


def test_descriptors_and_items_refuse_what_spead2_refuses():
    for package in (spead2, spead_xdp):
        for kwargs, says in [
            (dict(shape=(None, None), format=[("u", 8)]), "Cannot have multiple unknown dimensions"),
            (dict(shape=(), dtype=np.uint8, format=[("u", 8)]), "Only one of dtype and format"),
            (dict(shape=()), "One of dtype and format must be specified"),
            (dict(shape=(None,), dtype=np.uint8), "Cannot have unknown dimensions when using numpy"),
            (dict(shape=(), format=[("u", 8)], order="F"), "When specifying format, order must be 'C'"),
        ]:
            with pytest.raises(ValueError, match=says):
                package.Descriptor(0x1000, "x", "", **kwargs)
        item = package.Item(0x1000, "x", "", (3,), dtype=np.uint8)
        with pytest.raises(ValueError, match="Item value cannot be set to None"):
            item.value = None
        group = package.send.ItemGroup()
        group.add_item(0x1000, "x", "", (3,), dtype=np.uint8, value=np.zeros(2, np.uint8))
        with pytest.raises(ValueError, match=r"Value has shape \(2,\), expected \(3,\)"):
            group.get_heap()
        with pytest.raises(ValueError, match="descriptors must be one of"):
            group.get_heap(descriptors="some")


def test_stats_and_metrics_are_served():
    import urllib.request

    stream = spead_xdp.send.BytesStream(spead_xdp.ThreadPool())
    for seed in range(3):
        stream.send_heap(heap(spead_xdp, (4, 64, 48, 0), seed))
    stats = stream.stats
    assert (stats.heaps, stats.errors, stats.queue_full) == (3, 0, 0)
    assert stats.packets == 12 and stats.bytes == len(stream.getvalue())
    server = stream.serve_metrics("127.0.0.1", 0)
    host, port = server.address
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    assert "\nspead_send_heaps_total 3\n" in text
    server.close()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=2)


RECEIVE = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.bind((sys.argv[1], 7148))
s.settimeout(5)
print("ready", flush=True)
out = bytearray()
for _ in range(int(sys.argv[2])):
    out += s.recv(65536)
sys.stdout.write(out.hex())
"""


def test_the_af_xdp_stream_sends_what_the_bytes_stream_writes():
    import subprocess
    import sys

    privileged("test_the_af_xdp_stream_sends_what_the_bytes_stream_writes")
    with veth("pyxdp", 237, 1500) as env:
        flavour = (4, 64, 48, 0)
        heaps = [heap(spead_xdp, flavour, seed) for seed in range(3)]
        expected = bytes_of(spead_xdp, lambda s: [s.send_heap(h) for h in heaps])
        receiver = subprocess.Popen(
            ["ip", "netns", "exec", env["NETNS"], sys.executable, "-c", RECEIVE, env["PEER_IP"], "12"],
            stdout=subprocess.PIPE, text=True,
        )
        assert receiver.stdout.readline().strip() == "ready"
        # As katgpucbf names the NIC: by its address (comp_vector accepted).
        config = spead_xdp.send.XdpConfig(
            endpoints=[(env["PEER_IP"], 7148)], interface_address=env["HOST_IP"], comp_vector=0
        )
        stream = spead_xdp.send.asyncio.XdpStream(spead_xdp.ThreadPool(), spead_xdp.send.StreamConfig(), config)
        for h in heaps:
            stream.send_heap(h)
        got, _ = receiver.communicate(timeout=10)
        assert bytes.fromhex(got) == expected
        assert stream.stats.packets == 12


def test_arrays_allocated_in_the_umem_go_by_reference_changed_in_place():
    """XdpStream.allocate: a spectrum and a timestamp in the stream's UMEM,
    sent, changed in place, sent again; the wire carries what a
    BytesStream makes of the same heap at each step, and every packet's
    payload went by reference (the AF_XDP counters)."""
    import subprocess
    import sys

    privileged("test_arrays_allocated_in_the_umem_go_by_reference_changed_in_place")
    with veth("pyumem", 236, 1500) as env:
        config = spead_xdp.send.XdpConfig(
            endpoints=[(env["PEER_IP"], 7148)], interface_address=env["HOST_IP"], user_buffer_size=1 << 20
        )
        stream = spead_xdp.send.XdpStream(spead_xdp.ThreadPool(), spead_xdp.send.StreamConfig(), config)
        spectrum = stream.allocate((4, 1024), np.uint16)
        timestamp = stream.allocate((), ">u8")
        assert spectrum.shape == (4, 1024) and not spectrum.any()
        group = spead_xdp.send.ItemGroup(flavour=spead_xdp.Flavour(4, 64, 48, 0))
        group.add_item(0x1600, "timestamp", "", (), format=[("u", 48)], value=timestamp)
        group.add_item(0x4000, "spectrum", "", (4, 1024), dtype=np.uint16, value=spectrum)
        descriptors = group.get_heap(descriptors="all", data="none")
        heap = group.get_heap(descriptors="none", data="all")
        reference = spead_xdp.send.BytesStream(spead_xdp.ThreadPool())
        reference.send_heap(descriptors)
        descriptor_packets = reference.stats.packets
        for step in range(2):
            spectrum[:] = np.arange(4096, dtype=np.uint16).reshape(4, 1024) * (step + 1)
            timestamp[()] = 0x123456 + step
            reference.send_heap(heap)
        packets = reference.stats.packets
        receiver = subprocess.Popen(
            ["ip", "netns", "exec", env["NETNS"], sys.executable, "-c", RECEIVE, env["PEER_IP"], str(packets)],
            stdout=subprocess.PIPE, text=True,
        )
        assert receiver.stdout.readline().strip() == "ready"
        stream.send_heap(descriptors)
        for step in range(2):
            spectrum[:] = np.arange(4096, dtype=np.uint16).reshape(4, 1024) * (step + 1)
            timestamp[()] = 0x123456 + step
            stream.send_heap(heap)
        got, _ = receiver.communicate(timeout=10)
        wire = bytes.fromhex(got)
        assert wire == reference.getvalue()
        # Only the data heaps' packets went by reference, every one of them.
        assert stream.xdp_packets == (packets, packets - descriptor_packets)
        # spead2's receiver decodes the values each send carried.
        decoded = spead2.recv.Stream(spead2.ThreadPool(), spead2.recv.StreamConfig())
        decoded.add_buffer_reader(wire + bytes_of(spead2, lambda s: s.send_heap(spead2.send.ItemGroup(flavour=spead2.Flavour(4, 64, 48, 0)).get_end())))
        values = spead2.ItemGroup()
        seen = []
        for received in decoded:
            if values.update(received):
                seen.append((int(values["timestamp"].value), values["spectrum"].value.copy()))
        assert [t for t, _ in seen] == [0x123456, 0x123457]
        for step, (_, got_spectrum) in enumerate(seen):
            assert (got_spectrum == np.arange(4096, dtype=np.uint16).reshape(4, 1024) * (step + 1)).all()
        with pytest.raises(MemoryError, match="user_buffer_size"):
            stream.allocate(2 << 20, np.uint8)
        # The arrays keep their memory mapped after the stream has gone.
        del stream, heap, group
        import gc

        gc.collect()
        spectrum[:] = 7
        assert (spectrum == 7).all()


def test_tcp_streams_send_spead2s_bytes_connected_or_over_a_socket():
    import threading

    def capture(listener, out):
        connection, _ = listener.accept()
        data = bytearray()
        while chunk := connection.recv(65536):
            data += chunk
        out.append(bytes(data))

    flavour = (4, 64, 48, 0)
    streams = []
    for package, over_socket in [(spead2, False), (spead_xdp, False), (spead_xdp, True)]:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        got = []
        thread = threading.Thread(target=capture, args=(listener, got))
        thread.start()
        if over_socket:
            sock = socket.create_connection(listener.getsockname())
            stream = package.send.TcpStream(package.ThreadPool(), sock)
            sock.close()  # the stream holds its own duplicate
        else:
            stream = package.send.TcpStream(package.ThreadPool(), [listener.getsockname()])
        assert stream.num_substreams == 1
        for seed in range(3):
            stream.send_heap(heap(package, flavour, seed))
        del stream
        import gc

        gc.collect()
        thread.join(timeout=10)
        listener.close()
        streams.append(got[0])
    assert len(streams[0]) > 15000
    assert streams[1] == streams[0] and streams[2] == streams[0]
    with pytest.raises(ValueError, match="exactly one element"):
        spead_xdp.send.TcpStream(spead_xdp.ThreadPool(), [("127.0.0.1", 1), ("127.0.0.1", 2)])
    with pytest.raises(TypeError, match="TCP socket"):
        spead_xdp.send.TcpStream(spead_xdp.ThreadPool(), socket.socket(socket.AF_INET, socket.SOCK_DGRAM))


def test_packet_generators_give_spead2s_packets():
    flavour = (4, 64, 40, 0)
    theirs = list(spead2.send.PacketGenerator(heap(spead2, flavour, 3), 7, 1472))
    ours = list(spead_xdp.send.PacketGenerator(heap(spead_xdp, flavour, 3), 7, 1472))
    assert len(ours) == 4 and ours == theirs
    with pytest.raises(ValueError, match="packet size is too small"):
        spead_xdp.send.PacketGenerator(heap(spead_xdp, flavour, 3), 7, 40)


def test_a_callers_udp_socket_is_used():
    flavour = (4, 64, 48, 0)
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    stream = spead_xdp.send.UdpStream(spead_xdp.ThreadPool(), sender, [receiver.getsockname()])
    stream.send_heap(heap(spead_xdp, flavour, 1))
    receiver.settimeout(2)
    data, source = receiver.recvfrom(65536)
    assert source == sender.getsockname()
    assert data[:1] == b"S"


def test_install_as_spead2_serves_spead2_imports():
    import subprocess
    import sys

    code = (
        "import spead_xdp; spead_xdp.install_as_spead2();"
        "import spead2, spead2.send, spead2.send.asyncio;"
        "assert spead2 is spead_xdp and spead2.send.asyncio.UdpStream is spead_xdp.send.asyncio.UdpStream;"
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


def test_substreams_and_per_heap_rates_in_groups_match():
    flavour = (4, 64, 40, 0)

    def send(package, stream):
        refs = [
            package.send.HeapReference(heap(package, flavour, seed), substream_index=seed % 1, rate=r)
            for seed, r in [(1, 0.0), (2, 1e9), (3, -1.0)]
        ]
        group = package.send.HeapReferenceList(refs)
        stream.send_heaps(group[::-1], package.send.GroupMode.ROUND_ROBIN)
        stream.send_heaps(group[1:], package.send.GroupMode.SERIAL)

    theirs, ours = both(send, rate=1e8)
    assert ours == theirs


def spead2_receiver():
    """spead2's receiving stream on a free loopback port, and the port."""
    import spead2.recv

    receiver = spead2.recv.Stream(spead2.ThreadPool(), spead2.recv.StreamConfig())
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    receiver.add_udp_reader(port, bind_hostname="127.0.0.1")
    return receiver, port


def test_spead2s_receiver_decodes_what_our_udp_stream_sends():
    flavour = (4, 64, 48, 0)
    receiver, port = spead2_receiver()
    stream = spead_xdp.send.UdpStream(
        spead_xdp.ThreadPool(), [("127.0.0.1", port), ("127.0.0.1", port)], spead_xdp.send.StreamConfig(rate=1e8)
    )
    assert stream.num_substreams == 2
    heaps = item_group_heaps(spead_xdp, flavour)
    for k, h in enumerate(heaps):
        stream.send_heap(h, substream_index=k % 2)
    group = spead2.ItemGroup()
    seen = []
    for received in receiver:
        group.update(received)
        seen.append(int(group["timestamp"].value))
    assert seen[:5] == [0, 8192, 16384, 24576, 32768]
    assert (group["spectrum"].value == np.arange(1024, dtype=np.uint16).reshape(4, 256)).all()
    assert group["offset"].value == -5
    assert (group["gains"].value == np.ones((3, 2), np.float32)).all()


def test_the_ported_example_runs_and_spead2_decodes_it():
    import pathlib
    import subprocess
    import sys

    receiver, port = spead2_receiver()
    example = pathlib.Path(__file__).resolve().parents[1] / "examples" / "spectra.py"
    out = subprocess.run([sys.executable, example, "127.0.0.1", str(port), "5"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("sent 5 heaps;")
    group = spead2.ItemGroup()
    timestamps = []
    for received in receiver:
        group.update(received)
        timestamps.append(int(group["timestamp"].value))
        assert (group["spectrum"].value == timestamps[-1] // 8192).all()
    assert timestamps == [0, 8192, 16384, 24576, 32768]


def test_a_heap_sent_again_carries_values_changed_in_place():
    """katgpucbf's pattern: a heap built once, its 0-d >u8 timestamp and its
    data array changed in place between sends."""

    def send(package, stream):
        timestamp = np.zeros((), dtype=">u8")
        data = np.zeros(1000, dtype=np.uint8)
        ig = package.send.ItemGroup(flavour=package.Flavour(4, 64, 48, 0))
        ig.add_item(0x1600, "timestamp", "", (), format=[("u", 48)], value=timestamp)
        ig.add_item(0x1800, "data", "", (1000,), dtype=np.uint8, value=data)
        h = ig.get_heap(descriptors="none", data="all")
        for t in range(3):
            timestamp[()] = t * 4096
            data[:] = t
            stream.send_heap(h)

    theirs, ours = both(send)
    assert theirs.count(bytes([2]) * 1000) == 1
    assert ours == theirs


def test_values_out_of_range_are_refused():
    for package in (spead2, spead_xdp):
        ig = package.send.ItemGroup()
        ig.add_item(0x1000, "x", "", (), format=[("u", 4)], value=20)
        with pytest.raises(ValueError):
            ig.get_heap()
        ig = package.send.ItemGroup()
        ig.add_item(0x1000, "y", "", (), format=[("i", 10)], value=600)
        with pytest.raises(ValueError):
            ig.get_heap()


DROP_WITH_A_PYTHON_READER = """
import asyncio, socket, threading, gc
import spead_xdp, spead_xdp.send.asyncio
import numpy as np

listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen(1)
got = []
def read():
    connection, _ = listener.accept()
    n = 0
    while chunk := connection.recv(1 << 16):
        n += len(chunk)
    got.append(n)
reader = threading.Thread(target=read); reader.start()

async def main():
    stream = spead_xdp.send.asyncio.TcpStream(
        spead_xdp.ThreadPool(), [listener.getsockname()], spead_xdp.send.StreamConfig(max_heaps=8))
    h = spead_xdp.send.Heap(spead_xdp.Flavour(4, 64, 48, 0))
    class Raw:
        id = 0x1000
        def to_buffer(self): return np.zeros(4 << 20, np.uint8)
        def allow_immediate(self): return False
    h.add_item(Raw())
    for _ in range(8):
        stream.async_send_heap(h)
    # Dropped with 32 MiB queued: its worker must finish while this
    # thread's reader (Python) takes the bytes.
    del stream
    gc.collect()

asyncio.run(main())
reader.join(timeout=20)
print(got[0] if got else "nothing")
"""


def test_dropping_a_stream_lets_python_threads_run_while_it_drains():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", DROP_WITH_A_PYTHON_READER], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) > 8 * (4 << 20)


def test_an_interface_address_no_interface_holds_is_a_value_error():
    config = spead_xdp.send.XdpConfig(endpoints=[("127.0.0.1", 7148)], interface_address="198.51.100.7")
    with pytest.raises(ValueError, match="no interface holds the address 198.51.100.7"):
        spead_xdp.send.XdpStream(spead_xdp.ThreadPool(), spead_xdp.send.StreamConfig(), config)


@pytest.mark.parametrize(
    "shape,value",
    [
        ((), (True, -3, "q", 0.5)),
        ((2,), [(True, 17, "y", 1.0), (False, -23.0, "n", -1.0)]),
        ((2, 2), [[(1, 5, "a", 2.0), (0, -1, "b", 3.0)], [(1, 0, "c", 4.0), (0, 63, "d", -5.5)]]),
        ((None,), [(0, 1, "x", 0.25)] * 5),
    ],
)
def test_multi_field_format_items_are_spead2s(shape, value):
    """Mixed fields of odd widths (a 1-bit bool, a 7-bit signed int), as
    spead2's own test_fallback_types, in every kind of shape."""
    fmt = [("b", 1), ("i", 7), ("c", 8), ("f", 32)]

    def send(package, stream):
        group = package.send.ItemGroup(flavour=package.Flavour(4, 64, 48, 0))
        group.add_item(0x2345, "mixed", "", shape, format=fmt, value=value)
        stream.send_heap(group.get_heap())

    theirs, ours = both(send)
    assert ours == theirs


def test_rate_methods_and_group_modes_are_spead2s_enums():
    import enum

    for name in ("RateMethod", "GroupMode"):
        ours, theirs = getattr(spead_xdp.send, name), getattr(spead2.send, name)
        assert issubclass(ours, enum.Enum)
        assert {m.name: m.value for m in ours} == {m.name: m.value for m in theirs}
    config = spead_xdp.send.StreamConfig(rate_method=spead_xdp.send.RateMethod.SW)
    assert config.rate_method is spead_xdp.send.RateMethod.SW
    assert spead_xdp.send.StreamConfig().rate_method is spead_xdp.send.StreamConfig.DEFAULT_RATE_METHOD
    with pytest.raises(TypeError, match="expected a RateMethod"):
        spead_xdp.send.StreamConfig(rate_method=2)


def test_udp_stream_overloads_are_spead2s():
    """Each of spead2's UdpStream overloads, positional and keyword: made
    by both packages or refused by both with the same exception type."""
    tp = lambda package: package.ThreadPool()  # noqa: E731
    config = lambda package: package.send.StreamConfig()  # noqa: E731
    cases = [
        # (endpoints, positional after config, keywords)
        ([("127.0.0.1", 8888)], (4096,), {}),
        ([("127.0.0.1", 8888)], (4096, "127.0.0.1"), {}),
        ([("127.0.0.1", 8888)], (), {"interface_address": "127.0.0.1"}),
        ([("239.1.2.3", 8888)], (4096, 4), {}),
        ([("239.1.2.3", 8888)], (4096,), {"ttl": 4}),
        ([("239.1.2.3", 8888)], (4096, 4, "127.0.0.1"), {}),
        ([("239.1.2.3", 8888)], (4096,), {"ttl": 4, "interface_address": "127.0.0.1"}),
        ([("ff15::1", 8888)], (4096, 4, 1), {}),
        ([("ff15::1", 8888)], (4096,), {"ttl": 4, "interface_index": 1}),
        ([("127.0.0.1", 8888)], (4096, 4), {}),  # ttl to a unicast endpoint
        ([("127.0.0.1", 8888)], (4096, 4, "127.0.0.1"), {}),  # ditto, IPv4 form
        ([("239.1.2.3", 8888)], (4096, 300), {}),  # ttl out of range
        ([("239.1.2.3", 8888)], (4096, "127.0.0.1", 5), {}),  # address then ttl: no such overload
        ([], (), {}),
    ]
    for endpoints, args, kwargs in cases:
        outcomes = []
        for package in (spead2, spead_xdp):
            try:
                stream = package.send.UdpStream(tp(package), endpoints, config(package), *args, **kwargs)
                outcomes.append(("made", stream.num_substreams))
            except Exception as error:  # noqa: BLE001 (the type is compared)
                outcomes.append((type(error).__name__, None))
        assert outcomes[0] == outcomes[1], (endpoints, args, kwargs, outcomes)


def test_adding_an_identical_descriptor_again_passes_only_its_value():
    for package in (spead2, spead_xdp):
        group = package.send.ItemGroup()
        first = group.add_item(0x1000, "x", "d", (16,), dtype=np.uint8, value=np.zeros(16, np.uint8))
        group.get_heap()  # the descriptor and value are now sent
        again = group.add_item(0x1000, "x", "d", (16,), dtype=np.uint8, value=np.ones(16, np.uint8))
        assert again is not first and group["x"] is first
        assert (first.value == 1).all()
        # Not a new descriptor: the next heap carries the value alone.
        assert _heap_items(package, group.get_heap()) == [0x1000], package.__name__
        group.add_item(0x1000, "x", "d", (16,), dtype=np.uint8)  # descriptor alone: value kept
        assert (group["x"].value == 1).all()


def _heap_items(package, heap):
    """What spead2's receiver decodes from `heap` (via a BytesStream): the
    ids of its items (0x1000 and up) and its descriptors (negated)."""
    data = bytes_of(package, lambda s: [s.send_heap(heap), s.send_heap(package.send.ItemGroup().get_end())])
    stream = spead2.recv.Stream(spead2.ThreadPool(), spead2.recv.StreamConfig())
    stream.add_buffer_reader(data)  # read to the end heap
    ids = []
    for received in stream:
        ids += [item.id for item in received.get_items() if item.id >= 0x1000]
        ids += [-d.id for d in received.get_descriptors()]
    return ids


def test_a_heap_holds_an_export_of_each_buffer_until_it_goes():
    """The heap's claim on a buffer is an export of its own: while the heap
    lives the buffer cannot be resized (its memory cannot move under a
    send), and once the heap goes it can."""
    import gc

    data = bytearray(range(100))
    heap = spead_xdp.send.Heap()
    heap.add_item(RawItem(0x1000, b""))  # a plain item first
    item = RawItem(0x1001, b"")
    item.data = data
    heap.add_item(item)
    with pytest.raises(BufferError):
        data.clear()
    del heap, item
    gc.collect()
    spead_xdp.send.StreamConfig()  # any call into the package frees what a worker let go
    data.clear()
    assert len(data) == 0


def test_a_stream_refusing_its_packet_size_fails_sends_only():
    stream = spead_xdp.send.UdpStream(
        spead_xdp.ThreadPool(), [("127.0.0.1", 8888)], spead_xdp.send.StreamConfig(max_packet_size=100000)
    )
    assert stream.num_substreams == 1
    stream.flush()
    with pytest.raises(OSError) as refused:
        stream.send_heap(end_heap(spead_xdp, (4, 64, 48, 0)))
    assert refused.value.errno == errno.EMSGSIZE and "100000" in str(refused.value)
