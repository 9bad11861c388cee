//! In-process streams, as spead2's `InprocQueue` and `InprocStream`: a
//! bounded queue of packets that a stream in this process fills and a
//! receiver in this process drains, for tests and for pipelines that stay
//! in one program. Nothing is lost while the queue has room; a full queue
//! fails the sender's batch, which the stream reports on the heap; a
//! stopped queue refuses packets, and its receiver ends once it has taken
//! what was queued. Packet buffers go back to the queue once read, so a
//! steady stream allocates nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};

use super::{Limits, PacketSource, Transport, TransportError};

const MAX_BATCH: usize = 64;

/// A queue of packets between a stream and a receiver in this process.
/// Clones are the same queue.
#[derive(Debug, Clone)]
pub struct InprocQueue {
    inner: Arc<Queue>,
}

#[derive(Debug)]
struct Queue {
    packets: (Sender<Vec<u8>>, Receiver<Vec<u8>>),
    /// Buffers of packets already read, for the next packets.
    spares: (Sender<Vec<u8>>, Receiver<Vec<u8>>),
    capacity: usize,
    stopped: AtomicBool,
}

/// What taking from a queue gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    /// A packet; hand its buffer back with [`InprocQueue::recycle`].
    Packet(Vec<u8>),
    /// Nothing yet.
    Empty,
    /// The queue was stopped and everything in it has been taken.
    Ended,
}

impl InprocQueue {
    /// Packets a queue holds by default.
    pub const DEFAULT_CAPACITY: usize = 65536;

    /// A queue holding up to `capacity` packets (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        InprocQueue {
            inner: Arc::new(Queue {
                packets: crossbeam_channel::bounded(capacity),
                spares: crossbeam_channel::bounded(capacity),
                capacity,
                stopped: AtomicBool::new(false),
            }),
        }
    }

    /// Packets it holds at most.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// Queues a copy of `packet`, or says why not: the queue is full, or
    /// stopped.
    pub fn add_packet(&self, packet: &[u8]) -> Result<(), TransportError> {
        if self.inner.stopped.load(Ordering::Acquire) {
            return Err(TransportError::InprocStopped);
        }
        let mut buffer = self.inner.spares.1.try_recv().unwrap_or_default();
        buffer.clear();
        buffer.extend_from_slice(packet);
        self.inner.packets.0.try_send(buffer).map_err(|e| match e {
            TrySendError::Full(_) => TransportError::InprocFull {
                capacity: self.inner.capacity,
            },
            TrySendError::Disconnected(_) => TransportError::InprocStopped,
        })
    }

    /// Stops the queue: it takes no more packets, and its receiver ends
    /// after taking those queued.
    pub fn stop(&self) {
        self.inner.stopped.store(true, Ordering::Release);
    }

    /// Whether the queue was stopped.
    pub fn is_stopped(&self) -> bool {
        self.inner.stopped.load(Ordering::Acquire)
    }

    /// Takes the next packet, waiting up to `timeout` for one.
    pub fn take(&self, timeout: Duration) -> Taken {
        // Stopped is read before looking, so that a packet queued before
        // the stop is never missed.
        let stopped = self.is_stopped();
        match self.inner.packets.1.try_recv() {
            Ok(packet) => return Taken::Packet(packet),
            Err(TryRecvError::Disconnected) => return Taken::Ended,
            Err(TryRecvError::Empty) if stopped => return Taken::Ended,
            Err(TryRecvError::Empty) => {}
        }
        match self.inner.packets.1.recv_timeout(timeout) {
            Ok(packet) => Taken::Packet(packet),
            Err(_) => Taken::Empty,
        }
    }

    /// Takes a packet only if one is queued now.
    pub fn try_take(&self) -> Option<Vec<u8>> {
        self.inner.packets.1.try_recv().ok()
    }

    /// Hands back the buffer of a packet taken, for a later packet.
    pub fn recycle(&self, buffer: Vec<u8>) {
        let _ = self.inner.spares.0.try_send(buffer);
    }
}

/// A transport into in-process queues, one per substream (spead2's
/// `InprocStream`).
#[derive(Debug)]
pub struct InprocTransport {
    queues: Vec<InprocQueue>,
    scratch: Vec<u8>,
    limits: Limits,
}

impl InprocTransport {
    /// A transport into `queues` (one substream each; at least one).
    pub fn new(queues: Vec<InprocQueue>) -> Result<Self, TransportError> {
        if queues.is_empty() {
            return Err(TransportError::NoDestinations {
                transport: "in-process",
            });
        }
        let substreams = queues.len();
        Ok(InprocTransport {
            queues,
            scratch: Vec::new(),
            limits: Limits {
                max_len: 0,
                substreams,
            },
        })
    }
}

impl Transport for InprocTransport {
    fn substreams(&self) -> usize {
        self.queues.len()
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    fn prepare(&mut self, max_packet_size: usize) -> Result<(), TransportError> {
        self.scratch = vec![0; max_packet_size];
        self.limits.max_len = max_packet_size;
        Ok(())
    }

    fn send(&mut self, packets: &mut dyn PacketSource) -> Result<usize, TransportError> {
        let (queues, scratch) = (&self.queues, &mut self.scratch);
        self.limits.fill(packets, MAX_BATCH, |packets, spec| {
            let packet = &mut scratch[..spec.len];
            packets.write(packet);
            queues[spec.substream].add_packet(packet)?;
            Ok(true)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_come_out_in_order_then_the_stop_ends_the_queue() {
        let queue = InprocQueue::new(4);
        queue.add_packet(b"one").unwrap();
        queue.add_packet(b"two").unwrap();
        queue.stop();
        assert!(matches!(
            queue.add_packet(b"three"),
            Err(TransportError::InprocStopped)
        ));
        let wait = Duration::from_millis(1);
        assert_eq!(queue.take(wait), Taken::Packet(b"one".to_vec()));
        assert_eq!(queue.take(wait), Taken::Packet(b"two".to_vec()));
        assert_eq!(queue.take(wait), Taken::Ended);
    }

    #[test]
    fn a_full_queue_refuses_and_names_its_capacity() {
        let queue = InprocQueue::new(2);
        queue.add_packet(b"a").unwrap();
        queue.add_packet(b"b").unwrap();
        assert!(matches!(
            queue.add_packet(b"c"),
            Err(TransportError::InprocFull { capacity: 2 })
        ));
        assert_eq!(queue.take(Duration::ZERO), Taken::Packet(b"a".to_vec()));
        queue.add_packet(b"c").unwrap();
    }

    #[test]
    fn buffers_read_are_used_again() {
        let queue = InprocQueue::new(2);
        queue.add_packet(&[7; 100]).unwrap();
        let Taken::Packet(packet) = queue.take(Duration::ZERO) else {
            panic!("a packet was queued");
        };
        let address = packet.as_ptr();
        queue.recycle(packet);
        queue.add_packet(&[8; 50]).unwrap();
        let Taken::Packet(again) = queue.take(Duration::ZERO) else {
            panic!("a packet was queued");
        };
        assert_eq!((again.as_ptr(), &again[..]), (address, &[8u8; 50][..]));
    }
}
