//! Transports: where packets go. Every transport takes packets in batches
//! through one trait; the stream's worker fills each packet straight into
//! the transport's own buffer (a socket batch, a UMEM frame, a byte vector),
//! so no layer copies a packet twice.

use thiserror::Error;

pub mod frame;
#[allow(unsafe_code)]
pub mod iface;
pub mod memory;
pub mod netlink;
pub mod pcap;
pub mod tcp;
#[allow(unsafe_code)]
pub mod udp;
#[allow(unsafe_code)]
pub mod umem;
#[allow(unsafe_code)]
pub mod xdp;

pub use memory::MemoryTransport;
pub use pcap::{PcapConfig, PcapTransport};
pub use tcp::TcpTransport;
pub use udp::{MulticastInterface, UdpConfig, UdpTransport};
pub use umem::{HugePages, UmemArea, UmemBuffer};
pub use xdp::{XdpConfig, XdpCounters, XdpMode, XdpTransport};

/// Most pieces a packet's payload can be sent by reference in.
pub const MAX_REF_PIECES: usize = crate::protocol::packetizer::MAX_PARTS;

/// Payload sent by reference: pieces of the transport's payload region
/// (offsets from its start, lengths), following the bytes written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefPieces {
    pieces: [(u64, u32); MAX_REF_PIECES],
    count: usize,
}

impl RefPieces {
    /// Adds a piece; false if full.
    pub fn push(&mut self, offset: u64, len: u32) -> bool {
        if self.count == MAX_REF_PIECES {
            return false;
        }
        self.pieces[self.count] = (offset, len);
        self.count += 1;
        true
    }

    /// The pieces, in order.
    pub fn pieces(&self) -> &[(u64, u32)] {
        &self.pieces[..self.count]
    }

    /// Their total length.
    pub fn total(&self) -> usize {
        self.pieces().iter().map(|(_, len)| *len as usize).sum()
    }
}

/// Where a filled packet goes and how long it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketMeta {
    /// The whole packet's length: the bytes written, then `by_reference`.
    pub len: usize,
    /// Destination (substream) index.
    pub substream: usize,
    /// Payload not written but referenced in the transport's payload
    /// region (only for transports that have one).
    pub by_reference: RefPieces,
}

impl PacketMeta {
    /// A packet written whole: `len` bytes to `substream`.
    pub fn written(len: usize, substream: usize) -> Self {
        PacketMeta {
            len,
            substream,
            by_reference: RefPieces::default(),
        }
    }
}

/// Why a transport could not take packets.
#[derive(Debug, Error)]
pub enum TransportError {
    /// The transport cannot carry packets this large.
    #[error("packets of {packet} bytes do not fit the transport's limit of {limit} bytes")]
    PacketTooLarge {
        /// Requested packet size.
        packet: usize,
        /// The transport's limit.
        limit: usize,
    },
    /// The transport was asked for something it cannot do.
    #[error("{what}")]
    Config {
        /// What is wrong.
        what: String,
    },
    /// An operating-system error, with what was being done.
    #[error("{what}: {source}")]
    Io {
        /// What failed.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Largest UDP payload over IPv4 (65535 less the IPv4 and UDP headers).
pub const MAX_UDP_PAYLOAD: usize = 65507;

/// Refuses packets that cannot be one UDP datagram.
pub(crate) fn check_udp_payload(max_packet_size: usize) -> Result<(), TransportError> {
    if max_packet_size > MAX_UDP_PAYLOAD {
        return Err(TransportError::PacketTooLarge {
            packet: max_packet_size,
            limit: MAX_UDP_PAYLOAD,
        });
    }
    Ok(())
}

/// A packet transport, owned by one worker thread.
pub trait Transport: Send + 'static {
    /// Number of destinations; packets name one by index.
    fn substreams(&self) -> usize;

    /// Most packets one [`send`](Self::send) call takes.
    fn max_batch(&self) -> usize;

    /// Readies buffers for packets of up to `max_packet_size` bytes, or
    /// says why the transport cannot carry them.
    fn prepare(&mut self, max_packet_size: usize) -> Result<(), TransportError>;

    /// Memory (start address, length) whose bytes the transport can send by
    /// reference instead of copying, such as an AF_XDP UMEM's user buffers.
    fn payload_region(&self) -> Option<(usize, usize)> {
        None
    }

    /// Times so far that sending had to wait for ring space or free
    /// buffers (a sign the wire or the kernel is the bottleneck).
    fn ring_stalls(&self) -> u64 {
        0
    }

    /// Sends a batch of at most [`max_batch`](Self::max_batch) packets and
    /// returns how many. `fill` writes each packet into the buffer it is
    /// given (at least `max_packet_size` bytes) and says how long it is and
    /// where it goes, or returns `None` to end the batch (nothing more to
    /// send, or the pacing says wait).
    fn send(
        &mut self,
        fill: &mut dyn FnMut(&mut [u8]) -> Option<PacketMeta>,
    ) -> Result<usize, TransportError>;
}
