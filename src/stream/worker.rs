//! The stream's workers: each takes every queued group in order, sends its
//! share of the packets (worker `w` of `n` sends packets `w`, `w + n`, ...)
//! into its own transport in batches, and paces them at `1/n` of the rate,
//! so that together the workers keep the stream's rate. The last worker to
//! finish a group completes it, after every worker has let go of its heaps;
//! since every worker takes groups in order, completions come in order.
//!
//! A batch does not end at a group's end when more groups are already
//! queued: it carries on into them (up to [`LOOKAHEAD`] groups ahead) until
//! it is full, so small heaps still reach the transport in full batches (a
//! syscall each). A group completes once the batch holding its last packet
//! is sent; the groups after it resume after the packets the batch took.

use std::cell::OnceCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arrayvec::ArrayVec;
use bytes::Bytes;
use crossbeam_channel::{Receiver, TryRecvError};

use super::{GroupMode, SendError, Shared, StreamConfig, WorkerConfig};
use crate::pacing::{Clock, RateLimiter, RateLimiterConfig};
use crate::protocol::{Heap, HeapPackets, Packetizer};
use crate::transport::{PacketMeta, Transport, TransportError};

/// A heap with its cnt, destination and pacing resolved.
#[derive(Debug)]
pub(super) struct QueuedHeap {
    pub heap: Arc<Heap<'static>>,
    pub cnt: u64,
    pub substream: usize,
    /// 0 for unlimited.
    pub nanos_per_byte: f64,
}

/// What a job sends.
#[derive(Debug)]
pub(super) enum Work {
    /// A group of heaps.
    Heaps { heaps: Vec<QueuedHeap>, mode: GroupMode },
    /// Raw datagrams to one substream.
    Datagrams {
        datagrams: Vec<Bytes>,
        substream: usize,
        nanos_per_byte: f64,
    },
}

/// One submission's outcome, shared by the workers that each send a share.
#[derive(Debug)]
pub(super) struct JobShare {
    remaining: AtomicUsize,
    slots: usize,
    outcome: Mutex<(u64, Option<SendError>)>,
    done: Mutex<Option<oneshot::Sender<Result<u64, SendError>>>>,
}

impl JobShare {
    pub fn new(workers: usize, slots: usize, done: oneshot::Sender<Result<u64, SendError>>) -> Self {
        JobShare {
            remaining: AtomicUsize::new(workers),
            slots,
            outcome: Mutex::new((0, None)),
            done: Mutex::new(Some(done)),
        }
    }

    /// Adds one worker's result; the last one frees the queue slots and
    /// reports the bytes sent or the first error.
    fn finish(&self, result: Result<u64, SendError>, shared: &Shared) {
        {
            let mut outcome = self.outcome.lock().unwrap_or_else(|p| p.into_inner());
            match result {
                Ok(bytes) => outcome.0 += bytes,
                Err(e) => {
                    outcome.1.get_or_insert(e);
                }
            }
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let (bytes, error) = std::mem::take(&mut *self.outcome.lock().unwrap_or_else(|p| p.into_inner()));
        let counter = match error {
            None => &shared.counters.heaps,
            Some(_) => &shared.counters.errors,
        };
        counter.fetch_add(self.slots as u64, Ordering::Relaxed);
        shared.release(self.slots);
        let done = self.done.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(done) = done {
            let _ = done.send(error.map_or(Ok(bytes), Err));
        }
    }
}

/// What one worker receives for one submission.
#[derive(Debug)]
pub(super) struct Job {
    pub work: Arc<Work>,
    pub share: Arc<JobShare>,
}

pub(super) struct Worker<T> {
    transport: T,
    sizing: Packetizer,
    shared: Arc<Shared>,
    clock: Clock,
    limiter: RateLimiter,
    /// How long to poll an empty queue before sleeping (ns).
    idle_poll_ns: u64,
    /// This worker's index among `of` workers.
    index: usize,
    of: usize,
    /// Packets of all jobs so far (sent here or by the others): the share
    /// runs on across heaps, so no worker always gets a heap's odd packet.
    position: usize,
}

impl<T: Transport> Worker<T> {
    /// Worker `index` of `of`, pacing its share at `1/of` of the rate.
    pub fn new(
        transport: T,
        config: StreamConfig,
        worker: WorkerConfig,
        sizing: Packetizer,
        shared: Arc<Shared>,
        (index, of): (usize, usize),
    ) -> Self {
        let clock = Clock::new(worker.clock, worker.spin_threshold);
        let limiter = RateLimiter::new(
            RateLimiterConfig {
                burst_size: (config.burst_size / of).max(1) as u64,
                burst_rate_ratio: config.burst_rate_ratio,
            },
            clock.now(),
        );
        Worker {
            transport,
            sizing,
            shared,
            clock,
            limiter,
            idle_poll_ns: worker.idle_poll.as_nanos() as u64,
            index,
            of,
            position: 0,
        }
    }

    /// Sends groups until the stream is dropped and the queue is empty.
    pub fn run(mut self, queue: Receiver<Job>) {
        // Never more than a batch's look-ahead, so it never grows mid-run.
        let mut carried: VecDeque<Carried> = VecDeque::with_capacity(LOOKAHEAD);
        loop {
            let Carried { job, begun } = match carried.pop_front() {
                Some(next) => next,
                None => match self.poll_queue(&queue) {
                    Ok(job) => Carried::new(job),
                    Err(TryRecvError::Disconnected) => return,
                    Err(TryRecvError::Empty) => match queue.recv() {
                        Ok(job) => {
                            // Woken from idle: no catch-up burst.
                            self.limiter.wake(self.clock.now());
                            Carried::new(job)
                        }
                        Err(_) => return,
                    },
                },
            };
            let Job { work, share } = job;
            let sizing = self.sizing;
            let region = self.transport.payload_region();
            let mut source = JobPackets::new(&work, &sizing, region, begun.consumed);
            let result = match begun.failed {
                Some(error) => {
                    self.abandon(&mut source);
                    Err(error)
                }
                None => self.send_packets(&mut source, begun.bytes, &mut carried, &queue),
            };
            drop(source);
            // Let go of the heaps before reporting, so the caller can update
            // a heap in place and submit again at once.
            drop(work);
            share.finish(result, &self.shared);
        }
    }

    /// The next job, polling an empty queue for up to `idle_poll_ns` before
    /// giving up (see [`WorkerConfig::idle_poll`]).
    fn poll_queue(&self, queue: &Receiver<Job>) -> Result<Job, TryRecvError> {
        let start = self.clock.now();
        loop {
            match queue.try_recv() {
                Err(TryRecvError::Empty) if self.clock.now() - start < self.idle_poll_ns => {
                    std::hint::spin_loop()
                }
                other => return other,
            }
        }
    }

    /// Passes over the rest of `source` (after an error), keeping count of
    /// the packets so the workers' shares of later jobs stay in step.
    fn abandon(&mut self, source: &mut dyn PacketSource) {
        while source.skip().is_some() {
            self.position += 1;
        }
    }

    /// Sends this worker's share of what is left of `source` (of which an
    /// earlier batch already sent `bytes`) in batches, pacing each packet.
    /// Near the end, the last batch carries on into the jobs that follow
    /// (those `carried` over from an earlier batch first, then newly
    /// queued ones) until it is full, but finishes no more of them than
    /// are left queued; they go back on `carried` with how far they got.
    fn send_packets(
        &mut self,
        source: &mut dyn PacketSource,
        mut bytes: u64,
        carried: &mut VecDeque<Carried>,
        queue: &Receiver<Job>,
    ) -> Result<u64, SendError> {
        // Filled one at a time while the earlier ones are borrowed.
        let ahead: [OnceCell<Job>; LOOKAHEAD] = Default::default();
        let mut ahead_begun: [Begun; LOOKAHEAD] = Default::default();
        // On the stack: how far a batch looks ahead depends on timing, and
        // must not change how often a job allocates.
        let mut ahead_sources: ArrayVec<JobPackets<'_>, LOOKAHEAD> = ArrayVec::new();
        // Of them, those in reach of batches (a last one may be held back).
        let mut taken = 0;
        let sizing = self.sizing;
        let region = self.transport.payload_region();
        let wanted = self.transport.max_batch() * self.of;
        let share = self.of as f64;
        let result = loop {
            // Look ahead once this job alone cannot fill a batch.
            let mut in_reach = source.remaining();
            if in_reach < wanted {
                in_reach += ahead_sources[..taken]
                    .iter()
                    .map(PacketSource::remaining)
                    .sum::<usize>();
                while in_reach < wanted && taken < LOOKAHEAD {
                    if taken == ahead_sources.len() {
                        let next = match carried.pop_front() {
                            Some(next) => next,
                            None => match queue.try_recv() {
                                Ok(job) => Carried::new(job),
                                Err(_) => break,
                            },
                        };
                        ahead_begun[taken] = next.begun;
                        let job = ahead[taken].get_or_init(|| next.job);
                        ahead_sources.push(JobPackets::new(
                            &job.work,
                            &sizing,
                            region,
                            ahead_begun[taken].consumed,
                        ));
                    }
                    // A job this batch would finish completes only once the
                    // batch is sent. Finishing every queued job in one batch
                    // leaves nothing to send while the submitter, woken by
                    // those completions, refills the queue: so finish at
                    // most as many jobs ahead as stay queued behind them
                    // (the one held back may join a later batch).
                    let left = ahead_sources[taken].remaining();
                    if in_reach + left <= wanted && taken >= carried.len() + queue.len() {
                        break;
                    }
                    in_reach += left;
                    taken += 1;
                }
            }
            let bytes_before: [u64; LOOKAHEAD] = std::array::from_fn(|k| ahead_begun[k].bytes);
            let mut chain = Chain {
                first: &mut *source,
                rest: &mut ahead_sources[..taken],
                rest_begun: &mut ahead_begun,
                at: 0,
            };
            let mut packets = ShareOf {
                inner: &mut chain,
                index: self.index,
                of: self.of,
                position: &mut self.position,
            };
            packets.align();
            if packets.inner.first.is_done() {
                break Ok(());
            }
            let (limiter, clock) = (&mut self.limiter, &self.clock);
            let mut paused_until = None;
            let mut batch_bytes = 0u64;
            let mut fill = |buf: &mut [u8]| -> Option<PacketMeta> {
                let next_len = packets.next_len()?;
                if let Some(deadline) = limiter.next_send(next_len, || clock.now()) {
                    paused_until = Some(deadline);
                    return None;
                }
                let (meta, nanos_per_byte) = packets.write_next(buf)?;
                limiter.sent(meta.len, nanos_per_byte * share);
                batch_bytes += meta.len as u64;
                Some(meta)
            };
            let sent = self.transport.send(&mut fill);
            // Counted once a batch, and only once the transport took it.
            let counters = &self.shared.counters.workers[self.index];
            counters
                .ring_stalls
                .store(self.transport.ring_stalls(), Ordering::Relaxed);
            match sent {
                Ok(sent) => {
                    let ahead_bytes: u64 = ahead_begun.iter().map(|b| b.bytes).sum();
                    bytes += batch_bytes - (ahead_bytes - bytes_before.iter().sum::<u64>());
                    counters.packets.fetch_add(sent as u64, Ordering::Relaxed);
                    counters.bytes.fetch_add(batch_bytes, Ordering::Relaxed);
                }
                Err(e) => {
                    // The jobs ahead with packets in this batch fail with it.
                    for (begun, before) in ahead_begun.iter_mut().zip(bytes_before) {
                        if begun.bytes > before {
                            begun.failed = Some(shared_batch_failed(&e).into());
                        }
                    }
                    self.abandon(source);
                    break Err(SendError::from(e));
                }
            }
            if let Some(deadline) = paused_until {
                self.clock.wait_until(deadline);
            }
        };
        // The jobs fetched (the first `fetched` cells, a held-back one
        // included), back on the front of `carried`, in order, ahead of any
        // left there.
        let fetched = ahead_sources.len();
        drop(ahead_sources);
        let mut ahead = ahead;
        for k in (0..fetched).rev() {
            if let Some(job) = ahead[k].take() {
                let begun = std::mem::take(&mut ahead_begun[k]);
                carried.push_front(Carried { job, begun });
            }
        }
        result.map(|()| bytes)
    }
}

/// Jobs a batch may reach into beyond the current one.
const LOOKAHEAD: usize = 16;

/// How far an earlier batch got into a job.
#[derive(Debug, Default)]
struct Begun {
    /// Packets taken (sent here or passed over for other workers).
    consumed: usize,
    /// Bytes of them sent here.
    bytes: u64,
    /// The batch failed with some of them in it.
    failed: Option<SendError>,
}

/// A job taken from the queue, and how far batches already got into it.
struct Carried {
    job: Job,
    begun: Begun,
}

impl Carried {
    fn new(job: Job) -> Self {
        Carried {
            job,
            begun: Begun::default(),
        }
    }
}

/// The error for a job whose first packets were in a batch that failed.
fn shared_batch_failed(e: &TransportError) -> TransportError {
    let kind = match e {
        TransportError::Io { source, .. } => source.kind(),
        _ => std::io::ErrorKind::Other,
    };
    TransportError::Io {
        what: "a batch shared with the previous submission failed".into(),
        source: std::io::Error::new(kind, e.to_string()),
    }
}

/// One job's packets.
enum JobPackets<'j> {
    Group(GroupPackets<'j>),
    Datagrams(DatagramPackets<'j>),
}

impl<'j> JobPackets<'j> {
    /// The packets of `work` after the first `consumed`, which earlier
    /// batches took.
    fn new(work: &'j Work, sizing: &Packetizer, region: Option<(usize, usize)>, consumed: usize) -> Self {
        let mut packets = Self::all(work, sizing, region);
        for _ in 0..consumed {
            packets.skip();
        }
        packets
    }

    fn all(work: &'j Work, sizing: &Packetizer, region: Option<(usize, usize)>) -> Self {
        match work {
            Work::Heaps { heaps, mode } => JobPackets::Group(GroupPackets::new(sizing, heaps, *mode, region)),
            Work::Datagrams {
                datagrams,
                substream,
                nanos_per_byte,
            } => JobPackets::Datagrams(DatagramPackets {
                datagrams,
                next: 0,
                substream: *substream,
                nanos_per_byte: *nanos_per_byte,
            }),
        }
    }

    fn as_dyn(&mut self) -> &mut (dyn PacketSource + 'j) {
        match self {
            JobPackets::Group(g) => g,
            JobPackets::Datagrams(d) => d,
        }
    }

    fn as_ref(&self) -> &(dyn PacketSource + 'j) {
        match self {
            JobPackets::Group(g) => g,
            JobPackets::Datagrams(d) => d,
        }
    }
}

impl PacketSource for JobPackets<'_> {
    fn is_done(&mut self) -> bool {
        self.as_dyn().is_done()
    }

    fn remaining(&self) -> usize {
        self.as_ref().remaining()
    }

    fn next_len(&mut self) -> Option<usize> {
        self.as_dyn().next_len()
    }

    fn write_next(&mut self, buf: &mut [u8]) -> Option<(PacketMeta, f64)> {
        self.as_dyn().write_next(buf)
    }

    fn skip(&mut self) -> Option<()> {
        self.as_dyn().skip()
    }
}

/// One job's packets and then the following jobs', counting how far it
/// gets into each of those.
struct Chain<'c, 'j, A: ?Sized> {
    first: &'c mut A,
    rest: &'c mut [JobPackets<'j>],
    rest_begun: &'c mut [Begun],
    /// The first of `rest` not yet done.
    at: usize,
}

/// Where a chain's next packet comes from.
enum Next {
    First,
    /// `rest[k]`.
    Rest(usize),
}

impl<'j, A: PacketSource + ?Sized> Chain<'_, 'j, A> {
    /// The job the next packet comes from, or `None` when all are done.
    fn current(&mut self) -> Option<Next> {
        if !self.first.is_done() {
            return Some(Next::First);
        }
        while self.at < self.rest.len() {
            if !self.rest[self.at].is_done() {
                return Some(Next::Rest(self.at));
            }
            self.at += 1;
        }
        None
    }
}

impl<A: PacketSource + ?Sized> PacketSource for Chain<'_, '_, A> {
    fn is_done(&mut self) -> bool {
        self.current().is_none()
    }

    fn remaining(&self) -> usize {
        self.first.remaining() + self.rest.iter().map(PacketSource::remaining).sum::<usize>()
    }

    fn next_len(&mut self) -> Option<usize> {
        match self.current()? {
            Next::First => self.first.next_len(),
            Next::Rest(k) => self.rest[k].next_len(),
        }
    }

    fn write_next(&mut self, buf: &mut [u8]) -> Option<(PacketMeta, f64)> {
        let Next::Rest(k) = self.current()? else {
            return self.first.write_next(buf);
        };
        let packet = self.rest[k].write_next(buf)?;
        self.rest_begun[k].consumed += 1;
        self.rest_begun[k].bytes += packet.0.len as u64;
        Some(packet)
    }

    fn skip(&mut self) -> Option<()> {
        let Next::Rest(k) = self.current()? else {
            return self.first.skip();
        };
        self.rest[k].skip()?;
        self.rest_begun[k].consumed += 1;
        Some(())
    }
}

/// Packets to send, one at a time, with the ns per byte each is paced at.
trait PacketSource {
    fn is_done(&mut self) -> bool;
    /// Packets left (sent here or by other workers).
    fn remaining(&self) -> usize;
    /// Length of the next packet, if any.
    fn next_len(&mut self) -> Option<usize>;
    fn write_next(&mut self, buf: &mut [u8]) -> Option<(PacketMeta, f64)>;
    /// Passes over the next packet (another worker sends it).
    fn skip(&mut self) -> Option<()>;
}

/// Every `of`th packet of a source, counting on from `position`.
struct ShareOf<'s, S: ?Sized> {
    inner: &'s mut S,
    index: usize,
    of: usize,
    position: &'s mut usize,
}

impl<S: PacketSource + ?Sized> ShareOf<'_, S> {
    /// Skips the packets other workers send, up to this worker's next.
    fn align(&mut self) {
        while *self.position % self.of != self.index {
            if self.inner.skip().is_none() {
                return;
            }
            *self.position += 1;
        }
    }

    fn next_len(&mut self) -> Option<usize> {
        self.align();
        self.inner.next_len()
    }

    fn write_next(&mut self, buf: &mut [u8]) -> Option<(PacketMeta, f64)> {
        self.align();
        let packet = self.inner.write_next(buf)?;
        *self.position += 1;
        Some(packet)
    }
}

/// Raw datagrams, copied as they are.
struct DatagramPackets<'j> {
    datagrams: &'j [Bytes],
    next: usize,
    substream: usize,
    nanos_per_byte: f64,
}

impl PacketSource for DatagramPackets<'_> {
    fn is_done(&mut self) -> bool {
        self.next == self.datagrams.len()
    }

    fn remaining(&self) -> usize {
        self.datagrams.len() - self.next
    }

    fn next_len(&mut self) -> Option<usize> {
        self.datagrams.get(self.next).map(Bytes::len)
    }

    fn write_next(&mut self, buf: &mut [u8]) -> Option<(PacketMeta, f64)> {
        let datagram = self.datagrams.get(self.next)?;
        buf[..datagram.len()].copy_from_slice(datagram);
        self.next += 1;
        let meta = PacketMeta::written(datagram.len(), self.substream);
        Some((meta, self.nanos_per_byte))
    }

    fn skip(&mut self) -> Option<()> {
        self.datagrams.get(self.next)?;
        self.next += 1;
        Some(())
    }
}

/// The packets of a group in the group's order.
struct GroupPackets<'j> {
    heaps: Vec<(HeapPackets<'j>, usize, f64)>,
    mode: GroupMode,
    current: usize,
    remaining: usize,
    region: Option<(usize, usize)>,
}

impl<'j> GroupPackets<'j> {
    /// The packets of `queued`; payload wholly inside `region` (start,
    /// length) is sent by reference rather than written.
    fn new(
        sizing: &Packetizer,
        queued: &'j [QueuedHeap],
        mode: GroupMode,
        region: Option<(usize, usize)>,
    ) -> Self {
        let mut heaps = Vec::with_capacity(queued.len());
        for q in queued {
            let packets = sizing
                .packets(&q.heap, q.cnt)
                .expect("heaps are checked when submitted");
            heaps.push((packets, q.substream, q.nanos_per_byte));
        }
        let remaining = heaps.iter().filter(|(p, _, _)| !p.is_done()).count();
        GroupPackets {
            heaps,
            mode,
            current: 0,
            remaining,
            region,
        }
    }

    /// Moves `current` to a heap with packets left, if any.
    fn skip_finished(&mut self) -> Option<()> {
        if self.remaining == 0 {
            return None;
        }
        while self.heaps[self.current].0.is_done() {
            self.current = (self.current + 1) % self.heaps.len();
        }
        Some(())
    }

    /// Writes the group's next packet into `buf` (its header only, when its
    /// payload can go by reference), or passes over it.
    fn step(&mut self, buf: Option<&mut [u8]>) -> Option<(PacketMeta, f64)> {
        self.skip_finished()?;
        let region = self.region;
        let (packets, substream, nanos_per_byte) = &mut self.heaps[self.current];
        let meta = match buf {
            Some(buf) => write_packet(packets, buf, *substream, region),
            None => PacketMeta::written(packets.skip_next().expect("heap has packets left"), *substream),
        };
        let rate = *nanos_per_byte;
        if packets.is_done() {
            self.remaining -= 1;
        }
        if self.mode == GroupMode::RoundRobin {
            self.current = (self.current + 1) % self.heaps.len();
        }
        Some((meta, rate))
    }
}

/// Writes a heap's next packet: by reference to `region` when all its
/// payload lies there (and needs no padding), else whole.
fn write_packet(
    packets: &mut HeapPackets<'_>,
    buf: &mut [u8],
    substream: usize,
    region: Option<(usize, usize)>,
) -> PacketMeta {
    let whole = |packets: &mut HeapPackets<'_>, buf: &mut [u8]| {
        let len = packets
            .write_next(buf)
            .expect("transport buffers hold max_packet_size")
            .expect("heap has packets left");
        PacketMeta::written(len, substream)
    };
    let Some((start, size)) = region else {
        return whole(packets, buf);
    };
    let offset_in = |piece: &[u8]| {
        let at = (piece.as_ptr() as usize).checked_sub(start)?;
        (at + piece.len() <= size).then_some(at as u64)
    };
    let Some(parts) = packets
        .next_packet_parts(buf)
        .expect("transport buffers hold max_packet_size")
    else {
        // More pieces than fit a reference list: write it whole.
        return whole(packets, buf);
    };
    let mut meta = PacketMeta::written(parts.len(), substream);
    let all_in_region = parts.padding == 0 && parts.pieces().iter().all(|piece| offset_in(piece).is_some());
    if all_in_region {
        for piece in parts.pieces() {
            let pushed = meta
                .by_reference
                .push(offset_in(piece).expect("checked"), piece.len() as u32);
            debug_assert!(pushed, "at most MAX_PARTS pieces");
        }
    } else {
        parts.write_payload(buf);
    }
    meta
}

impl PacketSource for GroupPackets<'_> {
    fn is_done(&mut self) -> bool {
        self.remaining == 0
    }

    fn remaining(&self) -> usize {
        self.heaps.iter().map(|(packets, _, _)| packets.remaining()).sum()
    }

    fn next_len(&mut self) -> Option<usize> {
        self.skip_finished()?;
        self.heaps[self.current].0.next_packet_len()
    }

    fn write_next(&mut self, buf: &mut [u8]) -> Option<(PacketMeta, f64)> {
        self.step(Some(buf))
    }

    fn skip(&mut self) -> Option<()> {
        self.step(None).map(|_| ())
    }
}
