//! One submission to a stream, from queue to completion: what it sends (a
//! group of heaps or raw datagrams), each worker's share of it with where
//! that worker stands in its packets, and its completion, reported once
//! when every worker has let go of it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::{GroupMode, SendError, Shared};
use crate::protocol::packetizer::HeapCursor;
use crate::protocol::{Heap, PacketSizing};
use crate::transport::{PacketPieces, PacketSpec};

/// A heap with its cnt, destination and pacing resolved.
#[derive(Debug)]
pub(super) struct QueuedHeap {
    pub heap: Arc<Heap<'static>>,
    pub cnt: u64,
    pub substream: usize,
    /// 0 for unlimited.
    pub nanos_per_byte: f64,
}

/// What a submission sends.
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

/// One submission, shared by the workers that each send a share of it:
/// the completion it reports once the last of them is done.
#[derive(Debug)]
struct Submission {
    /// Queue places it takes (its heaps; 1 for datagrams).
    places: usize,
    workers_left: AtomicUsize,
    outcome: Mutex<Outcome>,
    stream: Arc<Shared>,
}

/// What the workers have reported so far.
#[derive(Debug, Default)]
struct Outcome {
    bytes: u64,
    error: Option<SendError>,
    done: Option<oneshot::Sender<Result<u64, SendError>>>,
}

impl Submission {
    /// Adds one worker's result; the last one frees the queue places and
    /// reports the bytes sent or the first error.
    fn report(&self, result: Result<u64, SendError>) {
        let mut outcome = self.outcome.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(bytes) => outcome.bytes += bytes,
            Err(e) => {
                outcome.error.get_or_insert(e);
            }
        }
        if self.workers_left.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let result = match outcome.error.take() {
            None => Ok(outcome.bytes),
            Some(e) => Err(e),
        };
        let done = outcome.done.take();
        drop(outcome);
        let counters = &self.stream.counters;
        let counter = if result.is_ok() {
            &counters.heaps
        } else {
            &counters.errors
        };
        counter.fetch_add(self.places as u64, Ordering::Relaxed);
        self.stream.release(self.places);
        if let Some(done) = done {
            let _ = done.send(result);
        }
    }
}

/// One worker's share of a submission: the work, and the duty to report
/// on it exactly once, through [`finish`](Self::finish) or, when dropped
/// unfinished (a worker that stopped, a queue that closed), as
/// [`SendError::Closed`]; so a submission never waits forever for a worker
/// that is gone.
#[derive(Debug)]
pub(super) struct WorkerShare {
    /// Taken (dropped) before reporting.
    work: Option<Arc<Work>>,
    submission: Option<Arc<Submission>>,
}

impl WorkerShare {
    /// `work` for `workers` workers, taking `places` queue places of
    /// `stream` and reporting to `done`: one share per worker.
    pub fn split(
        work: Work,
        places: usize,
        workers: usize,
        stream: Arc<Shared>,
        done: oneshot::Sender<Result<u64, SendError>>,
    ) -> Vec<WorkerShare> {
        let work = Arc::new(work);
        let submission = Arc::new(Submission {
            places,
            workers_left: AtomicUsize::new(workers),
            outcome: Mutex::new(Outcome {
                done: Some(done),
                ..Outcome::default()
            }),
            stream,
        });
        (0..workers)
            .map(|_| WorkerShare {
                work: Some(Arc::clone(&work)),
                submission: Some(Arc::clone(&submission)),
            })
            .collect()
    }

    /// Reports this worker's result: the bytes it sent, or why it failed.
    pub fn finish(mut self, result: Result<u64, SendError>) {
        self.report(result);
    }

    /// Lets go of the work first, so that once the last worker reports the
    /// caller can update a heap in place and submit it again at once.
    fn report(&mut self, result: Result<u64, SendError>) {
        self.work = None;
        if let Some(submission) = self.submission.take() {
            submission.report(result);
        }
    }
}

impl Drop for WorkerShare {
    fn drop(&mut self) {
        self.report(Err(SendError::Closed));
    }
}

/// A share a worker is sending: where it stands in the share's packets
/// and what it has sent.
#[derive(Debug)]
pub(super) struct ActiveJob {
    share: WorkerShare,
    /// Kept beside the share's work (which the cursor reads, never copies).
    work: Arc<Work>,
    cursor: Cursor,
    /// Bytes sent in batches the transport took.
    pub sent: u64,
    /// Bytes in the batch being built.
    pub in_batch: u64,
    /// Why it failed, once it has.
    pub failed: Option<SendError>,
}

/// One packet a job offers next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct NextPacket {
    pub len: usize,
    pub substream: usize,
    /// Pacing for it (0 unlimited).
    pub nanos_per_byte: f64,
}

impl ActiveJob {
    /// Starts on `share`, planning its heaps' packets with `sizing`.
    /// Heaps are checked when submitted; one that still cannot be planned
    /// fails the job, it does not stop the worker.
    pub fn start(share: WorkerShare, sizing: PacketSizing) -> Self {
        let work = Arc::clone(share.work.as_ref().expect("present until reported"));
        let (cursor, failed) = match Cursor::new(&work, sizing) {
            Ok(cursor) => (cursor, None),
            Err(e) => (Cursor::Finished, Some(e)),
        };
        ActiveJob {
            share,
            work,
            cursor,
            sent: 0,
            in_batch: 0,
            failed,
        }
    }

    /// Packets left, this worker's and the others'.
    pub fn remaining(&self) -> usize {
        self.cursor.remaining(&self.work)
    }

    /// Whether every packet has been taken or passed over.
    #[inline]
    pub fn is_done(&self) -> bool {
        self.cursor.is_done(&self.work)
    }

    /// The job as a batch draws on it: its work borrowed for as long as
    /// the job is, apart from its cursor, so the payload pieces it hands
    /// out stay borrowed for the whole batch.
    #[inline]
    pub fn view(&mut self) -> JobView<'_> {
        JobView {
            work: &self.work,
            cursor: &mut self.cursor,
            in_batch: &mut self.in_batch,
        }
    }

    /// Passes over every packet left and returns how many.
    pub fn skip_rest(&mut self) -> usize {
        let left = self.remaining();
        self.cursor = Cursor::Finished;
        left
    }

    /// Reports the outcome: the bytes sent, or the failure.
    pub fn finish(self) {
        let ActiveJob {
            share,
            work,
            sent,
            failed,
            ..
        } = self;
        drop(work);
        share.finish(failed.map_or(Ok(sent), Err));
    }
}

/// A job in a batch: its work (shared, for `'j`), its cursor and the bytes
/// it has in the batch.
#[derive(Debug)]
pub(super) struct JobView<'j> {
    work: &'j Work,
    cursor: &'j mut Cursor,
    in_batch: &'j mut u64,
}

impl<'j> JobView<'j> {
    /// The next packet, if any.
    #[inline]
    pub fn peek(&mut self) -> Option<NextPacket> {
        self.cursor.peek(self.work)
    }

    /// Writes the next packet whole into `buf` (its length).
    #[inline]
    pub fn write(&mut self, buf: &mut [u8]) {
        self.cursor.write(self.work, buf);
        *self.in_batch += buf.len() as u64;
    }

    /// Writes the next packet's header into `buf` (its length) and returns
    /// its payload as pieces of the heap's memory where it can, borrowed
    /// for `'j`.
    #[inline]
    pub fn write_pieces(&mut self, buf: &mut [u8]) -> PacketPieces<'j> {
        *self.in_batch += buf.len() as u64;
        self.cursor.write_pieces(self.work, buf)
    }

    /// Passes over the next packet (another worker sends it); false when
    /// there is none.
    #[inline]
    pub fn skip(&mut self) -> bool {
        self.cursor.skip(self.work)
    }

    /// Writes the packets of a serial group's current heap whole, one at
    /// the front of each of `bufs` in turn, while `admit` lets each go (by
    /// its length and pacing), stating each in `specs`; returns how many,
    /// or `None` for other work, which goes packet by packet. A packet its
    /// buffer cannot hold ends the run, stated empty (never written).
    #[inline]
    pub fn write_run(
        &mut self,
        bufs: &mut [&mut [u8]],
        specs: &mut [PacketSpec],
        admit: impl FnMut(usize, f64) -> bool,
    ) -> Option<usize> {
        self.cursor
            .write_run(self.work, bufs, specs, self.in_batch, admit)
    }
}

/// Where a worker stands in a job's packets, as indices into its work.
#[derive(Debug)]
enum Cursor {
    Heaps {
        /// One per heap of the group.
        heaps: Vec<HeapCursor>,
        /// The heap the next packet comes from.
        current: usize,
        /// Heaps with packets left.
        unfinished: usize,
    },
    Datagrams {
        next: usize,
    },
    /// Nothing left (all sent or passed over, or failed).
    Finished,
}

impl Cursor {
    fn new(work: &Work, sizing: PacketSizing) -> Result<Self, SendError> {
        match work {
            Work::Heaps { heaps, .. } => {
                let mut cursors = Vec::with_capacity(heaps.len());
                for (index, q) in heaps.iter().enumerate() {
                    let cursor = HeapCursor::new(sizing, &q.heap, q.cnt).map_err(|e| SendError::Invalid {
                        index,
                        reason: e.into(),
                        unsent: super::Unsent::Heaps(Vec::new()),
                    })?;
                    cursors.push(cursor);
                }
                let heaps = cursors;
                let unfinished = heaps.iter().filter(|h| !h.is_done()).count();
                Ok(Cursor::Heaps {
                    heaps,
                    current: 0,
                    unfinished,
                })
            }
            Work::Datagrams { .. } => Ok(Cursor::Datagrams { next: 0 }),
        }
    }

    /// Whether nothing is left, without counting what is.
    #[inline]
    fn is_done(&self, work: &Work) -> bool {
        match (self, work) {
            (Cursor::Heaps { unfinished, .. }, _) => *unfinished == 0,
            (Cursor::Datagrams { next }, Work::Datagrams { datagrams, .. }) => *next == datagrams.len(),
            _ => true,
        }
    }

    fn remaining(&self, work: &Work) -> usize {
        match (self, work) {
            (Cursor::Heaps { heaps, .. }, _) => heaps.iter().map(HeapCursor::remaining).sum(),
            (Cursor::Datagrams { next }, Work::Datagrams { datagrams, .. }) => datagrams.len() - next,
            _ => 0,
        }
    }

    /// Moves `current` to a heap with packets left; `None` if there is
    /// none.
    #[inline]
    fn current_heap(heaps: &[HeapCursor], current: &mut usize, unfinished: usize) -> Option<usize> {
        if unfinished == 0 {
            return None;
        }
        while heaps[*current].is_done() {
            *current = (*current + 1) % heaps.len();
        }
        Some(*current)
    }

    #[inline]
    fn peek(&mut self, work: &Work) -> Option<NextPacket> {
        match (self, work) {
            (
                Cursor::Heaps {
                    heaps,
                    current,
                    unfinished,
                },
                Work::Heaps { heaps: queued, .. },
            ) => {
                let k = Self::current_heap(heaps, current, *unfinished)?;
                let q = queued.get(k)?;
                Some(NextPacket {
                    len: heaps[k].next_packet_len()?,
                    substream: q.substream,
                    nanos_per_byte: q.nanos_per_byte,
                })
            }
            (
                Cursor::Datagrams { next },
                Work::Datagrams {
                    datagrams,
                    substream,
                    nanos_per_byte,
                },
            ) => Some(NextPacket {
                len: datagrams.get(*next)?.len(),
                substream: *substream,
                nanos_per_byte: *nanos_per_byte,
            }),
            _ => None,
        }
    }

    /// Moves past the heap packet just taken from the current heap.
    #[inline]
    fn heap_taken(heaps: &[HeapCursor], current: &mut usize, unfinished: &mut usize, mode: GroupMode) {
        if heaps[*current].is_done() {
            *unfinished -= 1;
        }
        if mode == GroupMode::RoundRobin {
            *current = (*current + 1) % heaps.len();
        }
    }

    fn write(&mut self, work: &Work, buf: &mut [u8]) {
        match (self, work) {
            (
                Cursor::Heaps {
                    heaps,
                    current,
                    unfinished,
                },
                Work::Heaps { heaps: queued, mode },
            ) => {
                let Some(k) = Self::current_heap(heaps, current, *unfinished) else {
                    return;
                };
                let items = queued.get(k).map_or(&[][..], |q| q.heap.items());
                // `buf` has the length announced, so this writes; were it
                // ever short, the packet is passed over, never repeated.
                if heaps[k].write_next(items, buf).is_err() {
                    heaps[k].skip_next();
                }
                Self::heap_taken(heaps, current, unfinished, *mode);
            }
            (Cursor::Datagrams { next }, Work::Datagrams { datagrams, .. }) => {
                if let Some(datagram) = datagrams.get(*next) {
                    let n = datagram.len().min(buf.len());
                    buf[..n].copy_from_slice(&datagram[..n]);
                    *next += 1;
                }
            }
            _ => {}
        }
    }

    #[inline]
    fn write_pieces<'w>(&mut self, work: &'w Work, buf: &mut [u8]) -> PacketPieces<'w> {
        let (
            Cursor::Heaps {
                heaps,
                current,
                unfinished,
            },
            Work::Heaps { heaps: queued, mode },
        ) = (&mut *self, work)
        else {
            self.write(work, buf);
            return PacketPieces::new(buf.len());
        };
        let Some(k) = Self::current_heap(heaps, current, *unfinished) else {
            return PacketPieces::new(0);
        };
        let items = queued.get(k).map_or(&[][..], |q| q.heap.items());
        let mut pieces = PacketPieces::default();
        // Cannot fail for a buffer of the announced length; were it ever
        // short, the packet is passed over and the empty answer fails the
        // batch (the transport checks the length).
        if heaps[k].write_parts(items, buf, &mut pieces).is_err() {
            heaps[k].skip_next();
        }
        Self::heap_taken(heaps, current, unfinished, *mode);
        pieces
    }

    /// [`JobView::write_run`].
    #[inline]
    fn write_run(
        &mut self,
        work: &Work,
        bufs: &mut [&mut [u8]],
        specs: &mut [PacketSpec],
        in_batch: &mut u64,
        mut admit: impl FnMut(usize, f64) -> bool,
    ) -> Option<usize> {
        let (
            Cursor::Heaps {
                heaps,
                current,
                unfinished,
            },
            Work::Heaps {
                heaps: queued,
                mode: GroupMode::Serial,
            },
        ) = (self, work)
        else {
            return None;
        };
        let Some(k) = Self::current_heap(heaps, current, *unfinished) else {
            return Some(0);
        };
        let (Some(heap), Some(queued)) = (heaps.get_mut(k), queued.get(k)) else {
            return Some(0);
        };
        let items = queued.heap.items();
        let mut written = 0;
        for (buf, stated) in bufs.iter_mut().zip(specs.iter_mut()) {
            let Some(len) = heap.next_packet_len() else {
                break;
            };
            if !admit(len, queued.nanos_per_byte) {
                break;
            }
            // A buffer with room for the prepared size takes any packet;
            // were one ever short, the packet is passed over and stated
            // empty, which the transport refuses, failing this job's batch.
            let refused = heap.write_next(items, buf).is_err();
            *stated = PacketSpec {
                len: if refused { 0 } else { len },
                substream: queued.substream,
            };
            *in_batch += len as u64;
            written += 1;
            if refused {
                heap.skip_next();
                break;
            }
        }
        if written > 0 && heap.is_done() {
            *unfinished -= 1;
        }
        Some(written)
    }

    fn skip(&mut self, work: &Work) -> bool {
        match (self, work) {
            (
                Cursor::Heaps {
                    heaps,
                    current,
                    unfinished,
                },
                Work::Heaps { mode, .. },
            ) => {
                let Some(k) = Self::current_heap(heaps, current, *unfinished) else {
                    return false;
                };
                heaps[k].skip_next();
                Self::heap_taken(heaps, current, unfinished, *mode);
                true
            }
            (Cursor::Datagrams { next }, Work::Datagrams { datagrams, .. }) => {
                if *next == datagrams.len() {
                    return false;
                }
                *next += 1;
                true
            }
            _ => false,
        }
    }
}
