"""Send heaps through spead2's BytesStream and print the bytes, as hex; or,
when the spec names UDP ports, through spead2's UdpStream to 127.0.0.1 with
one substream per port.

Used by tests/stream.rs. Reads a JSON spec on stdin:
{"max_packet_size": N, "cnt_sequence": [next, step] | null, "ports": [P, ...] | absent,
 "sends": [{"mode": "serial" | "round_robin",
            "heaps": [{"cnt": N | null, "substream": N | absent,
                       "items": [[id, allow_immediate, hex]]}]}]}
Each send is one send_heaps call (a group). Items are raw bytes: allowed
immediates as fixed-shape u1 arrays, others as variable-shape ones.
"""

import json
import sys

import numpy as np
import spead2
import spead2.send


def build_heap(spec, flavour):
    heap = spead2.send.Heap(flavour)
    for item_id, allow_immediate, value in spec["items"]:
        data = np.frombuffer(bytes.fromhex(value), dtype=np.uint8)
        shape = (len(data),) if allow_immediate else (None,)
        item = spead2.Item(item_id, f"item{item_id:x}", "", shape, format=[("u", 8)])
        item.value = data
        heap.add_item(item)
    return heap


def main() -> None:
    spec = json.load(sys.stdin)
    flavour = spead2.Flavour(4, 64, 48, 0)
    ports = spec.get("ports")
    # Paced when sending UDP, so loopback receivers keep up.
    config = spead2.send.StreamConfig(
        max_packet_size=spec["max_packet_size"], max_heaps=64, rate=100e6 if ports else 0.0
    )
    if ports:
        endpoints = [("127.0.0.1", port) for port in ports]
        stream = spead2.send.UdpStream(spead2.ThreadPool(), endpoints, config)
    else:
        stream = spead2.send.BytesStream(spead2.ThreadPool(), config)
    if spec["cnt_sequence"] is not None:
        stream.set_cnt_sequence(*spec["cnt_sequence"])
    modes = {"serial": spead2.send.GroupMode.SERIAL, "round_robin": spead2.send.GroupMode.ROUND_ROBIN}
    for send in spec["sends"]:
        heaps = [build_heap(h, flavour) for h in send["heaps"]]
        refs = [
            spead2.send.HeapReference(
                heap,
                cnt=-1 if h["cnt"] is None else h["cnt"],
                substream_index=h.get("substream", 0),
            )
            for heap, h in zip(heaps, send["heaps"])
        ]
        stream.send_heaps(refs, modes[send["mode"]])
    if not ports:
        print(bytes(stream.getvalue()).hex())


if __name__ == "__main__":
    main()
