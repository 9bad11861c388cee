//! The receiver: packets from one or more sources (treated as one stream)
//! through the heap reassembler, with descriptors learned from the heaps
//! that carry them, items named and decoded, and counters of what arrived:
//! packets, bytes, malformed and duplicate packets, complete and
//! incomplete heaps, and gaps in the heap cnt sequence.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pcap_file::pcap::{PcapPacket, PcapWriter};

use super::source::{Received, Source, SourceError};
use super::values::{decode, Value};
use crate::protocol::{Descriptor, Reassembler, ReassemblerConfig, ReceivedHeap, ReceivedItem};

/// What arrived so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    /// Datagrams received.
    pub packets: u64,
    /// Their bytes (UDP payload).
    pub bytes: u64,
    /// Packets refused as malformed.
    pub malformed: u64,
    /// Packets whose payload had already arrived (ignored).
    pub duplicates: u64,
    /// Heaps delivered complete.
    pub heaps_complete: u64,
    /// Heaps delivered incomplete (packets lost).
    pub heaps_incomplete: u64,
    /// Heap cnts missing from the sequence (heaps never seen at all): the
    /// span from the lowest to the highest cnt, in steps of the greatest
    /// common divisor of their differences, less the heaps seen. Order of
    /// arrival does not matter.
    pub cnt_gaps: u64,
}

/// The heap cnts seen: lowest, highest, how many, and the greatest common
/// divisor of their differences (the sequence's step).
#[derive(Debug, Clone, Copy, Default)]
struct CntSpan {
    first: Option<u64>,
    low: u64,
    high: u64,
    step: u64,
    seen: u64,
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl CntSpan {
    fn add(&mut self, cnt: u64) {
        self.seen += 1;
        let first = *self.first.get_or_insert(cnt);
        if self.seen == 1 {
            (self.low, self.high) = (cnt, cnt);
            return;
        }
        self.step = gcd(self.step, cnt.abs_diff(first));
        self.low = self.low.min(cnt);
        self.high = self.high.max(cnt);
    }

    fn missing(&self) -> u64 {
        if self.step == 0 {
            return 0;
        }
        ((self.high - self.low) / self.step + 1).saturating_sub(self.seen)
    }
}

/// The result of waiting for a heap.
#[derive(Debug)]
pub enum Event {
    /// A heap (complete, or incomplete after packets were lost).
    Heap(ReceivedHeap),
    /// Nothing within the timeout.
    Timeout,
    /// Every source has ended (pcap files read to their end).
    End,
}

/// Receives heaps from sources.
pub struct Receiver {
    sources: Vec<Source>,
    ended: Vec<bool>,
    next_source: usize,
    reassembler: Reassembler,
    descriptors: HashMap<u64, Descriptor>,
    cnts: CntSpan,
    stats: ReceiverStats,
    buf: Vec<u8>,
    capture: Option<PcapWriter<BufWriter<File>>>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("sources", &self.sources)
            .field("stats", &self.stats)
            .finish()
    }
}

impl Receiver {
    /// A receiver over `sources`, reassembling within `config`'s bounds.
    pub fn new(sources: Vec<Source>, config: ReassemblerConfig) -> Self {
        Receiver {
            ended: vec![false; sources.len()],
            sources,
            next_source: 0,
            reassembler: Reassembler::new(config),
            descriptors: HashMap::new(),
            cnts: CntSpan::default(),
            stats: ReceiverStats::default(),
            buf: Vec::with_capacity(65536),
            capture: None,
        }
    }

    /// Also writes every datagram received to a pcap file (as
    /// Ethernet/IPv4/UDP frames with placeholder addresses).
    pub fn capture_to(&mut self, path: &Path) -> Result<(), SourceError> {
        let file = File::create(path).map_err(|source| SourceError::Io {
            what: format!("creating {}", path.display()),
            source,
        })?;
        let writer = PcapWriter::new(BufWriter::new(file)).map_err(|e| SourceError::Pcap {
            path: path.to_owned(),
            why: e.to_string(),
        })?;
        self.capture = Some(writer);
        Ok(())
    }

    /// Waits up to `timeout` for the next heap.
    pub fn next_event(&mut self, timeout: Duration) -> Result<Event, SourceError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(heap) = self.reassembler.next_heap() {
                self.account(&heap);
                return Ok(Event::Heap(heap));
            }
            if self.ended.iter().all(|e| *e) {
                self.reassembler.flush();
                return Ok(match self.reassembler.next_heap() {
                    Some(heap) => {
                        self.account(&heap);
                        Event::Heap(heap)
                    }
                    None => Event::End,
                });
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Event::Timeout);
            }
            let index = self.next_source;
            self.next_source = (self.next_source + 1) % self.sources.len();
            if self.ended[index] {
                continue;
            }
            // Share the wait between the sources still open.
            let open = self.ended.iter().filter(|e| !**e).count() as u32;
            let slice = ((deadline - now) / open).min(Duration::from_millis(50));
            match self.sources[index].receive(&mut self.buf, slice)? {
                Received::Datagram => self.take_datagram(),
                Received::Timeout => {}
                Received::End => self.ended[index] = true,
            }
        }
    }

    fn take_datagram(&mut self) {
        self.stats.packets += 1;
        self.stats.bytes += self.buf.len() as u64;
        if let Some(writer) = &mut self.capture {
            let mut frame = vec![0u8; 42 + self.buf.len()];
            frame[12..14].copy_from_slice(&[0x08, 0x00]);
            frame[14] = 0x45;
            frame[16..18].copy_from_slice(&((28 + self.buf.len()) as u16).to_be_bytes());
            frame[22] = 64;
            frame[23] = 17;
            frame[38..40].copy_from_slice(&((8 + self.buf.len()) as u16).to_be_bytes());
            frame[42..].copy_from_slice(&self.buf);
            let time = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            let _ = writer.write_packet(&PcapPacket::new(time, frame.len() as u32, &frame));
        }
        // Errors are counted by the reassembler (malformed).
        let _ = self.reassembler.add_packet(&self.buf);
    }

    /// Learns descriptors and counts the heap and any cnt gap before it.
    fn account(&mut self, heap: &ReceivedHeap) {
        if heap.is_complete() {
            self.stats.heaps_complete += 1;
            if let Ok(descriptors) = heap.descriptors() {
                for d in descriptors {
                    self.descriptors.insert(d.id, d);
                }
            }
        } else {
            self.stats.heaps_incomplete += 1;
        }
        self.cnts.add(heap.cnt());
    }

    /// The counters so far.
    pub fn stats(&self) -> ReceiverStats {
        let r = self.reassembler.stats();
        ReceiverStats {
            malformed: r.malformed,
            duplicates: r.duplicates,
            cnt_gaps: self.cnts.missing(),
            ..self.stats
        }
    }

    /// The descriptor of an item, once a heap has carried it.
    pub fn descriptor(&self, id: u64) -> Option<&Descriptor> {
        self.descriptors.get(&id)
    }

    /// An item's name and decoded value, when its descriptor is known and
    /// its layout decodes.
    pub fn decode(&self, item: &ReceivedItem<'_>) -> Option<(&str, Option<Value>)> {
        let d = self.descriptor(item.id())?;
        Some((d.name.as_str(), decode(d, item.value())))
    }

    /// The sources.
    pub fn sources(&self) -> &[Source] {
        &self.sources
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Flavour, FormatField, Heap, Item, PacketSizing};
    use std::net::UdpSocket;

    #[test]
    fn heaps_values_and_gaps_over_udp() {
        let source = Source::open("127.0.0.1:0", &Default::default()).unwrap();
        let to = source.local_addr().unwrap();
        let mut receiver = Receiver::new(vec![source], ReassemblerConfig::default());
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sizing = PacketSizing::new(1472).unwrap();
        let ts = Descriptor::with_format(0x1600, "timestamp", "", vec![], vec![FormatField::new(b'u', 48)]);
        for cnt in [1u64, 2, 4, 7] {
            let mut heap = Heap::new(Flavour::SPEAD_64_48);
            if cnt == 1 {
                heap.add_descriptor(&ts).unwrap();
            }
            heap.add(Item::immediate(0x1600, cnt * 100)).unwrap();
            for p in sizing.packets(&heap, cnt).unwrap() {
                sender.send_to(&p, to).unwrap();
            }
        }
        sender.send_to(b"junk", to).unwrap();
        let mut values = Vec::new();
        while values.len() < 4 {
            match receiver.next_event(Duration::from_secs(2)).unwrap() {
                Event::Heap(heap) => {
                    let item = heap.item(0x1600).unwrap();
                    let (name, value) = receiver.decode(&item).unwrap();
                    values.push(format!("{name}={}", value.unwrap()));
                }
                other => panic!("expected a heap, got {other:?}"),
            }
        }
        assert_eq!(
            values,
            ["timestamp=100", "timestamp=200", "timestamp=400", "timestamp=700"]
        );
        assert!(matches!(
            receiver.next_event(Duration::from_millis(200)).unwrap(),
            Event::Timeout
        ));
        let stats = receiver.stats();
        assert_eq!(
            (
                stats.heaps_complete,
                stats.cnt_gaps,
                stats.malformed,
                stats.packets
            ),
            (4, 3, 1, 5)
        );
    }
}
