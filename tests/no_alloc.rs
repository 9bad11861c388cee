//! The hot path allocates nothing: once a heap's packets are planned,
//! writing every packet into frames makes no allocation, a running
//! stream (UDP, and AF_XDP on the veth harness as root) allocates per
//! submission, never per packet, and a running receiver allocates per
//! heap, never per packet.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use spead_xdp::protocol::{Descriptor, Flavour, Heap, Item, PacketSizing};

struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call unchanged to the system allocator.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// The count is the whole process's, so the tests run one after another
/// on the main thread (`harness = false`): libtest's own threads, running
/// other tests or reporting them, would allocate inside a test's window.
fn main() {
    let tests: [(&str, fn()); 4] = [
        (
            "writing_packets_allocates_nothing",
            writing_packets_allocates_nothing,
        ),
        (
            "a_running_udp_stream_allocates_nothing_per_packet",
            a_running_udp_stream_allocates_nothing_per_packet,
        ),
        (
            "a_running_af_xdp_stream_allocates_nothing_per_packet",
            a_running_af_xdp_stream_allocates_nothing_per_packet,
        ),
        (
            "a_running_receiver_allocates_nothing_per_packet",
            a_running_receiver_allocates_nothing_per_packet,
        ),
    ];
    if std::env::args().any(|a| a == "--list") {
        for (name, _) in tests {
            println!("{name}: test");
        }
        return;
    }
    let mut failed = 0;
    for (name, test) in tests {
        let outcome = std::panic::catch_unwind(test);
        println!(
            "test {name} ... {}",
            if outcome.is_ok() { "ok" } else { "FAILED" }
        );
        failed += usize::from(outcome.is_err());
    }
    println!("{} passed, {failed} failed", tests.len() - failed);
    if failed > 0 {
        std::process::exit(101);
    }
}

fn writing_packets_allocates_nothing() {
    let data = vec![7u8; 1 << 20];
    let mut heap = Heap::new(Flavour::SPEAD_64_48);
    let descriptor = Descriptor::with_dtype(0x1800, "adc", "", vec![1 << 20], "i1", false).unwrap();
    heap.add_descriptor(&descriptor).unwrap();
    heap.add(Item::immediate(0x1600, 42)).unwrap();
    heap.add(Item::new(0x1800, &data[..])).unwrap();
    let mut frames = vec![vec![0u8; 9000]; 64];
    for size in [1472, 8192] {
        let mut packets = PacketSizing::new(size).unwrap().packets(&heap, 1).unwrap();
        let planned = packets.remaining();
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        let mut written = 0;
        while let Some(len) = packets.write_next(&mut frames[written % 64][42..]).unwrap() {
            assert!(len <= size);
            written += 1;
        }
        let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
        assert_eq!(written, planned);
        assert_eq!(
            allocations, 0,
            "{allocations} allocations while writing {written} packets"
        );
        println!("{size}-byte packets: {written} written, {allocations} allocations");
    }
}

/// Allocations made while a running stream sends one group of `heaps`
/// heaps of `heap_bytes` (the group built beforehand).
fn allocations_sending(stream: &spead_xdp::stream::Stream, heaps: usize, heap_bytes: usize) -> (u64, u64) {
    use spead_xdp::stream::{GroupMode, HeapRef};
    let payload = bytes::Bytes::from(vec![3u8; heap_bytes]);
    let group: Vec<HeapRef> = (0..heaps)
        .map(|i| {
            let mut heap = Heap::new(Flavour::SPEAD_64_48);
            heap.add(Item::immediate(0x1600, i as u64)).unwrap();
            heap.add(Item::new(0x1800, payload.clone())).unwrap();
            HeapRef::new(heap)
        })
        .collect();
    let packets_before = stream.stats().packets();
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    stream.send_heaps(group, GroupMode::Serial).unwrap();
    let allocations = ALLOCATIONS.load(Ordering::SeqCst) - before;
    (allocations, stream.stats().packets() - packets_before)
}

/// Room in the queue for a group of 20 heaps.
const GROUP_OF_20: spead_xdp::stream::StreamConfig = spead_xdp::stream::StreamConfig {
    max_packet_size: 1472,
    rate: 0.0,
    burst_size: 65536,
    max_heaps: 20,
    burst_rate_ratio: 1.05,
};

/// A running stream's allocations do not grow with its packets: sending 20
/// heaps of 733 packets each allocates exactly as often as 20 heaps of 46
/// (per submission, never per packet).
///
/// Threads set up a few things once, the first time they need them (the
/// worker's first blocking receive makes a thread-local context); when
/// that happens depends on timing. So each size is sent three times,
/// alternating, and the fewest allocations of each are compared: a
/// one-time setup lands in one window only, while a per-packet allocation
/// would add over 13,000 to every large window.
fn a_running_stream_allocates_nothing_per_packet(stream: spead_xdp::stream::Stream, what: &str) {
    // Warm up (first batches), then let the worker go idle once, so it sets
    // up its blocking receive.
    allocations_sending(&stream, 20, 1 << 20);
    std::thread::sleep(std::time::Duration::from_millis(50));
    let (large, small) = alternate(|heap_bytes| allocations_sending(&stream, 20, heap_bytes));
    assert_eq!(large, small, "allocations grow with packets ({what})");
}

/// Runs `window` for 20 heaps of 1 MiB (733 packets each) and of 64 KiB
/// (46), three times alternating, checks each moved the packets it should
/// and returns the fewest allocations of each size.
fn alternate(mut window: impl FnMut(usize) -> (u64, u64)) -> (u64, u64) {
    let mut large = Vec::new();
    let mut small = Vec::new();
    for _ in 0..3 {
        large.push(window(1 << 20));
        small.push(window(64 << 10));
    }
    println!(
        "allocations for 20 heaps of {} packets: {:?}; of {} packets: {:?}",
        large[0].1 / 20,
        large.iter().map(|l| l.0).collect::<Vec<_>>(),
        small[0].1 / 20,
        small.iter().map(|s| s.0).collect::<Vec<_>>(),
    );
    assert!(large.iter().all(|l| l.1 == 20 * 733), "{large:?}");
    assert!(small.iter().all(|s| s.1 == 20 * 46), "{small:?}");
    let fewest = |windows: &[(u64, u64)]| windows.iter().map(|w| w.0).min().unwrap();
    (fewest(&large), fewest(&small))
}

fn a_running_udp_stream_allocates_nothing_per_packet() {
    use spead_xdp::stream::Stream;
    use spead_xdp::transport::{UdpConfig, UdpTransport};
    // A receiver that never reads: datagrams beyond its buffer are dropped.
    let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let transport = UdpTransport::new(&UdpConfig::new(vec![receiver.local_addr().unwrap()])).unwrap();
    a_running_stream_allocates_nothing_per_packet(Stream::new(transport, GROUP_OF_20).unwrap(), "UDP");
}

fn a_running_af_xdp_stream_allocates_nothing_per_packet() {
    use spead_xdp::stream::Stream;
    use spead_xdp::transport::{XdpConfig, XdpTransport};
    if !common::netns::privileged("a_running_af_xdp_stream_allocates_nothing_per_packet") {
        return;
    }
    let harness =
        common::veth::VethHarness::up(&format!("sxna{}", std::process::id() % 100_000), 231, 1500, 1);
    let config = XdpConfig::new(harness.get("HOST_IF"), vec![harness.peer(7148)]);
    let transport = XdpTransport::new(&config).unwrap();
    a_running_stream_allocates_nothing_per_packet(Stream::new(transport, GROUP_OF_20).unwrap(), "AF_XDP");
}

/// Allocations made (by the reader thread and this one) while a running
/// receiver takes `heaps` heaps of `heap_bytes` in 1472-byte packets, sent
/// one heap at a time (each waited for, so the socket never overflows),
/// their packets made beforehand.
fn allocations_receiving(heaps: usize, heap_bytes: usize) -> (u64, u64) {
    use spead_xdp::receive::{Event, Receiver, Source};
    let payload = vec![5u8; heap_bytes];
    let sizing = PacketSizing::new(1472).unwrap();
    let packets: Vec<Vec<Vec<u8>>> = (0..heaps)
        .map(|i| {
            let mut heap = Heap::new(Flavour::SPEAD_64_48);
            heap.add(Item::new(0x1800, &payload[..])).unwrap();
            sizing.packets(&heap, i as u64 + 1).unwrap().collect()
        })
        .collect();
    let source = Source::open("127.0.0.1:0", &Default::default()).unwrap();
    let mut receiver = Receiver::new(vec![source], Default::default()).unwrap();
    let to = receiver.local_addrs()[0].unwrap();
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let timeout = std::time::Duration::from_secs(5);
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    for heap in &packets {
        for packet in heap {
            sender.send_to(packet, to).unwrap();
        }
        match receiver.next_event(timeout).unwrap() {
            Event::Heap(heap) => assert!(heap.is_complete()),
            other => panic!("expected a heap, got {other:?}"),
        }
    }
    let allocations = ALLOCATIONS.load(Ordering::SeqCst) - before;
    let stats = receiver.stats();
    assert_eq!(
        (stats.heaps_complete, stats.kernel_drops),
        (heaps as u64, 0),
        "{stats:?}"
    );
    (allocations, stats.packets)
}

/// Receiving 20 heaps of 733 packets allocates no more than 20 heaps of
/// 46: what is allocated is per heap (its payload, its items), never per
/// packet (which would add some 13,700 allocations).
fn a_running_receiver_allocates_nothing_per_packet() {
    let (large, small) = alternate(|heap_bytes| allocations_receiving(20, heap_bytes));
    // Per heap, the count can differ by one or two with timing (a heap
    // that finds the pool's spare still out takes a new buffer): fewer
    // than one more a heap, where one a packet would be 13,740 more.
    assert!(
        large < small + 20,
        "allocations grow with packets: {large} for 733-packet heaps, {small} for 46"
    );
}
