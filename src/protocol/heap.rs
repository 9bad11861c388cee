//! Heaps as the sender builds them: items in the order added, each either an
//! immediate or an address into the heap payload. Values may borrow caller
//! memory, share a reference-counted buffer, or be owned; nothing is copied
//! until the packetizer writes a frame.

use std::sync::Arc;

use bytes::Bytes;
use thiserror::Error;

use super::descriptor::{Descriptor, DescriptorError};
use super::flavour::{item_id, Flavour, StreamControl};

/// The bytes (or integer) of an item.
#[derive(Clone, PartialEq, Eq)]
pub enum ItemValue<'a> {
    /// Caller memory, borrowed for the heap's lifetime.
    Borrowed(&'a [u8]),
    /// A shared, reference-counted buffer (no copy; cheap to clone).
    Shared(Bytes),
    /// Bytes owned by the heap.
    Owned(Vec<u8>),
    /// An integer sent as an immediate (spead2's inline items), such as a
    /// stream control value or a timestamp updated between sends.
    Inline(u64),
    /// Memory lent by another runtime (a numpy array) and read as it is
    /// when each packet is made: never borrowed, only copied out, or sent
    /// by reference where a transport can send its address.
    Foreign(ForeignBytes),
}

/// Memory that Rust code may not borrow: a buffer another runtime owns
/// (a numpy array) and may write at any moment, even while a heap that
/// refers to it is being sent, as spead2 allows. It is read only through
/// [`copy_to`](Self::copy_to), which takes the bytes as they are then.
/// A transport trusts [`address`](Self::address) only to decide whether
/// to send the memory by reference from its own registered memory; a
/// wrong address sends wrong bytes, never anything worse.
pub trait ForeignMemory: Send + Sync + std::fmt::Debug {
    /// Its length in bytes.
    fn len(&self) -> usize;

    /// Whether it is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies the bytes from `offset` into all of `dst`. A range past the
    /// end (a caller's mistake) fills `dst` with zeros.
    fn copy_to(&self, offset: usize, dst: &mut [u8]);

    /// The address of its first byte, for a transport that sends memory
    /// by reference when it lies in memory the transport registered.
    fn address(&self) -> usize;
}

/// Foreign memory as an item value: shared, and equal only to itself.
#[derive(Clone, Debug)]
pub struct ForeignBytes(Arc<dyn ForeignMemory>);

impl ForeignBytes {
    /// The memory.
    pub fn memory(&self) -> &dyn ForeignMemory {
        &*self.0
    }
}

impl PartialEq for ForeignBytes {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ForeignBytes {}

impl From<Arc<dyn ForeignMemory>> for ItemValue<'_> {
    fn from(memory: Arc<dyn ForeignMemory>) -> Self {
        ItemValue::Foreign(ForeignBytes(memory))
    }
}

/// Bytes shown of a value in `Debug` output: a heap's items can be many
/// megabytes, which logs and error messages must not carry whole.
const DEBUG_BYTES: usize = 16;

impl std::fmt::Debug for ItemValue<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            ItemValue::Borrowed(_) => "Borrowed",
            ItemValue::Shared(_) => "Shared",
            ItemValue::Owned(_) => "Owned",
            ItemValue::Inline(value) => return write!(f, "Inline({value:#x})"),
            ItemValue::Foreign(memory) => return write!(f, "Foreign({} bytes)", memory.memory().len()),
        };
        let bytes = self.bytes().unwrap_or_default();
        let shown = &bytes[..bytes.len().min(DEBUG_BYTES)];
        write!(f, "{kind}({} bytes: {:02x?}", bytes.len(), shown)?;
        if bytes.len() > DEBUG_BYTES {
            write!(f, " ...")?;
        }
        write!(f, ")")
    }
}

impl ItemValue<'_> {
    /// The value's bytes, or `None` for an inline integer and for foreign
    /// memory (which is only copied out).
    #[inline]
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            ItemValue::Borrowed(b) => Some(b),
            ItemValue::Shared(b) => Some(b),
            ItemValue::Owned(b) => Some(b),
            ItemValue::Inline(_) | ItemValue::Foreign(_) => None,
        }
    }

    /// Bytes of the value (0 for an inline integer, whose width is the
    /// flavour's).
    pub fn len(&self) -> usize {
        match self {
            ItemValue::Foreign(memory) => memory.memory().len(),
            value => value.bytes().map_or(0, <[u8]>::len),
        }
    }

    /// Whether the value has no bytes (an inline integer has none).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value's `len` bytes from `offset` as a payload piece, if it has
    /// them.
    #[inline]
    pub(crate) fn piece(&self, offset: usize, len: usize) -> Option<Piece<'_>> {
        match self {
            ItemValue::Foreign(memory) => (offset.checked_add(len)? <= memory.memory().len())
                .then_some(Piece::Foreign { memory, offset, len }),
            value => value
                .bytes()?
                .get(offset..offset.checked_add(len)?)
                .map(Piece::Bytes),
        }
    }
}

/// Payload bytes of a packet, by reference: the sender's own memory, or a
/// range of foreign memory (copied out, never borrowed).
#[derive(Debug, Clone, Copy)]
pub enum Piece<'p> {
    /// Memory the heap may borrow.
    Bytes(&'p [u8]),
    /// `len` bytes from `offset` of foreign memory.
    Foreign {
        /// The memory (a thin reference: a piece is moved with every packet).
        memory: &'p ForeignBytes,
        /// Where the piece starts in it.
        offset: usize,
        /// Its length.
        len: usize,
    },
}

// Pieces are moved with every packet: keep them to three words.
const _: () = assert!(std::mem::size_of::<Piece<'static>>() <= 24);

impl<'p> From<&'p [u8]> for Piece<'p> {
    fn from(bytes: &'p [u8]) -> Self {
        Piece::Bytes(bytes)
    }
}

impl Piece<'_> {
    /// Its length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        match self {
            Piece::Bytes(bytes) => bytes.len(),
            Piece::Foreign { len, .. } => *len,
        }
    }

    /// Whether it has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies it into the start of `dst` (which must hold it).
    pub fn copy_to(&self, dst: &mut [u8]) {
        let dst = &mut dst[..self.len()];
        match self {
            Piece::Bytes(bytes) => dst.copy_from_slice(bytes),
            Piece::Foreign { memory, offset, .. } => memory.memory().copy_to(*offset, dst),
        }
    }

    /// The address of its first byte.
    #[inline]
    pub fn address(&self) -> usize {
        match self {
            Piece::Bytes(bytes) => bytes.as_ptr() as usize,
            // Compared with a transport's memory, never dereferenced.
            Piece::Foreign { memory, offset, .. } => memory.memory().address().wrapping_add(*offset),
        }
    }
}

impl<'a> From<&'a [u8]> for ItemValue<'a> {
    fn from(value: &'a [u8]) -> Self {
        ItemValue::Borrowed(value)
    }
}

impl<'a, const N: usize> From<&'a [u8; N]> for ItemValue<'a> {
    fn from(value: &'a [u8; N]) -> Self {
        ItemValue::Borrowed(value)
    }
}

impl From<Vec<u8>> for ItemValue<'_> {
    fn from(value: Vec<u8>) -> Self {
        ItemValue::Owned(value)
    }
}

impl From<Bytes> for ItemValue<'_> {
    fn from(value: Bytes) -> Self {
        ItemValue::Shared(value)
    }
}

/// One item of a heap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item<'a> {
    id: u64,
    value: ItemValue<'a>,
    allow_immediate: bool,
}

impl<'a> Item<'a> {
    /// An item sent as an address item (its bytes in the heap payload).
    pub fn new(id: u64, value: impl Into<ItemValue<'a>>) -> Self {
        Item {
            id,
            value: value.into(),
            allow_immediate: false,
        }
    }

    /// An integer item always sent as an immediate.
    pub fn immediate(id: u64, value: u64) -> Self {
        Item {
            id,
            value: ItemValue::Inline(value),
            allow_immediate: true,
        }
    }

    /// Lets a value of at most `heap_address_bits / 8` bytes go out as an
    /// immediate (its bytes fill the low-order end of the pointer).
    pub fn allow_immediate(mut self, allow: bool) -> Self {
        self.allow_immediate = allow || matches!(self.value, ItemValue::Inline(_));
        self
    }

    /// Item ID.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The value.
    #[inline]
    pub fn value(&self) -> &ItemValue<'a> {
        &self.value
    }

    /// Whether the item may go out as an immediate.
    pub fn allows_immediate(&self) -> bool {
        self.allow_immediate
    }

    /// Whether the item goes out as an immediate in `flavour`.
    pub fn is_immediate(&self, flavour: Flavour) -> bool {
        match &self.value {
            ItemValue::Inline(_) => true,
            value => self.allow_immediate && value.len() <= flavour.immediate_size(),
        }
    }

    /// Bytes the item adds to the heap payload in `flavour`.
    pub fn payload_len(&self, flavour: Flavour) -> usize {
        if self.is_immediate(flavour) {
            0
        } else {
            self.value.len()
        }
    }

    /// The immediate value field, for an item that is immediate in `flavour`.
    pub fn immediate_value(&self, flavour: Flavour) -> Option<u64> {
        if !self.is_immediate(flavour) {
            return None;
        }
        let big_endian = |bytes: &[u8]| bytes.iter().fold(0, |acc, b| (acc << 8) | u64::from(*b));
        Some(match &self.value {
            ItemValue::Inline(v) => *v,
            ItemValue::Foreign(memory) => {
                // At most the immediate size (8 bytes or fewer), as it is now.
                let mut now = [0u8; 8];
                let now = &mut now[..memory.memory().len().min(8)];
                memory.memory().copy_to(0, now);
                big_endian(now)
            }
            value => big_endian(value.bytes().unwrap_or_default()),
        })
    }
}

/// Refers to an item of a heap, for updating it in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ItemHandle(usize);

/// Why an item cannot join a heap.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HeapError {
    /// IDs 0x0-0x6 belong to the protocol.
    #[error("item ID {0:#x} is reserved for the protocol (0x0-0x6); use add_descriptor/add_start/add_end")]
    ReservedId(u64),
    /// The ID does not fit the flavour's item ID bits.
    #[error("item ID {id:#x} does not fit {bits} bits (largest {max:#x})")]
    IdOutOfRange {
        /// Offending ID.
        id: u64,
        /// Item ID bits of the flavour.
        bits: u32,
        /// Largest ID.
        max: u64,
    },
    /// The heap already has an item with this ID.
    #[error("item ID {0:#x} is already in this heap")]
    DuplicateId(u64),
    /// An inline integer does not fit the flavour's immediate field.
    #[error("immediate value {value:#x} of item {id:#x} does not fit {bits} bits")]
    ImmediateTooLarge {
        /// Item ID.
        id: u64,
        /// Offending value.
        value: u64,
        /// Immediate bits of the flavour.
        bits: u32,
    },
    /// The heap payload would exceed what the address bits can reach.
    #[error("heap payload of {bytes} bytes exceeds the {max} bytes that {bits}-bit addresses reach")]
    TooLarge {
        /// Payload size that was asked for.
        bytes: u64,
        /// Largest payload.
        max: u64,
        /// Heap address bits.
        bits: u32,
    },
    /// The handle does not name an inline immediate of this heap.
    #[error("item handle {0} does not name an inline immediate of this heap")]
    NotInline(usize),
    /// No item at this index.
    #[error("the heap has no item {0}")]
    NoSuchItem(usize),
    /// An invalid descriptor.
    #[error(transparent)]
    Descriptor(#[from] DescriptorError),
}

/// A heap being built for sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heap<'a> {
    flavour: Flavour,
    items: Vec<Item<'a>>,
    payload_len: u64,
    repeat_pointers: bool,
}

impl<'a> Heap<'a> {
    /// An empty heap of the given flavour.
    pub fn new(flavour: Flavour) -> Self {
        Heap {
            flavour,
            items: Vec::new(),
            payload_len: 0,
            repeat_pointers: false,
        }
    }

    /// The heap's flavour.
    pub fn flavour(&self) -> Flavour {
        self.flavour
    }

    /// Items in the order added.
    #[inline]
    pub fn items(&self) -> &[Item<'a>] {
        &self.items
    }

    /// Bytes of real payload (address items' values, in order).
    pub fn payload_len(&self) -> u64 {
        self.payload_len
    }

    /// Whether every packet carries every item pointer.
    pub fn repeat_pointers(&self) -> bool {
        self.repeat_pointers
    }

    /// Makes every packet carry every item pointer (an error at packetizing
    /// time if they do not fit in one packet).
    pub fn set_repeat_pointers(&mut self, repeat: bool) {
        self.repeat_pointers = repeat;
    }

    /// Adds a user item. IDs must fit the flavour and not be reserved
    /// (0x0-0x6) or already present.
    pub fn add(&mut self, item: Item<'a>) -> Result<ItemHandle, HeapError> {
        if item.id <= item_id::LAST_RESERVED {
            return Err(HeapError::ReservedId(item.id));
        }
        if self.items.iter().any(|i| i.id == item.id) {
            return Err(HeapError::DuplicateId(item.id));
        }
        self.push(item)
    }

    /// Adds a descriptor (item 0x5, encoded as spead2 encodes it).
    pub fn add_descriptor(&mut self, descriptor: &Descriptor) -> Result<ItemHandle, HeapError> {
        let encoded = descriptor.encode(self.flavour)?;
        self.push(Item::new(item_id::DESCRIPTOR, encoded))
    }

    /// Adds a stream control item (0x6).
    pub fn add_stream_control(&mut self, control: StreamControl) -> Result<ItemHandle, HeapError> {
        if self.items.iter().any(|i| i.id == item_id::STREAM_CTRL) {
            return Err(HeapError::DuplicateId(item_id::STREAM_CTRL));
        }
        self.push(Item::immediate(item_id::STREAM_CTRL, control.value()))
    }

    /// Adds a stream start control item.
    pub fn add_start(&mut self) -> Result<ItemHandle, HeapError> {
        self.add_stream_control(StreamControl::Start)
    }

    /// Adds a stream stop control item.
    pub fn add_end(&mut self) -> Result<ItemHandle, HeapError> {
        self.add_stream_control(StreamControl::Stop)
    }

    /// Replaces the value of an inline immediate (a timestamp, say) without
    /// rebuilding the heap.
    pub fn set_immediate(&mut self, handle: ItemHandle, value: u64) -> Result<(), HeapError> {
        let flavour = self.flavour;
        let item = self
            .items
            .get_mut(handle.0)
            .ok_or(HeapError::NotInline(handle.0))?;
        let ItemValue::Inline(slot) = &mut item.value else {
            return Err(HeapError::NotInline(handle.0));
        };
        if value > flavour.max_value() {
            return Err(HeapError::ImmediateTooLarge {
                id: item.id,
                value,
                bits: flavour.heap_address_bits(),
            });
        }
        *slot = value;
        Ok(())
    }

    /// Replaces the value of item `index` (in the order added), checked
    /// as [`add`](Self::add) checks a value: a re-read buffer, say, whose
    /// length may have changed.
    pub fn replace_value(&mut self, index: usize, value: impl Into<ItemValue<'a>>) -> Result<(), HeapError> {
        let old = self.items.get(index).ok_or(HeapError::NoSuchItem(index))?;
        let mut new = old.clone();
        new.value = value.into();
        let others = self.payload_len - old.payload_len(self.flavour) as u64;
        self.payload_len = self.checked_payload_len(&new, others)?;
        self.items[index] = new;
        Ok(())
    }

    fn push(&mut self, item: Item<'a>) -> Result<ItemHandle, HeapError> {
        let flavour = self.flavour;
        if item.id > flavour.max_item_id() {
            return Err(HeapError::IdOutOfRange {
                id: item.id,
                bits: flavour.item_id_bits(),
                max: flavour.max_item_id(),
            });
        }
        self.payload_len = self.checked_payload_len(&item, self.payload_len)?;
        self.items.push(item);
        Ok(ItemHandle(self.items.len() - 1))
    }

    /// The heap's payload length with `item` beside `others` bytes of
    /// the other items, once its value is checked: an inline value and
    /// the heap's addresses and length must fit the address bits.
    fn checked_payload_len(&self, item: &Item<'a>, others: u64) -> Result<u64, HeapError> {
        let flavour = self.flavour;
        if let ItemValue::Inline(value) = item.value {
            if value > flavour.max_value() {
                return Err(HeapError::ImmediateTooLarge {
                    id: item.id,
                    value,
                    bits: flavour.heap_address_bits(),
                });
            }
        }
        let payload_len = others + item.payload_len(flavour) as u64;
        if payload_len > flavour.max_value() {
            return Err(HeapError::TooLarge {
                bytes: payload_len,
                max: flavour.max_value(),
                bits: flavour.heap_address_bits(),
            });
        }
        Ok(payload_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_value_is_checked_as_an_added_one() {
        let mut heap = Heap::new(Flavour::SPEAD_64_48);
        heap.add(Item::new(0x1000, vec![1u8; 10])).unwrap();
        heap.replace_value(0, vec![2u8; 20]).unwrap();
        assert_eq!(heap.payload_len(), 20);
        assert_eq!(heap.items()[0].value().bytes(), Some(&[2u8; 20][..]));
        assert!(matches!(
            heap.replace_value(1, vec![0u8]),
            Err(HeapError::NoSuchItem(1))
        ));
        let mut small = Heap::new(Flavour::new(8).unwrap());
        small.add(Item::new(0x10, vec![0u8; 200])).unwrap();
        assert!(matches!(
            small.replace_value(0, vec![0u8; 300]),
            Err(HeapError::TooLarge { bytes: 300, .. })
        ));
        assert_eq!(
            small.payload_len(),
            200,
            "a refused value leaves the heap as it was"
        );
    }

    #[test]
    fn immediates_follow_size_and_permission() {
        let f = Flavour::SPEAD_64_48;
        let six = [1u8, 2, 3, 4, 5, 6];
        let seven = [1u8; 7];
        assert!(Item::new(0x1000, &six).allow_immediate(true).is_immediate(f));
        assert!(!Item::new(0x1000, &six).is_immediate(f));
        assert!(!Item::new(0x1000, &seven).allow_immediate(true).is_immediate(f));
        assert!(Item::immediate(0x1000, 5).is_immediate(f));
        let item = Item::new(0x1000, &six[..2]).allow_immediate(true);
        assert_eq!(item.immediate_value(f), Some(0x0102));
        assert_eq!(Item::new(0x1000, &seven).payload_len(f), 7);
    }

    #[test]
    fn ids_are_checked() {
        let mut heap = Heap::new(Flavour::SPEAD_64_48);
        for id in 0..=6 {
            assert_eq!(heap.add(Item::immediate(id, 0)), Err(HeapError::ReservedId(id)));
        }
        let err = heap.add(Item::immediate(1 << 15, 0)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "item ID 0x8000 does not fit 15 bits (largest 0x7fff)"
        );
        heap.add(Item::immediate(0x7fff, 0)).unwrap();
        assert_eq!(
            heap.add(Item::immediate(0x7fff, 1)),
            Err(HeapError::DuplicateId(0x7fff))
        );
        heap.add_start().unwrap();
        assert_eq!(heap.add_end(), Err(HeapError::DuplicateId(6)));
    }

    #[test]
    fn immediates_and_sizes_must_fit_the_address_bits() {
        let f = Flavour::new(8).unwrap();
        let mut heap = Heap::new(f);
        assert!(matches!(
            heap.add(Item::immediate(0x100, 256)),
            Err(HeapError::ImmediateTooLarge {
                value: 256,
                bits: 8,
                ..
            })
        ));
        let big = vec![0u8; 256];
        assert!(matches!(
            heap.add(Item::new(0x100, &big[..])),
            Err(HeapError::TooLarge {
                bytes: 256,
                max: 255,
                ..
            })
        ));
        heap.add(Item::new(0x100, &big[..255])).unwrap();
        assert_eq!(heap.payload_len(), 255);
    }

    #[test]
    fn inline_immediates_update_in_place() {
        let mut heap = Heap::new(Flavour::SPEAD_64_48);
        let data = [0u8; 100];
        heap.add(Item::new(0x1001, &data[..])).unwrap();
        let ts = heap.add(Item::immediate(0x1600, 1)).unwrap();
        heap.set_immediate(ts, 123_456_789).unwrap();
        assert_eq!(heap.items()[1].value(), &ItemValue::Inline(123_456_789));
        assert!(matches!(
            heap.set_immediate(ts, 1 << 48),
            Err(HeapError::ImmediateTooLarge { .. })
        ));
        assert_eq!(heap.set_immediate(ItemHandle(0), 1), Err(HeapError::NotInline(0)));
    }

    #[test]
    fn debug_output_shows_a_value_s_length_and_first_bytes_only() {
        let big = ItemValue::Owned(vec![0xab; 4 << 20]);
        let text = format!("{big:?}");
        assert_eq!(text, format!("Owned(4194304 bytes: {:02x?} ...)", [0xabu8; 16]));
        assert_eq!(
            format!("{:?}", ItemValue::Borrowed(&[1, 2])),
            "Borrowed(2 bytes: [01, 02])"
        );
        assert_eq!(format!("{:?}", ItemValue::Inline(0x1600)), "Inline(0x1600)");
    }
}
