#!/usr/bin/env python3
"""Seeds the fuzz corpora (fuzz/corpus/) from the golden vectors.

reassemble: each golden case's packets as one input, each packet a
little-endian u16 length and its bytes (the target's input format), plus
the same packets in reverse order. build_heap: a few fixed random inputs.
Usage: scripts/fuzz-seeds.py [VECTORS_JSON] (default tests/data/spead2-heaps.json).
Running the fuzzers grows the corpora; `cargo fuzz cmin` keeps them small.
"""
import hashlib
import json
import os
import random
import struct
import sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
vectors = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "tests", "data", "spead2-heaps.json")


def write(target, data):
    folder = os.path.join(root, "fuzz", "corpus", target)
    os.makedirs(folder, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def framed(packets):
    return b"".join(struct.pack("<H", len(p)) + p for p in packets)


cases = json.load(open(vectors))["cases"]
for case in cases:
    packets = [bytes.fromhex(p) for p in case["packets"]]
    if sum(len(p) for p in packets) > 16384:
        continue
    write("reassemble", framed(packets))
    write("reassemble", framed(packets[::-1]))

rng = random.Random(4242)
for n in range(32):
    write("build_heap", bytes(rng.randrange(256) for _ in range(rng.randrange(16, 256))))
