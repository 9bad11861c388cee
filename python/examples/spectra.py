"""A spead2 sender, ported: only the import changed. Sends N heaps of a
48-bit timestamp and a 4096-channel spectrum, descriptors first, then an
end heap, at 1 Gb/s.

    python spectra.py HOST PORT [HEAPS]
"""

import asyncio
import sys

import numpy as np

import spead_xdp as spead2  # was: import spead2
import spead_xdp.send.asyncio  # was: import spead2.send.asyncio


async def main(host, port, heaps):
    config = spead2.send.StreamConfig(rate=1e9 / 8, max_packet_size=8192)
    stream = spead2.send.asyncio.UdpStream(spead2.ThreadPool(), [(host, port)], config)
    ig = spead2.send.ItemGroup(flavour=spead2.Flavour(4, 64, 48, 0))
    ig.add_item(0x1600, "timestamp", "ADC sample count", (), format=[("u", 48)], value=0)
    ig.add_item(0x1800, "spectrum", "power per channel", (4096,), dtype=np.uint16)
    for t in range(heaps):
        ig["timestamp"].value = t * 8192
        ig["spectrum"].value = np.full(4096, t, np.uint16)
        await stream.async_send_heap(ig.get_heap())
    await stream.async_send_heap(ig.get_end())
    print(f"sent {heaps} heaps; {stream.stats.packets} packets, {stream.stats.bytes} bytes")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 10))
