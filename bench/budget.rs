//! The per-packet cost budget: what one packet costs in user space, kernel
//! left out, through the whole send path (queue, worker, rate limiter,
//! packetizer, UMEM frame fill with Ethernet/IPv4/UDP headers) into a
//! transport that hands nothing to the kernel; set against the time a
//! packet takes on a 100 GbE wire, which gives the cores line rate needs
//! for user space alone.
//!
//! Two payload paths: copied into each frame, and by reference (the
//! payload allocated in the UMEM, as `spead-send --zero-copy` and
//! `XdpStream.allocate` do: each packet's pieces are located in the UMEM
//! and their offsets taken, as the AF_XDP transport's descriptors need,
//! and nothing is copied).
//!
//! `cargo bench --features internals --bench budget` (no root;
//! `SPEAD_BUDGET_TABLES=packets,floor,small,instructions` picks tables). The worker is pinned to core 1;
//! each figure is the best of several runs (the least disturbed by other
//! work on a shared machine). Where valgrind is installed, the same paths
//! are also counted in instructions per packet (callgrind; the machine's
//! noise cannot move them): the instructions executed in the per-packet
//! calls (the stream's packet source: limiter, packetizer, payload copy or
//! piece lookup; and the frame headers), the process run twice, sending 4
//! and 8 heaps of 1 MiB (all queued before the worker starts), and the
//! difference divided by the packets it adds. Where the worker's batches
//! end still depends on how its threads ran: counts repeat to about 5 %.

use std::ops::Range;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrayvec::ArrayVec;
use bytes::Bytes;
use spead_xdp::protocol::{Flavour, Heap, Item, PacketSizing};
use spead_xdp::stream::{Stream, StreamConfig, WorkerConfig};
use spead_xdp::transport::internals::UdpFrameTemplate;
use spead_xdp::transport::MacAddress;
use spead_xdp::transport::{PacketSource, PacketSpec, Transport, TransportError, UmemArea, UmemBuffer};

/// Bytes in front of the SPEAD packet: Ethernet, IPv4, UDP.
const HEADERS: usize = 42;
/// Per packet on the wire besides the UDP payload: those headers, the FCS,
/// the preamble and the inter-frame gap.
const WIRE_OVERHEAD: usize = HEADERS + 4 + 8 + 12;
const LINE_RATE_BPS: f64 = 100e9;
/// UMEM for frames: the AF_XDP transport's default `buffer_size`, cycled
/// through slot by slot.
const FRAME_BYTES: usize = 16 << 20;
/// Packets per `send`, as the AF_XDP transport takes them.
const BATCH: usize = 64;
const CHUNK: usize = 4096;
const HEAP_BYTES: usize = 4 << 20;
const HEAPS_PER_RUN: usize = 64;
const RUNS: usize = 7;

/// How a packet's payload reaches its frame.
#[derive(Debug, Clone, Copy, PartialEq)]
enum PayloadPath {
    /// Copied into the frame.
    Copied,
    /// Referenced where it lies in the UMEM.
    ByReference,
}

impl PayloadPath {
    fn name(self) -> &'static str {
        match self {
            PayloadPath::Copied => "copied",
            PayloadPath::ByReference => "by reference",
        }
    }
}

/// Fills UMEM slots as the AF_XDP transport does, then lets them go
/// without a syscall: the kernel's part of a send is left out.
struct NoKernelTransport {
    /// Held shut until opened: the first send waits for it (counted runs
    /// queue every heap first, so that batches fall the same way each run).
    gate: Option<Arc<Gate>>,
    area: Arc<UmemArea>,
    /// Mapped by `prepare`, when the packet size is known.
    frames: Option<UmemBuffer>,
    /// Slots in `frames`.
    slots: usize,
    /// Where payloads sent by reference lie (`None`: everything copied).
    referable: Option<Range<usize>>,
    slot_size: usize,
    next: usize,
    template: UdpFrameTemplate,
    ip_id: u16,
}

impl NoKernelTransport {
    fn new(area: Arc<UmemArea>, referable: Option<Range<usize>>, gate: Option<Arc<Gate>>) -> Self {
        NoKernelTransport {
            gate,
            area,
            referable,
            frames: None,
            slots: 0,
            slot_size: 0,
            next: 0,
            template: frame_template(),
            ip_id: 0,
        }
    }
}

/// The Ethernet/IPv4/UDP headers every frame gets.
fn frame_template() -> UdpFrameTemplate {
    UdpFrameTemplate::new(
        MacAddress([2, 0, 0, 0, 0, 1]),
        MacAddress([2, 0, 0, 0, 0, 2]),
        "10.0.0.1:7148".parse().unwrap(),
        "10.0.0.2:7148".parse().unwrap(),
        64,
    )
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
        self.slots = FRAME_BYTES / self.slot_size;
        self.frames = Some(self.area.alloc(self.slots * self.slot_size)?);
        Ok(())
    }

    fn send(&mut self, packets: &mut dyn PacketSource<'_>) -> Result<usize, TransportError> {
        if let Some(gate) = self.gate.take() {
            gate.wait();
        }
        Ok(match self.referable.clone() {
            None => self.send_copies(packets),
            Some(referable) => self.send_by_reference(packets, referable),
        })
    }
}

impl NoKernelTransport {
    /// A batch with its payload copied, written by the source in one call
    /// into the next frames, as the AF_XDP transport takes it (up to the
    /// ring's end: a shorter batch there, once a lap).
    fn send_copies(&mut self, packets: &mut dyn PacketSource<'_>) -> usize {
        let first = self.next * self.slot_size;
        let frames = &mut self.frames.as_mut().expect("prepared before sending").as_mut()[first..];
        let mut bufs: ArrayVec<&mut [u8], BATCH> = frames
            .chunks_exact_mut(self.slot_size)
            .take(BATCH)
            .map(|frame| &mut frame[HEADERS..])
            .collect();
        let mut specs = [PacketSpec::default(); BATCH];
        let sent = packets.write_batch(&mut bufs, &mut specs).min(bufs.len());
        drop(bufs);
        for (frame, spec) in frames.chunks_exact_mut(self.slot_size).zip(&specs[..sent]) {
            assert!(spec.len > 0 && spec.len <= self.slot_size - HEADERS, "{spec:?}");
            self.template.write(frame, spec.len, self.ip_id);
            std::hint::black_box(&frame[0]);
            self.ip_id = self.ip_id.wrapping_add(1);
        }
        self.next = (self.next + sent) % self.slots;
        sent
    }

    /// A batch packet by packet, each payload piece that lies in the
    /// UMEM's user part referenced (its offset taken, as the AF_XDP
    /// transport's descriptors need) and any other copied.
    fn send_by_reference(&mut self, packets: &mut dyn PacketSource<'_>, referable: Range<usize>) -> usize {
        let frames = self.frames.as_mut().expect("prepared before sending").as_mut();
        let mut sent = 0;
        while sent < BATCH {
            let Some(spec) = packets.next_packet() else {
                break;
            };
            let start = self.next * self.slot_size;
            let frame = &mut frames[start..start + self.slot_size];
            let pieces = packets.write_pieces(&mut frame[HEADERS..HEADERS + spec.len]);
            let mut at = HEADERS + pieces.written();
            for piece in pieces.pieces() {
                let (address, len) = (piece.address(), piece.len());
                if address >= referable.start && address + len <= referable.end {
                    std::hint::black_box(address - referable.start);
                } else {
                    piece.copy_to(&mut frame[at..]);
                }
                at += len;
            }
            self.template.write(frame, spec.len, self.ip_id);
            std::hint::black_box(&frame[0]);
            self.ip_id = self.ip_id.wrapping_add(1);
            self.next = (self.next + 1) % self.slots;
            sent += 1;
        }
        sent
    }
}

/// A gate a thread waits at until another opens it.
#[derive(Default)]
struct Gate {
    open: std::sync::Mutex<bool>,
    opened: std::sync::Condvar,
}

impl Gate {
    fn wait(&self) {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

/// A stream into a transport that leaves the kernel out, and a heap of a
/// timestamp and `heap_bytes` of payload (in the transport's UMEM when it
/// goes by reference), with its packets' count.
fn setup(
    packet: usize,
    rate: f64,
    path: PayloadPath,
    heap_bytes: usize,
    gate: Option<Arc<Gate>>,
) -> (Stream, Arc<Heap<'static>>, usize) {
    let area = UmemArea::new(0, FRAME_BYTES + heap_bytes).unwrap();
    let (payload, referable) = match path {
        PayloadPath::Copied => (Bytes::from(vec![7u8; heap_bytes]), None),
        PayloadPath::ByReference => {
            let mut buffer = area.alloc(heap_bytes).unwrap();
            buffer.as_mut().fill(7);
            let range = buffer.address()..buffer.address() + heap_bytes;
            (Bytes::from_owner(buffer), Some(range))
        }
    };
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
        idle_poll: poll(),
        ..Default::default()
    };
    let stream = Stream::with_worker(NoKernelTransport::new(area, referable, gate), config, worker).unwrap();
    (stream, heap, per_heap)
}

/// How long the worker and the feeding thread poll before sleeping, as
/// spead-send's do where the feeding thread has a core of its own (200 us;
/// `SPEAD_BUDGET_POLL_US` sets it): what is measured is user space, not
/// the host's wake-ups between cores.
fn poll() -> Duration {
    let us = std::env::var("SPEAD_BUDGET_POLL_US")
        .ok()
        .and_then(|v| v.parse().ok());
    Duration::from_micros(us.unwrap_or(200))
}

/// Sends `heaps` copies of `heap`, eight in flight.
fn send(stream: &Stream, heap: &Arc<Heap<'static>>, heaps: usize) {
    let mut in_flight = std::collections::VecDeque::new();
    let poll = poll();
    for _ in 0..heaps {
        if in_flight.len() == 8 {
            let completion: spead_xdp::stream::Completion = in_flight.pop_front().unwrap();
            completion.wait_spinning(poll).unwrap();
        }
        in_flight.push_back(stream.submit(Arc::clone(heap)).unwrap());
    }
    for completion in in_flight {
        completion.wait_spinning(poll).unwrap();
    }
}

/// Best ns per packet over the runs, sending 4 MiB heaps of `packet`-byte
/// packets at `rate` bytes/s (0: unpaced).
fn ns_per_packet(packet: usize, rate: f64, path: PayloadPath) -> f64 {
    let timed = Timed::new(packet, rate, path, HEAP_BYTES);
    let best = (0..RUNS).map(|_| timed.round()).fold(f64::MAX, f64::min);
    timed.check(RUNS);
    best
}

/// Heap size for the instruction counts (smaller: valgrind is slow).
const COUNTED_HEAP_BYTES: usize = 1 << 20;

/// What an instruction count runs: the stream, its payload copied or by
/// reference, or the copying path's floor.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Counted {
    Stream(PayloadPath),
    Floor,
}

impl Counted {
    fn name(self) -> &'static str {
        match self {
            Counted::Stream(path) => path.name(),
            Counted::Floor => "floor",
        }
    }

    fn from_name(name: &str) -> Self {
        match name {
            "floor" => Counted::Floor,
            "copied" => Counted::Stream(PayloadPath::Copied),
            _ => Counted::Stream(PayloadPath::ByReference),
        }
    }

    /// The calls callgrind counts in: the transport's send (the
    /// packetizer, the limiter and the frame fill, batch by batch, each
    /// packet's whole user-space path but for the queue and completions
    /// around it, whose waits would make a count depend on scheduling), or
    /// the floor's loop.
    fn toggle(self) -> &'static str {
        match self {
            Counted::Stream(_) => "--toggle-collect=*NoKernelTransport*as*Transport*send*",
            Counted::Floor => "--toggle-collect=*write_floor_packets*",
        }
    }
}

/// The child run under callgrind: the floor's loop over `heaps` heaps, or
/// queues `heaps` heaps (at most 8) and lets the worker go; prints how
/// many packets that was.
fn counted_run(packet: usize, counted: Counted, heaps: usize) {
    let Counted::Stream(path) = counted else {
        let (_, heap, _) = setup(packet, 0.0, PayloadPath::Copied, COUNTED_HEAP_BYTES, None);
        let mut frames = UmemArea::new(0, FRAME_BYTES).unwrap().alloc(FRAME_BYTES).unwrap();
        let count = write_floor_packets(packet, &heap, heaps, frames.as_mut());
        println!("packets {count}");
        return;
    };
    let gate = Arc::new(Gate::default());
    let (stream, heap, per_heap) = setup(packet, 0.0, path, COUNTED_HEAP_BYTES, Some(Arc::clone(&gate)));
    let completions: Vec<_> = (0..heaps.min(8))
        .map(|_| stream.submit(Arc::clone(&heap)).unwrap())
        .collect();
    gate.open();
    for completion in completions {
        completion.wait().unwrap();
    }
    assert_eq!(stream.stats().errors, 0);
    println!("packets {}", heaps * per_heap);
}

/// Instructions (callgrind's Ir) of this program sending `heaps` heaps, and
/// the packets they were; `None` where valgrind cannot run it.
fn instructions(packet: usize, counted: Counted, heaps: usize) -> Option<(u64, u64)> {
    let out_file = std::env::temp_dir().join(format!(
        "budget-callgrind-{}-{packet}-{heaps}",
        std::process::id()
    ));
    let out = Command::new("valgrind")
        .args(["--tool=callgrind", counted.toggle()])
        .arg(format!("--callgrind-out-file={}", out_file.display()))
        .arg(std::env::current_exe().ok()?)
        .args(["--count", &packet.to_string(), counted.name(), &heaps.to_string()])
        .output()
        .ok()?;
    let text = std::fs::read_to_string(&out_file).ok();
    let _ = std::fs::remove_file(&out_file);
    if !out.status.success() {
        eprintln!(
            "callgrind: {}",
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        );
        return None;
    }
    let total = text?
        .lines()
        .find_map(|l| l.strip_prefix("summary: ").or_else(|| l.strip_prefix("totals: ")))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let packets = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("packets "))?
        .parse()
        .ok()?;
    Some((total, packets))
}

/// Instructions per packet: two runs (4 and 8 heaps), the difference over
/// the packets it adds; the least of three such pairs. (Where a batch
/// ends depends on how the threads ran, and each extra batch end costs
/// a few instructions: the least count is the one with the fewest.)
fn instructions_per_packet(packet: usize, counted: Counted) -> Option<f64> {
    let pair = || -> Option<f64> {
        let (few, few_packets) = instructions(packet, counted, 4)?;
        let (more, more_packets) = instructions(packet, counted, 8)?;
        Some(more.saturating_sub(few) as f64 / (more_packets - few_packets) as f64)
    };
    (0..3)
        .map(|_| pair())
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .reduce(f64::min)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list" || a == "--test") {
        return;
    }
    if let [_, flag, packet, path, heaps] = &args[..] {
        if flag == "--count" {
            counted_run(
                packet.parse().unwrap(),
                Counted::from_name(path),
                heaps.parse().unwrap(),
            );
            return;
        }
    }
    let tables = std::env::var("SPEAD_BUDGET_TABLES").ok();
    let wanted = |table: &str| {
        tables
            .as_ref()
            .is_none_or(|t| t.split(',').any(|w| w.trim() == table))
    };
    let paths = [PayloadPath::Copied, PayloadPath::ByReference];
    if wanted("packets") {
        packets_table(&paths);
    }
    if wanted("floor") {
        copy_floor_table();
    }
    if wanted("small") {
        small_heaps_table();
    }
    if wanted("instructions") {
        instructions_table(&paths);
    }
}

/// The cost per packet of 4 MiB heaps, by packet size, payload path and pacing.
fn packets_table(paths: &[PayloadPath]) {
    println!(
        "user-space cost per packet (queue, worker, limiter, packetizer, UMEM frame fill; no kernel), \
         4 MiB heaps, worker on core 1, best of {RUNS} runs of {HEAPS_PER_RUN} heaps"
    );
    println!("| packet | payload | pacing | ns/packet | 100 GbE budget | cores for line rate |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for packet in [1472usize, 8192] {
        let budget = (packet + WIRE_OVERHEAD) as f64 * 8.0 / LINE_RATE_BPS * 1e9;
        for &path in paths {
            for (pacing, rate) in [("rate 0 (no limiter)", 0.0), ("limiter on, never waits", 1e15)] {
                let ns = ns_per_packet(packet, rate, path);
                println!(
                    "| {packet} B | {} | {pacing} | {ns:.1} | {budget:.1} ns | {:.2} |",
                    path.name(),
                    ns / budget
                );
            }
        }
    }
    println!();
}

/// The copying path's floor: the packetizer writing `heaps` copies of
/// `heap` (payload copied) straight into UMEM frames cycled as the
/// transport cycles them, with their Ethernet/IPv4/UDP headers, on one
/// thread pinned to core 1: no queue, worker, limiter or transport between
/// them. ns per packet.
fn floor_ns_per_packet(packet: usize, heap: &Heap<'static>, heaps: usize, frames: &mut [u8]) -> f64 {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                core_affinity::set_for_current(core_affinity::CoreId { id: 1 });
                let start = Instant::now();
                let count = write_floor_packets(packet, heap, heaps, frames);
                start.elapsed().as_nanos() as f64 / count as f64
            })
            .join()
            .unwrap()
    })
}

/// The floor's work: `heaps` copies of `heap` packetized into `frames`
/// with their headers; returns the packets. Never inlined: the
/// instruction counts collect in it.
#[inline(never)]
fn write_floor_packets(packet: usize, heap: &Heap<'static>, heaps: usize, frames: &mut [u8]) -> usize {
    let sizing = PacketSizing::new(packet).unwrap();
    let slot_size = (packet + HEADERS).next_multiple_of(CHUNK);
    let slots = frames.len() / slot_size;
    let template = frame_template();
    let (mut next, mut ip_id, mut count) = (0, 0u16, 0usize);
    for cnt in 0..heaps {
        let mut packets = sizing.packets(heap, cnt as u64 + 1).unwrap();
        while let Some(len) = packets.next_packet_len() {
            let frame = &mut frames[next * slot_size..(next + 1) * slot_size];
            packets.write_next(&mut frame[HEADERS..HEADERS + len]).unwrap();
            template.write(frame, len, ip_id);
            std::hint::black_box(&frame[0]);
            (next, ip_id, count) = ((next + 1) % slots, ip_id.wrapping_add(1), count + 1);
        }
    }
    count
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The copying path against its floor (the packetizer and the copy alone),
/// in alternating rounds.
fn copy_floor_table() {
    println!(
        "copying path against its floor (the packetizer writing the same packets, payload \
         copied, into the same frames on one thread), 4 MiB heaps, unpaced; medians of {RUNS} \
         alternating rounds of {HEAPS_PER_RUN} heaps"
    );
    println!("| packet | stream, copied: ns/packet | floor: ns/packet | stream/floor |");
    println!("| --- | --- | --- | --- |");
    for packet in [1472usize, 8192] {
        let stream = Timed::new(packet, 0.0, PayloadPath::Copied, HEAP_BYTES);
        let mut frames = UmemArea::new(0, FRAME_BYTES).unwrap().alloc(FRAME_BYTES).unwrap();
        let (mut ours, mut floor) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            ours.push(stream.round());
            floor.push(floor_ns_per_packet(
                packet,
                &stream.heap,
                stream.heaps,
                frames.as_mut(),
            ));
        }
        stream.check(RUNS);
        let (ours, floor) = (median(ours), median(floor));
        println!("| {packet} B | {ours:.1} | {floor:.1} | {:.2} |", ours / floor);
    }
    println!();
}

/// What a small heap's fixed cost adds per packet.
fn small_heaps_table() {
    println!(
        "small heaps, payload by reference, unpaced: what a heap's fixed cost (queue, worker \
         pickup, completion) adds; medians of {RUNS} rounds alternating with 4 MiB heaps"
    );
    println!("| heap | packet | packets/heap | ns/packet | 4 MiB heaps ns/packet | fixed cost per heap |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (heap_bytes, packet) in [(16usize << 10, 1472usize), (64 << 10, 8192)] {
        let small = Timed::new(packet, 0.0, PayloadPath::ByReference, heap_bytes);
        let large = Timed::new(packet, 0.0, PayloadPath::ByReference, HEAP_BYTES);
        let (mut small_ns, mut large_ns) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            small_ns.push(small.round());
            large_ns.push(large.round());
        }
        small.check(RUNS);
        large.check(RUNS);
        let (small_ns, large_ns) = (median(small_ns), median(large_ns));
        println!(
            "| {} KiB | {packet} B | {} | {small_ns:.1} | {large_ns:.1} | {:.0} ns |",
            heap_bytes >> 10,
            small.per_heap,
            (small_ns - large_ns) * small.per_heap as f64
        );
    }
    println!();
}

/// A stream sending 256 MiB of heaps of one size a round (one heap, sent
/// again and again), timed round by round.
struct Timed {
    stream: Stream,
    heap: Arc<Heap<'static>>,
    heaps: usize,
    per_heap: usize,
}

impl Timed {
    /// Heaps of `heap_bytes` in `packet`-byte packets, payload as `path`
    /// says, at `rate` bytes/s (0: unpaced).
    fn new(packet: usize, rate: f64, path: PayloadPath, heap_bytes: usize) -> Self {
        let (stream, heap, per_heap) = setup(packet, rate, path, heap_bytes, None);
        let heaps = (HEAPS_PER_RUN * HEAP_BYTES / heap_bytes).max(1);
        Timed {
            stream,
            heap,
            heaps,
            per_heap,
        }
    }

    /// One round: ns per packet.
    fn round(&self) -> f64 {
        let start = Instant::now();
        send(&self.stream, &self.heap, self.heaps);
        start.elapsed().as_nanos() as f64 / (self.heaps * self.per_heap) as f64
    }

    /// Checks that `rounds` rounds sent every packet, none failing.
    fn check(&self, rounds: usize) {
        let stats = self.stream.stats();
        assert_eq!(stats.errors, 0);
        assert_eq!(stats.packets(), (rounds * self.heaps * self.per_heap) as u64);
    }
}

/// Instructions per packet, where valgrind runs.
fn instructions_table(paths: &[PayloadPath]) {
    println!(
        "instructions per packet in the per-packet calls (callgrind, 1 MiB heaps, unpaced; \
         8 heaps less 4, over the packets they add); the floor: the packetizer and the copy \
         alone"
    );
    println!("| packet | payload | instructions/packet | over the floor |");
    println!("| --- | --- | --- | --- |");
    for packet in [1472usize, 8192] {
        let floor = instructions_per_packet(packet, Counted::Floor);
        let counts = paths
            .iter()
            .map(|&path| Counted::Stream(path))
            .chain([Counted::Floor]);
        for counted in counts {
            let count = match counted {
                Counted::Floor => floor,
                _ => instructions_per_packet(packet, counted),
            };
            let ratio = match (count, floor) {
                (Some(count), Some(floor)) => format!("{:.2}", count / floor),
                _ => "-".into(),
            };
            match count {
                Some(count) => println!("| {packet} B | {} | {count:.0} | {ratio} |", counted.name()),
                None => println!(
                    "| {packet} B | {} | - (valgrind not available) | - |",
                    counted.name()
                ),
            }
        }
    }
}
