//! The receiving side's threads: one reader per source drains it in
//! batches (a `recvmmsg` of up to 64 messages, GRO messages split back into
//! datagrams; or a run of pcap frames), takes the whole batch into the
//! stream's reassembler under one lock, and hands the heaps it completed
//! to the consumer through a bounded ring. A socket's reader never waits
//! for the consumer: when the ring is full the heap is dropped and counted,
//! so a slow consumer costs whole heaps, never a silently overflowing
//! socket. A file's or an in-process queue's reader waits instead (they
//! lose nothing by waiting).

use std::fs::File;
use std::io::BufWriter;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Sender, TrySendError};
use pcap_file::pcap::{PcapPacket, PcapWriter};

use super::source::{PcapSource, Received, SourceError};
use crate::protocol::{Reassembler, ReceivedHeap, StreamControl};
use crate::transport::{InprocQueue, Taken, UdpBatchReceiver};

/// How long a socket's reader waits for data before looking whether it
/// should stop.
pub(super) const READ_TIMEOUT: Duration = Duration::from_millis(100);
/// Pcap frames taken into the reassembler under one lock.
const PCAP_BATCH: usize = 64;
/// In-process packets taken into the reassembler under one lock.
const INPROC_BATCH: usize = 64;
/// How long an in-process reader waits for a packet before looking
/// whether the stream should stop (a queue's own stop wakes it at once).
const INPROC_WAIT: Duration = Duration::from_millis(100);

/// What a reader hands the consumer.
#[derive(Debug)]
pub(super) enum Delivery {
    /// A heap, complete (or incomplete, where asked for).
    Heap(ReceivedHeap),
    /// The stream ended: a stop heap arrived, or every source ended.
    End,
    /// A source failed; the stream goes on with the others.
    Failed(SourceError),
}

/// The heap cnts assembled: lowest, highest, how many, and the greatest
/// common divisor of their differences (the sequence's step).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct CntSpan {
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

    /// Cnts missing from the sequence.
    pub(super) fn missing(&self) -> u64 {
        if self.step == 0 {
            return 0;
        }
        ((self.high - self.low) / self.step + 1).saturating_sub(self.seen)
    }
}

/// What the readers of one stream share under its lock.
pub(super) struct Assembly {
    pub reassembler: Reassembler,
    pub cnts: CntSpan,
    /// Heaps assembled complete, the stop heap not counted.
    pub complete: u64,
    capture: Option<Capture>,
    /// Sources that have not ended.
    open: usize,
    /// Whether incomplete heaps go to the consumer.
    deliver_incomplete: bool,
    /// The stream ended (a stop heap, or every source ended): packets are
    /// no longer taken.
    ended: bool,
}

/// A stream's state and counters, shared by its readers and its consumer.
pub(super) struct Shared {
    assembly: Mutex<Assembly>,
    /// Set when the stream ended or the consumer went: readers stop.
    pub stop: AtomicBool,
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    pub ring_drops: AtomicU64,
    /// Per source: datagrams its socket dropped (the kernel's count).
    pub kernel_drops: Vec<AtomicU64>,
    /// Per source: messages cut short (passed over).
    pub truncated: Vec<AtomicU64>,
}

impl Shared {
    pub fn new(
        reassembler: Reassembler,
        sources: usize,
        deliver_incomplete: bool,
        capture: Option<Capture>,
    ) -> Self {
        Shared {
            assembly: Mutex::new(Assembly {
                reassembler,
                cnts: CntSpan::default(),
                complete: 0,
                capture,
                open: sources,
                deliver_incomplete,
                ended: false,
            }),
            stop: AtomicBool::new(false),
            packets: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            ring_drops: AtomicU64::new(0),
            kernel_drops: (0..sources).map(|_| AtomicU64::new(0)).collect(),
            truncated: (0..sources).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The assembly, locked (a reader that panicked left it usable: every
    /// update is whole).
    pub fn lock(&self) -> MutexGuard<'_, Assembly> {
        self.assembly
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Where a reader's heaps go, and whether it may wait for room.
pub(super) struct Ring {
    pub sender: Sender<Delivery>,
    /// Wait for room (files) rather than drop the heap (sockets).
    pub wait: bool,
}

/// Takes `datagrams` into the stream under one lock, moving the heaps
/// they completed into `ready`; says whether the stream ended (a stop
/// heap).
fn take<'d>(
    shared: &Shared,
    datagrams: impl Iterator<Item = &'d [u8]>,
    ready: &mut Vec<ReceivedHeap>,
) -> bool {
    let mut assembly = shared.lock();
    if assembly.ended {
        return true;
    }
    let (mut packets, mut bytes) = (0u64, 0u64);
    let time = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    for datagram in datagrams {
        packets += 1;
        bytes += datagram.len() as u64;
        if let Some(capture) = &mut assembly.capture {
            capture.write(datagram, time);
        }
        // Errors are counted by the reassembler (malformed).
        let _ = assembly.reassembler.add_packet(datagram);
        if assembly.reassembler.stopped() {
            // What follows the stop belongs to no stream.
            break;
        }
    }
    shared.packets.fetch_add(packets, Ordering::Relaxed);
    shared.bytes.fetch_add(bytes, Ordering::Relaxed);
    collect_ready(&mut assembly, ready)
}

/// Moves the reassembler's finished heaps into `ready` (incomplete ones
/// only where asked for), counting their cnts. A stop heap ends the
/// stream: what is still under reassembly is flushed (incomplete) first.
fn collect_ready(assembly: &mut Assembly, ready: &mut Vec<ReceivedHeap>) -> bool {
    let mut ended = false;
    loop {
        let Some(heap) = assembly.reassembler.next_heap() else {
            if ended {
                return true;
            }
            return false;
        };
        if heap.stream_control() == Some(StreamControl::Stop) {
            assembly.reassembler.flush();
            assembly.ended = true;
            ended = true;
            continue;
        }
        assembly.cnts.add(heap.cnt());
        assembly.complete += u64::from(heap.is_complete());
        if heap.is_complete() || assembly.deliver_incomplete {
            ready.push(heap);
        }
    }
}

/// A pcap file every datagram received is written to, as
/// Ethernet/IPv4/UDP frames with placeholder addresses.
pub(super) struct Capture {
    writer: PcapWriter<BufWriter<File>>,
    /// The frame being written: headers fixed once, then per datagram its
    /// lengths and payload (no allocation, no zeroing).
    frame: Box<[u8]>,
}

impl Capture {
    /// Bytes of the headers before the datagram.
    const HEADERS: usize = 42;

    pub fn new(writer: PcapWriter<BufWriter<File>>) -> Self {
        let mut frame = vec![0u8; Self::HEADERS + (1 << 16)].into_boxed_slice();
        frame[12..14].copy_from_slice(&[0x08, 0x00]); // IPv4
        frame[14] = 0x45; // version 4, 20-byte header
        frame[22] = 64; // TTL
        frame[23] = 17; // UDP
        Capture { writer, frame }
    }

    fn write(&mut self, datagram: &[u8], time: Duration) {
        let len = Self::HEADERS + datagram.len();
        let Some(frame) = self.frame.get_mut(..len) else {
            return;
        };
        frame[16..18].copy_from_slice(&((len - 14) as u16).to_be_bytes());
        frame[38..40].copy_from_slice(&((len - 34) as u16).to_be_bytes());
        frame[Self::HEADERS..].copy_from_slice(datagram);
        let _ = self
            .writer
            .write_packet(&PcapPacket::new(time, len as u32, frame));
    }
}

/// Hands `ready`'s heaps to the consumer (dropping and counting those a
/// full ring has no room for, unless the ring may wait), then the end if
/// the stream ended. Returns false when the consumer has gone.
fn deliver(shared: &Shared, ring: &Ring, ready: &mut Vec<ReceivedHeap>, ended: bool) -> bool {
    for heap in ready.drain(..) {
        // Heaps that carry descriptors are never dropped: without them the
        // items of every later heap go unnamed.
        let sent = if ring.wait || heap.has_descriptors() {
            ring.sender.send(Delivery::Heap(heap)).map_err(|_| ())
        } else {
            match ring.sender.try_send(Delivery::Heap(heap)) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(_)) => {
                    shared.ring_drops.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
                Err(TrySendError::Disconnected(_)) => Err(()),
            }
        };
        if sent.is_err() {
            return false;
        }
    }
    if ended {
        shared.stop.store(true, Ordering::SeqCst);
        // The end always reaches the consumer, after the heaps before it.
        return ring.sender.send(Delivery::End).is_ok();
    }
    true
}

/// Reads a socket until the stream ends or the consumer goes.
pub(super) fn read_udp(mut socket: UdpBatchReceiver, index: usize, shared: Arc<Shared>, ring: Ring) {
    let mut guard = ReaderGuard {
        shared: &shared,
        ring: &ring,
        done: false,
    };
    let mut ready = Vec::with_capacity(64);
    while !shared.stop.load(Ordering::Relaxed) {
        let batch = match socket.receive() {
            Ok(batch) => batch,
            Err(e) => {
                let what = format!("receiving on {:?}", socket.socket().local_addr().ok());
                let _ = ring
                    .sender
                    .send(Delivery::Failed(SourceError::Io { what, source: e }));
                // A source that failed has ended; the last to end ends the
                // stream.
                let ended = source_ended(&shared, &mut ready);
                deliver(&shared, &ring, &mut ready, ended);
                break;
            }
        };
        if batch.messages() == 0 {
            // Idle: bring the drop counter up to date.
            let _ = socket.refresh_drops();
            shared.kernel_drops[index].store(socket.kernel_drops(), Ordering::Relaxed);
            continue;
        }
        let ended = take(&shared, batch.datagrams(), &mut ready);
        shared.kernel_drops[index].store(socket.kernel_drops(), Ordering::Relaxed);
        shared.truncated[index].store(socket.truncated(), Ordering::Relaxed);
        if !deliver(&shared, &ring, &mut ready, ended) {
            break;
        }
    }
    if socket.refresh_drops().is_ok() {
        shared.kernel_drops[index].store(socket.kernel_drops(), Ordering::Relaxed);
    }
    guard.done = true;
}

/// Reads a pcap file to its end (or until the stream ends or the
/// consumer goes), then ends the stream if it was the last source open.
pub(super) fn read_pcap(mut source: PcapSource, shared: Arc<Shared>, ring: Ring) {
    let mut guard = ReaderGuard {
        shared: &shared,
        ring: &ring,
        done: false,
    };
    let mut ready = Vec::with_capacity(64);
    // A run of frames' payloads, back to back, and where each ends.
    let (mut payloads, mut ends) = (
        Vec::with_capacity(PCAP_BATCH * 9000),
        Vec::with_capacity(PCAP_BATCH),
    );
    while !shared.stop.load(Ordering::Relaxed) {
        payloads.clear();
        ends.clear();
        let mut at_end = false;
        while ends.len() < PCAP_BATCH {
            match source.append_payload(&mut payloads) {
                Ok(Received::Datagram) => ends.push(payloads.len()),
                Ok(_) => {
                    at_end = true;
                    break;
                }
                Err(e) => {
                    let _ = ring.sender.send(Delivery::Failed(e));
                    at_end = true;
                    break;
                }
            }
        }
        let datagrams = ends.iter().scan(0, |start, &end| {
            Some(&payloads[std::mem::replace(start, end)..end])
        });
        if !hand_over(&shared, &ring, datagrams, at_end, &mut ready) {
            break;
        }
    }
    guard.done = true;
}

/// Reads an in-process queue in batches (the first packet waited for, the
/// rest taken as they are there) until it is stopped and drained, handing
/// each packet's buffer back to the queue once taken in.
pub(super) fn read_inproc(queue: InprocQueue, shared: Arc<Shared>, ring: Ring) {
    let mut guard = ReaderGuard {
        shared: &shared,
        ring: &ring,
        done: false,
    };
    let mut ready = Vec::with_capacity(64);
    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(INPROC_BATCH);
    while !shared.stop.load(Ordering::Relaxed) {
        let at_end = match queue.take(INPROC_WAIT) {
            Taken::Packet(packet) => {
                batch.push(packet);
                while batch.len() < INPROC_BATCH {
                    match queue.try_take() {
                        Some(packet) => batch.push(packet),
                        None => break,
                    }
                }
                false
            }
            Taken::Empty => continue,
            Taken::Ended => true,
        };
        let go_on = hand_over(
            &shared,
            &ring,
            batch.iter().map(Vec::as_slice),
            at_end,
            &mut ready,
        );
        batch.drain(..).for_each(|buffer| queue.recycle(buffer));
        if !go_on {
            break;
        }
    }
    guard.done = true;
}

/// A waiting reader's batch (a file's, or an in-process queue's): takes
/// `datagrams` into the stream, counts the source ended if `at_end`, and
/// delivers what completed; says whether to read on.
fn hand_over<'d>(
    shared: &Shared,
    ring: &Ring,
    datagrams: impl Iterator<Item = &'d [u8]>,
    at_end: bool,
    ready: &mut Vec<ReceivedHeap>,
) -> bool {
    let mut ended = take(shared, datagrams, ready);
    if at_end {
        ended |= source_ended(shared, ready);
    }
    deliver(shared, ring, ready, ended) && !at_end
}

/// Counts a source as ended; when it was the last, flushes the heaps still
/// under reassembly into `ready` and says the stream ended.
fn source_ended(shared: &Shared, ready: &mut Vec<ReceivedHeap>) -> bool {
    let mut assembly = shared.lock();
    assembly.open = assembly.open.saturating_sub(1);
    if assembly.open > 0 || assembly.ended {
        return false;
    }
    assembly.reassembler.flush();
    collect_ready(&mut assembly, ready);
    assembly.ended = true;
    true
}

/// Ends a reader's source however the reader ends: a reader that panics
/// (a bug) reports it and counts its source as ended, so the stream still
/// reaches its end.
struct ReaderGuard<'a> {
    shared: &'a Shared,
    ring: &'a Ring,
    /// Set once the reader has accounted for its own end.
    done: bool,
}

impl Drop for ReaderGuard<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let error = SourceError::Io {
            what: "a reader thread".into(),
            source: std::io::Error::other("panicked"),
        };
        let _ = self.ring.sender.send(Delivery::Failed(error));
        let mut ready = Vec::new();
        let ended = source_ended(self.shared, &mut ready);
        deliver(self.shared, self.ring, &mut ready, ended);
    }
}
