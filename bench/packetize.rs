//! PacketSizing cost: ns per packet and GB/s writing a 4 MiB heap's packets
//! (1472- and 8192-byte) into a preallocated ring of frames, each behind a
//! 42-byte Ethernet/IPv4/UDP header gap as a transport would leave it.
//! Beside it, the ceiling: copying the same packet bytes into the same ring
//! with memcpy alone. And the whole UMEM frame fill as the AF_XDP
//! transport does it: Ethernet/IPv4/UDP headers from a template (length,
//! IP id and checksum patched) and the SPEAD packet behind them, into 4 KiB
//! chunks of a UMEM area (huge pages when reserved). One iteration is one
//! packet, so criterion's time per iteration is ns per packet and its
//! throughput is heap payload bytes per second.

use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use spead_xdp::protocol::{Flavour, Heap, Item, PacketSizing};
use spead_xdp::transport::internals::UdpFrameTemplate;
use spead_xdp::transport::MacAddress;
use spead_xdp::transport::UmemArea;

/// Bytes a transport puts in front of the SPEAD packet.
const L2_L3_L4_HEADERS: usize = 42;
/// Frames in the ring: enough to leave the last-level cache, like a UMEM.
const RING_FRAMES: usize = 4096;
const HEAP_BYTES: usize = 4 << 20;
/// The AF_XDP transport's UMEM chunk.
const UMEM_CHUNK: usize = 4096;

/// Frames back to back in one region, used round robin.
struct Ring<M> {
    memory: M,
    frame_size: usize,
    next: usize,
}

impl<M: AsMut<[u8]>> Ring<M> {
    fn new(memory: M, frame_size: usize) -> Self {
        Ring {
            memory,
            frame_size,
            next: 0,
        }
    }

    /// The next whole frame, headers included.
    fn next_whole_frame(&mut self) -> &mut [u8] {
        let start = self.next * self.frame_size;
        self.next = (self.next + 1) % RING_FRAMES;
        &mut self.memory.as_mut()[start..start + self.frame_size]
    }

    /// The next frame's SPEAD part, behind the header gap.
    fn next_frame(&mut self) -> &mut [u8] {
        &mut self.next_whole_frame()[L2_L3_L4_HEADERS..]
    }
}

fn bench_packetizer(c: &mut Criterion) {
    let data: Vec<u8> = (0..HEAP_BYTES).map(|i| i as u8).collect();
    let mut heap = Heap::new(Flavour::SPEAD_64_48);
    heap.add(Item::immediate(0x1600, 123_456_789)).unwrap();
    heap.add(Item::immediate(0x4103, 7)).unwrap();
    heap.add(Item::new(0x4300, &data[..])).unwrap();

    let mut group = c.benchmark_group("packetize");
    group.measurement_time(Duration::from_secs(4));
    for packet_size in [1472usize, 8192] {
        let sizing = PacketSizing::new(packet_size).unwrap();
        let packets = sizing.packets(&heap, 1).unwrap().remaining() as u64;
        let frame_size = (packet_size + L2_L3_L4_HEADERS).next_multiple_of(64);
        let mut ring = Ring::new(vec![0u8; frame_size * RING_FRAMES], frame_size);
        group.throughput(Throughput::Bytes(HEAP_BYTES as u64 / packets));

        group.bench_function(BenchmarkId::new("spead-xdp", packet_size), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                let mut written = 0;
                let mut cnt = 1;
                while written < iters {
                    let mut heap_packets = sizing.packets(&heap, cnt).unwrap();
                    while written < iters {
                        match heap_packets.write_next(ring.next_frame()).unwrap() {
                            Some(len) => black_box(len),
                            None => break,
                        };
                        written += 1;
                    }
                    cnt += 1;
                }
                start.elapsed()
            })
        });

        let prebuilt: Vec<Vec<u8>> = sizing.packets(&heap, 1).unwrap().collect();
        group.bench_function(BenchmarkId::new("memcpy-ceiling", packet_size), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for i in 0..iters {
                    let packet = &prebuilt[i as usize % prebuilt.len()];
                    ring.next_frame()[..packet.len()].copy_from_slice(packet);
                    black_box(&ring.memory[0]);
                }
                start.elapsed()
            })
        });

        // As the AF_XDP transport lays out its slots: whole 4 KiB chunks.
        let slot_size = (packet_size + L2_L3_L4_HEADERS).next_multiple_of(UMEM_CHUNK);
        let area = UmemArea::new(0, slot_size * RING_FRAMES).unwrap();
        let mut umem = Ring::new(area.alloc(slot_size * RING_FRAMES).unwrap(), slot_size);
        let template = UdpFrameTemplate::new(
            MacAddress([2, 0, 0, 0, 0, 1]),
            MacAddress([2, 0, 0, 0, 0, 2]),
            "10.0.0.1:7148".parse().unwrap(),
            "10.0.0.2:7148".parse().unwrap(),
            64,
        );
        let pages = if area.huge_pages() { "huge" } else { "4k" };
        group.bench_function(
            BenchmarkId::new(format!("umem-fill-{pages}-pages"), packet_size),
            |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    let mut written = 0;
                    let mut cnt = 1;
                    while written < iters {
                        let mut heap_packets = sizing.packets(&heap, cnt).unwrap();
                        while written < iters {
                            let frame = umem.next_whole_frame();
                            let Some(len) = heap_packets.write_next(&mut frame[L2_L3_L4_HEADERS..]).unwrap()
                            else {
                                break;
                            };
                            template.write(frame, len, written as u16);
                            black_box(&frame[0]);
                            written += 1;
                        }
                        cnt += 1;
                    }
                    start.elapsed()
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench_packetizer);
criterion_main!(benches);
