//! Heap reassembly: collects validated packets into heaps, in any arrival
//! order, within fixed bounds on in-flight heaps, heap size, memory and
//! pointers. Complete heaps decode into items and descriptors; heaps pushed
//! out by newer ones (or by [`Reassembler::flush`]) are reported incomplete.

use std::collections::{BTreeMap, HashSet, VecDeque};

use std::sync::{Arc, Mutex};

use thiserror::Error;

use super::decoder::{decode_items, DecodeError, ItemExtent, ItemSpan, PacketInfo};
use super::descriptor::{Descriptor, DescriptorError};
use super::flavour::{item_id, Flavour, StreamControl};

/// Bounds on what a reassembler holds at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblerConfig {
    /// Heaps under reassembly at once; the oldest is evicted (incomplete)
    /// when a packet of a new heap arrives and this many are live.
    pub max_heaps: usize,
    /// Largest heap payload accepted, in bytes.
    pub max_heap_size: u64,
    /// Total payload bytes of live heaps.
    pub max_memory: u64,
    /// Item pointers per heap.
    pub max_pointers: usize,
}

impl Default for ReassemblerConfig {
    /// spead2's receiver default of 4 live heaps; heaps up to 256 MiB, 1 GiB
    /// in all, 65536 pointers a heap.
    fn default() -> Self {
        ReassemblerConfig {
            max_heaps: 4,
            max_heap_size: 256 << 20,
            max_memory: 1 << 30,
            max_pointers: 1 << 16,
        }
    }
}

/// Why a packet was not taken into a heap.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReassemblyError {
    /// The packet itself is malformed.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The heap is larger than allowed.
    #[error("heap {cnt} of {heap_length} bytes exceeds the {max} byte limit")]
    HeapTooLarge {
        /// Heap cnt.
        cnt: u64,
        /// Declared heap length.
        heap_length: u64,
        /// Limit.
        max: u64,
    },
    /// Packets of one heap disagree on its length or flavour.
    #[error("packet of heap {cnt} disagrees with earlier packets on heap length or flavour")]
    Inconsistent {
        /// Heap cnt.
        cnt: u64,
    },
    /// The payload overlaps data already received at other offsets.
    #[error("payload {offset}..{end} of heap {cnt} partly overlaps data already received")]
    Overlap {
        /// Heap cnt.
        cnt: u64,
        /// Payload offset.
        offset: u64,
        /// Payload end.
        end: u64,
    },
    /// The heap has more pointers than allowed.
    #[error("heap {cnt} has more than {max} item pointers")]
    TooManyPointers {
        /// Heap cnt.
        cnt: u64,
        /// Limit.
        max: usize,
    },
    /// A complete heap whose items do not resolve; it is dropped.
    #[error("heap {cnt} is complete but malformed")]
    MalformedHeap {
        /// Heap cnt.
        cnt: u64,
        /// What is wrong.
        source: DecodeError,
    },
}

/// Counters since the reassembler was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReassemblyStats {
    /// Packets offered.
    pub packets: u64,
    /// Payload bytes taken into heaps.
    pub payload_bytes: u64,
    /// Packets rejected with an error.
    pub malformed: u64,
    /// Packets whose payload was already received (ignored).
    pub duplicates: u64,
    /// Heaps delivered complete.
    pub heaps_complete: u64,
    /// Heaps delivered incomplete (evicted or flushed).
    pub heaps_incomplete: u64,
}

/// A heap under reassembly.
#[derive(Debug)]
struct PartialHeap {
    cnt: u64,
    flavour: Flavour,
    heap_length: u64,
    /// The payload received so far, up to the end of the furthest packet
    /// (gaps before it zero until filled); capacity for the whole heap
    /// from the start. Packets in order only append: nothing is zeroed
    /// that a packet then overwrites.
    payload: Payload,
    received: u64,
    /// Received payload ranges, merged: start -> end.
    ranges: BTreeMap<u64, u64>,
    /// Pointers keyed by (payload offset of their packet, position), so the
    /// sender's order is recovered whatever the arrival order.
    pointers: Vec<(u64, usize, u64)>,
    seen_pointers: HashSet<u64>,
}

impl PartialHeap {
    /// Records `offset..end` as received. `Ok(false)` for a duplicate.
    fn claim(&mut self, offset: u64, end: u64) -> Result<bool, ReassemblyError> {
        if offset == end {
            return Ok(true);
        }
        // In order: it starts where the furthest range so far ends.
        if let Some(mut last) = self.ranges.last_entry() {
            if *last.get() == offset {
                *last.get_mut() = end;
                return Ok(true);
            }
        }
        let before = self.ranges.range(..=offset).next_back().map(|(s, e)| (*s, *e));
        if let Some((_, e)) = before {
            if e >= end {
                return Ok(false);
            }
            if e > offset {
                return Err(self.overlap(offset, end));
            }
        }
        let after = self.ranges.range(offset + 1..).next().map(|(s, e)| (*s, *e));
        if let Some((s, _)) = after {
            if s < end {
                return Err(self.overlap(offset, end));
            }
        }
        // Merge with touching neighbours to keep the map small.
        let mut start = offset;
        let mut stop = end;
        if let Some((s, e)) = before.filter(|(_, e)| *e == offset) {
            self.ranges.remove(&s);
            start = s;
            debug_assert_eq!(e, offset);
        }
        if let Some((s, e)) = after.filter(|(s, _)| *s == end) {
            self.ranges.remove(&s);
            stop = e;
        }
        self.ranges.insert(start, stop);
        Ok(true)
    }

    fn overlap(&self, offset: u64, end: u64) -> ReassemblyError {
        ReassemblyError::Overlap {
            cnt: self.cnt,
            offset,
            end,
        }
    }

    fn into_heap(mut self, complete: bool) -> Result<ReceivedHeap, ReassemblyError> {
        // Zeros where packets never came (incomplete heaps).
        self.payload.bytes.resize(self.heap_length as usize, 0);
        self.pointers
            .sort_unstable_by_key(|(offset, position, _)| (*offset, *position));
        let flavour = self.flavour;
        let pointers = self
            .pointers
            .iter()
            .map(|(_, _, raw)| flavour.decode_pointer(*raw));
        let items = if complete {
            decode_items(pointers, &self.payload.bytes).map_err(|source| ReassemblyError::MalformedHeap {
                cnt: self.cnt,
                source,
            })?
        } else {
            pointers
                .filter(|p| p.immediate)
                .map(|p| ItemSpan {
                    id: p.id,
                    extent: ItemExtent::Immediate(p.value),
                })
                .collect()
        };
        Ok(ReceivedHeap {
            cnt: self.cnt,
            flavour,
            complete,
            heap_length: self.heap_length,
            received_bytes: self.received,
            payload: self.payload,
            items,
        })
    }
}

/// Writes `data` at `offset` of `payload`, growing it as needed: appended
/// when it follows what is there (packets in order), zero-filled up to it
/// when it lies beyond, copied in place when it fills a gap.
fn write_at(payload: &mut Vec<u8>, offset: usize, data: &[u8]) {
    if payload.len() < offset {
        payload.resize(offset, 0);
    }
    let inside = (payload.len() - offset).min(data.len());
    payload[offset..offset + inside].copy_from_slice(&data[..inside]);
    payload.extend_from_slice(&data[inside..]);
}

/// Payload buffers of delivered heaps, back from wherever the heaps were
/// dropped and reused for new heaps, so that a heap does not cost fresh
/// pages (allocations this size are mapped anew each time, and every page
/// faults and is cleared on first touch). Locked once per heap, never per
/// packet.
#[derive(Debug, Clone)]
struct BufferPool(Arc<Mutex<Spares>>);

#[derive(Debug)]
struct Spares {
    buffers: Vec<Vec<u8>>,
    bytes: usize,
    /// Most bytes of spares kept; more are freed.
    budget: usize,
}

impl BufferPool {
    /// Spare buffers kept at most.
    const MAX_SPARES: usize = 128;

    fn new(budget: usize) -> Self {
        BufferPool(Arc::new(Mutex::new(Spares {
            buffers: Vec::with_capacity(Self::MAX_SPARES),
            bytes: 0,
            budget,
        })))
    }

    fn spares(&self) -> std::sync::MutexGuard<'_, Spares> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An empty buffer with room for `len` bytes: a spare of between `len`
    /// and twice `len` bytes where there is one (so a small heap does not
    /// hold a large buffer, nor a large one grow a small one), else a new
    /// one of exactly `len`.
    fn take(&self, len: usize) -> Payload {
        let spare = {
            let mut spares = self.spares();
            let fitting = spares
                .buffers
                .iter()
                .rposition(|b| (len..=len.saturating_mul(2)).contains(&b.capacity()));
            let spare = fitting.map(|k| spares.buffers.swap_remove(k));
            spares.bytes -= spare.as_ref().map_or(0, Vec::capacity);
            spare
        };
        let mut bytes = spare.unwrap_or_else(|| Vec::with_capacity(len));
        bytes.clear();
        Payload {
            bytes,
            pool: Some(self.clone()),
        }
    }

    /// Keeps `buffer` as a spare, or frees it when the pool is full.
    fn give_back(&self, buffer: Vec<u8>) {
        let mut spares = self.spares();
        if spares.buffers.len() < Self::MAX_SPARES && spares.bytes + buffer.capacity() <= spares.budget {
            spares.bytes += buffer.capacity();
            spares.buffers.push(buffer);
        }
    }
}

/// A heap's payload bytes, returned to their pool when dropped.
#[derive(Debug)]
struct Payload {
    bytes: Vec<u8>,
    pool: Option<BufferPool>,
}

impl Clone for Payload {
    /// A copy of the bytes, belonging to no pool.
    fn clone(&self) -> Self {
        Payload {
            bytes: self.bytes.clone(),
            pool: None,
        }
    }
}

impl Drop for Payload {
    fn drop(&mut self) {
        if let Some(pool) = &self.pool {
            pool.give_back(std::mem::take(&mut self.bytes));
        }
    }
}

/// Reassembles heaps from packets.
#[derive(Debug)]
pub struct Reassembler {
    config: ReassemblerConfig,
    pool: BufferPool,
    live: VecDeque<PartialHeap>,
    ready: VecDeque<ReceivedHeap>,
    /// Recently completed cnts, so that a late duplicate packet does not
    /// start a new heap. Short (a few heaps' worth) and cleared when a stop
    /// heap completes, so a restarted sender's reused cnts are new heaps.
    recent: VecDeque<u64>,
    /// A stop heap completed since the last flush.
    stopped: bool,
    memory: u64,
    stats: ReassemblyStats,
}

impl Default for Reassembler {
    fn default() -> Self {
        Self::new(ReassemblerConfig::default())
    }
}

impl Reassembler {
    /// A reassembler with the given bounds (each at least 1).
    pub fn new(config: ReassemblerConfig) -> Self {
        let config = ReassemblerConfig {
            max_heaps: config.max_heaps.max(1),
            max_pointers: config.max_pointers.max(1),
            ..config
        };
        Reassembler {
            config,
            pool: BufferPool::new((config.max_memory / 4) as usize),
            live: VecDeque::with_capacity(config.max_heaps),
            ready: VecDeque::new(),
            recent: VecDeque::with_capacity(config.max_heaps * Self::RECENT_PER_HEAP),
            stopped: false,
            memory: 0,
            stats: ReassemblyStats::default(),
        }
    }

    /// Completed cnts remembered per live heap slot.
    const RECENT_PER_HEAP: usize = 4;

    /// Counters so far.
    pub fn stats(&self) -> ReassemblyStats {
        self.stats
    }

    /// Takes one packet (a UDP payload). Errors name what is wrong; the
    /// packet is then not used, and the reassembler stays usable.
    pub fn add_packet(&mut self, bytes: &[u8]) -> Result<(), ReassemblyError> {
        self.stats.packets += 1;
        let result = self.take(bytes);
        if result.is_err() {
            self.stats.malformed += 1;
        }
        result
    }

    fn take(&mut self, bytes: &[u8]) -> Result<(), ReassemblyError> {
        let packet = PacketInfo::parse(bytes)?;
        let cnt = packet.heap_cnt;
        let index = match self.live.iter().position(|h| h.cnt == cnt) {
            Some(i) => {
                let heap = &self.live[i];
                if heap.heap_length != packet.heap_length || heap.flavour != packet.flavour {
                    return Err(ReassemblyError::Inconsistent { cnt });
                }
                i
            }
            None if self.recent.contains(&cnt) => {
                self.stats.duplicates += 1;
                return Ok(());
            }
            None => self.start_heap(&packet)?,
        };
        let max_pointers = self.config.max_pointers;
        let heap = &mut self.live[index];
        let offset = packet.payload_offset;
        let end = offset + packet.payload_length;
        if !heap.claim(offset, end)? {
            self.stats.duplicates += 1;
            return Ok(());
        }
        for (position, raw) in packet.raw_pointers().enumerate() {
            let id = heap.flavour.decode_pointer(raw).id;
            if (item_id::HEAP_CNT..=item_id::PAYLOAD_LENGTH).contains(&id) || !heap.seen_pointers.insert(raw)
            {
                continue;
            }
            if heap.pointers.len() == max_pointers {
                return Err(ReassemblyError::TooManyPointers {
                    cnt,
                    max: max_pointers,
                });
            }
            heap.pointers.push((offset, position, raw));
        }
        write_at(&mut heap.payload.bytes, offset as usize, packet.payload());
        heap.received += packet.payload_length;
        self.stats.payload_bytes += packet.payload_length;
        if heap.received == heap.heap_length {
            let heap = self.live.remove(index).expect("index of a live heap");
            self.memory -= heap.heap_length;
            let heap = heap.into_heap(true)?;
            if heap.stream_control() == Some(StreamControl::Stop) {
                self.recent.clear();
                self.stopped = true;
            } else {
                if self.recent.len() == self.config.max_heaps * Self::RECENT_PER_HEAP {
                    self.recent.pop_front();
                }
                self.recent.push_back(cnt);
            }
            self.stats.heaps_complete += 1;
            self.ready.push_back(heap);
        }
        Ok(())
    }

    /// Starts a heap for `packet`, evicting the oldest live heaps as the
    /// bounds require, and returns its index.
    fn start_heap(&mut self, packet: &PacketInfo<'_>) -> Result<usize, ReassemblyError> {
        let heap_length = packet.heap_length;
        let max = self.config.max_heap_size.min(self.config.max_memory);
        if heap_length > max {
            return Err(ReassemblyError::HeapTooLarge {
                cnt: packet.heap_cnt,
                heap_length,
                max,
            });
        }
        while self.live.len() >= self.config.max_heaps || self.memory + heap_length > self.config.max_memory {
            self.evict_oldest();
        }
        self.memory += heap_length;
        self.live.push_back(PartialHeap {
            cnt: packet.heap_cnt,
            flavour: packet.flavour,
            heap_length,
            payload: self.pool.take(heap_length as usize),
            received: 0,
            ranges: BTreeMap::new(),
            pointers: Vec::new(),
            seen_pointers: HashSet::new(),
        });
        Ok(self.live.len() - 1)
    }

    fn evict_oldest(&mut self) {
        if let Some(heap) = self.live.pop_front() {
            self.memory -= heap.heap_length;
            self.stats.heaps_incomplete += 1;
            self.ready.push_back(
                heap.into_heap(false)
                    .expect("incomplete heaps decode only immediates"),
            );
        }
    }

    /// The next heap delivered (complete or evicted), in delivery order.
    pub fn next_heap(&mut self) -> Option<ReceivedHeap> {
        self.ready.pop_front()
    }

    /// Delivers every live heap as incomplete (at the end of a stream) and
    /// forgets completed cnts.
    pub fn flush(&mut self) {
        while !self.live.is_empty() {
            self.evict_oldest();
        }
        self.recent.clear();
        self.stopped = false;
    }

    /// Whether a stop heap has completed since the last
    /// [`flush`](Self::flush): packets after it belong to no stream.
    pub fn stopped(&self) -> bool {
        self.stopped
    }
}

/// A heap as received.
#[derive(Debug, Clone)]
pub struct ReceivedHeap {
    cnt: u64,
    flavour: Flavour,
    complete: bool,
    heap_length: u64,
    received_bytes: u64,
    payload: Payload,
    items: Vec<ItemSpan>,
}

impl ReceivedHeap {
    /// Heap counter.
    pub fn cnt(&self) -> u64 {
        self.cnt
    }

    /// Flavour of the heap's packets.
    pub fn flavour(&self) -> Flavour {
        self.flavour
    }

    /// Whether every payload byte arrived.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Heap payload length (item 0x2).
    pub fn heap_length(&self) -> u64 {
        self.heap_length
    }

    /// Payload bytes that arrived.
    pub fn received_bytes(&self) -> u64 {
        self.received_bytes
    }

    /// Every item in the sender's order, descriptors and stream control
    /// included. An incomplete heap lists only its immediates.
    pub fn all_items(&self) -> impl Iterator<Item = ReceivedItem<'_>> {
        let size = self.flavour.immediate_size();
        self.items.iter().map(move |span| ReceivedItem {
            id: span.id,
            data: match &span.extent {
                ItemExtent::Immediate(value) => ItemData::Immediate {
                    word: value.to_be_bytes(),
                    size,
                },
                ItemExtent::Payload(range) => ItemData::Payload(&self.payload.bytes[range.clone()]),
            },
        })
    }

    /// The heap's user items (not descriptors or stream control).
    pub fn items(&self) -> impl Iterator<Item = ReceivedItem<'_>> {
        self.all_items()
            .filter(|i| i.id != item_id::DESCRIPTOR && i.id != item_id::STREAM_CTRL)
    }

    /// The item with this ID, if present.
    pub fn item(&self, id: u64) -> Option<ReceivedItem<'_>> {
        self.all_items().find(|i| i.id == id)
    }

    /// The descriptors the heap carries, decoded.
    pub fn descriptors(&self) -> Result<Vec<Descriptor>, DescriptorError> {
        self.all_items()
            .filter(|i| i.id == item_id::DESCRIPTOR)
            .map(|i| Descriptor::decode(i.value()))
            .collect()
    }

    /// Whether the heap carries descriptors.
    pub fn has_descriptors(&self) -> bool {
        self.all_items().any(|i| i.id == item_id::DESCRIPTOR)
    }

    /// The stream control value, if the heap carries one SPEAD defines.
    pub fn stream_control(&self) -> Option<StreamControl> {
        self.item(item_id::STREAM_CTRL)
            .and_then(|i| i.as_u64())
            .and_then(StreamControl::from_value)
    }
}

/// An item of a received heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceivedItem<'a> {
    id: u64,
    data: ItemData<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ItemData<'a> {
    Immediate { word: [u8; 8], size: usize },
    Payload(&'a [u8]),
}

impl ReceivedItem<'_> {
    /// Item ID.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether it arrived as an immediate.
    pub fn is_immediate(&self) -> bool {
        matches!(self.data, ItemData::Immediate { .. })
    }

    /// The value's bytes: for an immediate, the `heap_address_bits / 8`
    /// bytes of its field, big-endian, as spead2 presents them.
    pub fn value(&self) -> &[u8] {
        match &self.data {
            ItemData::Immediate { word, size } => &word[8 - size..],
            ItemData::Payload(bytes) => bytes,
        }
    }

    /// The value as a big-endian unsigned integer, if at most 8 bytes.
    pub fn as_u64(&self) -> Option<u64> {
        let bytes = self.value();
        (bytes.len() <= 8).then(|| bytes.iter().fold(0, |acc, b| (acc << 8) | u64::from(*b)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::heap::{Heap, Item};
    use crate::protocol::packetizer::PacketSizing;

    fn packets(heap: &Heap<'_>, cnt: u64, size: usize) -> Vec<Vec<u8>> {
        PacketSizing::new(size)
            .unwrap()
            .packets(heap, cnt)
            .unwrap()
            .collect()
    }

    fn sample_heap(data: &[u8]) -> Heap<'_> {
        let mut heap = Heap::new(Flavour::SPEAD_64_48);
        heap.add(Item::new(0x1000, data)).unwrap();
        heap.add(Item::immediate(0x1001, 99)).unwrap();
        heap.add(Item::new(0x1002, &b"ab"[..]).allow_immediate(true))
            .unwrap();
        heap
    }

    #[test]
    fn reversed_packets_reassemble() {
        let data: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let heap = sample_heap(&data);
        let mut r = Reassembler::default();
        for p in packets(&heap, 7, 1000).iter().rev() {
            r.add_packet(p).unwrap();
        }
        let got = r.next_heap().unwrap();
        assert!(got.is_complete());
        assert_eq!(got.cnt(), 7);
        let items: Vec<_> = got.items().map(|i| (i.id(), i.value().to_vec())).collect();
        assert_eq!(
            items,
            [
                (0x1000, data.clone()),
                (0x1001, vec![0, 0, 0, 0, 0, 99]),
                (0x1002, vec![0, 0, 0, 0, b'a', b'b']),
            ]
        );
        assert_eq!(r.stats().heaps_complete, 1);
    }

    #[test]
    fn duplicates_are_counted_and_ignored() {
        let data = vec![5u8; 3000];
        let heap = sample_heap(&data);
        let ps = packets(&heap, 1, 1000);
        let mut r = Reassembler::default();
        r.add_packet(&ps[0]).unwrap();
        r.add_packet(&ps[0]).unwrap();
        for p in &ps[1..] {
            r.add_packet(p).unwrap();
        }
        r.add_packet(&ps[1]).unwrap(); // after completion
        assert_eq!(r.stats().duplicates, 2);
        assert!(r.next_heap().unwrap().is_complete());
        assert!(r.next_heap().is_none());
    }

    #[test]
    fn in_order_gaps_and_repeats_of_the_furthest_packet_reassemble_exactly() {
        let data: Vec<u8> = (0..6000u32).map(|i| (i % 251) as u8).collect();
        let heap = sample_heap(&data);
        let ps = packets(&heap, 1, 1000);
        assert!(ps.len() >= 6);
        let mut r = Reassembler::default();
        // In order, the furthest repeated, a gap, the rest, the gap filled.
        let order = [0, 1, 1, 3, 4, 4];
        for &k in &order {
            r.add_packet(&ps[k]).unwrap();
        }
        for p in &ps[5..] {
            r.add_packet(p).unwrap();
        }
        assert!(r.next_heap().is_none(), "complete before packet 2");
        r.add_packet(&ps[2]).unwrap();
        assert_eq!(r.stats().duplicates, 2);
        let got = r.next_heap().unwrap();
        assert!(got.is_complete());
        assert_eq!(got.item(0x1000).unwrap().value(), &data[..]);
    }

    #[test]
    fn payload_buffers_come_back_and_fit_the_heap_they_serve() {
        let mut r = Reassembler::default();
        for (cnt, len) in [(1u64, 100_000usize), (2, 3000), (3, 100_000), (4, 3000)] {
            let data = vec![cnt as u8; len];
            let heap = sample_heap(&data);
            for p in packets(&heap, cnt, 1472) {
                r.add_packet(&p).unwrap();
            }
            let got = r.next_heap().unwrap();
            assert!(got.is_complete());
            assert_eq!(got.item(0x1000).unwrap().value(), &data[..]);
            let copy = got.clone();
            drop(got);
            // A clone is the heap's own bytes, outliving the original.
            assert_eq!(copy.item(0x1000).unwrap().value(), &data[..]);
        }
        let spares = r.pool.spares();
        assert!(spares.buffers.len() <= 2, "{} spares", spares.buffers.len());
        assert!(spares.buffers.iter().all(|b| b.capacity() < 2 * 100_000 + 4096));
    }

    #[test]
    fn a_restarted_sender_reusing_cnts_is_heard() {
        let data = vec![3u8; 100];
        let heap = sample_heap(&data);
        let mut end = Heap::new(Flavour::SPEAD_64_48);
        end.add_end().unwrap();
        let mut r = Reassembler::default();
        for _run in 0..2 {
            for cnt in 1..=3 {
                for p in packets(&heap, cnt, 1000) {
                    r.add_packet(&p).unwrap();
                }
            }
            for p in packets(&end, 4, 1000) {
                r.add_packet(&p).unwrap();
            }
        }
        let stats = r.stats();
        assert_eq!((stats.heaps_complete, stats.duplicates), (8, 0));
    }

    #[test]
    fn lost_packets_give_incomplete_heaps_on_eviction() {
        let data = vec![1u8; 3000];
        let heap = sample_heap(&data);
        let mut r = Reassembler::new(ReassemblerConfig {
            max_heaps: 2,
            ..Default::default()
        });
        for cnt in 1..=3 {
            let ps = packets(&heap, cnt, 1000);
            r.add_packet(&ps[0]).unwrap();
        }
        let evicted = r.next_heap().unwrap();
        assert_eq!((evicted.cnt(), evicted.is_complete()), (1, false));
        assert_eq!(evicted.items().count(), 2, "immediates survive");
        r.flush();
        assert_eq!(r.stats().heaps_incomplete, 3);
    }

    #[test]
    fn bounds_and_overlaps_are_errors() {
        let data = vec![1u8; 3000];
        let heap = sample_heap(&data);
        let ps = packets(&heap, 1, 1000);
        let mut r = Reassembler::new(ReassemblerConfig {
            max_heap_size: 100,
            ..Default::default()
        });
        assert!(matches!(
            r.add_packet(&ps[0]),
            Err(ReassemblyError::HeapTooLarge { .. })
        ));
        let mut r = Reassembler::default();
        r.add_packet(&ps[1]).unwrap();
        // Shift the next packet's offset by 8 so it overlaps.
        let mut shifted = ps[2].clone();
        let flavour = Flavour::SPEAD_64_48;
        let info = PacketInfo::parse(&ps[2]).unwrap();
        let word = flavour.immediate(3, info.payload_offset - 8).to_be_bytes();
        shifted[24..32].copy_from_slice(&word);
        assert!(matches!(
            r.add_packet(&shifted),
            Err(ReassemblyError::Overlap { .. })
        ));
        assert!(matches!(
            r.add_packet(&[0x53, 4]),
            Err(ReassemblyError::Decode(_))
        ));
        assert_eq!(r.stats().malformed, 2);
    }
}
