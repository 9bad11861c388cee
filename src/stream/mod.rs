//! The user's API: spead2's send stream in Rust idiom. Heaps are queued
//! (at most `max_heaps`; a full queue fails at once and hands the heaps
//! back), packetized and paced by worker threads that each own a transport,
//! and completed in order with the bytes sent or an error. A completion is
//! a `Future` for any executor and a blocking wait.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;

use crate::pacing::{Clock, SystemClock};
use crate::protocol::{Heap, PacketSizing, PacketizeError};
use crate::transport::{Transport, TransportError};

mod config;
mod item_group;
mod job;
mod metrics;
mod stats;
mod worker;

pub use config::{ConfigError, StreamConfig, WorkerConfig};
pub use item_group::{ItemGroup, ItemGroupError, ItemKey, Selection};
pub use metrics::MetricsServer;
pub use stats::{StatsHandle, StreamStats, WorkerStats};

/// How the packets of a group of heaps are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupMode {
    /// One packet of each heap in turn, skipping finished heaps.
    RoundRobin,
    /// Each heap's packets in full before the next heap's.
    Serial,
}

/// A heap with how to send it: spead2's `HeapReference`. The heap is
/// shared: the stream drops its reference before the completion fires, so
/// after `wait()` the caller's `Arc` is unique again and the heap can be
/// updated in place (`Arc::get_mut`, `Heap::set_immediate`) and resent
/// without rebuilding or copying it.
#[derive(Debug, Clone)]
pub struct HeapRef {
    /// The heap.
    pub heap: Arc<Heap<'static>>,
    /// Explicit heap cnt; `None` takes the next of the stream's sequence.
    pub cnt: Option<u64>,
    /// Destination index.
    pub substream: usize,
    /// Bytes per second for this heap (0 unlimited); `None` for the stream's.
    pub rate: Option<f64>,
}

impl HeapRef {
    /// The heap with the stream's cnt sequence, substream 0 and rate.
    pub fn new(heap: impl Into<Arc<Heap<'static>>>) -> Self {
        HeapRef {
            heap: heap.into(),
            cnt: None,
            substream: 0,
            rate: None,
        }
    }

    /// With an explicit heap cnt (it must fit the flavour's bits).
    pub fn cnt(mut self, cnt: u64) -> Self {
        self.cnt = Some(cnt);
        self
    }

    /// To substream `index`.
    pub fn substream(mut self, index: usize) -> Self {
        self.substream = index;
        self
    }

    /// At `rate` bytes per second (0 unlimited) instead of the stream's.
    pub fn rate(mut self, rate: f64) -> Self {
        self.rate = Some(rate);
        self
    }
}

impl From<Heap<'static>> for HeapRef {
    fn from(heap: Heap<'static>) -> Self {
        HeapRef::new(heap)
    }
}

impl From<Arc<Heap<'static>>> for HeapRef {
    fn from(heap: Arc<Heap<'static>>) -> Self {
        HeapRef::new(heap)
    }
}

/// What a refused submission hands back, unsent.
#[derive(Debug)]
pub enum Unsent {
    /// The heaps of a group.
    Heaps(Vec<HeapRef>),
    /// Raw datagrams.
    Datagrams(Vec<Bytes>),
}

impl Unsent {
    /// How many heaps or datagrams.
    pub fn len(&self) -> usize {
        match self {
            Unsent::Heaps(h) => h.len(),
            Unsent::Datagrams(d) => d.len(),
        }
    }

    /// Whether there is nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why heaps (or datagrams) were not sent.
#[derive(Debug, Error)]
pub enum SendError {
    /// The queue has no room; everything is handed back unsent.
    #[error("stream queue is full ({max_heaps} heaps); {} not sent", unsent.len())]
    QueueFull {
        /// What was submitted, unsent.
        unsent: Unsent,
        /// The queue's size.
        max_heaps: usize,
    },
    /// Something cannot be sent as asked; everything is handed back unsent.
    #[error("entry {index} of the submission: {reason}")]
    Invalid {
        /// Position of the bad heap or datagram.
        index: usize,
        /// What is wrong.
        reason: Invalid,
        /// What was submitted, unsent.
        unsent: Unsent,
    },
    /// The transport failed while sending; the submission was not (all) sent.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The batch this submission's packets shared with another failed
    /// (the other's packet was refused, or the transport failed part-way);
    /// the other submission failed with the same error, as
    /// [`Transport`](Self::Transport).
    #[error("the batch it shared with another submission failed")]
    SharedBatch(#[source] TransportError),
    /// The stream's worker has stopped.
    #[error("the stream's worker has stopped")]
    Closed,
}

/// What is wrong with a heap or datagram handed to a stream.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum Invalid {
    /// The packetizer refuses the heap (cnt too large, pointers that cannot
    /// be repeated).
    #[error(transparent)]
    Packetize(#[from] PacketizeError),
    /// No such destination.
    #[error("substream {index} does not exist (the stream has {substreams})")]
    Substream {
        /// Requested index.
        index: usize,
        /// Substreams of the stream.
        substreams: usize,
    },
    /// A rate that is negative or not finite.
    #[error(transparent)]
    Rate(#[from] ConfigError),
    /// An empty group or datagram list.
    #[error("a submission needs at least one heap or datagram")]
    Empty,
    /// A datagram of no bytes (a transport takes no empty packet).
    #[error("an empty datagram")]
    EmptyDatagram,
    /// A datagram larger than the stream's packets.
    #[error("datagram of {len} bytes exceeds the max packet size of {max}")]
    DatagramTooLarge {
        /// Its length.
        len: usize,
        /// The stream's (rounded) max packet size.
        max: usize,
    },
}

/// The outcome of a submission: a `Future` for any executor, or
/// [`wait`](Self::wait) to block. Gives the bytes sent or the error.
#[derive(Debug)]
#[must_use = "a completion reports whether the heaps were sent"]
pub struct Completion(oneshot::Receiver<Result<u64, SendError>>);

impl Completion {
    /// Blocks until the heaps are sent (or failed).
    pub fn wait(self) -> Result<u64, SendError> {
        self.0.recv().unwrap_or(Err(SendError::Closed))
    }

    /// Polls for up to `spin` before blocking as [`wait`](Self::wait)
    /// does. A thread that keeps a stream fed avoids the cost of being put
    /// to sleep and woken for every heap (on a VM, an interrupt between
    /// cores each time), at the price of that much busy CPU.
    pub fn wait_spinning(mut self, spin: Duration) -> Result<u64, SendError> {
        // Timed by the TSC (quanta's clock): where clock_gettime is a system
        // call, as on this VM, Instant would cost one a turn of the loop.
        let start = quanta::Instant::now();
        loop {
            if let Some(result) = self.try_wait() {
                return result;
            }
            if quanta::Instant::now().duration_since(start) >= spin {
                return self.wait();
            }
            std::hint::spin_loop();
        }
    }

    /// The outcome if it is known, without blocking.
    pub fn try_wait(&mut self) -> Option<Result<u64, SendError>> {
        match self.0.try_recv() {
            Ok(result) => Some(result),
            Err(oneshot::TryRecvError::Empty) => None,
            Err(oneshot::TryRecvError::Disconnected) => Some(Err(SendError::Closed)),
        }
    }
}

impl Future for Completion {
    type Output = Result<u64, SendError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|result| result.unwrap_or(Err(SendError::Closed)))
    }
}

/// Queue accounting and the cnt sequence, shared with the worker.
#[derive(Debug)]
struct QueueState {
    in_flight: usize,
    next_cnt: u64,
    cnt_step: u64,
    /// The cnt sequence has wrapped at a flavour's bits (logged once).
    cnt_wrapped: bool,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<QueueState>,
    drained: Condvar,
    counters: Arc<stats::Counters>,
}

impl Shared {
    /// An empty queue, cnts from 1, counters for `workers` workers.
    fn new(workers: usize) -> Self {
        Shared {
            state: Mutex::new(QueueState {
                in_flight: 0,
                next_cnt: 1,
                cnt_step: 1,
                cnt_wrapped: false,
            }),
            drained: Condvar::new(),
            counters: Arc::new(stats::Counters::new(workers)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Frees the queue places of a finished submission.
    fn release(&self, heaps: usize) {
        let mut state = self.lock();
        state.in_flight -= heaps;
        if state.in_flight == 0 {
            self.drained.notify_all();
        }
    }
}

/// A sending stream over a transport, with its worker thread.
#[derive(Debug)]
pub struct Stream {
    config: StreamConfig,
    sizing: PacketSizing,
    substreams: usize,
    shared: Arc<Shared>,
    /// One queue per worker; each worker takes a share of every job.
    jobs: Vec<crossbeam_channel::Sender<job::WorkerShare>>,
    workers: Vec<JoinHandle<()>>,
}

impl Stream {
    /// Starts a stream on `transport` with `config` (validated) and a
    /// default worker (not pinned, the best clock).
    pub fn new<T: Transport>(transport: T, config: StreamConfig) -> Result<Self, StreamError> {
        Self::with_worker(transport, config, WorkerConfig::default())
    }

    /// Starts a stream whose worker runs as `worker` says (pinned to a
    /// core, spin threshold, clock).
    pub fn with_worker<T: Transport>(
        transport: T,
        config: StreamConfig,
        worker: WorkerConfig,
    ) -> Result<Self, StreamError> {
        Self::with_workers(vec![transport], config, vec![worker])
    }

    /// Starts a stream with one worker per transport (a TX queue each, for
    /// several cores). Worker `w` of `n` sends packets `w`, `w + n`, ... of
    /// every group, paced at `1/n` of the rate (and `1/n` of the burst), so
    /// together they keep the stream's rate; groups complete once, in
    /// order. The transports must have the same substreams.
    pub fn with_workers<T: Transport>(
        transports: Vec<T>,
        config: StreamConfig,
        workers: Vec<WorkerConfig>,
    ) -> Result<Self, StreamError> {
        Self::with_clocks(transports, config, workers, |worker| {
            SystemClock::new(worker.clock, worker.spin_threshold)
        })
    }

    /// As [`with_workers`](Self::with_workers), each worker pacing on the
    /// clock `clock` makes for it (on the worker's thread).
    fn with_clocks<T: Transport, C: Clock + 'static>(
        mut transports: Vec<T>,
        config: StreamConfig,
        workers: Vec<WorkerConfig>,
        clock: impl Fn(&WorkerConfig) -> C + Send + Clone + 'static,
    ) -> Result<Self, StreamError> {
        let sizing = config.validate()?;
        if transports.is_empty() || transports.len() != workers.len() {
            return Err(ConfigError::Workers {
                transports: transports.len(),
                workers: workers.len(),
            }
            .into());
        }
        for worker in &workers {
            worker.validate()?;
        }
        for transport in &mut transports {
            transport.prepare(sizing.max_packet_size())?;
        }
        let substreams = transports[0].substreams();
        if let Some(other) = transports.iter().find(|t| t.substreams() != substreams) {
            return Err(TransportError::SubstreamsDiffer {
                first: substreams,
                other: other.substreams(),
            }
            .into());
        }
        let shared = Arc::new(Shared::new(transports.len()));
        let count = transports.len();
        let mut stream = Stream {
            config,
            sizing,
            substreams,
            shared: Arc::clone(&shared),
            jobs: Vec::with_capacity(count),
            workers: Vec::with_capacity(count),
        };
        for (index, (transport, worker_config)) in transports.into_iter().zip(workers).enumerate() {
            let (jobs, queue) = crossbeam_channel::unbounded();
            let placement = worker::Placement {
                index,
                workers: count,
                idle_poll: worker_config.idle_poll,
            };
            let (shared, clock) = (Arc::clone(&shared), clock.clone());
            let handle = std::thread::Builder::new()
                .name("spead-send".into())
                .spawn(move || {
                    pin_to(worker_config.core, index);
                    let clock = clock(&worker_config);
                    worker::Worker::new(transport, &config, clock, sizing, shared, placement).run(queue)
                })
                .map_err(TransportError::doing("starting a stream worker thread"))?;
            stream.jobs.push(jobs);
            stream.workers.push(handle);
        }
        Ok(stream)
    }

    /// The stream's settings.
    pub fn config(&self) -> &StreamConfig {
        &self.config
    }

    /// A handle that reads this stream's statistics from any thread, also
    /// after the stream is dropped.
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle(Arc::clone(&self.shared.counters))
    }

    /// Serves this stream's statistics over HTTP in Prometheus text format
    /// at `http://ADDRESS/metrics` until the server is dropped (also after
    /// the stream is).
    pub fn serve_metrics(&self, address: impl std::net::ToSocketAddrs) -> std::io::Result<MetricsServer> {
        MetricsServer::start(address, self.stats_handle())
    }

    /// This stream's statistics now.
    pub fn stats(&self) -> StreamStats {
        self.stats_handle().snapshot()
    }

    /// Number of substreams (destinations).
    pub fn substreams(&self) -> usize {
        self.substreams
    }

    /// Sets the automatic heap cnt sequence: the next heap gets `next`, each
    /// after it `step` more (wrapping to the flavour's bits).
    pub fn set_cnt_sequence(&self, next: u64, step: u64) -> Result<(), ConfigError> {
        if step == 0 {
            return Err(ConfigError::CntStep);
        }
        let mut state = self.shared.lock();
        state.next_cnt = next;
        state.cnt_step = step;
        Ok(())
    }

    /// Queues one heap; fails at once if the queue is full.
    pub fn submit(&self, heap: impl Into<HeapRef>) -> Result<Completion, SendError> {
        self.submit_group(vec![heap.into()], GroupMode::Serial)
    }

    /// Queues a group of heaps, all or none, with one completion.
    pub fn submit_group(&self, heaps: Vec<HeapRef>, mode: GroupMode) -> Result<Completion, SendError> {
        if let Err((index, reason)) = self.check(&heaps) {
            let unsent = Unsent::Heaps(heaps);
            return Err(SendError::Invalid {
                index,
                reason,
                unsent,
            });
        }
        let mut state = self.shared.lock();
        if state.in_flight + heaps.len() > self.config.max_heaps {
            return Err(self.queue_full(Unsent::Heaps(heaps)));
        }
        let places = heaps.len();
        let mut queued = Vec::with_capacity(places);
        for heap_ref in heaps {
            let flavour = heap_ref.heap.flavour();
            let cnt = heap_ref.cnt.unwrap_or_else(|| {
                let cnt = state.next_cnt & flavour.max_value();
                if cnt != state.next_cnt && !state.cnt_wrapped {
                    // As spead2 does, but not silently: receivers must not
                    // still hold a heap of the first round.
                    state.cnt_wrapped = true;
                    tracing::warn!(
                        "heap cnt sequence passed {:#x}, the largest {}-bit cnt: it wraps (next cnt {cnt:#x})",
                        flavour.max_value(),
                        flavour.max_value().count_ones()
                    );
                }
                state.next_cnt = state.next_cnt.wrapping_add(state.cnt_step);
                cnt
            });
            queued.push(job::QueuedHeap {
                heap: heap_ref.heap,
                cnt,
                substream: heap_ref.substream,
                nanos_per_byte: self.nanos_per_byte(heap_ref.rate),
            });
        }
        self.enqueue(state, job::Work::Heaps { heaps: queued, mode }, places)
    }

    /// Queues raw datagrams (not SPEAD: VDIF frames, detector readout) to
    /// one substream, paced like heaps; they take one queue slot and
    /// complete once.
    pub fn submit_datagrams(
        &self,
        datagrams: Vec<Bytes>,
        substream: usize,
        rate: Option<f64>,
    ) -> Result<Completion, SendError> {
        let max = self.sizing.max_packet_size();
        let check = || -> Result<(), (usize, Invalid)> {
            if datagrams.is_empty() {
                return Err((0, Invalid::Empty));
            }
            self.check_route(substream, rate).map_err(|e| (0, e))?;
            match datagrams.iter().position(|d| d.is_empty() || d.len() > max) {
                Some(i) if datagrams[i].is_empty() => Err((i, Invalid::EmptyDatagram)),
                Some(i) => Err((
                    i,
                    Invalid::DatagramTooLarge {
                        len: datagrams[i].len(),
                        max,
                    },
                )),
                None => Ok(()),
            }
        };
        if let Err((index, reason)) = check() {
            let unsent = Unsent::Datagrams(datagrams);
            return Err(SendError::Invalid {
                index,
                reason,
                unsent,
            });
        }
        let state = self.shared.lock();
        if state.in_flight + 1 > self.config.max_heaps {
            return Err(self.queue_full(Unsent::Datagrams(datagrams)));
        }
        let work = job::Work::Datagrams {
            datagrams,
            substream,
            nanos_per_byte: self.nanos_per_byte(rate),
        };
        self.enqueue(state, work, 1)
    }

    fn queue_full(&self, unsent: Unsent) -> SendError {
        self.shared.counters.queue_full.fetch_add(1, Ordering::Relaxed);
        SendError::QueueFull {
            unsent,
            max_heaps: self.config.max_heaps,
        }
    }

    fn nanos_per_byte(&self, rate: Option<f64>) -> f64 {
        let rate = rate.unwrap_or(self.config.rate);
        if rate > 0.0 {
            1e9 / rate
        } else {
            0.0
        }
    }

    /// Hands a share of `work` to every worker, holding the queue lock so
    /// that every worker's queue has submissions in the same order and the
    /// `places` are counted before a worker can release them. A share that
    /// cannot be sent (a worker that has stopped) is handed back and
    /// dropped once the lock is let go: dropping it reports the submission
    /// as failed ([`SendError::Closed`]), which takes the lock.
    fn enqueue(
        &self,
        mut state: MutexGuard<'_, QueueState>,
        work: job::Work,
        places: usize,
    ) -> Result<Completion, SendError> {
        state.in_flight += places;
        let (done, completion) = oneshot::channel();
        let shares = job::WorkerShare::split(work, places, self.jobs.len(), Arc::clone(&self.shared), done);
        let refused: Vec<_> = self
            .jobs
            .iter()
            .zip(shares)
            .filter_map(|(jobs, share)| jobs.send(share).err())
            .collect();
        drop(state);
        drop(refused);
        Ok(Completion(completion))
    }

    fn check_route(&self, substream: usize, rate: Option<f64>) -> Result<(), Invalid> {
        if substream >= self.substreams {
            return Err(Invalid::Substream {
                index: substream,
                substreams: self.substreams,
            });
        }
        if let Some(rate) = rate {
            config::check_rate(rate)?;
        }
        Ok(())
    }

    /// Checks what can be checked before queueing.
    fn check(&self, heaps: &[HeapRef]) -> Result<(), (usize, Invalid)> {
        if heaps.is_empty() {
            return Err((0, Invalid::Empty));
        }
        for (index, h) in heaps.iter().enumerate() {
            self.check_route(h.substream, h.rate).map_err(|e| (index, e))?;
            // Explicit cnts and repeat_pointers are checked by planning the
            // packets (no packet is written).
            let cnt = h.cnt.unwrap_or(0);
            self.sizing.packets(&h.heap, cnt).map_err(|e| (index, e.into()))?;
        }
        Ok(())
    }

    /// Sends one heap and waits for it: the bytes sent.
    pub fn send_heap(&self, heap: impl Into<HeapRef>) -> Result<u64, SendError> {
        self.submit(heap)?.wait()
    }

    /// Sends a group of heaps and waits for it: the bytes sent.
    pub fn send_heaps(&self, heaps: Vec<HeapRef>, mode: GroupMode) -> Result<u64, SendError> {
        self.submit_group(heaps, mode)?.wait()
    }

    /// Blocks until every queued heap has completed.
    pub fn flush(&self) {
        let mut state = self.shared.lock();
        while state.in_flight > 0 {
            state = self.shared.drained.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Drop for Stream {
    /// Sends what is queued, then stops the worker.
    fn drop(&mut self) {
        self.jobs.clear();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// Pins the calling worker thread to `core`, if given (logged).
fn pin_to(core: Option<usize>, worker: usize) {
    let Some(id) = core else { return };
    if core_affinity::set_for_current(core_affinity::CoreId { id }) {
        tracing::debug!("stream worker {worker} pinned to core {id}");
    } else {
        tracing::warn!("could not pin stream worker {worker} to core {id}");
    }
}

/// Why a stream could not start.
#[derive(Debug, Error)]
pub enum StreamError {
    /// A bad setting.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The transport cannot work as asked.
    #[error(transparent)]
    Transport(#[from] TransportError),
}
