"""The same Python loop sending 4 MiB heaps (unpaced) through spead2's
asyncio UdpStream and through spead_xdp's, beside `spead-send` with the
same settings; alternating rounds, medians of packets/s.

    .venv/bin/python bench/python_send.py [ROUNDS]
    .venv/bin/python bench/python_send.py [ROUNDS] --harness

Loopback (the default, no root): to a socket that never reads (the
kernel drops what its buffer cannot hold: the senders' work is what is
measured), packets/s as each sender counts them.

--harness (root): over the veth harness (scripts/setup-veth.sh, MTU 9000),
counted where they arrive by the XDP sink (spead-sink) in the peer's
namespace, for UDP and AF_XDP: spead2 from Python, spead_xdp from Python
(UDP; AF_XDP copying the array; AF_XDP with the array allocated in the
UMEM, sent by reference), and spead-send on each transport. Every sender's
worker is pinned to core 1, and the Python loop to core 0 (--share-core:
not pinned).

Needs spead2 and spead_xdp in the venv (scripts/test.sh installs both)
and release builds of spead-send and, for --harness, spead-sink
(cargo build --release --features sink).
"""

import asyncio
import contextlib
import functools
import os
import pathlib
import re
import socket
import statistics
import subprocess
import sys
import time

# numpy's OpenBLAS starts a spinning thread per core at import (perf: 15 %
# of the worker's core in blas_thread_server), which no sender here uses;
# one thread, as a sending service would set it, for spead2's rounds too.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

HEAPS = 40
HEAP_SIZE = 4 << 20
CORE = 1
# The Python loop (and its stream's completion thread) runs off the
# worker's core, as a deployment pins its threads; --share-core leaves it
# to the scheduler, to see what sharing the 2 cores costs.
PIN_LOOP = "--share-core" not in sys.argv
ROOT = pathlib.Path(__file__).resolve().parents[1]
RELEASE = ROOT / "target" / "release"


def loop_heap(package, data):
    """One of the loop's heaps: a 48-bit timestamp and `data` (4 MiB)."""
    ig = package.send.ItemGroup(flavour=package.Flavour(4, 64, 48, 0))
    ig.add_item(0x1600, "timestamp", "", (), format=[("u", 48)], value=0)
    ig.add_item(0x1800, "data", "", (HEAP_SIZE,), dtype=np.uint8, value=data)
    return ig.get_heap(descriptors="none", data="all")


@functools.lru_cache
def packets_per_heap(packet):
    """Packets of one of the loop's heaps, as spead_xdp's packet generator
    makes them."""
    import spead_xdp
    import spead_xdp.send

    heap = loop_heap(spead_xdp, np.zeros(HEAP_SIZE, np.uint8))
    return sum(1 for _ in spead_xdp.send.PacketGenerator(heap, 1, packet))


def make_stream(package, packet, destination, transport):
    """An asyncio stream of `package` to `destination`, and where its data
    array should live (None: an ordinary numpy array)."""
    import importlib

    importlib.import_module(package.__name__ + ".send.asyncio")
    config = package.send.StreamConfig(max_packet_size=packet, max_heaps=8)
    pool = package.ThreadPool(1, [CORE])
    if transport == "udp":
        return package.send.asyncio.UdpStream(pool, [destination], config), None
    xdp = package.send.XdpConfig(
        endpoints=[destination], interface_address=transport["HOST_IP"],
        user_buffer_size=HEAP_SIZE if transport["umem"] else 0,
    )
    stream = package.send.asyncio.XdpStream(pool, config, xdp)
    return stream, (stream.allocate if transport["umem"] else None)


async def python_loop(package, packet, destination, transport="udp"):
    """Sends HEAPS heaps of one 4 MiB array and a timestamp, eight in
    flight; returns packets/s as the loop timed them."""
    stream, allocate = make_stream(package, packet, destination, transport)
    allowed = os.sched_getaffinity(0)
    if PIN_LOOP:
        # This thread (the loop) and the completer thread it starts stay
        # off the worker's core, for this round.
        os.sched_setaffinity(0, {0})
    try:
        return await send_all(stream, package, packet, allocate)
    finally:
        os.sched_setaffinity(0, allowed)


async def send_all(stream, package, packet, allocate):
    data = allocate((HEAP_SIZE,), np.uint8) if allocate else np.zeros(HEAP_SIZE, np.uint8)
    heaps = [loop_heap(package, data) for _ in range(HEAPS)]
    start = time.perf_counter()
    futures = []
    for h in heaps:
        if len(futures) >= 8:
            await futures.pop(0)
        futures.append(stream.async_send_heap(h))
    for f in futures:
        await f
    elapsed = time.perf_counter() - start
    return HEAPS * packets_per_heap(packet) / elapsed


def spead_send(packet, destination, transport="udp", interface=None):
    """Runs spead-send; returns packets/s as it timed them."""
    command = [RELEASE / "spead-send", "--quiet", "--core", str(CORE), "--transport", transport,
               "--heaps", str(HEAPS), "--heap-size", str(HEAP_SIZE), "--packet", str(packet),
               "--max-heaps", "8", f"{destination[0]}:{destination[1]}"]
    if interface:
        command[1:1] = ["--interface", interface]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    # "Sent N bytes in T s, X Gb/s"
    words = out.stdout.split()
    sent, seconds = int(words[1]), float(words[4].rstrip("s,"))
    return sent / packet / seconds


@contextlib.contextmanager
def sink_counting(harness):
    """Attaches spead-sink to the harness's peer for one round; yields a
    list that receives (packets, packets/s) as the sink counted them,
    first to last packet."""
    sink = subprocess.Popen(
        [RELEASE / "spead-sink", "--interface", harness["PEER_IF"], "--netns", harness["NETNS"],
         "--idle", "0.3", "--quiet"],
        stdout=subprocess.PIPE, text=True,
    )
    assert sink.stdout.readline().startswith("attached"), "spead-sink did not attach"
    counted = []
    try:
        yield counted
    except BaseException:
        sink.kill()
        sink.wait()
        raise
    out, _ = sink.communicate(timeout=60)
    total = re.search(r"total: (\d+) packets .*?; (\d+) packets/s", out)
    assert total, out
    counted.extend([int(total.group(1)), int(total.group(2))])


def loopback_rounds(rounds):
    import spead2
    import spead_xdp

    for packet in (1472, 8192):
        figures = {"spead2 (Python)": [], "spead_xdp (Python)": [], "spead-send": []}
        for r in range(rounds):
            for name in (list(figures) if r % 2 == 0 else reversed(list(figures))):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind(("127.0.0.1", 0))
                destination = ("127.0.0.1", s.getsockname()[1])
                if name == "spead-send":
                    figures[name].append(spead_send(packet, destination))
                else:
                    package = spead2 if name.startswith("spead2") else spead_xdp
                    figures[name].append(asyncio.run(python_loop(package, packet, destination)))
                s.close()
        report(f"{packet}-byte packets, {HEAPS} heaps of 4 MiB to a loopback socket, unpaced, "
               f"medians of {rounds} alternating rounds (packets/s as the senders count them):",
               figures, [("spead_xdp (Python)", "spead2 (Python)"), ("spead_xdp (Python)", "spead-send")])


def harness_rounds(rounds):
    import spead2
    import spead_xdp

    script = ROOT / "scripts" / "setup-veth.sh"
    harness_name = "pysendbench"
    up = subprocess.run(["bash", script, "up", harness_name, "--subnet", "234", "--mtu", "9000"],
                        capture_output=True, text=True, check=True)
    harness = dict(line.split("=", 1) for line in up.stdout.split() if "=" in line)
    destination = (harness["PEER_IP"], 7148)
    copy = dict(harness, umem=False)
    umem = dict(harness, umem=True)
    senders = {
        "spead2 UDP (Python)": lambda p: asyncio.run(python_loop(spead2, p, destination)),
        "spead_xdp UDP (Python)": lambda p: asyncio.run(python_loop(spead_xdp, p, destination)),
        "spead-send UDP": lambda p: spead_send(p, destination),
        "spead_xdp AF_XDP (Python)": lambda p: asyncio.run(python_loop(spead_xdp, p, destination, copy)),
        "spead_xdp AF_XDP, UMEM array (Python)":
            lambda p: asyncio.run(python_loop(spead_xdp, p, destination, umem)),
        "spead-send AF_XDP": lambda p: spead_send(p, destination, "xdp", harness["HOST_IF"]),
    }
    try:
        for packet in (1472, 8192):
            figures = {name: [] for name in senders}
            lost = {name: 0 for name in senders}
            for r in range(rounds):
                for name in (list(senders) if r % 2 == 0 else reversed(list(senders))):
                    with sink_counting(harness) as counted:
                        senders[name](packet)
                    packets, rate = counted
                    figures[name].append(rate)
                    lost[name] += max(0, HEAPS * packets_per_heap(packet) - packets) if "spead-send" not in name else 0
            report(f"{packet}-byte packets, {HEAPS} heaps of 4 MiB over the veth harness (MTU 9000), unpaced, "
                   f"core {CORE}, medians of {rounds} alternating rounds (packets/s counted by the XDP sink):",
                   figures, [("spead_xdp UDP (Python)", "spead2 UDP (Python)"),
                             ("spead_xdp UDP (Python)", "spead-send UDP"),
                             ("spead_xdp AF_XDP (Python)", "spead-send AF_XDP"),
                             ("spead_xdp AF_XDP, UMEM array (Python)", "spead-send AF_XDP"),
                             ("spead_xdp AF_XDP, UMEM array (Python)", "spead2 UDP (Python)")])
            print("  packets the sink did not see (Python senders, all rounds): "
                  + ", ".join(f"{n}: {k}" for n, k in lost.items() if "spead-send" not in n))
    finally:
        subprocess.run(["bash", script, "down", harness_name], capture_output=True)


def report(title, figures, ratios):
    medians = {name: statistics.median(v) for name, v in figures.items()}
    print(title)
    for name, m in medians.items():
        print(f"  {name:40} {m / 1e3:8.0f}k packets/s")
    for a, b in ratios:
        print(f"  {a} / {b}: {medians[a] / medians[b]:.2f}")
    sys.stdout.flush()


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    rounds = int(args[0]) if args else 5
    if "--harness" in sys.argv:
        harness_rounds(rounds)
    else:
        loopback_rounds(rounds)


if __name__ == "__main__":
    main()
