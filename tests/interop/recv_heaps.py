"""Receive SPEAD heaps with spead2 and print what it decoded, as JSON.

Used by tests/interop.rs, tests/pcap.rs and scripts/run.sh:
`recv_heaps.py MAX_PACKET TIMEOUT [--pcap FILE] [--bind HOST:PORT] [--summary]`.
Without --pcap it binds a UDP socket on --bind (default 127.0.0.1, port
chosen by the kernel) and prints `PORT <n>` on one line; with --pcap it reads that file with spead2's pcap
reader. It receives until a stop heap or the end of the file ends the
stream or the timeout passes, and prints one JSON document (with
--summary, only counts and the first and last cnt):
{"heaps": [{"cnt", "items": [[id, immediate, hex]], "descriptors": [...]}],
 "stats": {...}}.
"""

import argparse
import json
import socket
import threading

import spead2
import spead2.recv
from raw_json import descriptor_dict


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("max_packet", type=int)
    parser.add_argument("timeout", type=float)
    parser.add_argument("--pcap")
    parser.add_argument("--bind", default="127.0.0.1:0")
    parser.add_argument("--summary", action="store_true")
    args = parser.parse_args()
    max_packet, timeout = args.max_packet, args.timeout
    config = spead2.recv.StreamConfig(max_heaps=8)
    ring = spead2.recv.RingStreamConfig(heaps=64)
    stream = spead2.recv.Stream(spead2.ThreadPool(), config, ring)
    if args.pcap:
        stream.add_udp_pcap_file_reader(args.pcap)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)
        host, port = args.bind.rsplit(":", 1)
        sock.bind((host, int(port)))
        stream.add_udp_reader(sock, max_size=max_packet + 64)
        print("PORT", sock.getsockname()[1], flush=True)
    timer = threading.Timer(timeout, stream.stop)
    timer.start()
    heaps = []
    summary = {"heaps": 0, "complete": 0, "payload_bytes": 0, "first_cnt": None, "last_cnt": None}
    for heap in stream:
        complete = not isinstance(heap, spead2.recv.IncompleteHeap)
        if args.summary:
            summary["heaps"] += 1
            summary["complete"] += complete
            summary["payload_bytes"] += sum(len(memoryview(i)) for i in heap.get_items() if not i.is_immediate)
            summary["first_cnt"] = summary["first_cnt"] or heap.cnt
            summary["last_cnt"] = heap.cnt
            continue
        items = []
        for item in heap.get_items():
            items.append([item.id, bool(item.is_immediate), bytes(memoryview(item)).hex()])
        descriptors = [descriptor_dict(d) for d in heap.get_descriptors()]
        heaps.append({"cnt": heap.cnt, "complete": complete, "items": items, "descriptors": descriptors})
    timer.cancel()
    stats = stream.stats
    print(
        json.dumps(
            {
                "heaps": summary if args.summary else heaps,
                "stats": {
                    "packets": stats["packets"],
                    "heaps": stats["heaps"],
                    "incomplete_heaps_evicted": stats["incomplete_heaps_evicted"],
                    "incomplete_heaps_flushed": stats["incomplete_heaps_flushed"],
                },
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
