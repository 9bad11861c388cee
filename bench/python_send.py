"""The same Python loop sending 4 MiB heaps (unpaced) through spead2's
asyncio UdpStream and through spead_xdp's, on loopback to a socket that
never reads (the kernel drops what its buffer cannot hold: the senders'
work is what is measured), beside `spead-send` with the same settings;
alternating rounds, medians, packets/s as each sender counts them.

    .venv/bin/python bench/python_send.py [ROUNDS]

Needs spead2 and spead_xdp in the venv (scripts/test.sh installs both)
and a release `spead-send` (cargo build --release).
"""

import asyncio
import pathlib
import socket
import statistics
import subprocess
import sys
import time

import numpy as np

HEAPS = 40
HEAP_SIZE = 4 << 20


def sink():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    return s


async def python_loop(package, port, packet):
    import importlib

    importlib.import_module(package.__name__ + ".send.asyncio")
    config = package.send.StreamConfig(max_packet_size=packet, max_heaps=8)
    stream = package.send.asyncio.UdpStream(package.ThreadPool(), [("127.0.0.1", port)], config)
    ig = package.send.ItemGroup(flavour=package.Flavour(4, 64, 48, 0))
    ig.add_item(0x1600, "timestamp", "", (), format=[("u", 48)], value=0)
    ig.add_item(0x1800, "data", "", (HEAP_SIZE,), dtype=np.uint8, value=np.zeros(HEAP_SIZE, np.uint8))
    heaps = [ig.get_heap(descriptors="none", data="all") for _ in range(HEAPS)]
    per_heap = -(-HEAP_SIZE // (packet - 48))
    start = time.perf_counter()
    futures = []
    for h in heaps:
        if len(futures) >= 8:
            await futures.pop(0)
        futures.append(stream.async_send_heap(h))
    for f in futures:
        await f
    return HEAPS * per_heap / (time.perf_counter() - start)


def spead_send(port, packet):
    binary = pathlib.Path(__file__).resolve().parents[1] / "target" / "release" / "spead-send"
    out = subprocess.run(
        [binary, "--quiet", "--transport", "udp", "--heaps", str(HEAPS), "--heap-size", str(HEAP_SIZE),
         "--packet", str(packet), "--max-heaps", "8", f"127.0.0.1:{port}"],
        capture_output=True, text=True, check=True,
    )
    # "Sent N bytes in T s, X Gb/s"
    words = out.stdout.split()
    sent, seconds = int(words[1]), float(words[4].rstrip("s,"))
    return sent / packet / seconds


def main():
    import spead2
    import spead_xdp

    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    for packet in (1472, 8192):
        figures = {"spead2 (Python)": [], "spead_xdp (Python)": [], "spead-send": []}
        for r in range(rounds):
            order = list(figures)
            if r % 2:
                order.reverse()
            for name in order:
                s = sink()
                port = s.getsockname()[1]
                if name == "spead-send":
                    figures[name].append(spead_send(port, packet))
                else:
                    package = spead2 if name.startswith("spead2") else spead_xdp
                    figures[name].append(asyncio.run(python_loop(package, port, packet)))
                s.close()
        medians = {name: statistics.median(v) for name, v in figures.items()}
        print(f"{packet}-byte packets, {HEAPS} heaps of 4 MiB, unpaced, medians of {rounds} alternating rounds:")
        for name, m in medians.items():
            print(f"  {name:20} {m / 1e3:8.0f}k packets/s")
        print(f"  spead_xdp / spead2 from Python: {medians['spead_xdp (Python)'] / medians['spead2 (Python)']:.2f}")
        print(f"  spead_xdp from Python / spead-send: {medians['spead_xdp (Python)'] / medians['spead-send']:.2f}")


if __name__ == "__main__":
    main()
