//! The stream's workers. Each takes every submission in order and sends its
//! share of the packets (worker `w` of `n` sends packets `w`, `w + n`, ...,
//! counted across submissions) into its own transport in batches, paced at
//! `1/n` of the rate, so that together the workers keep the stream's rate.
//! The last worker done with a submission completes it; since every worker
//! takes submissions in order, completions come in order.
//!
//! A worker keeps the jobs it has taken from its queue in a window, oldest
//! first, each with its own cursor. A batch draws on the window in order
//! and runs on past a job's end into the next ones (up to [`LOOKAHEAD`]
//! jobs ahead) until it is full, so small heaps still reach the transport
//! in full batches (a syscall each). A job completes once the batch holding
//! its last packet is sent.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use arrayvec::ArrayVec;
use crossbeam_channel::{Receiver, TryRecvError};

use super::job::{ActiveJob, JobView, NextPacket, WorkerShare};
use super::{SendError, Shared, StreamConfig};
use crate::pacing::{Clock, RateLimiter, RateLimiterConfig};
use crate::protocol::PacketSizing;
use crate::transport::{write_each, PacketPieces, PacketSource, PacketSpec, Transport, TransportError};

/// Jobs a batch may reach into beyond the first.
const LOOKAHEAD: usize = 16;

/// Which packets are this worker's: worker `index` of `workers` sends
/// every `workers`th packet, counting on across jobs, so no worker always
/// gets a heap's odd packet.
#[derive(Debug)]
struct Share {
    index: usize,
    workers: usize,
    /// Packets of all jobs so far, sent here or passed over.
    position: usize,
    /// `workers`, by which each worker's time per byte is multiplied (it
    /// sends `1/workers` of the packets at the stream's rate).
    pace_scale: f64,
}

impl Share {
    #[inline]
    fn is_mine(&self) -> bool {
        // One worker has every packet: no division per packet.
        self.workers == 1 || self.position % self.workers == self.index
    }

    /// Passes over the packets of `job` that other workers send, up to
    /// this worker's next.
    #[inline]
    fn align(&mut self, job: &mut JobView<'_>) {
        while !self.is_mine() && job.skip() {
            self.position += 1;
        }
    }
}

/// How a worker is placed among a stream's workers, and how it idles.
#[derive(Debug, Clone, Copy)]
pub(super) struct Placement {
    /// This worker's index.
    pub index: usize,
    /// Workers of the stream.
    pub workers: usize,
    /// How long to poll an empty queue before sleeping.
    pub idle_poll: Duration,
}

/// A stream's worker: one transport, one clock, one rate limiter.
pub(super) struct Worker<T, C> {
    transport: T,
    sizing: PacketSizing,
    stream: Arc<Shared>,
    clock: C,
    limiter: RateLimiter,
    idle_poll: Duration,
    share: Share,
    /// Jobs taken from the queue, oldest first.
    window: VecDeque<ActiveJob>,
}

/// What sending one batch came to.
struct BatchOutcome {
    result: Result<usize, TransportError>,
    /// The job (in the window) a failure is first of all.
    culprit: usize,
    /// When the pacing lets the next packet go, if it ended the batch.
    pause: Option<u64>,
}

impl<T: Transport, C: Clock> Worker<T, C> {
    /// A worker placed as `placement` says, pacing its share of `config`'s
    /// rate on `clock`.
    pub fn new(
        transport: T,
        config: &StreamConfig,
        clock: C,
        sizing: PacketSizing,
        stream: Arc<Shared>,
        placement: Placement,
    ) -> Self {
        let limiter = RateLimiter::new(
            RateLimiterConfig {
                burst_size: (config.burst_size / placement.workers).max(1) as u64,
                burst_rate_ratio: config.burst_rate_ratio,
            },
            clock.now(),
        );
        Worker {
            transport,
            sizing,
            stream,
            clock,
            limiter,
            idle_poll: placement.idle_poll,
            share: Share {
                index: placement.index,
                workers: placement.workers,
                position: 0,
                pace_scale: placement.workers as f64,
            },
            // Never more than a batch's look-ahead (and one held back).
            window: VecDeque::with_capacity(LOOKAHEAD + 2),
        }
    }

    /// Sends jobs until the stream is dropped and the queue is empty.
    pub fn run(mut self, queue: Receiver<WorkerShare>) {
        loop {
            if self.window.is_empty() {
                let Some(share) = self.wait_for_job(&queue) else {
                    return;
                };
                self.window.push_back(ActiveJob::start(share, self.sizing));
                // A job with no packet for this worker completes at once.
                self.complete_finished();
                continue;
            }
            let reach = self.fill_window(&queue);
            let batch = self.send_batch(reach);
            self.settle(reach, batch);
        }
    }

    /// The next job, polling an empty queue for up to `idle_poll` before
    /// sleeping on it; `None` once the stream is gone.
    fn wait_for_job(&mut self, queue: &Receiver<WorkerShare>) -> Option<WorkerShare> {
        // Idle from here: time owed from before (a stall) stays owed, idle
        // time is not banked for a catch-up burst.
        let idle_since = self.clock.now();
        self.limiter.idle(idle_since);
        // The poll is timed on the pacing clock (the TSC where there is
        // one): where the host's clock_gettime is a system call (this VM),
        // timing it with Instant cost two calls a heap.
        let poll_until = idle_since.saturating_add(self.idle_poll.as_nanos() as u64);
        let share = loop {
            match queue.try_recv() {
                Ok(share) => break share,
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) if !self.idle_poll.is_zero() && self.clock.now() < poll_until => {
                    std::hint::spin_loop()
                }
                Err(TryRecvError::Empty) => break queue.recv().ok()?,
            }
        };
        self.limiter.wake(self.clock.now());
        Some(share)
    }

    /// Takes queued jobs into the window until the jobs a batch may draw on
    /// hold a batch for every worker, and returns how many that is (from
    /// the front). A job the batch would finish completes only once the
    /// batch is sent; finishing every queued job in one batch would leave
    /// nothing to send while the submitter, woken by those completions,
    /// refills the queue. So a batch finishes no more jobs ahead than stay
    /// queued behind them (one held back waits in the window).
    fn fill_window(&mut self, queue: &Receiver<WorkerShare>) -> usize {
        let wanted = self.transport.max_batch() * self.share.workers;
        let (mut reach, mut in_reach) = (1, self.window[0].remaining());
        while in_reach < wanted && reach <= LOOKAHEAD {
            if reach == self.window.len() {
                match queue.try_recv() {
                    Ok(share) => self.window.push_back(ActiveJob::start(share, self.sizing)),
                    Err(_) => break,
                }
            }
            let left = self.window[reach].remaining();
            let finished_ahead = reach - 1;
            let queued_behind = self.window.len() - reach - 1 + queue.len();
            if in_reach + left <= wanted && finished_ahead >= queued_behind {
                break;
            }
            in_reach += left;
            reach += 1;
        }
        reach
    }

    /// Hands the transport one batch from the first `reach` jobs.
    fn send_batch(&mut self, reach: usize) -> BatchOutcome {
        // fill_window reaches at most LOOKAHEAD jobs past the first.
        debug_assert!(reach <= LOOKAHEAD + 1);
        let mut batch = Batch {
            jobs: self.window.iter_mut().take(reach).map(ActiveJob::view).collect(),
            at: 0,
            pacing: Pacing {
                share: &mut self.share,
                limiter: &mut self.limiter,
                clock: &self.clock,
                pause: None,
            },
            taking: None,
        };
        let result = self.transport.send(&mut batch);
        // A refused packet (or one a full in-process queue turned away)
        // is its job's fault; any other failure is the batch's, which was
        // for the first job.
        let culprit = match &result {
            Err(TransportError::BadPacket(_) | TransportError::InprocFull { .. }) => batch.at.min(reach - 1),
            _ => 0,
        };
        BatchOutcome {
            result,
            culprit,
            pause: batch.pacing.pause,
        }
    }

    /// Books a sent batch to its jobs and counters, or fails the jobs with
    /// packets in it; then completes what it finished and waits as long as
    /// the pacing says.
    fn settle(&mut self, reach: usize, batch: BatchOutcome) {
        self.book(reach, batch.result, batch.culprit);
        self.complete_finished();
        if let Some(deadline) = batch.pause {
            self.clock.wait_until(deadline);
        }
    }

    /// Books a batch's outcome to its jobs and this worker's counters.
    fn book(&mut self, reach: usize, result: Result<usize, TransportError>, culprit: usize) {
        let counters = &self.stream.counters.workers[self.share.index];
        // Counted once a batch, and only once the transport took it.
        counters
            .ring_stalls
            .store(self.transport.ring_stalls(), Ordering::Relaxed);
        match result {
            Ok(sent) => {
                let mut bytes = 0;
                for job in self.window.iter_mut().take(reach) {
                    let in_batch = std::mem::take(&mut job.in_batch);
                    job.sent += in_batch;
                    bytes += in_batch;
                }
                counters.packets.fetch_add(sent as u64, Ordering::Relaxed);
                counters.bytes.fetch_add(bytes, Ordering::Relaxed);
            }
            Err(error) => self.fail_batch(reach, error, culprit),
        }
    }

    /// Fails the `culprit` job (the one whose packet a transport refused,
    /// else the first, which the batch was for: it fails even when the
    /// transport failed before taking a packet, say on a link gone down)
    /// with the transport's error, and every other job with packets in the
    /// batch as sharing it. Their remaining packets are passed over
    /// (counted, so the workers' shares stay in step).
    fn fail_batch(&mut self, reach: usize, error: TransportError, culprit: usize) {
        for (k, job) in self.window.iter_mut().take(reach).enumerate() {
            let in_batch = std::mem::take(&mut job.in_batch);
            let failure = if k == culprit {
                SendError::Transport(error.clone())
            } else if in_batch > 0 {
                SendError::SharedBatch(error.clone())
            } else {
                continue;
            };
            job.failed.get_or_insert(failure);
            self.share.position += job.skip_rest();
        }
    }

    /// Completes the jobs at the front of the window that have nothing
    /// left for this worker, in order.
    fn complete_finished(&mut self) {
        while let Some(front) = self.window.front_mut() {
            self.share.align(&mut front.view());
            if !front.is_done() {
                return;
            }
            if let Some(job) = self.window.pop_front() {
                job.finish();
            }
        }
    }
}

/// One batch in the making: the packets of the window's first jobs (those
/// in reach) that are this worker's, in order, as the pacing lets them go.
/// The jobs' work is borrowed for the whole batch, so the payload pieces
/// handed to the transport stay valid until it has sent them.
struct Batch<'w, C> {
    jobs: ArrayVec<JobView<'w>, { LOOKAHEAD + 1 }>,
    /// The job packets come from now.
    at: usize,
    pacing: Pacing<'w, C>,
    /// The packet described to the transport, not yet written.
    taking: Option<NextPacket>,
}

/// A batch's pacing: the worker's share of the packets, its rate limiter
/// and clock, and where the pacing ended the batch.
struct Pacing<'w, C> {
    share: &'w mut Share,
    limiter: &'w mut RateLimiter,
    clock: &'w C,
    /// When the pacing lets the next packet go, if it ended the batch.
    pause: Option<u64>,
}

impl<C: Clock> Pacing<'_, C> {
    /// Whether a packet of `len` bytes may go now; if not, notes when.
    #[inline]
    fn lets_go(&mut self, len: usize) -> bool {
        let clock = self.clock;
        match self.limiter.next_send(len, || clock.now()) {
            Some(deadline) => {
                self.pause = Some(deadline);
                false
            }
            None => true,
        }
    }

    /// Books a packet taken, paced at `nanos_per_byte`.
    #[inline]
    fn took(&mut self, len: usize, nanos_per_byte: f64) {
        self.limiter.sent(len, nanos_per_byte * self.share.pace_scale);
        self.share.position += 1;
    }
}

impl<'w, C: Clock> Batch<'w, C> {
    /// This worker's next packet in reach, moving past jobs with none.
    fn peek(&mut self) -> Option<NextPacket> {
        while let Some(job) = self.jobs.get_mut(self.at) {
            self.pacing.share.align(job);
            if let Some(packet) = job.peek() {
                return Some(packet);
            }
            self.at += 1;
        }
        None
    }

    /// Accounts for the packet described, now taken: `None` if none was.
    fn take(&mut self) -> Option<&mut JobView<'w>> {
        let packet = self.taking.take()?;
        self.pacing.took(packet.len, packet.nanos_per_byte);
        self.jobs.get_mut(self.at)
    }
}

impl<'w, C: Clock> PacketSource<'w> for Batch<'w, C> {
    fn next_packet(&mut self) -> Option<PacketSpec> {
        let packet = self.peek()?;
        if !self.pacing.lets_go(packet.len) {
            return None;
        }
        self.taking = Some(packet);
        Some(PacketSpec {
            len: packet.len,
            substream: packet.substream,
        })
    }

    fn write(&mut self, buf: &mut [u8]) {
        if let Some(job) = self.take() {
            job.write(buf);
        }
    }

    fn write_pieces(&mut self, buf: &mut [u8]) -> PacketPieces<'w> {
        match self.take() {
            Some(job) => job.write_pieces(buf),
            None => PacketPieces::new(0),
        }
    }

    fn write_batch(&mut self, bufs: &mut [&mut [u8]], specs: &mut [PacketSpec]) -> usize {
        if self.pacing.share.workers > 1 {
            // Shares interleave packet by packet.
            return write_each(self, bufs, specs);
        }
        let room = bufs.len().min(specs.len());
        let (bufs, specs) = (&mut bufs[..room], &mut specs[..room]);
        let mut written = 0;
        while written < room && self.pacing.pause.is_none() {
            let Some(job) = self.jobs.get_mut(self.at) else {
                break;
            };
            let pacing = &mut self.pacing;
            let run = job.write_run(
                &mut bufs[written..],
                &mut specs[written..],
                |len, nanos_per_byte| {
                    let go = pacing.lets_go(len);
                    if go {
                        pacing.took(len, nanos_per_byte);
                    }
                    go
                },
            );
            let run = match run {
                Some(0) if self.pacing.pause.is_none() => {
                    self.at += 1;
                    continue;
                }
                Some(run) => run,
                // Other work goes a packet at a time.
                None => write_each(self, &mut bufs[written..=written], &mut specs[written..=written]),
            };
            if run == 0 {
                break;
            }
            written += run;
            // A packet stated but not written (its buffer too short) fails
            // the batch: nothing more goes in it.
            let last = written - 1;
            if specs[last].len == 0 || specs[last].len > bufs[last].len() {
                break;
            }
        }
        written
    }
}

#[cfg(test)]
mod tests {
    //! The worker's pacing on a clock that moves only when the worker waits
    //! (an infinitely fast host) or when a test's transport says (a stall).

    use std::sync::atomic::AtomicU64;
    use std::sync::Mutex;

    use bytes::Bytes;

    use super::*;
    use crate::protocol::{Flavour, Heap, Item};
    use crate::stream::{Completion, GroupMode, HeapRef, Stream, WorkerConfig};
    use crate::transport::Limits;

    #[derive(Debug, Clone, Default)]
    struct FakeClock(Arc<AtomicU64>);

    impl Clock for FakeClock {
        fn now(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }

        fn wait_until(&self, deadline: u64) {
            self.0.fetch_max(deadline, Ordering::SeqCst);
        }
    }

    /// A packet's bytes and substream.
    type Packet = (Vec<u8>, usize);
    /// When a packet left, and its length.
    type Departure = (u64, usize);

    /// Records when each packet left and its length; moves the clock on by
    /// `stall` ns during batch `stall_at`.
    struct Recorder {
        clock: FakeClock,
        packets: Arc<Mutex<Vec<Departure>>>,
        /// Every packet, where kept.
        bytes: Option<Arc<Mutex<Vec<Packet>>>>,
        /// Whether batches are written in one call (`write_batch`), as
        /// copying AF_XDP takes them, or packet by packet.
        batched: bool,
        /// Room for specs handed to `write_batch` (64 buffers each time).
        spec_room: usize,
        /// A buffer of the first batch (by index) handed over too short
        /// for any packet.
        short_buffer: Option<usize>,
        buf: Vec<u8>,
        limits: Limits,
        batches: usize,
        stall_at: usize,
        stall: u64,
    }

    impl Recorder {
        fn new(clock: &FakeClock, batched: bool, stall_at: usize, stall: u64) -> Self {
            Recorder {
                clock: clock.clone(),
                packets: Arc::default(),
                bytes: None,
                batched,
                spec_room: 64,
                short_buffer: None,
                buf: Vec::new(),
                limits: Limits::default(),
                batches: 0,
                stall_at,
                stall,
            }
        }

        /// Takes one batch packet by packet into `buf`.
        fn take_each(&mut self, source: &mut dyn PacketSource<'_>) -> Result<Vec<Packet>, TransportError> {
            let mut taken = Vec::new();
            while taken.len() < 64 {
                let Some(spec) = self.limits.next(source)? else {
                    break;
                };
                source.write(&mut self.buf[..spec.len]);
                taken.push((self.buf[..spec.len].to_vec(), spec.substream));
            }
            Ok(taken)
        }

        /// Takes one batch in one call, into 64 buffers of the prepared size.
        fn take_batch(&mut self, source: &mut dyn PacketSource<'_>) -> Result<Vec<Packet>, TransportError> {
            let mut frames = vec![vec![0u8; self.buf.len()]; 64];
            if let Some(k) = self.short_buffer.take() {
                frames[k].truncate(10);
            }
            let mut bufs: Vec<&mut [u8]> = frames.iter_mut().map(|f| &mut f[..]).collect();
            let mut specs = vec![PacketSpec::default(); self.spec_room];
            let written = source.write_batch(&mut bufs, &mut specs);
            assert!(written <= self.spec_room, "{written} written");
            let specs = &specs[..written];
            for &spec in specs {
                self.limits.check(spec)?;
            }
            Ok(frames
                .into_iter()
                .zip(specs)
                .map(|(frame, spec)| (frame[..spec.len].to_vec(), spec.substream))
                .collect())
        }
    }

    /// Destinations a recorder takes packets to.
    const SUBSTREAMS: usize = 2;

    impl Transport for Recorder {
        fn substreams(&self) -> usize {
            SUBSTREAMS
        }

        fn max_batch(&self) -> usize {
            64
        }

        fn prepare(&mut self, max_packet_size: usize) -> Result<(), TransportError> {
            self.buf = vec![0; max_packet_size];
            self.limits = Limits {
                max_len: max_packet_size,
                substreams: SUBSTREAMS,
            };
            Ok(())
        }

        fn send(&mut self, source: &mut dyn PacketSource<'_>) -> Result<usize, TransportError> {
            self.batches += 1;
            let taken = if self.batched {
                self.take_batch(source)?
            } else {
                self.take_each(source)?
            };
            let now = self.clock.now();
            let sent = taken.len();
            self.packets
                .lock()
                .unwrap()
                .extend(taken.iter().map(|(bytes, _)| (now, bytes.len())));
            if let Some(kept) = &self.bytes {
                kept.lock().unwrap().extend(taken);
            }
            if self.batches == self.stall_at {
                self.clock.0.fetch_add(self.stall, Ordering::SeqCst);
            }
            Ok(sent)
        }
    }

    const RATE: f64 = 2e9 / 8.0;
    const BURST: usize = 65536;

    /// Sends `heaps` heaps of 4 MiB in 8192-byte packets at 2 Gb/s, at
    /// most `in_flight` at a time, as spead-send does, with a stall of
    /// `stall` ns in batch `stall_at`; returns each packet's time and length.
    fn send(heaps: usize, in_flight: usize, stall_at: usize, stall: u64, batched: bool) -> Vec<(u64, usize)> {
        let clock = FakeClock::default();
        let recorder = Recorder::new(&clock, batched, stall_at, stall);
        let packets = Arc::clone(&recorder.packets);
        let config = StreamConfig {
            max_packet_size: 8192,
            rate: RATE,
            burst_size: BURST,
            max_heaps: in_flight,
            ..StreamConfig::default()
        };
        let stream = Stream::with_clocks(vec![recorder], config, vec![WorkerConfig::default()], move |_| {
            clock.clone()
        })
        .unwrap();
        let payload = Bytes::from(vec![0u8; 4 << 20]);
        let mut pending: std::collections::VecDeque<Completion> = Default::default();
        for _ in 0..heaps {
            if pending.len() == in_flight {
                pending.pop_front().unwrap().wait().unwrap();
            }
            let mut heap = Heap::new(Flavour::SPEAD_64_48);
            heap.add(Item::new(0x1800, payload.clone())).unwrap();
            pending.push_back(stream.submit(heap).unwrap());
        }
        for completion in pending {
            completion.wait().unwrap();
        }
        drop(stream);
        Arc::into_inner(packets).unwrap().into_inner().unwrap()
    }

    /// The rate from the first packet to the start of the last burst (the
    /// packets sharing the last packet's time), over the bytes before it,
    /// as the error from 2 Gb/s.
    fn rate_error(packets: &[(u64, usize)]) -> f64 {
        let (first, last) = (packets[0].0, packets[packets.len() - 1].0);
        let before: usize = packets
            .iter()
            .filter(|(t, _)| *t < last)
            .map(|(_, len)| len)
            .sum();
        before as f64 / ((last - first) as f64 / 1e9) / RATE - 1.0
    }

    /// The least time between the starts of two bursts (packets sharing a
    /// time) relative to the time the first one's bytes are worth at the
    /// rate: 1 on schedule, 1 / ratio when catching up.
    fn fastest_burst(packets: &[(u64, usize)]) -> f64 {
        let mut bursts: Vec<(u64, usize)> = Vec::new();
        for &(time, len) in packets {
            match bursts.last_mut() {
                Some((start, bytes)) if *start == time => *bytes += len,
                _ => bursts.push((time, len)),
            }
        }
        bursts
            .windows(2)
            .map(|w| (w[1].0 - w[0].0) as f64 / (w[0].1 as f64 / RATE * 1e9))
            .fold(f64::INFINITY, f64::min)
    }

    /// Packet by packet, and in one call a batch.
    const BOTH_WAYS: [bool; 2] = [false, true];

    /// Asserts that `packets` kept 2 Gb/s to within 1e-7.
    fn assert_rate_exact(packets: &[Departure], batched: bool) {
        let error = rate_error(packets);
        assert!(
            error.abs() < 1e-7,
            "batched {batched}: rate error {:.6} %",
            error * 100.0
        );
    }

    #[test]
    fn a_stream_holds_its_rate_exactly() {
        for batched in BOTH_WAYS {
            let packets = send(120, 4, 0, 0, batched);
            assert_rate_exact(&packets, batched);
        }
    }

    #[test]
    fn a_stall_inside_a_batch_is_caught_up_at_the_burst_rate_ratio() {
        for batched in BOTH_WAYS {
            // 20 ms lost in the 100th batch, early in a 2 s stream.
            let packets = send(120, 4, 100, 20_000_000, batched);
            assert_rate_exact(&packets, batched);
            let fastest = fastest_burst(&packets);
            assert!(
                fastest >= 1.0 / 1.05 - 1e-5,
                "batched {batched}: a burst at {:.4} x the rate",
                1.0 / fastest
            );
        }
    }

    #[test]
    fn a_stall_before_the_queue_runs_dry_is_still_caught_up() {
        for batched in BOTH_WAYS {
            // One heap in flight: after each heap the worker finds its
            // queue empty and sleeps until the next. A stall early on
            // leaves it behind when that happens; the debt is kept, not
            // forgiven as idle time.
            let packets = send(120, 1, 100, 20_000_000, batched);
            assert_rate_exact(&packets, batched);
        }
    }

    /// Every kind of work a batch can draw on, queued at once and paced
    /// in small bursts (so pauses fall inside batches): a heap, serial
    /// and round-robin groups to two substreams, raw datagrams. Returns
    /// each worker's packets (bytes and substream), in order, and when
    /// each left.
    fn mixed(workers: usize, batched: bool, spec_room: usize) -> Vec<(Vec<Packet>, Vec<Departure>)> {
        let clock = FakeClock::default();
        let recorders: Vec<Recorder> = (0..workers)
            .map(|_| Recorder {
                bytes: Some(Arc::default()),
                spec_room,
                ..Recorder::new(&clock, batched, 0, 0)
            })
            .collect();
        let kept: Vec<_> = recorders
            .iter()
            .map(|r| (Arc::clone(r.bytes.as_ref().unwrap()), Arc::clone(&r.packets)))
            .collect();
        let config = StreamConfig {
            max_packet_size: 512,
            rate: 1e8,
            burst_size: 3000,
            max_heaps: 16,
            ..StreamConfig::default()
        };
        let stream = Stream::with_clocks(
            recorders,
            config,
            vec![WorkerConfig::default(); workers],
            move |_| clock.clone(),
        )
        .unwrap();
        let heap = |seed: u8, len: usize| {
            let mut heap = Heap::new(Flavour::SPEAD_64_48);
            heap.add(Item::new(
                0x1600,
                (0..len).map(|i| seed ^ i as u8).collect::<Vec<u8>>(),
            ))
            .unwrap();
            heap.add(Item::new(0x1601, vec![seed; 3])).unwrap();
            Arc::new(heap)
        };
        let group = |first: u8| -> Vec<HeapRef> {
            (0..3)
                .map(|k| HeapRef::new(heap(first + k, 1500 + 700 * k as usize)).substream(k as usize % 2))
                .collect()
        };
        let completions = vec![
            stream.submit(heap(1, 5000)).unwrap(),
            stream.submit_group(group(10), GroupMode::Serial).unwrap(),
            stream.submit_group(group(20), GroupMode::RoundRobin).unwrap(),
            stream
                .submit_datagrams(
                    (0..7)
                        .map(|k| Bytes::from(vec![k; 100 + 50 * k as usize]))
                        .collect(),
                    1,
                    None,
                )
                .unwrap(),
            stream.submit(heap(2, 9000)).unwrap(),
        ];
        for completion in completions {
            completion.wait().unwrap();
        }
        drop(stream);
        kept.into_iter()
            .map(|(bytes, packets)| {
                let bytes = Arc::into_inner(bytes).unwrap().into_inner().unwrap();
                let packets = Arc::into_inner(packets).unwrap().into_inner().unwrap();
                (bytes, packets)
            })
            .collect()
    }

    #[test]
    fn a_batch_written_in_one_call_is_the_packets_written_one_by_one() {
        for workers in [1, 2] {
            let (each, batch) = (mixed(workers, false, 64), mixed(workers, true, 64));
            for (worker, ((each, each_times), (batch, batch_times))) in each.iter().zip(&batch).enumerate() {
                assert!(each.len() > 25, "{} packets", each.len());
                assert!(each == batch, "worker {worker} of {workers}: the packets differ");
                // The same pauses: packet k left at the same time. (Two
                // workers share the fake clock, each moving it on when it
                // waits, so their times depend on how the threads ran.)
                if workers == 1 {
                    assert_eq!(each_times, batch_times);
                }
            }
        }
    }

    #[test]
    fn a_batch_with_fewer_specs_than_buffers_writes_no_more_packets_than_specs() {
        // Three specs for 64 buffers, each time: short batches, the same
        // packets at the same times.
        assert!(mixed(1, false, 64) == mixed(1, true, 3));
        assert!(mixed(1, false, 64) == mixed(1, true, 1));
    }

    #[test]
    fn a_packet_its_buffer_cannot_hold_fails_its_batch_and_the_stream_goes_on() {
        let clock = FakeClock::default();
        let recorder = Recorder {
            bytes: Some(Arc::default()),
            short_buffer: Some(3),
            ..Recorder::new(&clock, true, 0, 0)
        };
        let kept = Arc::clone(recorder.bytes.as_ref().unwrap());
        let config = StreamConfig {
            max_packet_size: 512,
            ..StreamConfig::default()
        };
        let stream = Stream::with_clocks(vec![recorder], config, vec![WorkerConfig::default()], move |_| {
            clock.clone()
        })
        .unwrap();
        let heap = |len: usize| {
            let mut heap = Heap::new(Flavour::SPEAD_64_48);
            heap.add(Item::new(0x1600, vec![7u8; len])).unwrap();
            HeapRef::new(heap)
        };
        // Two packets, then five: the fourth packet of the batch (the
        // second heap's second) meets the short buffer.
        let group = stream.submit_group(vec![heap(600), heap(2000)], GroupMode::Serial);
        match group.unwrap().wait() {
            Err(SendError::Transport(TransportError::BadPacket(crate::transport::BadPacket::Empty))) => {}
            other => panic!("the group: {other:?}"),
        }
        assert!(
            kept.lock().unwrap().is_empty(),
            "nothing of the failed batch went"
        );
        assert!(stream.send_heap(heap(2000)).unwrap() > 2000);
        assert_eq!(kept.lock().unwrap().len(), 5, "the next heap went whole");
        // The group's two heaps failed; the last went.
        assert_eq!((stream.stats().heaps, stream.stats().errors), (1, 2));
    }
}
