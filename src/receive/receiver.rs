//! The receiver: packets from one or more sources (treated as one stream),
//! each drained by a reader thread of its own in batches and reassembled
//! there ([`reader`](super::reader)), complete heaps handed over through a
//! bounded ring; here, on the consumer's thread, descriptors are learned
//! from the heaps that carry them and items named and decoded. Its
//! counters say what arrived and what was lost where: packets, bytes,
//! malformed and duplicate packets, complete and incomplete heaps, gaps in
//! the heap cnt sequence, datagrams the kernel dropped at the sockets, and
//! heaps dropped because the consumer left the ring full.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::RecvTimeoutError;
use pcap_file::pcap::PcapWriter;

use super::reader::{self, Capture, Delivery, Ring, Shared};
use super::source::{Source, SourceError};
use super::values::{decode, Value};
use crate::protocol::{Descriptor, Reassembler, ReassemblerConfig, ReceivedHeap, ReceivedItem};
use crate::transport::UdpBatchReceiver;

/// How a receiver reassembles and delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverConfig {
    /// Bounds on the heaps under reassembly.
    pub reassembly: ReassemblerConfig,
    /// Heaps the ring between the readers and the consumer holds. A heap
    /// a socket's reader completes while the ring is full is dropped and
    /// counted ([`ReceiverStats::ring_drops`]): the reader never waits, so
    /// the socket never overflows for a slow consumer.
    pub ring_heaps: usize,
    /// Deliver heaps that were incomplete when evicted (spead2's
    /// `contiguous_only=False`); by default they are only counted.
    pub deliver_incomplete: bool,
    /// Also write every datagram received to this pcap file (as
    /// Ethernet/IPv4/UDP frames with placeholder addresses).
    pub capture: Option<PathBuf>,
}

impl Default for ReceiverConfig {
    /// spead2's reassembly bounds, a ring of 16 heaps, complete heaps only.
    fn default() -> Self {
        ReceiverConfig {
            reassembly: ReassemblerConfig::default(),
            ring_heaps: 16,
            deliver_incomplete: false,
            capture: None,
        }
    }
}

/// What arrived so far, and what was lost where.
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
    /// Heaps assembled complete (the stop heap not counted).
    pub heaps_complete: u64,
    /// Heaps evicted or flushed incomplete (packets lost).
    pub heaps_incomplete: u64,
    /// Heap cnts missing from the sequence (heaps never seen at all): the
    /// span from the lowest to the highest cnt, in steps of the greatest
    /// common divisor of their differences, less the heaps seen. Order of
    /// arrival does not matter.
    pub cnt_gaps: u64,
    /// What the kernel dropped at the sources' sockets (the sockets' own
    /// counters): for want of buffer space, mostly, also checksum and
    /// filter drops. It counts what the kernel queues: datagrams, or with
    /// UDP GRO coalesced messages of several, so it is a lower bound on
    /// datagrams lost.
    pub kernel_drops: u64,
    /// Heaps dropped because the ring to the consumer was full.
    pub ring_drops: u64,
}

/// The result of waiting for a heap.
#[derive(Debug)]
pub enum Event {
    /// A heap (complete, or incomplete where asked for).
    Heap(ReceivedHeap),
    /// Nothing within the timeout.
    Timeout,
    /// The stream ended: a stop heap arrived, or every source ended (pcap
    /// files read to their end).
    End,
}

/// Receives heaps from sources, one reader thread a source.
pub struct Receiver {
    ring: crossbeam_channel::Receiver<Delivery>,
    shared: Arc<Shared>,
    readers: Vec<JoinHandle<()>>,
    local_addrs: Vec<Option<SocketAddr>>,
    descriptors: HashMap<u64, Descriptor>,
    ended: bool,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("local_addrs", &self.local_addrs)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Receiver {
    /// A receiver over `sources` (one stream), its readers started.
    pub fn new(sources: Vec<Source>, config: ReceiverConfig) -> Result<Self, SourceError> {
        let capture = config.capture.as_deref().map(open_capture).transpose()?;
        let reassembler = Reassembler::new(config.reassembly);
        let shared = Arc::new(Shared::new(
            reassembler,
            sources.len(),
            config.deliver_incomplete,
            capture,
        ));
        let (sender, ring) = crossbeam_channel::bounded(config.ring_heaps.max(1));
        let mut receiver = Receiver {
            ring,
            shared: Arc::clone(&shared),
            readers: Vec::with_capacity(sources.len()),
            local_addrs: sources.iter().map(Source::local_addr).collect(),
            descriptors: HashMap::new(),
            ended: sources.is_empty(),
        };
        for (index, source) in sources.into_iter().enumerate() {
            let shared = Arc::clone(&shared);
            let reader = match source {
                Source::Udp(socket) => {
                    let socket = udp_reader(socket)?;
                    let ring = Ring {
                        sender: sender.clone(),
                        wait: false,
                    };
                    spawn(move || reader::read_udp(socket, index, shared, ring))?
                }
                Source::Pcap(pcap) => {
                    let ring = Ring {
                        sender: sender.clone(),
                        wait: true,
                    };
                    spawn(move || reader::read_pcap(pcap, shared, ring))?
                }
                Source::Inproc(queue) => {
                    // Nothing is lost in process: the reader waits for room.
                    let ring = Ring {
                        sender: sender.clone(),
                        wait: true,
                    };
                    spawn(move || reader::read_inproc(queue, shared, ring))?
                }
            };
            receiver.readers.push(reader);
        }
        Ok(receiver)
    }

    /// Waits up to `timeout` for the next heap. An `Err` is one source's
    /// failure, not the stream's end: the others go on, and `End` still
    /// comes once every source has ended.
    pub fn next_event(&mut self, timeout: Duration) -> Result<Event, SourceError> {
        if self.ended {
            return Ok(Event::End);
        }
        match self.ring.recv_timeout(timeout) {
            Ok(Delivery::Heap(heap)) => {
                self.learn_descriptors(&heap);
                Ok(Event::Heap(heap))
            }
            Ok(Delivery::Failed(error)) => Err(error),
            Ok(Delivery::End) | Err(RecvTimeoutError::Disconnected) => {
                self.ended = true;
                Ok(Event::End)
            }
            Err(RecvTimeoutError::Timeout) => Ok(Event::Timeout),
        }
    }

    /// Learns the descriptors a complete heap carries.
    fn learn_descriptors(&mut self, heap: &ReceivedHeap) {
        if !heap.is_complete() {
            return;
        }
        if let Ok(descriptors) = heap.descriptors() {
            for d in descriptors {
                self.descriptors.insert(d.id, d);
            }
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> ReceiverStats {
        stats_of(&self.shared)
    }

    /// A handle that reads the counters and stops the stream from another
    /// thread while this one waits for heaps.
    pub fn handle(&self) -> ReceiverHandle {
        ReceiverHandle {
            shared: Arc::clone(&self.shared),
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

    /// The local address of each source (`None` for files), in order.
    pub fn local_addrs(&self) -> &[Option<SocketAddr>] {
        &self.local_addrs
    }
}

/// A receiver's counters, from its shared state.
fn stats_of(shared: &Shared) -> ReceiverStats {
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);

    let assembly = shared.lock();
    let r = assembly.reassembler.stats();
    ReceiverStats {
        packets: load(&shared.packets),
        bytes: load(&shared.bytes),
        malformed: r.malformed + shared.truncated.iter().map(load).sum::<u64>(),
        duplicates: r.duplicates,
        heaps_complete: assembly.complete,
        heaps_incomplete: r.heaps_incomplete,
        cnt_gaps: assembly.cnts.missing(),
        kernel_drops: shared.kernel_drops.iter().map(load).sum(),
        ring_drops: load(&shared.ring_drops),
    }
}

/// Reads a receiver's counters and stops it, from any thread (the
/// receiver itself may be waiting for heaps meanwhile).
#[derive(Clone)]
pub struct ReceiverHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ReceiverHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiverHandle")
            .field("stats", &self.stats())
            .finish()
    }
}

impl ReceiverHandle {
    /// The counters so far (still there after the stream has ended).
    pub fn stats(&self) -> ReceiverStats {
        stats_of(&self.shared)
    }

    /// Stops the stream: its readers stop (within their read timeout),
    /// and the receiver then sees the end.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

impl Drop for Receiver {
    /// Stops the readers (within their read timeout) and joins them;
    /// multicast groups are left as their sockets close.
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // A reader waiting for room in the ring (a file's) sees it gone.
        let (_, gone) = crossbeam_channel::bounded(0);
        drop(std::mem::replace(&mut self.ring, gone));
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

fn open_capture(path: &std::path::Path) -> Result<Capture, SourceError> {
    let file = File::create(path).map_err(|source| SourceError::Io {
        what: format!("creating {}", path.display()),
        source,
    })?;
    let writer =
        PcapWriter::new(BufWriter::with_capacity(1 << 20, file)).map_err(|source| SourceError::Pcap {
            path: path.to_owned(),
            source,
        })?;
    Ok(Capture::new(writer))
}

/// A socket's batch reader, waiting at most [`reader::READ_TIMEOUT`] a
/// read so it sees when to stop.
fn udp_reader(socket: std::net::UdpSocket) -> Result<UdpBatchReceiver, SourceError> {
    let io = |what: &str| {
        let what = what.to_owned();
        move |source| SourceError::Io { what, source }
    };
    // A caller's socket may be non-blocking: the reader waits in the
    // kernel, never spins.
    socket
        .set_nonblocking(false)
        .map_err(io("making the socket blocking"))?;
    socket
        .set_read_timeout(Some(reader::READ_TIMEOUT))
        .map_err(io("setting a read timeout"))?;
    let reader = UdpBatchReceiver::new(socket).map_err(io("asking for the socket's drop counter"))?;
    tracing::debug!(
        "reading {:?} in batches, UDP GRO {}",
        reader.socket().local_addr().ok(),
        if reader.gro() {
            "on"
        } else {
            "off (the kernel refused it)"
        }
    );
    Ok(reader)
}

fn spawn(body: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, SourceError> {
    std::thread::Builder::new()
        .name("spead-recv".into())
        .spawn(body)
        .map_err(|source| SourceError::Io {
            what: "starting a reader thread".into(),
            source,
        })
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
        let mut receiver = Receiver::new(vec![source], ReceiverConfig::default()).unwrap();
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

    /// Sends `heaps` heaps of one 1000-byte item (cnt 1, 2, ...), then a
    /// stop heap, to `to`.
    fn send_heaps(to: SocketAddr, heaps: u64) -> u64 {
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sizing = PacketSizing::new(1472).unwrap();
        let mut packets = 0;
        for cnt in 1..=heaps {
            let mut heap = Heap::new(Flavour::SPEAD_64_48);
            heap.add(Item::new(0x1800, vec![cnt as u8; 1000])).unwrap();
            for p in sizing.packets(&heap, cnt).unwrap() {
                sender.send_to(&p, to).unwrap();
                packets += 1;
            }
        }
        let mut stop = Heap::new(Flavour::SPEAD_64_48);
        stop.add_end().unwrap();
        for p in sizing.packets(&stop, heaps + 1).unwrap() {
            sender.send_to(&p, to).unwrap();
            packets += 1;
        }
        packets
    }

    fn wait_for(receiver: &Receiver, what: &str, done: impl Fn(&ReceiverStats) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !done(&receiver.stats()) {
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: {:?}",
                receiver.stats()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_slow_consumer_costs_whole_heaps_counted_and_the_stop_still_arrives() {
        let source = Source::open("127.0.0.1:0", &Default::default()).unwrap();
        let to = source.local_addr().unwrap();
        let config = ReceiverConfig {
            ring_heaps: 3,
            ..Default::default()
        };
        let mut receiver = Receiver::new(vec![source], config).unwrap();
        // Nobody takes heaps while ten (and the stop) are read.
        let packets = send_heaps(to, 10);
        wait_for(&receiver, "every packet read, 7 heaps dropped", |s| {
            s.packets == packets && s.ring_drops == 7
        });
        let stats = receiver.stats();
        assert_eq!(
            (stats.heaps_complete, stats.ring_drops, stats.kernel_drops),
            (10, 7, 0),
            "{stats:?}"
        );
        // The first three, whole, then the end (the reader waited for room
        // for it).
        for cnt in 1..=3 {
            match receiver.next_event(Duration::from_secs(1)).unwrap() {
                Event::Heap(heap) => {
                    assert_eq!(heap.cnt(), cnt);
                    assert_eq!(heap.item(0x1800).unwrap().value(), &[cnt as u8; 1000][..]);
                }
                other => panic!("heap {cnt}: {other:?}"),
            }
        }
        assert!(matches!(
            receiver.next_event(Duration::from_secs(1)).unwrap(),
            Event::End
        ));
        assert!(matches!(receiver.next_event(Duration::ZERO).unwrap(), Event::End));
    }

    #[test]
    fn incomplete_heaps_are_counted_and_delivered_only_when_asked() {
        for deliver_incomplete in [false, true] {
            let source = Source::open("127.0.0.1:0", &Default::default()).unwrap();
            let to = source.local_addr().unwrap();
            let config = ReceiverConfig {
                deliver_incomplete,
                ..Default::default()
            };
            let mut receiver = Receiver::new(vec![source], config).unwrap();
            let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
            let sizing = PacketSizing::new(1472).unwrap();
            let mut heap = Heap::new(Flavour::SPEAD_64_48);
            heap.add(Item::new(0x1800, vec![1u8; 5000])).unwrap();
            // Heap 1 loses its second packet; the stop flushes it.
            for (k, p) in sizing.packets(&heap, 1).unwrap().enumerate() {
                if k != 1 {
                    sender.send_to(&p, to).unwrap();
                }
            }
            let mut stop = Heap::new(Flavour::SPEAD_64_48);
            stop.add_end().unwrap();
            for p in sizing.packets(&stop, 2).unwrap() {
                sender.send_to(&p, to).unwrap();
            }
            let mut delivered = Vec::new();
            while let Event::Heap(heap) = receiver.next_event(Duration::from_secs(1)).unwrap() {
                delivered.push((heap.cnt(), heap.is_complete()));
            }
            let expected = if deliver_incomplete {
                vec![(1, false)]
            } else {
                vec![]
            };
            assert_eq!(delivered, expected);
            let stats = receiver.stats();
            assert_eq!(
                (stats.heaps_complete, stats.heaps_incomplete),
                (0, 1),
                "{stats:?}"
            );
        }
    }

    #[test]
    fn a_stop_on_one_of_two_sources_ends_the_joint_stream() {
        let first = Source::open("127.0.0.1:0", &Default::default()).unwrap();
        let second = Source::open("127.0.0.1:0", &Default::default()).unwrap();
        let (to_first, to_second) = (first.local_addr().unwrap(), second.local_addr().unwrap());
        let mut receiver = Receiver::new(vec![first, second], ReceiverConfig::default()).unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sizing = PacketSizing::new(1472).unwrap();
        let mut heap = Heap::new(Flavour::SPEAD_64_48);
        heap.add(Item::new(0x1800, vec![9u8; 100])).unwrap();
        for p in sizing.packets(&heap, 1).unwrap() {
            sender.send_to(&p, to_first).unwrap();
        }
        match receiver.next_event(Duration::from_secs(1)).unwrap() {
            Event::Heap(heap) => assert_eq!(heap.cnt(), 1),
            other => panic!("{other:?}"),
        }
        // The stop (cnt 2) comes by the second source, and a heap after it
        // on the first belongs to no stream.
        let mut stop = Heap::new(Flavour::SPEAD_64_48);
        stop.add_end().unwrap();
        for p in sizing.packets(&stop, 2).unwrap() {
            sender.send_to(&p, to_second).unwrap();
        }
        assert!(matches!(
            receiver.next_event(Duration::from_secs(1)).unwrap(),
            Event::End
        ));
        for p in sizing.packets(&heap, 3).unwrap() {
            sender.send_to(&p, to_first).unwrap();
        }
        assert!(matches!(
            receiver.next_event(Duration::from_millis(300)).unwrap(),
            Event::End
        ));
        let stats = receiver.stats();
        assert_eq!(
            (stats.heaps_complete, stats.heaps_incomplete),
            (1, 0),
            "{stats:?}"
        );
    }
}
