//! The stream's worker: takes queued groups in order, packetizes them into
//! the transport's buffers in batches, paces every packet with the rate
//! limiter, and completes each group once, after its last packet has been
//! handed to the transport.

use std::sync::Arc;

use crossbeam_channel::{Receiver, TryRecvError};

use super::{GroupMode, SendError, Shared, StreamConfig};
use crate::pacing::{MonotonicClock, RateLimiter, RateLimiterConfig};
use crate::protocol::{Heap, HeapPackets, Packetizer};
use crate::transport::{PacketMeta, Transport};

/// A heap with its cnt, destination and pacing resolved.
#[derive(Debug)]
pub(super) struct QueuedHeap {
    pub heap: Heap<'static>,
    pub cnt: u64,
    pub substream: usize,
    /// 0 for unlimited.
    pub nanos_per_byte: f64,
}

/// A group of heaps and where to report its outcome.
#[derive(Debug)]
pub(super) struct Job {
    pub heaps: Vec<QueuedHeap>,
    pub mode: GroupMode,
    pub done: oneshot::Sender<Result<u64, SendError>>,
}

pub(super) struct Worker<T> {
    transport: T,
    sizing: Packetizer,
    shared: Arc<Shared>,
    clock: MonotonicClock,
    limiter: RateLimiter,
}

impl<T: Transport> Worker<T> {
    pub fn new(transport: T, config: StreamConfig, sizing: Packetizer, shared: Arc<Shared>) -> Self {
        let clock = MonotonicClock::default();
        let limiter = RateLimiter::new(
            RateLimiterConfig {
                burst_size: config.burst_size as u64,
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
        }
    }

    /// Sends groups until the stream is dropped and the queue is empty.
    pub fn run(mut self, queue: Receiver<Job>) {
        loop {
            let job = match queue.try_recv() {
                Ok(job) => job,
                Err(TryRecvError::Disconnected) => return,
                Err(TryRecvError::Empty) => match queue.recv() {
                    Ok(job) => {
                        // Woken from idle: no catch-up burst.
                        self.limiter.wake(self.clock.now());
                        job
                    }
                    Err(_) => return,
                },
            };
            let result = self.send_group(&job);
            // Free the slots before reporting, so a completion handler can
            // submit again at once.
            self.shared.release(job.heaps.len());
            let _ = job.done.send(result);
        }
    }

    fn send_group(&mut self, job: &Job) -> Result<u64, SendError> {
        let mut group = GroupPackets::new(&self.sizing, job);
        let mut bytes = 0u64;
        while !group.is_done() {
            let (limiter, clock) = (&mut self.limiter, &self.clock);
            let mut paused_until = None;
            let mut fill = |buf: &mut [u8]| -> Option<PacketMeta> {
                if let Some(deadline) = limiter.next_send(|| clock.now()) {
                    paused_until = Some(deadline);
                    return None;
                }
                let (meta, nanos_per_byte) = group.write_next(buf)?;
                limiter.sent(meta.len, nanos_per_byte);
                bytes += meta.len as u64;
                Some(meta)
            };
            self.transport.send(&mut fill)?;
            if let Some(deadline) = paused_until {
                self.clock.wait_until(deadline);
            }
        }
        Ok(bytes)
    }
}

/// The packets of a group in the group's order.
struct GroupPackets<'j> {
    heaps: Vec<(HeapPackets<'j>, usize, f64)>,
    mode: GroupMode,
    current: usize,
    remaining: usize,
}

impl<'j> GroupPackets<'j> {
    fn new(sizing: &Packetizer, job: &'j Job) -> Self {
        let mut heaps = Vec::with_capacity(job.heaps.len());
        for q in &job.heaps {
            let packets = sizing
                .packets(&q.heap, q.cnt)
                .expect("heaps are checked when submitted");
            heaps.push((packets, q.substream, q.nanos_per_byte));
        }
        let remaining = heaps.iter().filter(|(p, _, _)| !p.is_done()).count();
        GroupPackets {
            heaps,
            mode: job.mode,
            current: 0,
            remaining,
        }
    }

    fn is_done(&self) -> bool {
        self.remaining == 0
    }

    /// Writes the group's next packet into `buf`.
    fn write_next(&mut self, buf: &mut [u8]) -> Option<(PacketMeta, f64)> {
        if self.is_done() {
            return None;
        }
        while self.heaps[self.current].0.is_done() {
            self.current = (self.current + 1) % self.heaps.len();
        }
        let (packets, substream, nanos_per_byte) = &mut self.heaps[self.current];
        let len = packets
            .write_next(buf)
            .expect("transport buffers hold max_packet_size")
            .expect("heap has packets left");
        let meta = PacketMeta {
            len,
            substream: *substream,
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
