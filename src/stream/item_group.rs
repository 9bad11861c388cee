//! spead2's `ItemGroup` and `HeapGenerator`: named items with descriptors
//! and values, and heaps carrying what is new since the last heap
//! (descriptors and data each `stale`, `all` or `none`), with an optional
//! descriptor frequency. Values are shared buffers, so building a heap
//! copies no data.

use bytes::Bytes;
use thiserror::Error;

use crate::protocol::{DataType, Descriptor, DescriptorError, Flavour, Heap, HeapError, Item};

/// First ID handed out automatically, as in spead2.
pub const FIRST_AUTO_ID: u64 = 0x1000;

/// Which descriptors or values a heap carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Those not sent since they changed (descriptors: or not recently
    /// enough for the descriptor frequency).
    Stale,
    /// All of them.
    All,
    /// None of them.
    None,
}

/// Names an item by ID or name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKey<'a> {
    /// By item ID.
    Id(u64),
    /// By name.
    Name(&'a str),
}

impl From<u64> for ItemKey<'_> {
    fn from(id: u64) -> Self {
        ItemKey::Id(id)
    }
}

impl<'a> From<&'a str> for ItemKey<'a> {
    fn from(name: &'a str) -> Self {
        ItemKey::Name(name)
    }
}

/// What is wrong with an item or value.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ItemGroupError {
    /// No item has this ID or name.
    #[error("no item {0}")]
    NoSuchItem(String),
    /// The value's size does not match the descriptor.
    #[error("value of {got} bytes does not fit item {name:?}: {expected}")]
    ValueSize {
        /// Item name.
        name: String,
        /// Bytes given.
        got: usize,
        /// What the descriptor needs.
        expected: String,
    },
    /// An integer setter on an item that is not a scalar integer.
    #[error("item {0:?} is not a scalar integer of whole bytes")]
    NotScalarInteger(String),
    /// The integer does not fit the item.
    #[error("value {value} does not fit the {bits} bits of item {name:?}")]
    IntegerTooLarge {
        /// Item name.
        name: String,
        /// Offending value.
        value: u64,
        /// Bits available.
        bits: u64,
    },
    /// An invalid descriptor.
    #[error(transparent)]
    Descriptor(#[from] DescriptorError),
    /// The heap refused an item.
    #[error(transparent)]
    Heap(#[from] HeapError),
}

#[derive(Debug, Clone)]
struct GroupItem {
    descriptor: Descriptor,
    value: Option<Bytes>,
    version: u64,
    sent_version: Option<u64>,
    descriptor_sent_at: Option<u64>,
}

/// Named items, and a generator of heaps carrying their changes.
#[derive(Debug, Clone)]
pub struct ItemGroup {
    flavour: Flavour,
    items: Vec<GroupItem>,
    descriptor_frequency: Option<u64>,
    heaps_generated: u64,
}

impl ItemGroup {
    /// An empty group for heaps of `flavour`.
    pub fn new(flavour: Flavour) -> Self {
        ItemGroup {
            flavour,
            items: Vec::new(),
            descriptor_frequency: None,
            heaps_generated: 0,
        }
    }

    /// Resends each descriptor once every `heaps` heaps (with `Stale`).
    pub fn with_descriptor_frequency(mut self, heaps: u64) -> Self {
        self.descriptor_frequency = Some(heaps);
        self
    }

    /// The lowest ID from 0x1000 up that no item has.
    pub fn free_id(&self) -> u64 {
        let mut id = FIRST_AUTO_ID;
        while self.items.iter().any(|i| i.descriptor.id == id) {
            id += 1;
        }
        id
    }

    /// Adds an item (its descriptor validated). An identical descriptor
    /// already present keeps its place and takes the value; otherwise an
    /// item with the same ID or name is replaced.
    pub fn add(&mut self, descriptor: Descriptor, value: Option<Bytes>) -> Result<u64, ItemGroupError> {
        descriptor.validate(self.flavour)?;
        if let Some(value) = &value {
            check_size(&descriptor, value.len())?;
        }
        let id = descriptor.id;
        if let Some(same) = self.items.iter_mut().find(|i| i.descriptor == descriptor) {
            if let Some(value) = value {
                same.value = Some(value);
                same.version += 1;
            }
            return Ok(id);
        }
        let mut version = 0;
        self.items.retain(|i| {
            let replaced = i.descriptor.id == id || i.descriptor.name == descriptor.name;
            if replaced {
                version = version.max(i.version + 1);
            }
            !replaced
        });
        self.items.push(GroupItem {
            descriptor,
            value,
            version,
            sent_version: None,
            descriptor_sent_at: None,
        });
        Ok(id)
    }

    fn find(&mut self, key: ItemKey<'_>) -> Result<&mut GroupItem, ItemGroupError> {
        self.items
            .iter_mut()
            .find(|i| match key {
                ItemKey::Id(id) => i.descriptor.id == id,
                ItemKey::Name(name) => i.descriptor.name == name,
            })
            .ok_or_else(|| {
                ItemGroupError::NoSuchItem(match key {
                    ItemKey::Id(id) => format!("{id:#x}"),
                    ItemKey::Name(name) => format!("{name:?}"),
                })
            })
    }

    /// Sets an item's value (its bytes in the descriptor's layout).
    pub fn set<'k>(
        &mut self,
        key: impl Into<ItemKey<'k>>,
        value: impl Into<Bytes>,
    ) -> Result<(), ItemGroupError> {
        let value = value.into();
        let item = self.find(key.into())?;
        check_size(&item.descriptor, value.len())?;
        item.value = Some(value);
        item.version += 1;
        Ok(())
    }

    /// Sets a scalar integer item (a timestamp, a frequency) from a number,
    /// encoded as its descriptor says (big-endian for format lists).
    pub fn set_uint<'k>(&mut self, key: impl Into<ItemKey<'k>>, value: u64) -> Result<(), ItemGroupError> {
        let item = self.find(key.into())?;
        let d = &item.descriptor;
        let not_integer = || ItemGroupError::NotScalarInteger(d.name.clone());
        if !d.shape.is_empty() {
            return Err(not_integer());
        }
        let (bytes, little_endian) = match &d.data_type {
            DataType::Format(fields) => match fields.as_slice() {
                [f] if matches!(f.code, b'u' | b'i') && f.bits % 8 == 0 && f.bits <= 64 => {
                    (f.bits / 8, false)
                }
                _ => return Err(not_integer()),
            },
            DataType::Numpy { dtype, .. } => match dtype.as_str().as_bytes() {
                [order, b'u' | b'i', ..] => (dtype.itemsize(), *order == b'<'),
                _ => return Err(not_integer()),
            },
        };
        if bytes < 8 && value >> (bytes * 8) != 0 {
            return Err(ItemGroupError::IntegerTooLarge {
                name: d.name.clone(),
                value,
                bits: bytes * 8,
            });
        }
        let big = value.to_be_bytes();
        let mut encoded = big[8 - bytes as usize..].to_vec();
        if little_endian {
            encoded.reverse();
        }
        item.value = Some(Bytes::from(encoded));
        item.version += 1;
        Ok(())
    }

    /// An item's current value.
    pub fn get<'k>(&mut self, key: impl Into<ItemKey<'k>>) -> Result<Option<&Bytes>, ItemGroupError> {
        Ok(self.find(key.into())?.value.as_ref())
    }

    /// Descriptors of every item, in order.
    pub fn descriptors(&self) -> impl Iterator<Item = &Descriptor> {
        self.items.iter().map(|i| &i.descriptor)
    }

    /// A heap with the selected descriptors and values (for each item, its
    /// descriptor then its value, in the group's order), as spead2 builds it.
    pub fn get_heap(
        &mut self,
        descriptors: Selection,
        data: Selection,
    ) -> Result<Heap<'static>, ItemGroupError> {
        let mut heap = Heap::new(self.flavour);
        let now = self.heaps_generated;
        for item in &mut self.items {
            let descriptor_due = match descriptors {
                Selection::All => true,
                Selection::None => false,
                Selection::Stale => match (item.descriptor_sent_at, self.descriptor_frequency) {
                    (None, _) => true,
                    (Some(at), Some(every)) => now - at >= every,
                    (Some(_), None) => false,
                },
            };
            if descriptor_due {
                heap.add_descriptor(&item.descriptor)?;
                item.descriptor_sent_at = Some(now);
            }
            let Some(value) = &item.value else { continue };
            let data_due = match data {
                Selection::All => true,
                Selection::None => false,
                Selection::Stale => item.sent_version != Some(item.version),
            };
            if data_due {
                let allow = item.descriptor.allow_immediate();
                heap.add(Item::new(item.descriptor.id, value.clone()).allow_immediate(allow))?;
                item.sent_version = Some(item.version);
            }
        }
        self.heaps_generated += 1;
        Ok(heap)
    }

    /// A heap with only a start-of-stream marker.
    pub fn get_start(&self) -> Heap<'static> {
        let mut heap = Heap::new(self.flavour);
        heap.add_start()
            .expect("an empty heap takes a stream control item");
        heap
    }

    /// A heap with only an end-of-stream marker.
    pub fn get_end(&self) -> Heap<'static> {
        let mut heap = Heap::new(self.flavour);
        heap.add_end().expect("an empty heap takes a stream control item");
        heap
    }
}

fn check_size(descriptor: &Descriptor, got: usize) -> Result<(), ItemGroupError> {
    let bad = |expected: String| ItemGroupError::ValueSize {
        name: descriptor.name.clone(),
        got,
        expected,
    };
    match descriptor.fixed_size() {
        Some(size) if size != got as u64 => Err(bad(format!("{size} bytes"))),
        Some(_) => Ok(()),
        None => {
            let known: u64 = descriptor.shape.iter().flatten().product();
            let bits = descriptor.itemsize_bits() * known;
            if bits % 8 == 0 && bits > 0 && got as u64 % (bits / 8) != 0 {
                Err(bad(format!("a multiple of {} bytes", bits / 8)))
            } else {
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::FormatField;

    fn group() -> ItemGroup {
        let mut g = ItemGroup::new(Flavour::SPEAD_64_48);
        let ts = Descriptor::with_format(0x1600, "timestamp", "", vec![], vec![FormatField::new(b'u', 48)]);
        g.add(ts, None).unwrap();
        let adc = Descriptor::with_dtype(0x1800, "adc", "", vec![4], "<i2", false).unwrap();
        g.add(adc, Some(Bytes::from_static(&[0; 8]))).unwrap();
        g
    }

    fn ids(heap: &Heap<'_>) -> Vec<u64> {
        heap.items().iter().map(|i| i.id()).collect()
    }

    #[test]
    fn stale_sends_only_what_changed() {
        let mut g = group();
        g.set_uint("timestamp", 7).unwrap();
        let first = g.get_heap(Selection::Stale, Selection::Stale).unwrap();
        assert_eq!(ids(&first), [5, 0x1600, 5, 0x1800]);
        g.set_uint("timestamp", 8).unwrap();
        let second = g.get_heap(Selection::Stale, Selection::Stale).unwrap();
        assert_eq!(ids(&second), [0x1600]);
        let third = g.get_heap(Selection::None, Selection::All).unwrap();
        assert_eq!(ids(&third), [0x1600, 0x1800]);
        assert_eq!(third.items()[0].immediate_value(Flavour::SPEAD_64_48), Some(8));
    }

    #[test]
    fn descriptor_frequency_resends() {
        let mut g = group().with_descriptor_frequency(2);
        let counts: Vec<usize> = (0..5)
            .map(|_| {
                g.get_heap(Selection::Stale, Selection::None)
                    .unwrap()
                    .items()
                    .len()
            })
            .collect();
        assert_eq!(counts, [2, 0, 2, 0, 2]);
    }

    #[test]
    fn values_are_checked_against_descriptors() {
        let mut g = group();
        let err = g.set("adc", vec![0u8; 7]).unwrap_err();
        assert!(err.to_string().contains("8 bytes"), "{err}");
        let err = g.set_uint("timestamp", 1 << 48).unwrap_err();
        assert!(matches!(err, ItemGroupError::IntegerTooLarge { bits: 48, .. }));
        assert!(matches!(
            g.set_uint("adc", 1),
            Err(ItemGroupError::NotScalarInteger(_))
        ));
        assert!(matches!(
            g.set("nope", vec![]),
            Err(ItemGroupError::NoSuchItem(_))
        ));
    }

    #[test]
    fn replacing_and_auto_ids() {
        let mut g = group();
        assert_eq!(g.free_id(), 0x1000);
        let renamed = Descriptor::with_format(0x1600, "ts", "", vec![], vec![FormatField::new(b'u', 48)]);
        g.add(renamed, None).unwrap();
        let names: Vec<&str> = g.descriptors().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["adc", "ts"]);
        let little = Descriptor::with_dtype(0x1601, "le", "", vec![], "<u4", false).unwrap();
        g.add(little, None).unwrap();
        g.set_uint("le", 0x01020304).unwrap();
        assert_eq!(g.get("le").unwrap().unwrap().as_ref(), &[4, 3, 2, 1]);
    }

    #[test]
    fn start_and_end_heaps() {
        let g = group();
        assert_eq!(ids(&g.get_start()), [6]);
        assert_eq!(
            g.get_end().items()[0].immediate_value(Flavour::SPEAD_64_48),
            Some(2)
        );
    }
}
