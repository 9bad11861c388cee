//! A zero-copy view of a SPEAD packet's bytes: header word, item pointers
//! and payload. Getters read any buffer, setters write one in place; this
//! module checks layout only, the meaning of items is the decoder's job.

use super::flavour::{Flavour, MAGIC, POINTER_SIZE, VERSION};

/// Byte ranges of the header fields.
mod field {
    use core::ops::Range;
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 1;
    pub const ID_WIDTH: usize = 2;
    pub const ADDRESS_WIDTH: usize = 3;
    pub const RESERVED: Range<usize> = 4..6;
    pub const N_ITEMS: Range<usize> = 6..8;
    pub const POINTERS: usize = 8;
}

/// Size of the packet header (the word before the item pointers).
pub const HEADER_LEN: usize = field::POINTERS;

/// What is wrong with a packet's layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// Shorter than the 8-byte header.
    #[error("packet of {0} bytes is shorter than the 8-byte SPEAD header")]
    TooShort(usize),
    /// First byte is not 0x53.
    #[error("bad magic byte {0:#04x} (expected 0x53)")]
    Magic(u8),
    /// Second byte is not 4.
    #[error("unsupported SPEAD version {0} (expected 4)")]
    Version(u8),
    /// Item pointers that are not 64 bits, or address bits out of range.
    #[error("unsupported flavour: item ID width {id_bytes} B, heap address width {address_bytes} B (need 64-bit pointers, 8..=56 address bits)")]
    Flavour {
        /// Third header byte.
        id_bytes: u8,
        /// Fourth header byte.
        address_bytes: u8,
    },
    /// Reserved header bytes are not zero.
    #[error("reserved header bytes are {0:#06x}, not zero")]
    Reserved(u16),
    /// The header announces more pointers than the packet holds.
    #[error("header announces {n_items} item pointers but the packet has only {len} bytes")]
    Truncated {
        /// Announced item pointer count.
        n_items: u16,
        /// Packet length.
        len: usize,
    },
}

/// A SPEAD packet view over a buffer.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps a buffer after checking that every header field is valid and
    /// the announced item pointers are present.
    pub fn new_checked(buffer: T) -> Result<Self, LayoutError> {
        let packet = Packet { buffer };
        packet.check()?;
        Ok(packet)
    }

    fn check(&self) -> Result<(), LayoutError> {
        let data = self.buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(LayoutError::TooShort(data.len()));
        }
        if data[field::MAGIC] != MAGIC {
            return Err(LayoutError::Magic(data[field::MAGIC]));
        }
        if data[field::VERSION] != VERSION {
            return Err(LayoutError::Version(data[field::VERSION]));
        }
        if self.flavour().is_none() {
            return Err(LayoutError::Flavour {
                id_bytes: data[field::ID_WIDTH],
                address_bytes: data[field::ADDRESS_WIDTH],
            });
        }
        let reserved = u16::from_be_bytes([data[field::RESERVED.start], data[field::RESERVED.start + 1]]);
        if reserved != 0 {
            return Err(LayoutError::Reserved(reserved));
        }
        if data.len() < self.payload_start() {
            return Err(LayoutError::Truncated {
                n_items: self.n_items(),
                len: data.len(),
            });
        }
        Ok(())
    }

    /// The flavour the header announces, if valid.
    pub fn flavour(&self) -> Option<Flavour> {
        let data = self.buffer.as_ref();
        Flavour::from_widths(data[field::ID_WIDTH], data[field::ADDRESS_WIDTH])
    }

    /// Number of item pointers the header announces.
    pub fn n_items(&self) -> u16 {
        let data = self.buffer.as_ref();
        u16::from_be_bytes([data[field::N_ITEMS.start], data[field::N_ITEMS.start + 1]])
    }

    /// Raw item pointer `index` (big-endian decoded).
    pub fn pointer(&self, index: usize) -> u64 {
        let start = field::POINTERS + index * POINTER_SIZE;
        let bytes = &self.buffer.as_ref()[start..start + POINTER_SIZE];
        u64::from_be_bytes(bytes.try_into().expect("slice of pointer size"))
    }

    /// All raw item pointers, in packet order.
    pub fn pointers(&self) -> impl ExactSizeIterator<Item = u64> + '_ {
        self.buffer.as_ref()[field::POINTERS..self.payload_start()]
            .chunks_exact(POINTER_SIZE)
            .map(|word| u64::from_be_bytes(word.try_into().expect("chunk of pointer size")))
    }

    /// Offset of the payload within the packet.
    pub fn payload_start(&self) -> usize {
        HEADER_LEN + usize::from(self.n_items()) * POINTER_SIZE
    }

    /// The bytes after the item pointers.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.payload_start()..]
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Writes the header word for `flavour` and `n_items` pointers.
    pub fn set_header(&mut self, flavour: Flavour, n_items: u16) {
        self.buffer.as_mut()[..HEADER_LEN].copy_from_slice(&flavour.header_word(n_items).to_be_bytes());
    }

    /// Writes raw item pointer `index`.
    pub fn set_pointer(&mut self, index: usize, raw: u64) {
        let start = field::POINTERS + index * POINTER_SIZE;
        self.buffer.as_mut()[start..start + POINTER_SIZE].copy_from_slice(&raw.to_be_bytes());
    }

    /// Writes the header word and the first `N - 1` raw item pointers
    /// (`words`, in that order) in one go.
    pub fn set_leading_words<const N: usize>(&mut self, words: [u64; N]) {
        let out = &mut self.buffer.as_mut()[..N * POINTER_SIZE];
        for (chunk, word) in out.chunks_exact_mut(POINTER_SIZE).zip(words) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
    }

    /// Writes item pointers already encoded (big-endian words, a whole
    /// number of them) from pointer `index` on.
    pub fn set_encoded_pointers(&mut self, index: usize, words: &[u8]) {
        debug_assert_eq!(words.len() % POINTER_SIZE, 0);
        let start = field::POINTERS + index * POINTER_SIZE;
        self.buffer.as_mut()[start..start + words.len()].copy_from_slice(words);
    }

    /// The bytes after the item pointers, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.payload_start();
        &mut self.buffer.as_mut()[start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 64-48 packet with two pointers and three payload bytes.
    static PACKET: [u8; 27] = [
        0x53, 0x04, 0x02, 0x06, 0x00, 0x00, 0x00, 0x02, // header
        0x80, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, // heap cnt 7
        0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // item 0x1000 at 0
        0xaa, 0xbb, 0xcc,
    ];

    #[test]
    fn deconstruct() {
        let packet = Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(packet.flavour(), Some(Flavour::SPEAD_64_48));
        assert_eq!(packet.n_items(), 2);
        assert_eq!(
            packet.pointers().collect::<Vec<_>>(),
            [0x8001_0000_0000_0007, 0x1000_0000_0000_0000]
        );
        assert_eq!(packet.payload(), &[0xaa, 0xbb, 0xcc]);
    }

    #[test]
    fn construct() {
        let mut bytes = [0u8; 27];
        let mut packet = Packet::new_unchecked(&mut bytes[..]);
        packet.set_header(Flavour::SPEAD_64_48, 2);
        packet.set_pointer(0, Flavour::SPEAD_64_48.immediate(1, 7));
        packet.set_pointer(1, Flavour::SPEAD_64_48.address(0x1000, 0));
        packet.payload_mut().copy_from_slice(&[0xaa, 0xbb, 0xcc]);
        assert_eq!(bytes, PACKET);
    }

    #[test]
    fn bad_layouts_are_named() {
        let check = |bytes: &[u8]| Packet::new_checked(bytes).unwrap_err();
        assert_eq!(check(&PACKET[..5]), LayoutError::TooShort(5));
        let mut bad = PACKET;
        bad[0] = 0x54;
        assert_eq!(check(&bad), LayoutError::Magic(0x54));
        let mut bad = PACKET;
        bad[1] = 3;
        assert_eq!(check(&bad), LayoutError::Version(3));
        let mut bad = PACKET;
        bad[3] = 5;
        assert_eq!(
            check(&bad),
            LayoutError::Flavour {
                id_bytes: 2,
                address_bytes: 5
            }
        );
        let mut bad = PACKET;
        bad[5] = 1;
        assert_eq!(check(&bad), LayoutError::Reserved(1));
        assert_eq!(
            check(&PACKET[..20]),
            LayoutError::Truncated { n_items: 2, len: 20 }
        );
    }
}
