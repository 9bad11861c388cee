"""Receive SPEAD heaps with spead2 and print what it decoded, as JSON.

Used by tests/interop.rs and tests/pcap.rs: `recv_heaps.py MAX_PACKET
TIMEOUT [PCAP]`. Without PCAP it binds a UDP socket on 127.0.0.1 (port
chosen by the kernel) and prints `PORT <n>` on one line; with PCAP it reads
that file with spead2's pcap reader. It receives until a stop heap or the
end of the file ends the stream or the timeout passes, and prints one JSON
document:
{"heaps": [{"cnt", "items": [[id, immediate, hex]], "descriptors": [...]}],
 "stats": {...}}.
"""

import json
import socket
import sys
import threading

import spead2
import spead2.recv
from raw_json import descriptor_dict


def main() -> None:
    max_packet = int(sys.argv[1])
    timeout = float(sys.argv[2])
    config = spead2.recv.StreamConfig(max_heaps=8)
    ring = spead2.recv.RingStreamConfig(heaps=64)
    stream = spead2.recv.Stream(spead2.ThreadPool(), config, ring)
    if len(sys.argv) > 3:
        stream.add_udp_pcap_file_reader(sys.argv[3])
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)
        sock.bind(("127.0.0.1", 0))
        stream.add_udp_reader(sock, max_size=max_packet + 64)
        print("PORT", sock.getsockname()[1], flush=True)
    timer = threading.Timer(timeout, stream.stop)
    timer.start()
    heaps = []
    for heap in stream:
        items = []
        for item in heap.get_items():
            items.append([item.id, bool(item.is_immediate), bytes(memoryview(item)).hex()])
        descriptors = [descriptor_dict(d) for d in heap.get_descriptors()]
        heaps.append(
            {
                "cnt": heap.cnt,
                "complete": not isinstance(heap, spead2.recv.IncompleteHeap),
                "items": items,
                "descriptors": descriptors,
            }
        )
    timer.cancel()
    stats = stream.stats
    print(
        json.dumps(
            {
                "heaps": heaps,
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
