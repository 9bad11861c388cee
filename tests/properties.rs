//! Properties: any heap, packetized at any packet size, shuffled, and
//! reassembled gives back every item (in the order added) and every
//! descriptor.

use proptest::prelude::*;
use spead_xdp::protocol::{
    Descriptor, Flavour, FormatField, Heap, HeapError, Item, PacketSizing, PacketizeError, Reassembler,
};

#[derive(Debug, Clone)]
enum Value {
    Bytes { bytes: Vec<u8>, allow_immediate: bool },
    Inline(u64),
}

fn value(bits: u32) -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (prop::collection::vec(any::<u8>(), 0..1500), any::<bool>())
            .prop_map(|(bytes, allow_immediate)| Value::Bytes { bytes, allow_immediate }),
        2 => (prop::collection::vec(any::<u8>(), 0..=8), any::<bool>())
            .prop_map(|(bytes, allow_immediate)| Value::Bytes { bytes, allow_immediate }),
        1 => (0..=((1u64 << bits) - 1)).prop_map(Value::Inline),
    ]
}

fn descriptor(max_id: u64) -> impl Strategy<Value = Descriptor> {
    let name = "[a-z][a-z0-9_]{0,15}";
    let description = "[ -~]{0,40}";
    let format = (
        7..=max_id,
        name,
        description,
        prop::collection::vec(prop::option::weighted(0.9, 0u64..1000), 0..3),
        prop::collection::vec((prop::sample::select(b"uifbc".to_vec()), 1u64..=64), 1..4),
    )
        .prop_filter("at most one variable dimension", |t| {
            t.3.iter().filter(|d| d.is_none()).count() <= 1
        })
        .prop_map(|(id, name, description, shape, fields)| {
            let format = fields.into_iter().map(|(c, b)| FormatField::new(c, b)).collect();
            Descriptor::with_format(id, name, description, shape, format)
        });
    let dtypes = ["|u1", "<u2", ">u2", "<i4", ">f8", "<c8", "|i1", "|b1", "|S7"];
    let numpy = (
        7..=max_id,
        name,
        description,
        prop::collection::vec(0u64..1000, 0..4),
        prop::sample::select(dtypes.to_vec()),
        any::<bool>(),
    )
        .prop_map(|(id, name, description, shape, dtype, fortran)| {
            Descriptor::with_dtype(id, name, description, shape, dtype, fortran).expect("valid dtype")
        });
    prop_oneof![format, numpy]
}

#[derive(Debug, Clone)]
struct Case {
    bits: u32,
    cnt: u64,
    max_packet_size: usize,
    repeat_pointers: bool,
    items: Vec<(u64, Value)>,
    descriptors: Vec<Descriptor>,
    shuffle_seed: u64,
}

fn case() -> impl Strategy<Value = Case> {
    prop::sample::select(vec![24u32, 32, 40, 48, 56]).prop_flat_map(|bits| {
        let max_id = ((1u64 << (63 - bits)) - 1).min(0xffff);
        (
            Just(bits),
            0..=((1u64 << bits) - 1),
            56usize..9000,
            prop::bool::weighted(0.2),
            prop::collection::btree_set(7..=max_id, 0..12),
            prop::collection::vec(value(bits), 12),
            prop::collection::vec(descriptor(max_id), 0..3),
            any::<u64>(),
        )
            .prop_map(|(bits, cnt, size, repeat, ids, values, descriptors, seed)| Case {
                bits,
                cnt,
                max_packet_size: size,
                repeat_pointers: repeat,
                items: ids.into_iter().zip(values).collect(),
                descriptors,
                shuffle_seed: seed,
            })
    })
}

/// Fisher-Yates with a xorshift generator, so a failing case replays.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    seed |= 1;
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        items.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

/// What the receiver should report for an item: immediates as the
/// right-aligned field bytes; empty address items are not delivered.
fn expected_value(value: &Value, flavour: Flavour) -> Option<Vec<u8>> {
    let size = flavour.immediate_size();
    match value {
        Value::Inline(v) => Some(v.to_be_bytes()[8 - size..].to_vec()),
        Value::Bytes {
            bytes,
            allow_immediate,
        } if *allow_immediate && bytes.len() <= size => {
            let mut field = vec![0u8; size - bytes.len()];
            field.extend_from_slice(bytes);
            Some(field)
        }
        Value::Bytes { bytes, .. } if bytes.is_empty() => None,
        Value::Bytes { bytes, .. } => Some(bytes.clone()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn packetize_shuffle_reassemble_round_trips(case in case()) {
        let flavour = Flavour::new(case.bits).unwrap();
        let mut heap = Heap::new(flavour);
        heap.set_repeat_pointers(case.repeat_pointers);
        for d in &case.descriptors {
            heap.add_descriptor(d).unwrap();
        }
        for (id, value) in &case.items {
            let item = match value {
                Value::Inline(v) => Item::immediate(*id, *v),
                Value::Bytes { bytes, allow_immediate } => {
                    Item::new(*id, &bytes[..]).allow_immediate(*allow_immediate)
                }
            };
            match heap.add(item) {
                Err(HeapError::TooLarge { .. }) => return Err(TestCaseError::reject("heap too large")),
                other => { other.unwrap(); }
            }
        }
        let sizing = PacketSizing::new(case.max_packet_size).unwrap();
        let mut packets: Vec<Vec<u8>> = match sizing.packets(&heap, case.cnt) {
            Err(PacketizeError::RepeatPointersDoNotFit { .. }) => {
                return Err(TestCaseError::reject("pointers do not fit one packet"))
            }
            other => other.unwrap().collect(),
        };
        prop_assert!(packets.iter().all(|p| p.len() <= sizing.max_packet_size()));
        shuffle(&mut packets, case.shuffle_seed);

        let mut reassembler = Reassembler::default();
        for p in &packets {
            reassembler.add_packet(p).unwrap();
        }
        let received = reassembler.next_heap().expect("one heap");
        prop_assert!(reassembler.next_heap().is_none());
        prop_assert!(received.is_complete());
        prop_assert_eq!(received.cnt(), case.cnt);
        let got: Vec<(u64, Vec<u8>)> = received.items().map(|i| (i.id(), i.value().to_vec())).collect();
        let expected: Vec<(u64, Vec<u8>)> = case
            .items
            .iter()
            .filter_map(|(id, v)| expected_value(v, flavour).map(|bytes| (*id, bytes)))
            .collect();
        prop_assert_eq!(got, expected);
        prop_assert_eq!(received.descriptors().unwrap(), case.descriptors.clone());
        prop_assert_eq!(reassembler.stats().malformed, 0);
    }
}

/// Packets of a small valid heap, to mutate.
fn valid_packets() -> Vec<Vec<u8>> {
    let mut heap = Heap::new(Flavour::SPEAD_64_48);
    let descriptor = Descriptor::with_dtype(0x1000, "x", "", vec![3], "<u2", false).unwrap();
    heap.add_descriptor(&descriptor).unwrap();
    heap.add(Item::new(0x1000, vec![1u8; 600])).unwrap();
    heap.add(Item::immediate(0x1001, 5)).unwrap();
    PacketSizing::new(256)
        .unwrap()
        .packets(&heap, 9)
        .unwrap()
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Random bytes and bit-flipped real packets give errors or heaps,
    /// never a panic; every packet is counted once.
    #[test]
    fn hostile_packets_never_panic(
        random in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..8),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), 0u8..8), 1..6),
        truncate in any::<prop::sample::Index>(),
    ) {
        let mut packets = valid_packets();
        for (packet, byte, bit) in &flips {
            let packet = packet.get_mut(&mut packets);
            let byte = byte.index(packet.len());
            packet[byte] ^= 1 << bit;
        }
        let cut = truncate.get_mut(&mut packets);
        let keep = truncate.index(cut.len() + 1);
        cut.truncate(keep);
        packets.extend(random);
        let mut reassembler = Reassembler::default();
        let mut errors = 0;
        for p in &packets {
            if reassembler.add_packet(p).is_err() {
                errors += 1;
            }
            let _ = spead_xdp::protocol::Descriptor::decode(p);
        }
        reassembler.flush();
        while let Some(heap) = reassembler.next_heap() {
            let _ = heap.descriptors();
            let _ = heap.items().count();
        }
        let stats = reassembler.stats();
        prop_assert_eq!(stats.packets, packets.len() as u64);
        prop_assert_eq!(stats.malformed, errors);
    }
}
