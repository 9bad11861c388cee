"""A passive monitor: joins a multicast group (or listens on a port) and
prints each heap's timestamp and the mean of its spectrum until the
sender's end heap, then what the stream counted.

    python monitor.py PORT [GROUP INTERFACE_ADDRESS]
"""

import sys

import spead_xdp as spead2  # a spead2 monitor reads the same with: import spead2
import spead_xdp.recv


def main(port, group=None, interface_address="0.0.0.0"):
    stream = spead2.recv.Stream(spead2.ThreadPool())
    if group:
        stream.add_udp_reader(group, port, interface_address=interface_address)
    else:
        stream.add_udp_reader(port, bind_hostname="127.0.0.1")
    stream.start()
    print("listening", flush=True)
    items = spead2.ItemGroup()
    for heap in stream:
        items.update(heap)
        print(f"heap {heap.cnt}: timestamp {items['timestamp'].value}, mean {items['spectrum'].value.mean():.1f}")
    print(stream.stats)


if __name__ == "__main__":
    main(int(sys.argv[1]), *sys.argv[2:])
