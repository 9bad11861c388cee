//! The user's API: spead2's send stream in Rust idiom. Heaps are queued
//! (at most `max_heaps`; a full queue fails at once and hands the heaps
//! back), packetized and paced by a worker thread that owns the transport,
//! and completed in order with the bytes sent or an error. A completion is
//! a `Future` for any executor and a blocking wait.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use thiserror::Error;

use crate::protocol::{Heap, PacketizeError, Packetizer};
use crate::transport::{Transport, TransportError};

pub mod config;
pub mod item_group;
mod worker;

pub use config::{ConfigError, StreamConfig};
pub use item_group::{ItemGroup, ItemGroupError, ItemKey, Selection};

/// How the packets of a group of heaps are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupMode {
    /// One packet of each heap in turn, skipping finished heaps.
    RoundRobin,
    /// Each heap's packets in full before the next heap's.
    Serial,
}

/// A heap with how to send it: spead2's `HeapReference`.
#[derive(Debug, Clone)]
pub struct HeapRef {
    /// The heap.
    pub heap: Heap<'static>,
    /// Explicit heap cnt; `None` takes the next of the stream's sequence.
    pub cnt: Option<u64>,
    /// Destination index.
    pub substream: usize,
    /// Bytes per second for this heap (0 unlimited); `None` for the stream's.
    pub rate: Option<f64>,
}

impl HeapRef {
    /// The heap with the stream's cnt sequence, substream 0 and rate.
    pub fn new(heap: Heap<'static>) -> Self {
        HeapRef {
            heap,
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

/// Why heaps were not sent.
#[derive(Debug, Error)]
pub enum SendError {
    /// The queue has no room for the heaps; they are handed back unsent.
    #[error("stream queue is full ({max_heaps} heaps); {} heap(s) not sent", heaps.len())]
    QueueFull {
        /// The heaps, unsent.
        heaps: Vec<HeapRef>,
        /// The queue's size.
        max_heaps: usize,
    },
    /// A heap cannot be sent as asked; all are handed back unsent.
    #[error("heap {index} of the group: {reason}")]
    InvalidHeap {
        /// Position of the bad heap in the group.
        index: usize,
        /// What is wrong.
        reason: InvalidHeap,
        /// The heaps, unsent.
        heaps: Vec<HeapRef>,
    },
    /// The transport failed while sending; the heaps were not (all) sent.
    #[error("transport failed: {0}")]
    Transport(#[from] TransportError),
    /// The stream's worker has stopped.
    #[error("the stream's worker has stopped")]
    Closed,
}

/// What is wrong with a heap handed to a stream.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum InvalidHeap {
    /// The packetizer refuses it (cnt too large, pointers that cannot be
    /// repeated).
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
    /// A per-heap rate that is negative or not finite.
    #[error(transparent)]
    Rate(#[from] ConfigError),
    /// An empty group.
    #[error("a group needs at least one heap")]
    EmptyGroup,
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
}

#[derive(Debug)]
struct Shared {
    state: Mutex<QueueState>,
    drained: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Frees the queue slots of a finished group.
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
    sizing: Packetizer,
    substreams: usize,
    shared: Arc<Shared>,
    jobs: Option<crossbeam_channel::Sender<worker::Job>>,
    worker: Option<JoinHandle<()>>,
}

impl Stream {
    /// Starts a stream on `transport` with `config` (validated).
    pub fn new<T: Transport>(mut transport: T, config: StreamConfig) -> Result<Self, StreamError> {
        let sizing = config.validate()?;
        transport.prepare(sizing.max_packet_size())?;
        let substreams = transport.substreams();
        let shared = Arc::new(Shared {
            state: Mutex::new(QueueState {
                in_flight: 0,
                next_cnt: 1,
                cnt_step: 1,
            }),
            drained: Condvar::new(),
        });
        let (jobs, queue) = crossbeam_channel::unbounded();
        let worker = worker::Worker::new(transport, config, sizing, Arc::clone(&shared));
        let worker = std::thread::Builder::new()
            .name("spead-send".into())
            .spawn(move || worker.run(queue))
            .map_err(|source| TransportError::Io {
                what: "starting the stream's worker thread".into(),
                source,
            })?;
        Ok(Stream {
            config,
            sizing,
            substreams,
            shared,
            jobs: Some(jobs),
            worker: Some(worker),
        })
    }

    /// The stream's settings.
    pub fn config(&self) -> &StreamConfig {
        &self.config
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
            return Err(SendError::InvalidHeap { index, reason, heaps });
        }
        let mut state = self.shared.lock();
        if state.in_flight + heaps.len() > self.config.max_heaps {
            return Err(SendError::QueueFull {
                heaps,
                max_heaps: self.config.max_heaps,
            });
        }
        let mut queued = Vec::with_capacity(heaps.len());
        let mut next_cnt = state.next_cnt;
        for heap_ref in heaps {
            let flavour = heap_ref.heap.flavour();
            let cnt = heap_ref.cnt.unwrap_or_else(|| {
                let cnt = next_cnt & flavour.max_value();
                next_cnt = next_cnt.wrapping_add(state.cnt_step);
                cnt
            });
            let rate = heap_ref.rate.unwrap_or(self.config.rate);
            queued.push(worker::QueuedHeap {
                heap: heap_ref.heap,
                cnt,
                substream: heap_ref.substream,
                nanos_per_byte: if rate > 0.0 { 1e9 / rate } else { 0.0 },
            });
        }
        let (done, completion) = oneshot::channel();
        let job = worker::Job {
            heaps: queued,
            mode,
            done,
        };
        let n = job.heaps.len();
        let jobs = self.jobs.as_ref().ok_or(SendError::Closed)?;
        jobs.send(job).map_err(|_| SendError::Closed)?;
        state.in_flight += n;
        state.next_cnt = next_cnt;
        Ok(Completion(completion))
    }

    /// Checks what can be checked before queueing.
    fn check(&self, heaps: &[HeapRef]) -> Result<(), (usize, InvalidHeap)> {
        if heaps.is_empty() {
            return Err((0, InvalidHeap::EmptyGroup));
        }
        for (index, h) in heaps.iter().enumerate() {
            if h.substream >= self.substreams {
                return Err((
                    index,
                    InvalidHeap::Substream {
                        index: h.substream,
                        substreams: self.substreams,
                    },
                ));
            }
            if let Some(rate) = h.rate {
                config::check_rate(rate).map_err(|e| (index, e.into()))?;
            }
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
        self.jobs.take();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
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
