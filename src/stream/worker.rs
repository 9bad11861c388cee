//! The stream's worker: takes queued groups in order, packetizes them into
//! the transport's buffers in batches, paces every packet with the rate
//! limiter, and completes each group once, after its last packet has been
//! handed to the transport.

use std::sync::Arc;

use bytes::Bytes;
use crossbeam_channel::{Receiver, TryRecvError};

use super::{GroupMode, SendError, Shared, StreamConfig, WorkerConfig};
use crate::pacing::{Clock, RateLimiter, RateLimiterConfig};
use crate::protocol::{Heap, HeapPackets, Packetizer};
use crate::transport::{PacketMeta, Transport};

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

/// Work, the queue slots it holds, and where to report its outcome.
#[derive(Debug)]
pub(super) struct Job {
    pub work: Work,
    pub slots: usize,
    pub done: oneshot::Sender<Result<u64, SendError>>,
}

pub(super) struct Worker<T> {
    transport: T,
    sizing: Packetizer,
    shared: Arc<Shared>,
    clock: Clock,
    limiter: RateLimiter,
}

impl<T: Transport> Worker<T> {
    pub fn new(
        transport: T,
        config: StreamConfig,
        worker: WorkerConfig,
        sizing: Packetizer,
        shared: Arc<Shared>,
    ) -> Self {
        let clock = Clock::new(worker.clock, worker.spin_threshold);
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
            let Job { work, slots, done } = job;
            let result = match &work {
                Work::Heaps { heaps, mode } => {
                    self.send_packets(&mut GroupPackets::new(&self.sizing, heaps, *mode))
                }
                Work::Datagrams {
                    datagrams,
                    substream,
                    nanos_per_byte,
                } => self.send_packets(&mut DatagramPackets {
                    datagrams,
                    next: 0,
                    substream: *substream,
                    nanos_per_byte: *nanos_per_byte,
                }),
            };
            // Let go of the heaps and free the slots before reporting, so the
            // caller can update a heap in place and submit again at once.
            drop(work);
            self.shared.release(slots);
            let _ = done.send(result);
        }
    }

    /// Sends every packet of `source` in batches, pacing each packet.
    fn send_packets(&mut self, source: &mut dyn PacketSource) -> Result<u64, SendError> {
        let mut bytes = 0u64;
        while !source.is_done() {
            let (limiter, clock) = (&mut self.limiter, &self.clock);
            let mut paused_until = None;
            let mut fill = |buf: &mut [u8]| -> Option<PacketMeta> {
                let next_len = source.next_len()?;
                if let Some(deadline) = limiter.next_send(next_len, || clock.now()) {
                    paused_until = Some(deadline);
                    return None;
                }
                let (meta, nanos_per_byte) = source.write_next(buf)?;
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

/// Packets to send, one at a time, with the ns per byte each is paced at.
trait PacketSource {
    fn is_done(&self) -> bool;
    /// Length of the next packet, if any.
    fn next_len(&mut self) -> Option<usize>;
    fn write_next(&mut self, buf: &mut [u8]) -> Option<(PacketMeta, f64)>;
}

/// Raw datagrams, copied as they are.
struct DatagramPackets<'j> {
    datagrams: &'j [Bytes],
    next: usize,
    substream: usize,
    nanos_per_byte: f64,
}

impl PacketSource for DatagramPackets<'_> {
    fn is_done(&self) -> bool {
        self.next == self.datagrams.len()
    }

    fn next_len(&mut self) -> Option<usize> {
        self.datagrams.get(self.next).map(Bytes::len)
    }

    fn write_next(&mut self, buf: &mut [u8]) -> Option<(PacketMeta, f64)> {
        let datagram = self.datagrams.get(self.next)?;
        buf[..datagram.len()].copy_from_slice(datagram);
        self.next += 1;
        let meta = PacketMeta {
            len: datagram.len(),
            substream: self.substream,
        };
        Some((meta, self.nanos_per_byte))
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
    fn new(sizing: &Packetizer, queued: &'j [QueuedHeap], mode: GroupMode) -> Self {
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
        }
    }
}

impl GroupPackets<'_> {
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
}

impl PacketSource for GroupPackets<'_> {
    fn is_done(&self) -> bool {
        self.remaining == 0
    }

    fn next_len(&mut self) -> Option<usize> {
        self.skip_finished()?;
        self.heaps[self.current].0.next_packet_len()
    }

    /// Writes the group's next packet into `buf`.
    fn write_next(&mut self, buf: &mut [u8]) -> Option<(PacketMeta, f64)> {
        self.skip_finished()?;
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
