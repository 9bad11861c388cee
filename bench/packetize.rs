//! Packetizer cost: ns per packet and GB/s writing a 4 MiB heap's packets
//! (1472- and 8192-byte) into a preallocated ring of frames, each behind a
//! 42-byte Ethernet/IPv4/UDP header gap as a transport would leave it.
//! Beside it, the ceiling: copying the same packet bytes into the same ring
//! with memcpy alone. One iteration is one packet, so criterion's time per
//! iteration is ns per packet and its throughput is heap payload bytes per
//! second.

use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use spead_xdp::protocol::{Flavour, Heap, Item, Packetizer};

/// Bytes a transport puts in front of the SPEAD packet.
const L2_L3_L4_HEADERS: usize = 42;
/// Frames in the ring: enough to leave the last-level cache, like a UMEM.
const RING_FRAMES: usize = 4096;
const HEAP_BYTES: usize = 4 << 20;

struct Ring {
    frames: Vec<Vec<u8>>,
    next: usize,
}

impl Ring {
    fn new(frame_size: usize) -> Self {
        Ring {
            frames: (0..RING_FRAMES).map(|_| vec![0u8; frame_size]).collect(),
            next: 0,
        }
    }

    fn next_frame(&mut self) -> &mut [u8] {
        let frame = &mut self.frames[self.next];
        self.next = (self.next + 1) % RING_FRAMES;
        &mut frame[L2_L3_L4_HEADERS..]
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
        let sizing = Packetizer::new(packet_size).unwrap();
        let packets = sizing.packets(&heap, 1).unwrap().remaining() as u64;
        let frame_size = (packet_size + L2_L3_L4_HEADERS).next_multiple_of(64);
        let mut ring = Ring::new(frame_size);
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
                    black_box(&ring.frames[0][0]);
                }
                start.elapsed()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_packetizer);
criterion_main!(benches);
