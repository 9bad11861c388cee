"""spead_xdp.recv, InprocQueue/InprocStream and spead_xdp.sock, against
spead2 4.5.1 from PyPI: what spead2 sends, our receiver decodes to the
values spead2's own receiver decodes, heap for heap; in-process streams
lose nothing and end on the queue's stop; multicast monitors join and
leave freely; a Python monitor keeps up with a 2 Gb/s stream."""

import asyncio
import errno
import socket
import subprocess
import sys

import numpy as np
import pytest
import spead2
import spead2.recv
import spead2.send

import spead_xdp
import spead_xdp.recv
import spead_xdp.recv.asyncio
import spead_xdp.send
import spead_xdp.send.asyncio
import spead_xdp.sock
from _harness import ROOT, privileged, veth



def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def item_group(package, bits):
    """An item group of every kind of item a monitor meets: an immediate
    timestamp, numpy arrays (C and Fortran order, big-endian), a 10-bit
    signed format item, a multi-field format item, a variable-length
    string."""
    ig = package.send.ItemGroup(flavour=package.Flavour(4, 64, bits, 0))
    ig.add_item(0x1600, "timestamp", "ADC count", (), format=[("u", bits)], value=0)
    ig.add_item(0x1800, "spectrum", "", (4, 256), dtype=np.uint16)
    ig.add_item(0x1801, "gains", "", (3, 2), dtype=np.float32, order="F")
    ig.add_item(0x1802, "big", "", (5,), dtype=">i4")
    ig.add_item(0x1803, "odd", "", (3,), format=[("i", 10)])
    ig.add_item(0x1804, "mixed", "", (2,), format=[("b", 1), ("i", 7), ("c", 8), ("f", 32)])
    ig.add_item(0x1805, "name", "", (None,), format=[("c", 8)])
    ig.add_item(0x1806, "words", "", (6,), format=[("u", 32)])
    ig.add_item(0x1807, "one", "", (1,), format=[("u", bits)])
    return ig


def fill(ig, t):
    ig["timestamp"].value = t * 8192
    ig["spectrum"].value = (np.arange(1024, dtype=np.uint16) + t).reshape(4, 256)
    ig["gains"].value = np.asfortranarray(np.full((3, 2), t + 0.5, np.float32))
    ig["big"].value = np.arange(5, dtype=">i4") - t
    ig["odd"].value = [-t, t, 511 - t]
    ig["mixed"].value = [(t % 2 == 0, t, "y", float(t)), (True, -t, "n", -1.5)]
    ig["name"].value = "heap %d" % t
    ig["words"].value = np.arange(6, dtype=np.uint32) * (t + 1)
    ig["one"].value = [t + 7]


def send_heaps(package, stream, bits, heaps=4):
    """Data heaps (the first without descriptors, whose values no receiver
    can decode yet), then descriptors with values, then the end."""
    ig = item_group(package, bits)
    fill(ig, 0)
    stream.send_heap(ig.get_heap(descriptors="none", data="all"))
    for t in range(1, heaps):
        fill(ig, t)
        stream.send_heap(ig.get_heap())
    stream.send_heap(ig.get_end())


def heaps_of(package, stream, timeout=20):
    """The stream's heaps until it ends, each waited for at most `timeout`
    seconds (a lost heap fails the test instead of hanging it)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            yield stream.get_nowait()
            deadline = time.monotonic() + timeout
        except package.Stopped:
            return
        except package.Empty:
            assert time.monotonic() < deadline, "no heap and no end within the timeout"
            time.sleep(0.005)


def decoded(package, stream):
    """Per heap, the values its receiver's ItemGroup updated, by name:
    plain Python values, with each array's dtype and shape."""
    group = package.ItemGroup()
    out = []
    for heap in heaps_of(package, stream):
        updated = group.update(heap)
        out.append({name: described(item.value) for name, item in sorted(updated.items())})
    return out


def described(value):
    if isinstance(value, np.ndarray):
        return (str(value.dtype), value.shape, plain(value))
    return (type(value).__name__, plain(value))


def plain(value):
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()] if value.dtype.names is None else [tuple(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    return value


@pytest.mark.parametrize("bits", [40, 48])
def test_what_spead2_sends_our_receiver_decodes_as_spead2s_does(bits):
    ours_port, theirs_port = free_udp_port(), free_udp_port()
    ours = spead_xdp.recv.Stream(spead_xdp.ThreadPool())
    ours.add_udp_reader(ours_port, bind_hostname="127.0.0.1")
    theirs = spead2.recv.Stream(spead2.ThreadPool())
    theirs.add_udp_reader(theirs_port, bind_hostname="127.0.0.1")
    sender = spead2.send.UdpStream(
        spead2.ThreadPool(), [("127.0.0.1", ours_port), ("127.0.0.1", theirs_port)],
        spead2.send.StreamConfig(rate=1e8),
    )

    class Both:
        def send_heap(self, heap):
            sender.send_heap(heap, substream_index=0)
            sender.send_heap(heap, substream_index=1)

    send_heaps(spead2, Both(), bits)
    expected, got = decoded(spead2, theirs), decoded(spead_xdp, ours)
    assert len(got) == 4 and got == expected
    assert got[0] == {} and got[1]["name"] == ("str", "heap 1") and got[3]["timestamp"] == ("int", 3 * 8192)
    assert got[2]["words"][:2] == ("uint32", (6,))  # native order, as spead2 gives it
    assert ours.stats.heaps == 4 and ours.stats.ring_drops == 0


def queued_heaps(count):
    """An in-process queue holding `count` heaps of item_group(48), filled
    for t = 0 .. count - 1, with the stream and item group that sent them."""
    queue = spead_xdp.InprocQueue()
    stream = spead_xdp.send.InprocStream(spead_xdp.ThreadPool(), [queue])
    ig = item_group(spead_xdp, 48)
    for t in range(count):
        fill(ig, t)
        stream.send_heap(ig.get_heap())
    return queue, stream, ig


def test_in_process_streams_lose_nothing_and_end_on_the_queues_stop():
    queue, stream, ig = queued_heaps(20)
    assert stream.num_substreams == 1 and stream.queues[0] is queue
    queue.stop()  # no end heap: the stop alone ends the receiver
    receiver = spead_xdp.recv.Stream(spead_xdp.ThreadPool())
    receiver.add_inproc_reader(queue)
    seen = decoded(spead_xdp, receiver)
    assert [heap["timestamp"] for heap in seen] == [("int", t * 8192) for t in range(20)]
    assert seen[7]["spectrum"] == ("uint16", (4, 256), (np.arange(1024) + 7).reshape(4, 256).tolist())
    with pytest.raises(spead_xdp.Stopped):
        receiver.get()
    # The stopped queue refuses: spead2's IOError.
    with pytest.raises(OSError) as refused:
        stream.send_heap(ig.get_end())
    assert refused.value.errno == errno.EPIPE


def test_a_full_in_process_queue_fails_the_send():
    queue = spead_xdp.InprocQueue(4)
    stream = spead_xdp.send.InprocStream(spead_xdp.ThreadPool(), [queue])
    ig = spead_xdp.send.ItemGroup()
    ig.add_item(0x1000, "data", "", (20000,), dtype=np.uint8, value=np.zeros(20000, np.uint8))
    with pytest.raises(BlockingIOError, match="4 packets"):
        stream.send_heap(ig.get_heap())
    # The asyncio stream, into a queue with room, completes.
    queue = spead_xdp.InprocQueue()

    async def send():
        s = spead_xdp.send.asyncio.InprocStream(spead_xdp.ThreadPool(), [queue])
        return await s.async_send_heap(ig.get_heap(data="all"))

    assert asyncio.run(send()) > 20000


def test_the_asyncio_receiver_awaits_heaps():
    queue, stream, ig = queued_heaps(5)
    stream.send_heap(ig.get_end())

    async def monitor():
        receiver = spead_xdp.recv.asyncio.Stream(spead_xdp.ThreadPool())
        receiver.add_inproc_reader(queue)
        group = spead_xdp.ItemGroup()
        stamps = []
        async for heap in receiver:
            group.update(heap)
            stamps.append(int(group["timestamp"].value))
        return stamps

    assert asyncio.run(monitor()) == [t * 8192 for t in range(5)]


def test_a_pcap_file_is_read_to_its_end(tmp_path):
    """spead-recv's capture of a stream, read back by spead_xdp.recv."""
    queue, _, _ = queued_heaps(3)
    queue.stop()
    packets = []
    receiver = spead_xdp.recv.Stream()
    receiver.add_inproc_reader(queue)
    expected = decoded(spead_xdp, receiver)
    # Write the same heaps' packets as a pcap of Ethernet/IPv4/UDP frames.
    pcap = tmp_path / "heaps.pcap"
    ig = item_group(spead_xdp, 48)
    for t in range(3):
        fill(ig, t)
        packets += list(spead_xdp.send.PacketGenerator(ig.get_heap(), t + 1, 1472))
    write_pcap(pcap, packets)
    receiver = spead_xdp.recv.Stream()
    receiver.add_udp_pcap_file_reader(pcap)
    assert decoded(spead_xdp, receiver) == expected


def write_pcap(path, payloads):
    import struct

    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for payload in payloads:
            udp = struct.pack(">HHHH", 7148, 7148, 8 + len(payload), 0) + payload
            ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                             bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])) + udp
            frame = b"\x00" * 12 + b"\x08\x00" + ip
            f.write(struct.pack("<IIII", 0, 0, len(frame), len(frame)) + frame)


def test_bad_arguments_raise_clear_exceptions():
    with pytest.raises(ValueError, match="max_heaps must be positive"):
        spead_xdp.recv.StreamConfig(max_heaps=0)
    receiver = spead_xdp.recv.Stream(spead_xdp.ThreadPool())
    with pytest.raises(TypeError, match="port 70000"):
        receiver.add_udp_reader(70000)
    with pytest.raises(ValueError, match='interface_address "eth0" is not an IPv4 address'):
        receiver.add_udp_reader("239.1.2.3", 7148, interface_address="eth0")
    with pytest.raises(OSError, match="nothing.pcap"):
        receiver.add_udp_pcap_file_reader("/nonexistent/nothing.pcap")
    receiver.add_inproc_reader(spead_xdp.InprocQueue())
    with pytest.raises(spead_xdp.Empty):
        receiver.get_nowait()
    with pytest.raises(ValueError, match="before the stream starts"):
        receiver.add_inproc_reader(spead_xdp.InprocQueue())
    receiver.stop()
    with pytest.raises(spead_xdp.Stopped):
        receiver.get()
    with pytest.raises(ValueError, match="port must be an int"):
        spead_xdp.sock.MulticastSender(port=0)
    with pytest.raises(ValueError, match="ttl must be an int"):
        spead_xdp.sock.MulticastSender(ttl=300)
    queue = spead_xdp.InprocQueue()
    queue.stop()
    with pytest.raises(BrokenPipeError):
        queue.add_packet(b"late")


def test_the_default_sock_pair_is_plain_udp_on_loopback():
    port = free_udp_port()
    with spead_xdp.sock.MulticastReceiver(port=port) as receiver:
        sender = spead_xdp.sock.MulticastSender(port=port)
        assert sender.send_data(b"datagram one") == 12
        assert receiver.receive() == b"datagram one"
        ig = item_group(spead_xdp, 48)
        fill(ig, 5)
        sent = sender.send_heap(ig.get_heap())
        heap = receiver.receive_heap()
        group = spead_xdp.ItemGroup()
        group.update(heap)
        assert sent > 2048 and group["timestamp"].value == 5 * 8192 and group["name"].value == "heap 5"


MULTICAST = r"""
import sys, threading
import spead_xdp.sock as sock

group, port, count = "239.20.1.1", 5007, 40
receivers = [sock.MulticastReceiver(group, port), sock.MulticastReceiver(group, port)]
got = [[], []]
arrived = [threading.Semaphore(0), threading.Semaphore(0)]

left = [False, False]

def listen(k):
    receivers[k]._socket.settimeout(0.1)  # to see its leaving
    while not left[k]:
        try:
            data = receivers[k].receive()
        except TimeoutError:
            continue
        except OSError:
            return  # closed: this monitor left
        got[k].append(data)
        arrived[k].release()

threads = [threading.Thread(target=listen, args=(k,), daemon=True) for k in range(2)]
for t in threads:
    t.start()
sender = sock.MulticastSender(group, port, ttl=1)
for i in range(count):
    sender.send_data(b"datagram %d" % i)
    # Each datagram is waited for by every receiver still in the group.
    assert arrived[0].acquire(timeout=5), f"receiver 0 lost datagram {i}"
    if i < count // 2:
        assert arrived[1].acquire(timeout=5), f"receiver 1 lost datagram {i}"
    elif i == count // 2:
        left[1] = True
        threads[1].join()
        receivers[1].close()  # leaves the group mid-stream; the others go on
print(len(got[0]), len(got[1]), got[0] == [b"datagram %d" % i for i in range(count)])
"""


def test_two_multicast_receivers_get_every_datagram_and_one_may_leave():
    privileged("test_two_multicast_receivers_get_every_datagram_and_one_may_leave")
    with veth("pysock", 233, 1500) as env:
        # The group is routed out of the namespace's own interface.
        subprocess.run(["ip", "netns", "exec", env["NETNS"], "ip", "route", "add", "224.0.0.0/4",
                        "dev", env["PEER_IF"]], check=True)
        out = subprocess.run(["ip", "netns", "exec", env["NETNS"], sys.executable, "-c", MULTICAST],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        first, second, in_order = out.stdout.split()
        assert (int(first), in_order) == (40, "True")
        assert 20 <= int(second) <= 21, out.stdout  # it left after the 21st


MONITOR = r"""
import sys
import spead_xdp, spead_xdp.recv

group, port, address = sys.argv[1], int(sys.argv[2]), sys.argv[3]
stream = spead_xdp.recv.Stream(spead_xdp.ThreadPool())
# 32 MiB rides out a 130 ms stall of a shared host, yet holds a tenth of
# the 315 MB stream: a monitor that cannot keep up still loses heaps.
stream.add_udp_reader(group, port, buffer_size=32 << 20, interface_address=address)
stream.start()
print("ready", flush=True)
items = spead_xdp.ItemGroup()
heaps = 0
for heap in stream:
    items.update(heap)
    heaps += 1
s = stream.stats
print(heaps, s.heaps, s.incomplete_heaps, s.kernel_drops, s.ring_drops, flush=True)
"""


def test_a_python_monitor_takes_every_heap_of_a_2_gbps_stream():
    privileged("test_a_python_monitor_takes_every_heap_of_a_2_gbps_stream")
    binary = ROOT / "target" / "debug" / "spead-send"
    if not binary.exists():
        binary = ROOT / "target" / "release" / "spead-send"
    assert binary.exists(), "build spead-send first (cargo build)"
    group = "239.20.2.1"
    with veth("pymon", 232, 9000) as env:
        monitor = subprocess.Popen(
            ["ip", "netns", "exec", env["NETNS"], sys.executable, "-c", MONITOR, group, "7148", env["PEER_IP"]],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            assert monitor.stdout.readline().strip() == "ready"
            sent = subprocess.run(
                [binary, "--quiet", "--transport", "udp", "--bind", env["HOST_IP"], "--ttl", "1",
                 "--rate", "2", "--heaps", "300", "--heap-size", "1048576", "--packet", "8192",
                 f"{group}:7148"],
                capture_output=True, text=True, timeout=60,
            )
            assert sent.returncode == 0, sent.stderr
            out, err = monitor.communicate(timeout=30)
            heaps, complete, incomplete, kernel_drops, ring_drops = map(int, out.split())
            assert (heaps, complete, incomplete, kernel_drops, ring_drops) == (300, 300, 0, 0, 0), err
        finally:
            monitor.kill()
            monitor.wait()


def test_the_monitor_example_shows_what_the_sender_example_sends():
    port = free_udp_port()
    examples = ROOT / "python" / "examples"
    monitor = subprocess.Popen([sys.executable, examples / "monitor.py", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert monitor.stdout.readline().strip() == "listening"
    sent = subprocess.run([sys.executable, examples / "spectra.py", "127.0.0.1", str(port), "5"],
                          capture_output=True, text=True)
    assert sent.returncode == 0, sent.stderr
    try:
        out, err = monitor.communicate(timeout=30)
    finally:
        monitor.kill()
    lines = out.splitlines()
    assert lines[:5] == [f"heap {k + 1}: timestamp {k * 8192}, mean {k:.1f}" for k in range(5)], err
    assert lines[5].startswith("RecvStats(packets=") and "heaps=5," in lines[5]


def test_another_thread_stops_a_waiting_get_and_the_figures_stay():
    import threading

    queue = spead_xdp.InprocQueue()
    stream = spead_xdp.send.InprocStream(spead_xdp.ThreadPool(), [queue])
    ig = item_group(spead_xdp, 48)
    fill(ig, 1)
    stream.send_heap(ig.get_heap())
    receiver = spead_xdp.recv.Stream(spead_xdp.ThreadPool())
    receiver.add_inproc_reader(queue)
    assert receiver.get().cnt == 1
    outcome = []
    waiting = threading.Thread(target=lambda: outcome.append(_wait(receiver)))
    waiting.start()
    # While that thread waits: the figures are readable, then the stop
    # ends its wait.
    assert receiver.stats.heaps == 1
    receiver.stop()
    waiting.join(timeout=10)
    assert not waiting.is_alive() and outcome == ["Stopped"]
    assert receiver.stats.heaps == 1 and receiver.stats.packets > 0


def _wait(receiver):
    try:
        receiver.get()
        return "heap"
    except spead_xdp.Stopped:
        return "Stopped"


def test_a_cancelled_asyncio_get_loses_no_heap():
    queue = spead_xdp.InprocQueue()
    stream = spead_xdp.send.InprocStream(spead_xdp.ThreadPool(), [queue])
    ig = item_group(spead_xdp, 48)

    async def monitor():
        receiver = spead_xdp.recv.asyncio.Stream(spead_xdp.ThreadPool())
        receiver.add_inproc_reader(queue)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(receiver.get(), 0.05)  # nothing sent yet
        fill(ig, 3)
        stream.send_heap(ig.get_heap())
        heap = await asyncio.wait_for(receiver.get(), 10)
        receiver.stop()
        return heap.cnt

    assert asyncio.run(monitor()) == 1


def test_sock_heaps_follow_one_another_and_an_end_does_not_end_monitoring():
    port = free_udp_port()
    with spead_xdp.sock.MulticastReceiver(port=port) as receiver:
        sender = spead_xdp.sock.MulticastSender(port=port)
        ig = item_group(spead_xdp, 48)
        stamps = []
        group = spead_xdp.ItemGroup()
        for run in range(2):  # a stream, its end, and the next stream
            for t in range(3):
                fill(ig, t)
                sender.send_heap(ig.get_heap(descriptors="all"))
            sender.send_heap(ig.get_end())
            for _ in range(3):
                group.update(receiver.receive_heap())
                stamps.append(int(group["timestamp"].value))
        assert stamps == [0, 8192, 16384] * 2
