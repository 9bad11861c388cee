#!/usr/bin/env python3
"""Golden SPEAD vectors from spead2: random heaps described in the form of
tests/data/VECTORS.md, with the exact packets spead2's PacketGenerator emits
for each.

Usage: scripts/make-vectors.py [OUT_JSON] [--seed N] [--cases N]
(default tests/data/spead2-heaps.json, seed 1, 200 cases). Run it with the
test venv's Python (scripts/test.sh makes .venv with spead2 from PyPI):
    .venv/bin/python scripts/make-vectors.py /tmp/v.json
    SPEAD_VECTORS=/tmp/v.json cargo test --test golden

Heaps whose payload is non-empty but too small for their pointers, which
spead2 4.5.1 pads before the real bytes (the one difference the packetizer
documents), are not generated.
"""

import argparse
import json
import os
import random

import spead2
import spead2.send

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKET_SIZES = [56, 64, 99, 128, 256, 1000, 1472, 4096, 8192, 9000]
DTYPES = ["<u1", ">u2", "<i4", ">f8", "<c8", "|b1"]
FORMATS = [[["u", 8]], [["i", 32]], [["u", 16], ["f", 64]], [["c", 8], ["b", 8], ["u", 40]]]


class RawItem:
    """An item as spead2.send.Heap.add_item reads one: an id, its bytes,
    and whether it may go as an immediate."""

    def __init__(self, item_id, value, allow_immediate):
        self.id = item_id
        self.value = value
        self._allow = allow_immediate

    def to_buffer(self):
        return memoryview(self.value)

    def allow_immediate(self):
        return self._allow


def random_item(rng, item_id, bits):
    size = rng.choice([0, 1, bits // 8, rng.randint(1, 64), rng.randint(64, 20000)])
    value = bytes(rng.getrandbits(8) for _ in range(size))
    allow = rng.random() < 0.5
    entry = {"item": {"id": item_id, "allow_immediate": allow, "value": value.hex()}}
    return entry, RawItem(item_id, bytearray(value), allow)


def random_descriptor(rng, item_id):
    name = "item%d" % rng.randint(0, 999)
    description = rng.choice(["", "a test item", "x" * rng.randint(0, 300)])
    if rng.random() < 0.5:
        dtype = rng.choice(DTYPES)
        shape = [rng.randint(0, 9) for _ in range(rng.randint(0, 3))]
        fortran = rng.random() < 0.3
        entry = {"descriptor": {"id": item_id, "name": name, "description": description,
                                "shape": shape, "dtype": dtype, "fortran_order": fortran}}
        descriptor = spead2.Descriptor(item_id, name, description, shape, dtype=dtype, order="F" if fortran else "C")
    else:
        shape = [rng.randint(0, 9) for _ in range(rng.randint(0, 3))]
        if shape and rng.random() < 0.5:
            shape[rng.randrange(len(shape))] = None  # at most one unknown
        fmt = rng.choice(FORMATS)
        entry = {"descriptor": {"id": item_id, "name": name, "description": description,
                                "shape": shape, "format": fmt}}
        descriptor = spead2.Descriptor(item_id, name, description, shape, format=[tuple(f) for f in fmt])
    return entry, descriptor


def padded_differently(heap_items, payload, max_packet_size):
    """Whether spead2 would pad this heap's real payload (see above)."""
    max_pointers = ((max_packet_size & ~7) - 48) // 8
    item_packets = heap_items // max_pointers + 1
    return 0 < payload < (item_packets - 1) * 8 + 1


def random_case(rng, name):
    bits = rng.choice([48, 40])
    flavour = spead2.Flavour(4, 64, bits, 0)
    max_packet_size = rng.choice(PACKET_SIZES)
    repeat = rng.random() < 0.2
    heap = spead2.send.Heap(flavour)
    heap.repeat_pointers = repeat
    contents, ids, items, payload = [], set(), 0, 0
    for _ in range(rng.randint(0, 10)):
        item_id = rng.randint(0x1000, 0x7FFF)
        while item_id in ids:
            item_id = rng.randint(0x1000, 0x7FFF)
        ids.add(item_id)
        kind = rng.random()
        if kind < 0.7:
            entry, raw = random_item(rng, item_id, bits)
            heap.add_item(raw)
            if not (raw.allow_immediate() and len(raw.value) <= bits // 8):
                payload += len(raw.value)
        elif kind < 0.9:
            entry, descriptor = random_descriptor(rng, item_id)
            heap.add_descriptor(descriptor)
            # A descriptor's value is a whole SPEAD packet of at least 9
            # pointers and a name: more than any padding threshold here.
            payload += 85
        elif not any("stream_control" in c for c in contents):
            # One stream control item a heap (item 0x6 appears once).
            control = rng.choice(["start", "end"])
            entry = {"stream_control": control}
            heap.add_start() if control == "start" else heap.add_end()
        else:
            continue
        contents.append(entry)
        items += 1
    if padded_differently(items, payload, max_packet_size):
        return None
    cnt = rng.randint(1, (1 << bits) - 1) if rng.random() < 0.3 else rng.randint(1, 1000)
    try:
        packets = [bytes(p).hex() for p in spead2.send.PacketGenerator(heap, cnt, max_packet_size)]
    except ValueError:
        return None  # pointers that cannot be repeated in one packet
    return {"name": name, "heap_address_bits": bits, "cnt": cnt, "max_packet_size": max_packet_size,
            "repeat_pointers": repeat, "contents": contents, "packets": packets}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default=os.path.join(ROOT, "tests", "data", "spead2-heaps.json"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cases", type=int, default=200)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    cases = []
    while len(cases) < args.cases:
        case = random_case(rng, "seed%d-case%d" % (args.seed, len(cases)))
        if case is not None:
            cases.append(case)
    doc = {"generator": "spead2 %s PacketGenerator" % spead2.__version__, "seed": args.seed, "cases": cases}
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print("%d cases, %d packets -> %s" % (len(cases), sum(len(c["packets"]) for c in cases), args.out))


if __name__ == "__main__":
    main()
