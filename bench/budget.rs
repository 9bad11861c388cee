//! The per-packet cost budget: what one packet costs in user space, kernel
//! left out, through the whole send path (queue, worker, rate limiter,
//! packetizer, UMEM frame fill with Ethernet/IPv4/UDP headers) into a
//! transport that hands nothing to the kernel; set against the time a
//! packet takes on a 100 GbE wire, which gives the cores line rate needs
//! for user space alone.
//!
//! `cargo bench --features internals --bench budget` (no root). The worker is pinned to core 1;
//! each figure is the best of several runs (the least disturbed by other
//! work on a shared machine).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use spead_xdp::protocol::{Flavour, Heap, Item, PacketSizing};
use spead_xdp::stream::{Stream, StreamConfig, WorkerConfig};
use spead_xdp::transport::internals::UdpFrameTemplate;
use spead_xdp::transport::MacAddress;
use spead_xdp::transport::{PacketSource, Transport, TransportError, UmemArea, UmemBuffer};

/// Bytes in front of the SPEAD packet: Ethernet, IPv4, UDP.
const HEADERS: usize = 42;
/// Per packet on the wire besides the UDP payload: those headers, the FCS,
/// the preamble and the inter-frame gap.
const WIRE_OVERHEAD: usize = HEADERS + 4 + 8 + 12;
const LINE_RATE_BPS: f64 = 100e9;
const SLOTS: usize = 4096;
/// Packets per `send`, as the AF_XDP transport takes them.
const BATCH: usize = 64;
const CHUNK: usize = 4096;
const HEAP_BYTES: usize = 4 << 20;
const HEAPS_PER_RUN: usize = 64;
const RUNS: usize = 7;

/// Fills UMEM slots as the AF_XDP transport does, then lets them go
/// without a syscall: the kernel's part of a send is left out.
struct NoKernelTransport {
    /// Mapped by `prepare`, when the packet size is known.
    frames: Option<UmemBuffer>,
    slot_size: usize,
    next: usize,
    template: UdpFrameTemplate,
    ip_id: u16,
}

impl NoKernelTransport {
    fn new() -> Self {
        NoKernelTransport {
            frames: None,
            slot_size: 0,
            next: 0,
            template: UdpFrameTemplate::new(
                MacAddress([2, 0, 0, 0, 0, 1]),
                MacAddress([2, 0, 0, 0, 0, 2]),
                "10.0.0.1:7148".parse().unwrap(),
                "10.0.0.2:7148".parse().unwrap(),
                64,
            ),
            ip_id: 0,
        }
    }
}

impl Transport for NoKernelTransport {
    fn substreams(&self) -> usize {
        1
    }

    fn max_batch(&self) -> usize {
        BATCH
    }

    fn prepare(&mut self, max_packet_size: usize) -> Result<(), TransportError> {
        self.slot_size = (max_packet_size + HEADERS).next_multiple_of(CHUNK);
        let area = UmemArea::new(0, self.slot_size * SLOTS)?;
        self.frames = Some(area.alloc(self.slot_size * SLOTS)?);
        Ok(())
    }

    fn send(&mut self, packets: &mut dyn PacketSource) -> Result<usize, TransportError> {
        let frames = self.frames.as_mut().expect("prepared before sending").as_mut();
        let mut sent = 0;
        while sent < BATCH {
            let Some(spec) = packets.next_packet() else {
                break;
            };
            let start = self.next * self.slot_size;
            let frame = &mut frames[start..start + self.slot_size];
            packets.write(&mut frame[HEADERS..HEADERS + spec.len]);
            self.template.write(frame, spec.len, self.ip_id);
            std::hint::black_box(&frame[0]);
            self.ip_id = self.ip_id.wrapping_add(1);
            self.next = (self.next + 1) % SLOTS;
            sent += 1;
        }
        Ok(sent)
    }
}

/// Best ns per packet over the runs, sending 4 MiB heaps of `packet`-byte
/// packets at `rate` bytes/s (0: unpaced).
fn ns_per_packet(packet: usize, rate: f64) -> f64 {
    let payload = Bytes::from(vec![7u8; HEAP_BYTES]);
    let mut heap = Heap::new(Flavour::SPEAD_64_48);
    heap.add(Item::immediate(0x1600, 1)).unwrap();
    heap.add(Item::new(0x1800, payload)).unwrap();
    let heap = Arc::new(heap);
    let per_heap = PacketSizing::new(packet)
        .unwrap()
        .packets(&heap, 1)
        .unwrap()
        .remaining();
    let config = StreamConfig {
        max_packet_size: packet,
        rate,
        max_heaps: 8,
        ..Default::default()
    };
    let worker = WorkerConfig {
        core: Some(1),
        ..Default::default()
    };
    let stream = Stream::with_worker(NoKernelTransport::new(), config, worker).unwrap();
    let mut best = f64::MAX;
    for _ in 0..RUNS {
        let start = Instant::now();
        let mut in_flight = std::collections::VecDeque::new();
        for _ in 0..HEAPS_PER_RUN {
            if in_flight.len() == 8 {
                let completion: spead_xdp::stream::Completion = in_flight.pop_front().unwrap();
                completion.wait().unwrap();
            }
            in_flight.push_back(stream.submit(Arc::clone(&heap)).unwrap());
        }
        for completion in in_flight {
            completion.wait().unwrap();
        }
        let ns = start.elapsed().as_nanos() as f64 / (HEAPS_PER_RUN * per_heap) as f64;
        best = best.min(ns);
    }
    let stats = stream.stats();
    assert_eq!(stats.errors, 0);
    assert_eq!(stats.packets(), (RUNS * HEAPS_PER_RUN * per_heap) as u64);
    best
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    println!(
        "user-space cost per packet (queue, worker, limiter, packetizer, UMEM frame fill; no kernel), \
         4 MiB heaps, worker on core 1, best of {RUNS} runs of {HEAPS_PER_RUN} heaps"
    );
    println!("| packet | pacing | ns/packet | 100 GbE budget | cores for line rate |");
    println!("| --- | --- | --- | --- | --- |");
    for packet in [1472usize, 8192] {
        let budget = (packet + WIRE_OVERHEAD) as f64 * 8.0 / LINE_RATE_BPS * 1e9;
        for (pacing, rate) in [("rate 0 (no limiter)", 0.0), ("limiter on, never waits", 1e15)] {
            let ns = ns_per_packet(packet, rate);
            println!(
                "| {packet} B | {pacing} | {ns:.1} | {budget:.1} ns | {:.2} |",
                ns / budget
            );
        }
    }
}
