//! Hostile packets into the decoder and the reassembler: the input is a
//! sequence of packets, each a little-endian u16 length and that many bytes.
//! Nothing may panic, and whatever comes out must hold together: every item
//! of a delivered heap lies inside the heap, and a complete heap has all
//! its bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spead_xdp::protocol::{PacketInfo, Reassembler, ReassemblerConfig};

fuzz_target!(|data: &[u8]| {
    let config = ReassemblerConfig {
        max_heaps: 3,
        max_heap_size: 1 << 20,
        max_memory: 4 << 20,
        max_pointers: 256,
    };
    let mut reassembler = Reassembler::new(config);
    let mut rest = data;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let packet = &rest[2..2 + len];
        rest = &rest[2 + len..];
        if let Ok(info) = PacketInfo::parse(packet) {
            let _ = info.item_pointers().count();
            assert!(info.payload().len() <= packet.len());
        }
        let _ = reassembler.add_packet(packet);
        while let Some(heap) = reassembler.next_heap() {
            check(&heap);
        }
    }
    reassembler.flush();
    while let Some(heap) = reassembler.next_heap() {
        check(&heap);
    }
    let stats = reassembler.stats();
    let _ = format!("{stats:?}");
});

fn check(heap: &spead_xdp::protocol::ReceivedHeap) {
    if heap.is_complete() {
        assert_eq!(heap.received_bytes(), heap.heap_length());
    }
    for item in heap.all_items() {
        let _ = (item.value(), item.as_u64());
    }
    let _ = heap.descriptors();
    let _ = heap.stream_control();
}
