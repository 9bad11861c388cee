//! The packetizer: turns a heap into exactly the packets spead2 emits, written
//! into caller-provided frame buffers. Pointer words are computed once per
//! heap; per packet only the offset, length and pointer count change, and the
//! payload is copied once from the items' own memory. No allocation per
//! packet.
//!
//! One deliberate difference from spead2 4.5.1: when a heap's real payload is
//! non-empty but too small for its pointers and must be padded, spead2 places
//! the padding zeros before the real bytes of that packet (so receivers read
//! zeros for the item). We put the real bytes first, which is what the
//! pointers say. No other heap is affected.

use arrayvec::ArrayVec;
use thiserror::Error;

use super::flavour::{item_id, POINTER_SIZE};
use super::heap::{Heap, Item, Piece};
use super::wire::Packet;

/// The pointers every packet carries before its items' (heap cnt, heap
/// length, payload offset, payload length).
const BOOKKEEPING_POINTERS: usize = 4;

/// Header word plus the four bookkeeping pointers every packet carries.
pub const PREFIX_LEN: usize = POINTER_SIZE * (1 + BOOKKEEPING_POINTERS);

/// The smallest usable packet: the prefix, one pointer and 8 payload bytes.
pub const MIN_PACKET_SIZE: usize = PREFIX_LEN + 2 * POINTER_SIZE;

/// Most payload pieces one packet references.
pub const MAX_PARTS: usize = 4;

/// A packet as its first bytes, written into the sender's frame, and the
/// payload pieces that follow them, by reference to the items' memory, so
/// a transport can send the payload without copying it (or copy it, with
/// [`write_payload`](Self::write_payload)).
#[derive(Debug, Clone, Default)]
pub struct PacketPieces<'a> {
    written: usize,
    pieces: ArrayVec<Piece<'a>, MAX_PARTS>,
}

impl<'a> PacketPieces<'a> {
    /// A packet whose first `written` bytes are in the buffer, with no
    /// pieces yet.
    pub fn new(written: usize) -> Self {
        PacketPieces {
            written,
            pieces: ArrayVec::new(),
        }
    }

    /// Adds a piece after the bytes written; `Err` (handing it back) when
    /// [`MAX_PARTS`] pieces are there already.
    pub fn push(&mut self, piece: impl Into<Piece<'a>>) -> Result<(), Piece<'a>> {
        self.pieces.try_push(piece.into()).map_err(|e| e.element())
    }

    /// Bytes written into the buffer.
    pub fn written(&self) -> usize {
        self.written
    }

    /// The pieces, in order.
    pub fn pieces(&self) -> &[Piece<'a>] {
        &self.pieces
    }

    /// The packet's whole length: bytes written and pieces.
    pub fn len(&self) -> usize {
        // Saturating: a source may state any piece length.
        self.pieces
            .iter()
            .fold(self.written, |total, piece| total.saturating_add(piece.len()))
    }

    /// Whether the packet has no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies the pieces behind the bytes written in `frame` (which must
    /// hold the whole packet), making the whole packet there.
    pub fn write_payload(&self, frame: &mut [u8]) {
        let mut at = self.written;
        for piece in self.pieces() {
            piece.copy_to(&mut frame[at..]);
            at += piece.len();
        }
    }

    /// Forgets any pieces: the packet is its first `written` bytes.
    fn set_whole(&mut self, written: usize) {
        self.pieces.clear();
        self.written = written;
    }
}

/// Why a heap cannot be packetized as asked.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PacketizeError {
    /// The packet size leaves no room for a pointer and payload.
    #[error("max packet size {size} is too small: SPEAD packets need at least {min} bytes")]
    PacketSizeTooSmall {
        /// Requested max packet size.
        size: usize,
        /// Smallest allowed.
        min: usize,
    },
    /// With repeat_pointers, every pointer must fit in one packet.
    #[error("repeat_pointers needs all {items} item pointers in every packet, but a {size}-byte packet holds fewer than {max} besides the mandatory four")]
    RepeatPointersDoNotFit {
        /// Items in the heap.
        items: usize,
        /// Packet size (multiple of 8).
        size: usize,
        /// Pointers a packet holds.
        max: usize,
    },
    /// The heap cnt does not fit the flavour's immediate field.
    #[error("heap cnt {cnt:#x} does not fit {bits} bits")]
    CntTooLarge {
        /// Offending cnt.
        cnt: u64,
        /// Heap address bits.
        bits: u32,
    },
    /// The caller's frame cannot hold the next packet.
    #[error("frame of {available} bytes cannot hold the next {needed}-byte packet")]
    FrameTooSmall {
        /// Bytes the packet needs.
        needed: usize,
        /// Bytes the frame has.
        available: usize,
    },
}

/// Packet sizing for a stream (its packetizer's settings): the max packet
/// size rounded down to a multiple of 8, and the item pointers a packet can
/// carry. [`packets`](Self::packets) plans a heap's packets at this sizing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketSizing {
    max_packet_size: usize,
    max_pointers: usize,
}

impl PacketSizing {
    /// Sizing for `max_packet_size` bytes of SPEAD packet (UDP payload).
    pub fn new(max_packet_size: usize) -> Result<Self, PacketizeError> {
        let rounded = max_packet_size & !(POINTER_SIZE - 1);
        if rounded < MIN_PACKET_SIZE {
            return Err(PacketizeError::PacketSizeTooSmall {
                size: max_packet_size,
                min: MIN_PACKET_SIZE,
            });
        }
        // The header's item count is 16 bits, the four bookkeeping
        // pointers included.
        let max_pointers = (rounded - PREFIX_LEN - POINTER_SIZE) / POINTER_SIZE;
        Ok(PacketSizing {
            max_packet_size: rounded,
            max_pointers: max_pointers.min(usize::from(u16::MAX) - BOOKKEEPING_POINTERS),
        })
    }

    /// The usable packet size (a multiple of 8).
    pub fn max_packet_size(&self) -> usize {
        self.max_packet_size
    }

    /// Item pointers a packet carries besides the mandatory four.
    pub fn max_pointers(&self) -> usize {
        self.max_pointers
    }

    /// Payload bytes a packet carrying `max_pointers` item pointers has
    /// room for.
    fn full_packet_room(&self) -> usize {
        self.max_packet_size - PREFIX_LEN - self.max_pointers * POINTER_SIZE
    }

    /// Plans the packets of `heap` with heap counter `cnt`.
    pub fn packets<'p, 'h>(&self, heap: &'p Heap<'h>, cnt: u64) -> Result<HeapPackets<'p>, PacketizeError> {
        HeapPackets::new(*self, heap, cnt)
    }
}

/// The packets of one heap, written one at a time into frames.
#[derive(Debug, Clone)]
pub struct HeapPackets<'p> {
    items: &'p [Item<'p>],
    cursor: HeapCursor,
}

impl<'p> HeapPackets<'p> {
    fn new(sizing: PacketSizing, heap: &'p Heap<'_>, cnt: u64) -> Result<Self, PacketizeError> {
        Ok(HeapPackets {
            items: heap.items(),
            cursor: HeapCursor::new(sizing, heap, cnt)?,
        })
    }

    /// Packets still to write.
    pub fn remaining(&self) -> usize {
        self.cursor.remaining()
    }

    /// Whether every packet has been written.
    pub fn is_done(&self) -> bool {
        self.cursor.is_done()
    }

    /// The heap's payload size on the wire (item 0x2), padding included.
    pub fn heap_length(&self) -> u64 {
        self.cursor.payload_size
    }

    /// Length of the next packet, if any.
    pub fn next_packet_len(&self) -> Option<usize> {
        self.cursor.next_packet_len()
    }

    /// Writes the next packet at the start of `frame` (slice the frame past
    /// any Ethernet/IP/UDP headers first) and returns its length, or `None`
    /// when the heap is done.
    pub fn write_next(&mut self, frame: &mut [u8]) -> Result<Option<usize>, PacketizeError> {
        self.cursor.write_next(self.items, frame)
    }

    /// Writes the next packet's header and item pointers at the start of
    /// `frame` and returns them with the packet's payload as references into
    /// the items' memory, moving on as [`write_next`](Self::write_next)
    /// would; `None` when the heap is done. A packet that cannot go by
    /// reference (padded, or with payload from more than [`MAX_PARTS`]
    /// items) is written whole, for which `frame` must hold it.
    pub fn next_packet_parts(
        &mut self,
        frame: &mut [u8],
    ) -> Result<Option<PacketPieces<'p>>, PacketizeError> {
        let mut packet = PacketPieces::default();
        Ok(self
            .cursor
            .write_parts(self.items, frame, &mut packet)?
            .then_some(packet))
    }

    /// Passes over the next packet without writing it (when several
    /// workers share a heap, each sends every Nth packet). Returns its
    /// length, or `None` when the heap is done.
    pub fn skip_next(&mut self) -> Option<usize> {
        self.cursor.skip_next()
    }
}

/// Where a heap's packetizing stands, as indices: the words computed once
/// per heap and how far the packets have got. It holds no borrow of the
/// heap, so a sender can keep it beside the heap it came from and resume
/// it batch after batch; every call that reads payload takes that heap's
/// items. Given other items, it writes their bytes (or zeros where they
/// run short): wrong packets, never out-of-bounds access.
#[derive(Debug, Clone)]
pub(crate) struct HeapCursor {
    sizing: PacketSizing,
    repeat_pointers: bool,
    /// Big-endian item pointer words (null item included), computed once.
    pointer_words: Vec<u8>,
    /// The items whose values make the payload, in order: index, length.
    segments: Vec<(usize, usize)>,
    /// The header word announcing no item pointers, to which a packet's
    /// own count is added.
    header_word: u64,
    cnt_word: u64,
    heap_length_word: u64,
    /// The payload offset and length pointers with a zero value, to which a
    /// packet's own is added (an immediate is its id's bits OR the value).
    offset_word: u64,
    length_word: u64,
    /// Payload size including padding.
    payload_size: u64,
    payload_offset: u64,
    next_pointer: usize,
    next_segment: usize,
    segment_offset: usize,
    packets_left: usize,
    /// The next packet's item pointers and payload bytes (planned once a
    /// packet, by [`plan_next`](Self::plan_next)).
    next: (usize, usize),
}

impl HeapCursor {
    /// The first packet of `heap` with heap counter `cnt`.
    pub(crate) fn new(sizing: PacketSizing, heap: &Heap<'_>, cnt: u64) -> Result<Self, PacketizeError> {
        let flavour = heap.flavour();
        if cnt > flavour.max_value() {
            return Err(PacketizeError::CntTooLarge {
                cnt,
                bits: flavour.heap_address_bits(),
            });
        }
        let items = heap.items();
        // spead2's rule: this many packets might be needed for the pointers
        // (one more than strictly needed when they fill a packet exactly,
        // leaving room for a null pointer).
        let item_packets = items.len() / sizing.max_pointers + 1;
        if heap.repeat_pointers() && item_packets > 1 {
            return Err(PacketizeError::RepeatPointersDoNotFit {
                items: items.len(),
                size: sizing.max_packet_size,
                max: sizing.max_pointers,
            });
        }
        let mut pointer_words = Vec::with_capacity((items.len() + 1) * POINTER_SIZE);
        let mut segments = Vec::new();
        let mut address = 0u64;
        for (index, item) in items.iter().enumerate() {
            let word = match item.immediate_value(flavour) {
                Some(value) => flavour.immediate(item.id(), value),
                None => {
                    let len = item.value().len();
                    let word = flavour.address(item.id(), address);
                    address += len as u64;
                    if len > 0 {
                        segments.push((index, len));
                    }
                    word
                }
            };
            pointer_words.extend_from_slice(&word.to_be_bytes());
        }
        // Every packet must carry payload, so that packets can be ordered and
        // losses seen: pad a too-small payload and mark the end of the real
        // data with a null pointer.
        // (A packet full of pointers has room for 8 bytes of payload, as in
        // spead2, or more where the header's 16-bit count caps them.)
        let min_payload = ((item_packets - 1) * sizing.full_packet_room() + 1) as u64;
        let payload_size = address.max(min_payload);
        if address < min_payload {
            pointer_words.extend_from_slice(&flavour.address(item_id::NULL, address).to_be_bytes());
        }
        let mut cursor = HeapCursor {
            sizing,
            repeat_pointers: heap.repeat_pointers(),
            pointer_words,
            segments,
            header_word: flavour.header_word(0),
            cnt_word: flavour.immediate(item_id::HEAP_CNT, cnt),
            heap_length_word: flavour.immediate(item_id::HEAP_LENGTH, payload_size),
            offset_word: flavour.immediate(item_id::PAYLOAD_OFFSET, 0),
            length_word: flavour.immediate(item_id::PAYLOAD_LENGTH, 0),
            payload_size,
            payload_offset: 0,
            next_pointer: 0,
            next_segment: 0,
            segment_offset: 0,
            packets_left: 0,
            next: (0, 0),
        };
        cursor.packets_left = cursor.count_packets();
        cursor.plan_next();
        Ok(cursor)
    }

    fn n_pointers(&self) -> usize {
        self.pointer_words.len() / POINTER_SIZE
    }

    /// Pointers and payload bytes of the packet after `pointers_sent`
    /// pointers and `offset` payload bytes.
    #[inline]
    fn packet_shape(&self, pointers_sent: usize, offset: u64) -> (usize, usize) {
        let pending = if self.repeat_pointers {
            self.n_pointers()
        } else {
            self.n_pointers() - pointers_sent
        };
        let n_pointers = pending.min(self.sizing.max_pointers);
        let room = self.sizing.max_packet_size - PREFIX_LEN - n_pointers * POINTER_SIZE;
        let payload = (self.payload_size - offset).min(room as u64) as usize;
        (n_pointers, payload)
    }

    /// Plans the next packet's pointers and payload bytes, once the last
    /// has moved the cursor on.
    #[inline]
    fn plan_next(&mut self) {
        if self.repeat_pointers {
            self.next_pointer = 0;
        }
        self.next = if self.is_done() {
            (0, 0)
        } else {
            self.packet_shape(self.next_pointer, self.payload_offset)
        };
    }

    /// Moves past the next packet's pointers and payload, to the item
    /// segment and offset its payload ends at.
    #[inline]
    fn move_on(&mut self, segment: usize, segment_offset: usize) {
        let (n_pointers, payload_len) = self.next;
        self.next_pointer += n_pointers;
        self.payload_offset += payload_len as u64;
        self.packets_left -= 1;
        self.next_segment = segment;
        self.segment_offset = segment_offset;
        self.plan_next();
    }

    fn count_packets(&self) -> usize {
        let (mut pointers, mut offset, mut count) = (0, 0, 0);
        // Packets that still carry new pointers: few, so walk them.
        while offset < self.payload_size && (pointers < self.n_pointers() || self.repeat_pointers) {
            let (n, payload) = self.packet_shape(pointers, offset);
            if self.repeat_pointers {
                let rest = (self.payload_size - offset).div_ceil(payload as u64);
                return count + rest as usize;
            }
            pointers += n;
            offset += payload as u64;
            count += 1;
        }
        let room = (self.sizing.max_packet_size - PREFIX_LEN) as u64;
        count + (self.payload_size - offset).div_ceil(room) as usize
    }

    /// Packets still to write.
    pub(crate) fn remaining(&self) -> usize {
        self.packets_left
    }

    /// Whether every packet has been written.
    #[inline]
    pub(crate) fn is_done(&self) -> bool {
        self.packets_left == 0
    }

    /// Length of the next packet, if any.
    #[inline]
    pub(crate) fn next_packet_len(&self) -> Option<usize> {
        if self.is_done() {
            return None;
        }
        let (n, payload) = self.next;
        Some(PREFIX_LEN + n * POINTER_SIZE + payload)
    }

    /// [`HeapPackets::write_next`], for the heap whose items are `items`.
    pub(crate) fn write_next(
        &mut self,
        items: &[Item<'_>],
        frame: &mut [u8],
    ) -> Result<Option<usize>, PacketizeError> {
        if self.is_done() {
            return Ok(None);
        }
        let (n_pointers, payload_len) = self.next;
        let pointers_len = n_pointers * POINTER_SIZE;
        let len = PREFIX_LEN + pointers_len + payload_len;
        let available = frame.len();
        let frame = frame.get_mut(..len).ok_or(PacketizeError::FrameTooSmall {
            needed: len,
            available,
        })?;
        let (header, payload) = frame.split_at_mut(PREFIX_LEN + pointers_len);
        self.write_header(header, n_pointers, payload_len);
        self.advance(items, Some(payload));
        Ok(Some(len))
    }

    /// [`HeapPackets::next_packet_parts`], for the heap whose items are
    /// `items`, into `packet`: `false` (`packet` untouched) when the heap
    /// is done. On an error `packet` claims nothing written.
    #[inline]
    pub(crate) fn write_parts<'p>(
        &mut self,
        items: &'p [Item<'_>],
        frame: &mut [u8],
        packet: &mut PacketPieces<'p>,
    ) -> Result<bool, PacketizeError> {
        if self.is_done() {
            return Ok(false);
        }
        let (n_pointers, payload_len) = self.next;
        let header_len = PREFIX_LEN + n_pointers * POINTER_SIZE;
        if frame.len() < header_len {
            packet.set_whole(0);
            return Err(PacketizeError::FrameTooSmall {
                needed: header_len,
                available: frame.len(),
            });
        }
        packet.set_whole(header_len);
        // Collect the pieces, moving the cursor only once they are all
        // there.
        let (mut segment, mut offset, mut left) = (self.next_segment, self.segment_offset, payload_len);
        while left > 0 {
            let Some(&(item, segment_len)) = self.segments.get(segment) else {
                // Padding is written, not referenced.
                return self.write_whole(items, frame, packet);
            };
            let n = (segment_len - offset).min(left);
            // Too many pieces, or not the items this cursor was made from.
            let Some(Ok(())) = item_piece(items, item, offset, n).map(|piece| packet.push(piece)) else {
                return self.write_whole(items, frame, packet);
            };
            left -= n;
            offset += n;
            if offset == segment_len {
                segment += 1;
                offset = 0;
            }
        }
        self.write_header(&mut frame[..header_len], n_pointers, payload_len);
        self.move_on(segment, offset);
        Ok(true)
    }

    /// The next packet written whole into `frame`, as `packet`.
    fn write_whole<'p>(
        &mut self,
        items: &[Item<'_>],
        frame: &mut [u8],
        packet: &mut PacketPieces<'p>,
    ) -> Result<bool, PacketizeError> {
        // Claims nothing written until it is.
        packet.set_whole(0);
        let written = self.write_next(items, frame)?;
        packet.set_whole(written.unwrap_or(0));
        Ok(written.is_some())
    }

    /// [`HeapPackets::skip_next`].
    pub(crate) fn skip_next(&mut self) -> Option<usize> {
        let len = self.next_packet_len()?;
        self.advance(&[], None);
        Some(len)
    }

    /// Writes the header word, the four bookkeeping pointers and the next
    /// `n_pointers` item pointers into `header` (exactly their length).
    #[inline]
    fn write_header(&self, header: &mut [u8], n_pointers: usize, payload_len: usize) {
        let mut packet = Packet::new_unchecked(header);
        packet.set_leading_words([
            self.header_word | (BOOKKEEPING_POINTERS + n_pointers) as u64,
            self.cnt_word,
            self.heap_length_word,
            self.offset_word | self.payload_offset,
            self.length_word | payload_len as u64,
        ]);
        if n_pointers > 0 {
            let first = self.next_pointer * POINTER_SIZE;
            packet.set_encoded_pointers(
                BOOKKEEPING_POINTERS,
                &self.pointer_words[first..first + n_pointers * POINTER_SIZE],
            );
        }
    }

    /// Moves past the next packet, copying its payload from `items` into
    /// `out` if given (then zero padding past the real payload).
    fn advance(&mut self, items: &[Item<'_>], mut out: Option<&mut [u8]>) {
        let (mut segment, mut offset, mut left) = (self.next_segment, self.segment_offset, self.next.1);
        while left > 0 {
            let Some(&(item, segment_len)) = self.segments.get(segment) else {
                if let Some(out) = out {
                    out.fill(0);
                }
                break;
            };
            let n = (segment_len - offset).min(left);
            if let Some(buf) = out {
                let (head, tail) = buf.split_at_mut(n);
                match item_piece(items, item, offset, n) {
                    Some(piece) => piece.copy_to(head),
                    None => head.fill(0),
                }
                out = Some(tail);
            }
            left -= n;
            offset += n;
            if offset == segment_len {
                segment += 1;
                offset = 0;
            }
        }
        self.move_on(segment, offset);
    }
}

/// Bytes `offset..offset + len` of item `item` of `items`, if it has
/// them (given other items than a cursor's, it may not).
#[inline]
fn item_piece<'p>(items: &'p [Item<'_>], item: usize, offset: usize, len: usize) -> Option<Piece<'p>> {
    items.get(item)?.value().piece(offset, len)
}

/// Each packet in its own new buffer: for tests, memory transports and
/// tools (the send path uses [`HeapPackets::write_next`] into frames).
impl Iterator for HeapPackets<'_> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; self.next_packet_len()?];
        self.write_next(&mut buf)
            .expect("buffer sized by next_packet_len");
        Some(buf)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining(), Some(self.remaining()))
    }
}

impl ExactSizeIterator for HeapPackets<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::flavour::Flavour;
    use crate::protocol::heap::Item;

    #[test]
    fn packet_size_rounds_down_and_has_a_floor() {
        let p = PacketSizing::new(1472).unwrap();
        assert_eq!((p.max_packet_size(), p.max_pointers()), (1472, 178));
        assert_eq!(PacketSizing::new(9003).unwrap().max_packet_size(), 9000);
        assert_eq!(PacketSizing::new(63).unwrap().max_packet_size(), 56);
        assert_eq!(
            PacketSizing::new(55),
            Err(PacketizeError::PacketSizeTooSmall { size: 55, min: 56 })
        );
        // The header counts items in 16 bits, the four bookkeeping ones
        // included.
        assert_eq!(PacketSizing::new(1 << 20).unwrap().max_pointers(), 65531);
    }

    #[test]
    fn a_heap_of_more_items_than_the_header_counts_spreads_them_over_packets() {
        let mut heap = Heap::new(Flavour::SPEAD_64_40);
        for id in 0..70_000u64 {
            heap.add(Item::immediate(0x1000 + id, id)).unwrap();
        }
        let sizing = PacketSizing::new(1 << 20).unwrap();
        let packets: Vec<Vec<u8>> = sizing.packets(&heap, 1).unwrap().collect();
        let counts: Vec<u16> = packets
            .iter()
            .map(|p| {
                assert_eq!(&p[4..6], [0, 0], "reserved header bytes");
                u16::from_be_bytes([p[6], p[7]])
            })
            .collect();
        // 70000 items and a null pointer (the payload is padding), beside
        // each packet's four bookkeeping pointers.
        assert_eq!(counts[0], u16::MAX);
        let item_pointers: usize = counts.iter().map(|&n| usize::from(n) - 4).sum();
        assert_eq!(item_pointers, 70_001);
    }

    /// Foreign memory as a test has it: bytes behind a lock, which another
    /// thread may change between packets.
    #[derive(Debug)]
    struct Lent(std::sync::Mutex<Vec<u8>>);

    impl crate::protocol::ForeignMemory for Lent {
        fn len(&self) -> usize {
            self.0.lock().unwrap().len()
        }

        fn copy_to(&self, offset: usize, dst: &mut [u8]) {
            let bytes = self.0.lock().unwrap();
            if let Some(src) = bytes.get(offset..offset + dst.len()) {
                dst.copy_from_slice(src);
            }
        }

        fn address(&self) -> usize {
            self.0.lock().unwrap().as_ptr() as usize
        }
    }

    #[test]
    fn foreign_values_make_the_packets_owned_ones_make_read_when_packetized() {
        let data: Vec<u8> = (0..=255).cycle().take(5_000).collect();
        let lent = std::sync::Arc::new(Lent(std::sync::Mutex::new(vec![0; 5_000])));
        let stamp = std::sync::Arc::new(Lent(std::sync::Mutex::new(vec![0; 6])));
        let mut foreign = Heap::new(Flavour::SPEAD_64_48);
        foreign
            .add(Item::new(
                0x1000,
                lent.clone() as std::sync::Arc<dyn crate::protocol::ForeignMemory>,
            ))
            .unwrap();
        foreign
            .add(
                Item::new(
                    0x1001,
                    stamp.clone() as std::sync::Arc<dyn crate::protocol::ForeignMemory>,
                )
                .allow_immediate(true),
            )
            .unwrap();
        // Written after the heap was built: the packets carry the new bytes.
        lent.0.lock().unwrap().copy_from_slice(&data);
        stamp
            .0
            .lock()
            .unwrap()
            .copy_from_slice(&[0, 0, 0, 0x12, 0x34, 0x56]);
        let mut owned = Heap::new(Flavour::SPEAD_64_48);
        owned.add(Item::new(0x1000, data.clone())).unwrap();
        owned.add(Item::immediate(0x1001, 0x123456)).unwrap();
        let sizing = PacketSizing::new(1472).unwrap();
        let theirs: Vec<_> = sizing.packets(&owned, 9).unwrap().collect();
        let ours: Vec<_> = sizing.packets(&foreign, 9).unwrap().collect();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn empty_heap_carries_one_padding_byte() {
        let heap = Heap::new(Flavour::SPEAD_64_48);
        let packets: Vec<_> = PacketSizing::new(1472)
            .unwrap()
            .packets(&heap, 3)
            .unwrap()
            .collect();
        assert_eq!(packets.len(), 1);
        let expected = "5304020600000005\
                        8001000000000003\
                        8002000000000001\
                        8003000000000000\
                        8004000000000001\
                        0000000000000000\
                        00";
        assert_eq!(hex(&packets[0]), expected);
    }

    #[test]
    fn payload_splits_and_count_is_exact() {
        let data: Vec<u8> = (0..=255).cycle().take(10_000).collect();
        let mut heap = Heap::new(Flavour::SPEAD_64_48);
        heap.add(Item::new(0x1000, &data[..])).unwrap();
        heap.add(Item::immediate(0x1001, 7)).unwrap();
        let sizing = PacketSizing::new(1000).unwrap();
        let mut packets = sizing.packets(&heap, 1).unwrap();
        let expected_count = packets.remaining();
        let all: Vec<_> = packets.by_ref().collect();
        assert_eq!(all.len(), expected_count);
        assert!(all.iter().all(|p| p.len() <= 1000));
        let payload: Vec<u8> = all
            .iter()
            .enumerate()
            .flat_map(|(i, p)| p[PREFIX_LEN + if i == 0 { 16 } else { 0 }..].to_vec())
            .collect();
        assert_eq!(payload, data);
    }

    #[test]
    fn skipping_packets_leaves_the_rest_unchanged() {
        let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7) as u8).collect();
        let mut heap = Heap::new(Flavour::SPEAD_64_48);
        for id in 0..300 {
            heap.add(Item::immediate(0x1000 + id, id)).unwrap();
        }
        heap.add(Item::new(0x2000, &data[..])).unwrap();
        let sizing = PacketSizing::new(1000).unwrap();
        let all: Vec<_> = sizing.packets(&heap, 1).unwrap().collect();
        for of in 1..=3 {
            for share in 0..of {
                let mut packets = sizing.packets(&heap, 1).unwrap();
                let mut mine = Vec::new();
                for (i, packet) in all.iter().enumerate() {
                    if i % of == share {
                        mine.push(packets.next().unwrap());
                    } else {
                        assert_eq!(packets.skip_next(), Some(packet.len()));
                    }
                }
                assert!(packets.is_done());
                let want: Vec<_> = all.iter().skip(share).step_by(of).cloned().collect();
                assert_eq!(mine, want, "share {share} of {of}");
            }
        }
    }

    #[test]
    fn parts_are_the_same_bytes_as_whole_packets() {
        let big: Vec<u8> = (0..30_000u32).map(|i| (i * 13) as u8).collect();
        let small = [9u8; 5];
        let mut heap = Heap::new(Flavour::SPEAD_64_48);
        heap.add(Item::new(0x1000, &small[..])).unwrap();
        heap.add(Item::new(0x1001, &big[..])).unwrap();
        heap.add(Item::new(0x1002, &small[..3])).unwrap();
        let empty = Heap::new(Flavour::SPEAD_64_48); // all padding
        for heap in [&heap, &empty] {
            for size in [88, 1472, 8192] {
                let sizing = PacketSizing::new(size).unwrap();
                let whole: Vec<Vec<u8>> = sizing.packets(heap, 3).unwrap().collect();
                let mut packets = sizing.packets(heap, 3).unwrap();
                let mut frame = vec![0u8; size];
                let mut rebuilt = Vec::new();
                while let Some(parts) = packets.next_packet_parts(&mut frame).unwrap() {
                    parts.write_payload(&mut frame);
                    rebuilt.push(frame[..parts.len()].to_vec());
                }
                assert_eq!(rebuilt, whole, "{size}-byte packets");
            }
        }
    }

    #[test]
    fn small_frames_are_refused_not_overrun() {
        let heap = Heap::new(Flavour::SPEAD_64_48);
        let mut packets = PacketSizing::new(1472).unwrap().packets(&heap, 1).unwrap();
        let mut frame = [0u8; 40];
        assert_eq!(
            packets.write_next(&mut frame),
            Err(PacketizeError::FrameTooSmall {
                needed: 49,
                available: 40
            })
        );
        assert_eq!(packets.remaining(), 1);
    }

    #[test]
    fn a_refused_frame_leaves_the_packet_claiming_nothing() {
        // An empty heap's one packet: 48 bytes of header and pointers, then
        // a byte of padding (written whole, not referenced).
        let heap = Heap::new(Flavour::SPEAD_64_48);
        let sizing = PacketSizing::new(1472).unwrap();
        for frame_len in [10, 48] {
            let mut cursor = HeapCursor::new(sizing, &heap, 1).unwrap();
            let mut packet = PacketPieces::new(99);
            packet.push(&b"stale"[..]).unwrap();
            let mut frame = vec![0u8; frame_len];
            assert!(cursor.write_parts(heap.items(), &mut frame, &mut packet).is_err());
            assert_eq!((packet.written(), packet.len()), (0, 0), "{frame_len}-byte frame");
            assert_eq!(cursor.remaining(), 1, "nothing passed over");
        }
    }

    #[test]
    fn cnt_and_repeat_pointers_are_validated() {
        let mut heap = Heap::new(Flavour::SPEAD_64_48);
        let sizing = PacketSizing::new(88).unwrap();
        assert!(matches!(
            sizing.packets(&heap, 1 << 48),
            Err(PacketizeError::CntTooLarge { .. })
        ));
        for id in 0..5 {
            heap.add(Item::immediate(0x1000 + id, id)).unwrap();
        }
        heap.set_repeat_pointers(true);
        assert!(matches!(
            sizing.packets(&heap, 1),
            Err(PacketizeError::RepeatPointersDoNotFit { items: 5, max: 5, .. })
        ));
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
