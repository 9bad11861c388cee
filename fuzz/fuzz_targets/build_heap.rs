//! Heaps built from arbitrary input: any flavour, item IDs, values (bytes
//! or inline integers, immediate or not), repeat_pointers and packet size.
//! Building may refuse with an error but never panics; whatever is
//! accepted is packetized, and the packets reassemble into one complete
//! heap with every item as it was added.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use spead_xdp::protocol::{Flavour, Heap, Item, PacketSizing, Reassembler};

/// An item as the input chose it.
enum Chosen {
    Bytes {
        id: u64,
        bytes: Vec<u8>,
        allow_immediate: bool,
    },
    Inline {
        id: u64,
        value: u64,
    },
}

fn choose(u: &mut Unstructured<'_>) -> Result<(u32, usize, bool, u64, Vec<Chosen>)> {
    let bits = 8 * u.int_in_range(1..=7)?;
    let packet = u.int_in_range(0..=9000)?;
    let repeat = u.arbitrary()?;
    let cnt = u.arbitrary()?;
    let mut items = Vec::new();
    for _ in 0..u.int_in_range(0..=24)? {
        let id = u.int_in_range(0..=0x8010)?;
        items.push(if u.ratio(1, 4)? {
            Chosen::Inline {
                id,
                value: u.arbitrary()?,
            }
        } else {
            let len = u.int_in_range(0..=4000)?;
            let fill: u8 = u.arbitrary()?;
            Chosen::Bytes {
                id,
                bytes: (0..len).map(|i| fill.wrapping_add(i as u8)).collect(),
                allow_immediate: u.arbitrary()?,
            }
        });
    }
    Ok((bits, packet, repeat, cnt, items))
}

fuzz_target!(|data: &[u8]| {
    let Ok((bits, packet, repeat, cnt, chosen)) = choose(&mut Unstructured::new(data)) else {
        return;
    };
    let flavour = Flavour::new(bits).expect("bits are a multiple of 8 from 8 to 56");
    let mut heap = Heap::new(flavour);
    heap.set_repeat_pointers(repeat);
    let mut added = Vec::new();
    for item in &chosen {
        let result = match item {
            Chosen::Bytes {
                id,
                bytes,
                allow_immediate,
            } => heap.add(Item::new(*id, &bytes[..]).allow_immediate(*allow_immediate)),
            Chosen::Inline { id, value } => heap.add(Item::immediate(*id, *value)),
        };
        if result.is_ok() {
            added.push(item);
        }
    }
    let Ok(sizing) = PacketSizing::new(packet) else {
        return;
    };
    let Ok(mut packets) = sizing.packets(&heap, cnt) else {
        return;
    };
    // spead2's padding rule may add a few zero bytes to a tiny payload.
    let heap_length = packets.heap_length();
    assert!(heap_length >= heap.payload_len());
    let mut reassembler = Reassembler::default();
    let mut frame = vec![0u8; sizing.max_packet_size()];
    while let Some(len) = packets
        .write_next(&mut frame)
        .expect("frames hold max_packet_size")
    {
        reassembler
            .add_packet(&frame[..len])
            .expect("our own packets are valid");
    }
    let received = reassembler.next_heap().expect("one heap");
    assert!(received.is_complete());
    assert_eq!(received.heap_length(), heap_length);
    assert_eq!(received.cnt(), cnt & flavour.max_value());
    // spead2 leaves out empty address items; we send them as it does.
    let size = flavour.immediate_size();
    let expected: Vec<_> = added
        .into_iter()
        .filter(|item| match item {
            Chosen::Bytes {
                bytes,
                allow_immediate,
                ..
            } => !bytes.is_empty() || (*allow_immediate && size > 0),
            Chosen::Inline { .. } => true,
        })
        .collect();
    let items: Vec<_> = received.items().collect();
    assert_eq!(items.len(), expected.len());
    for (got, want) in items.iter().zip(&expected) {
        match want {
            Chosen::Inline { id, value } => {
                assert_eq!(got.id(), *id);
                assert_eq!(got.as_u64(), Some(value & flavour.max_value()));
            }
            Chosen::Bytes { id, bytes, .. } => {
                assert_eq!(got.id(), *id);
                if got.is_immediate() {
                    // Right-aligned in the immediate field, zeros in front.
                    let value = got.value();
                    assert_eq!(&value[value.len() - bytes.len()..], &bytes[..]);
                } else {
                    assert_eq!(got.value(), &bytes[..]);
                }
            }
        }
    }
});
