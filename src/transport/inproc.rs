//! In-process streams, as spead2's `InprocQueue` and `InprocStream`: a
//! bounded queue of packets that a stream in this process fills and a
//! receiver in this process drains, for tests and for pipelines that stay
//! in one program. Nothing is lost while the queue has room; a full queue
//! fails the sender's batch, which the stream reports on the heap; a
//! stopped queue refuses packets, and its receiver ends once it has taken
//! what was queued. Packet buffers go back to the queue once read, so a
//! steady stream allocates nothing.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError};

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
    /// The sending end, dropped by `stop`: then the channel reports the
    /// end once drained, and a packet is either in before the stop or
    /// refused (the lock makes adding and stopping exclusive).
    sender: RwLock<Option<Sender<Vec<u8>>>>,
    packets: Receiver<Vec<u8>>,
    /// Buffers of packets already read, for the next packets.
    spares: (Sender<Vec<u8>>, Receiver<Vec<u8>>),
    capacity: usize,
}

/// Spare buffers a queue keeps at most (a burst's buffers beyond these
/// are freed).
const MAX_SPARES: usize = 1024;

/// What taking from a queue gave.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Taken {
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
        let (sender, packets) = crossbeam_channel::bounded(capacity);
        InprocQueue {
            inner: Arc::new(Queue {
                sender: RwLock::new(Some(sender)),
                packets,
                spares: crossbeam_channel::bounded(capacity.min(MAX_SPARES)),
                capacity,
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
        let sender = self.inner.sender.read().unwrap_or_else(|p| p.into_inner());
        let Some(sender) = sender.as_ref() else {
            return Err(TransportError::InprocStopped);
        };
        let mut buffer = self.inner.spares.1.try_recv().unwrap_or_default();
        buffer.clear();
        buffer.extend_from_slice(packet);
        sender.try_send(buffer).map_err(|e| match e {
            TrySendError::Full(buffer) => {
                self.recycle(buffer);
                TransportError::InprocFull {
                    capacity: self.inner.capacity,
                }
            }
            TrySendError::Disconnected(_) => TransportError::InprocStopped,
        })
    }

    /// Stops the queue: it takes no more packets, and its receiver ends
    /// after taking those queued.
    pub fn stop(&self) {
        self.inner
            .sender
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }

    /// Takes the next packet, waiting up to `timeout` for one.
    pub(crate) fn take(&self, timeout: Duration) -> Taken {
        match self.inner.packets.try_recv() {
            Ok(packet) => return Taken::Packet(packet),
            Err(TryRecvError::Disconnected) => return Taken::Ended,
            Err(TryRecvError::Empty) => {}
        }
        match self.inner.packets.recv_timeout(timeout) {
            Ok(packet) => Taken::Packet(packet),
            Err(RecvTimeoutError::Disconnected) => Taken::Ended,
            Err(RecvTimeoutError::Timeout) => Taken::Empty,
        }
    }

    /// Takes a packet only if one is queued now.
    pub(crate) fn try_take(&self) -> Option<Vec<u8>> {
        self.inner.packets.try_recv().ok()
    }

    /// Hands back the buffer of a packet taken, for a later packet.
    pub(crate) fn recycle(&self, buffer: Vec<u8>) {
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

    fn send(&mut self, packets: &mut dyn PacketSource<'_>) -> Result<usize, TransportError> {
        let queues = &self.queues;
        self.limits
            .fill_copies(packets, &mut self.scratch, MAX_BATCH, |substream, packet| {
                queues[substream].add_packet(packet)
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
    fn a_packet_added_as_the_queue_stops_is_either_taken_or_refused() {
        for _ in 0..20 {
            let queue = InprocQueue::new(1 << 16);
            let adder = {
                let queue = queue.clone();
                std::thread::spawn(move || {
                    let mut accepted = 0u64;
                    while queue.add_packet(b"p").is_ok() {
                        accepted += 1;
                    }
                    accepted
                })
            };
            while queue.inner.packets.is_empty() {
                std::thread::yield_now();
            }
            queue.stop();
            let accepted = adder.join().unwrap();
            let mut taken = 0u64;
            while let Taken::Packet(_) = queue.take(Duration::ZERO) {
                taken += 1;
            }
            assert_eq!(taken, accepted, "every packet accepted before the stop is taken");
        }
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
