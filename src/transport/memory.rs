//! The memory transport: packets appended to byte vectors, one per
//! substream, as spead2's `BytesStream` does. For tests and embedding.

use std::sync::{Arc, Mutex, MutexGuard};

use super::{PacketMeta, Transport, TransportError};

/// Packets collected in memory, readable while the stream runs.
#[derive(Debug, Clone)]
pub struct MemoryTransport {
    substreams: Arc<Mutex<Vec<Vec<u8>>>>,
    scratch: Vec<u8>,
}

impl MemoryTransport {
    /// A transport with `substreams` destinations (at least 1).
    pub fn new(substreams: usize) -> Self {
        MemoryTransport {
            substreams: Arc::new(Mutex::new(vec![Vec::new(); substreams.max(1)])),
            scratch: Vec::new(),
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
        64
    }

    fn prepare(&mut self, max_packet_size: usize) -> Result<(), TransportError> {
        self.scratch = vec![0; max_packet_size];
        Ok(())
    }

    fn send(
        &mut self,
        fill: &mut dyn FnMut(&mut [u8]) -> Option<PacketMeta>,
    ) -> Result<usize, TransportError> {
        let mut substreams = self.substreams.lock().unwrap_or_else(|p| p.into_inner());
        let mut sent = 0;
        while sent < self.max_batch() {
            let Some(meta) = fill(&mut self.scratch) else {
                break;
            };
            substreams[meta.substream].extend_from_slice(&self.scratch[..meta.len]);
            sent += 1;
        }
        Ok(sent)
    }
}
