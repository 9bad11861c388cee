"""Send SPEAD heaps with spead2 to a UDP port and print what was sent, as JSON.

Used by tests/interop.rs: `send_heaps.py PORT MAX_PACKET_SIZE N_HEAPS`. Sends
N heaps from an ItemGroup (descriptors in the first, values changing every
heap), then a stop heap, paced at 50 Mb/s to 127.0.0.1:PORT. Prints one JSON
document with, for each heap, its cnt and the bytes each item should decode
to (immediates as their right-aligned field), and the descriptors.
"""

import json
import sys

import numpy as np
import spead2
import spead2.send
from raw_json import descriptor_dict


def expected_bytes(item, flavour):
    raw = item.to_buffer()
    data = bytes(memoryview(raw))
    size = flavour.heap_address_bits // 8
    if item.allow_immediate() and len(data) <= size:
        return True, data.rjust(size, b"\0")
    return False, data


def main() -> None:
    port, max_packet, n_heaps = (int(x) for x in sys.argv[1:4])
    flavour = spead2.Flavour(4, 64, 48, 0)
    config = spead2.send.StreamConfig(max_packet_size=max_packet, rate=50e6 / 8, max_heaps=4)
    stream = spead2.send.UdpStream(spead2.ThreadPool(), [("127.0.0.1", port)], config)
    ig = spead2.send.ItemGroup(flavour=flavour)
    ig.add_item(0x1600, "timestamp", "ADC sample count", (), format=[("u", 48)])
    ig.add_item(0x1800, "spectrum", "channelised power", (10000,), dtype="<u1")
    ig.add_item(0x1801, "vis", "visibilities, Fortran order", (16, 4), dtype="<c8", order="F")
    ig.add_item(0x1802, "note", "free text", (None,), format=[("c", 8)])
    ig.add_item(0x1803, "gain", "a float64", (), dtype=">f8")
    ig.add_item(0x1804, "pair", "two int16 (immediate)", (2,), dtype="<i2")
    rng = np.random.default_rng(2)
    sent = []
    for i in range(n_heaps):
        ig["timestamp"].value = 1_000_000 * (i + 1) + 7
        ig["spectrum"].value = rng.integers(0, 256, 10000, dtype=np.uint8)
        ig["vis"].value = np.asfortranarray(
            (rng.standard_normal((16, 4)) + 1j * rng.standard_normal((16, 4))).astype("<c8")
        )
        ig["note"].value = f"heap {i} says hello"
        ig["gain"].value = 1.5 * i
        ig["pair"].value = np.array([i, -i], dtype="<i2")
        heap = ig.get_heap(descriptors="all" if i == 0 else "stale", data="all")
        stream.send_heap(heap)
        items = []
        for item in ig.values():
            immediate, data = expected_bytes(item, flavour)
            items.append([item.id, immediate, data.hex()])
        descriptors = [descriptor_dict(item.to_raw(flavour)) for item in ig.values()] if i == 0 else []
        sent.append({"cnt": i + 1, "items": items, "descriptors": descriptors})
    stream.send_heap(ig.get_end())
    print(json.dumps({"heaps": sent}), flush=True)


if __name__ == "__main__":
    main()
