//! Packet decoding: validates every field of a received SPEAD packet and
//! separates the heap bookkeeping items (0x1-0x4) from the heap's own item
//! pointers. Also turns a heap's item pointers and payload into item extents.
//! Hostile bytes give an error, never a panic.

use core::ops::Range;

use thiserror::Error;

use super::flavour::{item_id, Flavour, ItemPointer};
use super::wire::{LayoutError, Packet};

/// What is wrong with a received packet or heap.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The header or pointer table is malformed.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// A required bookkeeping item is absent.
    #[error("packet has no {0} item")]
    MissingItem(&'static str),
    /// A bookkeeping item was sent as an address.
    #[error("bookkeeping item {0:#x} is not an immediate")]
    NotImmediate(u64),
    /// A bookkeeping item appears twice with different values.
    #[error("item {id:#x} appears twice with values {first} and {second}")]
    Conflicting {
        /// Item ID.
        id: u64,
        /// First value.
        first: u64,
        /// Second value.
        second: u64,
    },
    /// Payload length item claims more bytes than the packet has.
    #[error("payload length {declared} exceeds the {available} bytes after the pointers")]
    PayloadLength {
        /// Declared payload length.
        declared: u64,
        /// Bytes present.
        available: usize,
    },
    /// The packet's payload lies outside the heap.
    #[error("payload at offset {offset} of length {length} lies beyond the heap length {heap_length}")]
    PayloadOutsideHeap {
        /// Payload offset.
        offset: u64,
        /// Payload length.
        length: u64,
        /// Heap length.
        heap_length: u64,
    },
    /// An item's address is beyond the heap payload.
    #[error("item {id:#x} has address {address} beyond the heap payload of {payload_len} bytes")]
    AddressOutOfRange {
        /// Item ID.
        id: u64,
        /// Address.
        address: u64,
        /// Heap payload length.
        payload_len: usize,
    },
}

/// A validated packet: the bookkeeping values and a view of the rest.
#[derive(Debug, Clone, Copy)]
pub struct PacketInfo<'a> {
    /// Flavour announced by the header.
    pub flavour: Flavour,
    /// Heap counter (item 0x1).
    pub heap_cnt: u64,
    /// Total heap payload length (item 0x2).
    pub heap_length: u64,
    /// Offset of this payload in the heap (item 0x3).
    pub payload_offset: u64,
    /// Bytes of payload in this packet (item 0x4).
    pub payload_length: u64,
    packet: Packet<&'a [u8]>,
}

impl<'a> PacketInfo<'a> {
    /// Parses and validates a packet. Bytes after the declared payload (such
    /// as Ethernet padding) are ignored, as spead2 ignores them.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let packet = Packet::new_checked(bytes)?;
        let flavour = packet.flavour().expect("checked packet has a flavour");
        let mut values: [Option<u64>; 4] = [None; 4];
        for raw in packet.pointers() {
            let p = flavour.decode_pointer(raw);
            if !(item_id::HEAP_CNT..=item_id::PAYLOAD_LENGTH).contains(&p.id) {
                continue;
            }
            if !p.immediate {
                return Err(DecodeError::NotImmediate(p.id));
            }
            let slot = &mut values[(p.id - item_id::HEAP_CNT) as usize];
            match *slot {
                Some(first) if first != p.value => {
                    return Err(DecodeError::Conflicting {
                        id: p.id,
                        first,
                        second: p.value,
                    })
                }
                _ => *slot = Some(p.value),
            }
        }
        let [cnt, heap_length, offset, length] = values;
        let heap_cnt = cnt.ok_or(DecodeError::MissingItem("heap cnt (0x1)"))?;
        let heap_length = heap_length.ok_or(DecodeError::MissingItem("heap length (0x2)"))?;
        let payload_offset = offset.ok_or(DecodeError::MissingItem("payload offset (0x3)"))?;
        let payload_length = length.ok_or(DecodeError::MissingItem("payload length (0x4)"))?;
        let available = packet.payload().len();
        if payload_length > available as u64 {
            return Err(DecodeError::PayloadLength {
                declared: payload_length,
                available,
            });
        }
        if payload_offset > heap_length || payload_length > heap_length - payload_offset {
            return Err(DecodeError::PayloadOutsideHeap {
                offset: payload_offset,
                length: payload_length,
                heap_length,
            });
        }
        Ok(PacketInfo {
            flavour,
            heap_cnt,
            heap_length,
            payload_offset,
            payload_length,
            packet,
        })
    }

    /// The heap's own item pointers in this packet (all but 0x1-0x4).
    pub fn item_pointers(&self) -> impl Iterator<Item = ItemPointer> + 'a {
        let flavour = self.flavour;
        let packet = self.packet;
        (0..usize::from(packet.n_items()))
            .map(move |i| flavour.decode_pointer(packet.pointer(i)))
            .filter(|p| !(item_id::HEAP_CNT..=item_id::PAYLOAD_LENGTH).contains(&p.id))
    }

    /// Raw words of every item pointer in the packet, bookkeeping included.
    pub fn raw_pointers(&self) -> impl ExactSizeIterator<Item = u64> + 'a {
        let packet = self.packet;
        (0..usize::from(packet.n_items())).map(move |i| packet.pointer(i))
    }

    /// This packet's payload bytes (exactly `payload_length` of them).
    pub fn payload(&self) -> &'a [u8] {
        let payload = self.packet.into_inner();
        let start = self.packet.payload_start();
        &payload[start..start + self.payload_length as usize]
    }
}

/// Where an item's value is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemExtent {
    /// The value field of an immediate pointer.
    Immediate(u64),
    /// A byte range of the heap payload.
    Payload(Range<usize>),
}

/// An item of a heap: its ID and where its value is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemSpan {
    /// Item ID.
    pub id: u64,
    /// Where the value is.
    pub extent: ItemExtent,
}

/// Resolves a heap's item pointers against its payload, in pointer order.
/// As in spead2's receiver, address items are stable-sorted by address and
/// each extends to the next one's address (or the payload's end); an empty
/// address item is dropped, and the null item (ID 0) only marks a boundary.
pub fn decode_items(
    pointers: impl IntoIterator<Item = ItemPointer>,
    payload: &[u8],
) -> Result<Vec<ItemSpan>, DecodeError> {
    let pointers: Vec<ItemPointer> = pointers.into_iter().collect();
    let mut by_address: Vec<usize> = Vec::with_capacity(pointers.len());
    for (i, p) in pointers.iter().enumerate().filter(|(_, p)| !p.immediate) {
        if p.value > payload.len() as u64 {
            return Err(DecodeError::AddressOutOfRange {
                id: p.id,
                address: p.value,
                payload_len: payload.len(),
            });
        }
        by_address.push(i);
    }
    by_address.sort_by_key(|&i| pointers[i].value);
    let mut ends = vec![0usize; pointers.len()];
    for (k, &i) in by_address.iter().enumerate() {
        ends[i] = by_address
            .get(k + 1)
            .map_or(payload.len(), |&next| pointers[next].value as usize);
    }
    Ok(pointers
        .iter()
        .zip(ends)
        .filter(|(p, end)| p.id != item_id::NULL && (p.immediate || p.value as usize != *end))
        .map(|(p, end)| ItemSpan {
            id: p.id,
            extent: if p.immediate {
                ItemExtent::Immediate(p.value)
            } else {
                ItemExtent::Payload(p.value as usize..end)
            },
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(pointers: &[u64], payload: &[u8]) -> Vec<u8> {
        let mut out = Flavour::SPEAD_64_48
            .header_word(pointers.len() as u16)
            .to_be_bytes()
            .to_vec();
        for p in pointers {
            out.extend_from_slice(&p.to_be_bytes());
        }
        out.extend_from_slice(payload);
        out
    }

    const F: Flavour = Flavour::SPEAD_64_48;

    fn bookkeeping(cnt: u64, heap_len: u64, offset: u64, len: u64) -> [u64; 4] {
        [
            F.immediate(1, cnt),
            F.immediate(2, heap_len),
            F.immediate(3, offset),
            F.immediate(4, len),
        ]
    }

    #[test]
    fn parses_bookkeeping_and_items() {
        let mut ptrs = bookkeeping(9, 10, 2, 3).to_vec();
        ptrs.push(F.immediate(0x1000, 42));
        let bytes = packet(&ptrs, &[1, 2, 3, 0xff]);
        let info = PacketInfo::parse(&bytes).unwrap();
        assert_eq!((info.heap_cnt, info.heap_length, info.payload_offset), (9, 10, 2));
        assert_eq!(info.payload(), &[1, 2, 3]);
        let items: Vec<_> = info.item_pointers().collect();
        assert_eq!(
            items,
            [ItemPointer {
                immediate: true,
                id: 0x1000,
                value: 42
            }]
        );
    }

    #[test]
    fn rejects_bad_bookkeeping() {
        let ok = bookkeeping(1, 8, 0, 8);
        let parse = |ptrs: &[u64], payload: &[u8]| PacketInfo::parse(&packet(ptrs, payload)).unwrap_err();
        assert_eq!(
            parse(&ok[..3], &[0; 8]),
            DecodeError::MissingItem("payload length (0x4)")
        );
        assert_eq!(
            parse(&ok, &[0; 7]),
            DecodeError::PayloadLength {
                declared: 8,
                available: 7
            }
        );
        let mut ptrs = ok;
        ptrs[2] = F.address(3, 0);
        assert_eq!(parse(&ptrs, &[0; 8]), DecodeError::NotImmediate(3));
        let ptrs = bookkeeping(1, 8, 4, 8);
        assert!(matches!(
            parse(&ptrs, &[0; 8]),
            DecodeError::PayloadOutsideHeap { .. }
        ));
        let mut ptrs = ok.to_vec();
        ptrs.push(F.immediate(1, 2));
        assert_eq!(
            parse(&ptrs, &[0; 8]),
            DecodeError::Conflicting {
                id: 1,
                first: 1,
                second: 2
            }
        );
        let ptrs = bookkeeping(1, u64::MAX >> 16, u64::MAX >> 16, 1);
        assert!(matches!(
            parse(&ptrs, &[0; 8]),
            DecodeError::PayloadOutsideHeap { .. }
        ));
    }

    #[test]
    fn extents_run_to_the_next_address() {
        let ptrs = [
            ItemPointer {
                immediate: false,
                id: 0x1001,
                value: 4,
            },
            ItemPointer {
                immediate: false,
                id: 0x1000,
                value: 0,
            },
            ItemPointer {
                immediate: true,
                id: 0x1002,
                value: 7,
            },
            ItemPointer {
                immediate: false,
                id: 0,
                value: 6,
            },
            ItemPointer {
                immediate: false,
                id: 0x1003,
                value: 6,
            },
        ];
        let spans = decode_items(ptrs, &[0; 8]).unwrap();
        assert_eq!(
            spans,
            [
                ItemSpan {
                    id: 0x1001,
                    extent: ItemExtent::Payload(4..6)
                },
                ItemSpan {
                    id: 0x1000,
                    extent: ItemExtent::Payload(0..4)
                },
                ItemSpan {
                    id: 0x1002,
                    extent: ItemExtent::Immediate(7)
                },
                ItemSpan {
                    id: 0x1003,
                    extent: ItemExtent::Payload(6..8)
                },
            ]
        );
        let far = [ItemPointer {
            immediate: false,
            id: 0x1000,
            value: 9,
        }];
        assert!(matches!(
            decode_items(far, &[0; 8]),
            Err(DecodeError::AddressOutOfRange { .. })
        ));
    }
}
