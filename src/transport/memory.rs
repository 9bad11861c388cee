//! The memory transport: packets appended to byte vectors, one per
//! substream, as spead2's `BytesStream` does. For tests and embedding.

use std::sync::{Arc, Mutex, MutexGuard};

use super::{Limits, PacketSource, Transport, TransportError};

const MAX_BATCH: usize = 64;

/// Packets collected in memory, readable while the stream runs.
#[derive(Debug, Clone)]
pub struct MemoryTransport {
    substreams: Arc<Mutex<Vec<Vec<u8>>>>,
    scratch: Vec<u8>,
    limits: Limits,
}

impl MemoryTransport {
    /// A transport with `substreams` destinations (at least 1).
    pub fn new(substreams: usize) -> Self {
        let substreams = substreams.max(1);
        MemoryTransport {
            substreams: Arc::new(Mutex::new(vec![Vec::new(); substreams])),
            scratch: Vec::new(),
            limits: Limits {
                max_len: 0,
                substreams,
            },
        }
    }

    /// The bytes sent to substream `index` so far (packets back to back).
    pub fn bytes(&self, index: usize) -> Vec<u8> {
        self.lock()[index].clone()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Vec<u8>>> {
        self.substreams
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Transport for MemoryTransport {
    fn substreams(&self) -> usize {
        self.lock().len()
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
        let mut substreams = self.substreams.lock().unwrap_or_else(|p| p.into_inner());
        self.limits
            .fill_copies(packets, &mut self.scratch, MAX_BATCH, |substream, packet| {
                substreams[substream].extend_from_slice(packet);
                Ok(())
            })
    }
}
