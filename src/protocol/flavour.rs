//! The SPEAD flavour: protocol version 4 with 64-bit item pointers, and a
//! validated number of heap address bits. It encodes and decodes the header
//! word and item pointers, which are the only places the bits matter.

use thiserror::Error;

/// SPEAD magic number, the first byte of every packet.
pub const MAGIC: u8 = 0x53;
/// SPEAD protocol version, the second byte of every packet.
pub const VERSION: u8 = 4;
/// Size of an item pointer and of the packet header, in bytes.
pub const POINTER_SIZE: usize = 8;

/// Item IDs with a fixed meaning in the protocol.
pub mod item_id {
    /// Null item: marks the end of real payload before padding.
    pub const NULL: u64 = 0x0;
    /// Heap counter.
    pub const HEAP_CNT: u64 = 0x1;
    /// Total heap payload length.
    pub const HEAP_LENGTH: u64 = 0x2;
    /// Offset of this packet's payload in the heap payload.
    pub const PAYLOAD_OFFSET: u64 = 0x3;
    /// Length of this packet's payload.
    pub const PAYLOAD_LENGTH: u64 = 0x4;
    /// Item descriptor (its value is a complete SPEAD packet).
    pub const DESCRIPTOR: u64 = 0x5;
    /// Stream control.
    pub const STREAM_CTRL: u64 = 0x6;
    /// Highest ID reserved for the protocol's own items.
    pub const LAST_RESERVED: u64 = STREAM_CTRL;
    /// Descriptor field: item name.
    pub const DESCRIPTOR_NAME: u64 = 0x10;
    /// Descriptor field: item description.
    pub const DESCRIPTOR_DESCRIPTION: u64 = 0x11;
    /// Descriptor field: shape.
    pub const DESCRIPTOR_SHAPE: u64 = 0x12;
    /// Descriptor field: format list.
    pub const DESCRIPTOR_FORMAT: u64 = 0x13;
    /// Descriptor field: ID of the described item.
    pub const DESCRIPTOR_ID: u64 = 0x14;
    /// Descriptor field: numpy header.
    pub const DESCRIPTOR_DTYPE: u64 = 0x15;
}

/// Values of the stream control item (0x6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamControl {
    /// The stream starts.
    Start,
    /// Descriptors are being reissued.
    DescriptorReissue,
    /// The stream stops; spead2's receiver ends the stream here.
    Stop,
    /// Descriptors have changed.
    DescriptorUpdate,
}

impl StreamControl {
    /// The value carried by item 0x6.
    pub const fn value(self) -> u64 {
        match self {
            StreamControl::Start => 0,
            StreamControl::DescriptorReissue => 1,
            StreamControl::Stop => 2,
            StreamControl::DescriptorUpdate => 3,
        }
    }

    /// The control for a value of item 0x6, if it is one SPEAD defines.
    pub const fn from_value(value: u64) -> Option<Self> {
        match value {
            0 => Some(StreamControl::Start),
            1 => Some(StreamControl::DescriptorReissue),
            2 => Some(StreamControl::Stop),
            3 => Some(StreamControl::DescriptorUpdate),
            _ => None,
        }
    }
}

/// A flavour that cannot exist.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FlavourError {
    /// Heap address bits outside 8..=56 or not a multiple of 8.
    #[error("heap address bits must be a multiple of 8 between 8 and 56, got {0}")]
    HeapAddressBits(u32),
}

/// SPEAD version 4 with 64-bit item pointers and `heap_address_bits` bits of
/// address (a multiple of 8 between 8 and 56). The default is 64-48.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flavour {
    heap_address_bits: u8,
}

impl Default for Flavour {
    fn default() -> Self {
        Self::SPEAD_64_48
    }
}

impl Flavour {
    /// Flavour 64-48, the one spead2 and MeerKAT use.
    pub const SPEAD_64_48: Flavour = Flavour {
        heap_address_bits: 48,
    };
    /// Flavour 64-40.
    pub const SPEAD_64_40: Flavour = Flavour {
        heap_address_bits: 40,
    };

    /// A flavour with the given heap address bits, validated.
    pub fn new(heap_address_bits: u32) -> Result<Self, FlavourError> {
        if heap_address_bits % 8 != 0 || !(8..=56).contains(&heap_address_bits) {
            return Err(FlavourError::HeapAddressBits(heap_address_bits));
        }
        Ok(Flavour {
            heap_address_bits: heap_address_bits as u8,
        })
    }

    /// The flavour announced by the third and fourth header bytes (item ID
    /// width and heap address width, in bytes), if it is a valid 64-bit one.
    pub fn from_widths(id_bytes: u8, address_bytes: u8) -> Option<Self> {
        if u32::from(id_bytes) + u32::from(address_bytes) != POINTER_SIZE as u32 {
            return None;
        }
        Flavour::new(u32::from(address_bytes) * 8).ok()
    }

    /// Number of bits in a heap address (and in an immediate value).
    pub const fn heap_address_bits(self) -> u32 {
        self.heap_address_bits as u32
    }

    /// Bytes in an immediate value: `heap_address_bits / 8`.
    pub const fn immediate_size(self) -> usize {
        self.heap_address_bits as usize / 8
    }

    /// Number of bits in an item ID: `63 - heap_address_bits`.
    pub const fn item_id_bits(self) -> u32 {
        63 - self.heap_address_bits()
    }

    /// The largest item ID this flavour can carry.
    pub const fn max_item_id(self) -> u64 {
        (1u64 << self.item_id_bits()) - 1
    }

    /// The largest value an address or immediate field can hold.
    pub const fn max_value(self) -> u64 {
        (1u64 << self.heap_address_bits()) - 1
    }

    /// The packet header word announcing `n_pointers` item pointers.
    pub const fn header_word(self, n_pointers: u16) -> u64 {
        let address_bytes = self.immediate_size() as u64;
        ((MAGIC as u64) << 56)
            | ((VERSION as u64) << 48)
            | ((8 - address_bytes) << 40)
            | (address_bytes << 32)
            | n_pointers as u64
    }

    /// An immediate item pointer. `value` must fit the address bits; the
    /// callers that build heaps validate it first.
    pub const fn immediate(self, id: u64, value: u64) -> u64 {
        (1u64 << 63) | (id << self.heap_address_bits()) | value
    }

    /// An address item pointer (`offset` into the heap payload).
    pub const fn address(self, id: u64, offset: u64) -> u64 {
        (id << self.heap_address_bits()) | offset
    }

    /// Splits a raw item pointer into its parts.
    pub const fn decode_pointer(self, raw: u64) -> ItemPointer {
        ItemPointer {
            immediate: raw >> 63 == 1,
            id: (raw >> self.heap_address_bits()) & self.max_item_id(),
            value: raw & self.max_value(),
        }
    }
}

/// A decoded item pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ItemPointer {
    /// True when `value` is the item's value; false when it is an address.
    pub immediate: bool,
    /// Item ID.
    pub id: u64,
    /// Immediate value or payload address.
    pub value: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_words_match_spead2() {
        assert_eq!(
            Flavour::SPEAD_64_48.header_word(5).to_be_bytes(),
            [0x53, 0x04, 0x02, 0x06, 0x00, 0x00, 0x00, 0x05]
        );
        assert_eq!(
            Flavour::SPEAD_64_40.header_word(0x0b).to_be_bytes(),
            [0x53, 0x04, 0x03, 0x05, 0x00, 0x00, 0x00, 0x0b]
        );
    }

    #[test]
    fn address_bits_are_validated() {
        for bits in [8, 16, 24, 32, 40, 48, 56] {
            assert_eq!(Flavour::new(bits).unwrap().heap_address_bits(), bits);
        }
        for bits in [0, 7, 12, 47, 64] {
            let err = Flavour::new(bits).unwrap_err();
            assert!(err.to_string().contains(&bits.to_string()), "{err}");
        }
    }

    #[test]
    fn pointers_round_trip() {
        let f = Flavour::SPEAD_64_48;
        let raw = f.immediate(0x1234, 0xabcdef);
        assert_eq!(raw, 0x9234_0000_00ab_cdef);
        assert_eq!(
            f.decode_pointer(raw),
            ItemPointer {
                immediate: true,
                id: 0x1234,
                value: 0xabcdef
            }
        );
        let raw = f.address(f.max_item_id(), f.max_value());
        let p = f.decode_pointer(raw);
        assert!(!p.immediate);
        assert_eq!((p.id, p.value), (f.max_item_id(), f.max_value()));
    }

    #[test]
    fn widths_identify_the_flavour() {
        assert_eq!(Flavour::from_widths(2, 6), Some(Flavour::SPEAD_64_48));
        assert_eq!(Flavour::from_widths(3, 5), Some(Flavour::SPEAD_64_40));
        assert_eq!(Flavour::from_widths(2, 5), None);
        assert_eq!(Flavour::from_widths(8, 0), None);
    }
}
