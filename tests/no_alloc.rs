//! The packetizer's hot path allocates nothing: once a heap's packets are
//! planned, writing every packet into frames makes no allocation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use spead_xdp::protocol::{Descriptor, Flavour, Heap, Item, Packetizer};

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

#[test]
fn writing_packets_allocates_nothing() {
    let data = vec![7u8; 1 << 20];
    let mut heap = Heap::new(Flavour::SPEAD_64_48);
    let descriptor = Descriptor::with_dtype(0x1800, "adc", "", vec![1 << 20], "i1", false).unwrap();
    heap.add_descriptor(&descriptor).unwrap();
    heap.add(Item::immediate(0x1600, 42)).unwrap();
    heap.add(Item::new(0x1800, &data[..])).unwrap();
    let mut frames = vec![vec![0u8; 9000]; 64];
    for size in [1472, 8192] {
        let mut packets = Packetizer::new(size).unwrap().packets(&heap, 1).unwrap();
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
