//! Transports: where packets go. Every transport takes packets in batches
//! through one trait; the stream's worker fills each packet straight into
//! the transport's own buffer (a socket batch, a UMEM frame, a byte vector),
//! so no layer copies a packet twice.

pub use crate::protocol::PacketPieces;

mod error;
#[allow(unsafe_code)]
mod fd;
mod frame;
#[allow(unsafe_code)]
mod iface;
mod inproc;
#[cfg(feature = "python")]
#[allow(unsafe_code)]
mod lent;
mod memory;
mod netlink;
mod pcap;
#[cfg(any(test, feature = "python"))]
#[allow(unsafe_code)]
mod racy;
mod tcp;
#[allow(unsafe_code)]
mod udp;
#[allow(unsafe_code)]
mod udp_rx;
#[allow(unsafe_code)]
mod umem;
#[allow(unsafe_code)]
mod xdp;
mod xdp_features;

pub use error::{BadPacket, TransportError};
pub use fd::duplicate_fd;
pub use frame::MacAddress;
pub(crate) use inproc::Taken;
pub use inproc::{InprocQueue, InprocTransport};
#[cfg(feature = "python")]
pub use lent::PyBufferMemory;
pub use memory::MemoryTransport;
pub use pcap::{PcapConfig, PcapTransport};
pub use tcp::TcpTransport;
pub use udp::{MulticastInterface, UdpConfig, UdpTransport};
pub(crate) use udp_rx::UdpBatchReceiver;
pub use umem::{HugePages, UmemArea, UmemBuffer};
pub use xdp::{XdpConfig, XdpCounters, XdpMode, XdpTransport};
pub use xdp_features::{TransportChoice, XdpFeatures};

/// The interface the kernel's route to `destination` leaves by (the one an
/// AF_XDP transport to it must send on).
pub fn interface_towards(destination: std::net::Ipv4Addr) -> Result<String, TransportError> {
    Ok(iface::Interface::towards(destination)?.name)
}

/// The interface that holds IPv4 `address` (as spead2's
/// `interface_address` names a NIC).
pub fn interface_with_address(address: std::net::Ipv4Addr) -> Result<String, TransportError> {
    iface::Interface::with_address(address)
}

/// Internals the crate's own tests and benchmarks reach (feature
/// `internals`); not part of the API, free to change.
#[cfg(feature = "internals")]
pub mod internals {
    pub use super::frame::{UdpFrameTemplate, HEADERS_LEN};
    pub use super::iface::Interface;
}

/// The next packet a [`PacketSource`] offers: its length and destination,
/// stated before the transport hands over a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacketSpec {
    /// The whole packet's length in bytes (the SPEAD packet: UDP payload).
    pub len: usize,
    /// Destination (substream) index.
    pub substream: usize,
}

/// Where a transport's packets come from: the sender's side of the
/// transport contract. For each packet the transport first asks
/// [`next_packet`](Self::next_packet) for its length and destination,
/// checks them against its own limits, and only then hands over a buffer of
/// exactly that length to [`write`](Self::write) or
/// [`write_pieces`](Self::write_pieces); or, taking a batch of whole
/// packets in one call, hands over its free buffers to
/// [`write_batch`](Self::write_batch) and checks what the source says it
/// wrote before sending any of it. Whatever a source does, a
/// transport touches no memory but its own buffers and the source's own
/// slices: a packet that breaks the contract fails the batch with
/// [`TransportError::BadPacket`]. Payload pieces are borrowed for `'s`,
/// which outlives the transport's whole `send`: a transport may keep every
/// packet's pieces until the batch has gone.
pub trait PacketSource<'s> {
    /// The next packet's length and destination, or `None` to end the
    /// batch (nothing left, or the pacing says wait). Asking again before
    /// writing describes the same packet.
    fn next_packet(&mut self) -> Option<PacketSpec>;

    /// Writes the packet just described into `buf`, exactly its length.
    fn write(&mut self, buf: &mut [u8]);

    /// Writes the packet just described as its first bytes in `buf`
    /// (which has room for all of it) and payload pieces to follow, for
    /// transports that can send pieces by reference. By default the packet
    /// is written whole.
    fn write_pieces(&mut self, buf: &mut [u8]) -> PacketPieces<'s> {
        self.write(buf);
        PacketPieces::new(buf.len())
    }

    /// Writes a run of packets whole, each at the front of the next of
    /// `bufs` (every one with room for the prepared max packet size), and
    /// states each one's length and destination in `specs` (at least as
    /// long as `bufs`); returns how many, ending where
    /// [`next_packet`](Self::next_packet) would end the batch. The
    /// transport checks every spec before it sends any of them: a packet
    /// stated with no length, too long or to no such destination fails
    /// the batch. One call a batch lets a source keep its place between
    /// packets; by default it goes packet by packet.
    fn write_batch(&mut self, bufs: &mut [&mut [u8]], specs: &mut [PacketSpec]) -> usize {
        write_each(self, bufs, specs)
    }
}

/// [`PacketSource::write_batch`] packet by packet: each packet described,
/// then written whole where its buffer has room (a packet too long for
/// it is stated, unwritten, and ends the run, for the transport to
/// refuse).
pub(crate) fn write_each<'s, S: PacketSource<'s> + ?Sized>(
    source: &mut S,
    bufs: &mut [&mut [u8]],
    specs: &mut [PacketSpec],
) -> usize {
    let mut written = 0;
    for (buf, stated) in bufs.iter_mut().zip(specs.iter_mut()) {
        let Some(spec) = source.next_packet() else {
            break;
        };
        *stated = spec;
        written += 1;
        let Some(packet) = buf.get_mut(..spec.len) else {
            break;
        };
        source.write(packet);
    }
    written
}

/// A transport's limits, against which every packet offered is checked
/// before a buffer is taken for it (or, in a batch written in one call,
/// before any of the batch goes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Limits {
    /// The prepared max packet size (0 before `prepare`: nothing fits).
    pub max_len: usize,
    /// Number of destinations.
    pub substreams: usize,
}

impl Limits {
    /// The source's next packet, checked; `Ok(None)` ends the batch.
    pub(crate) fn next(
        &self,
        source: &mut dyn PacketSource<'_>,
    ) -> Result<Option<PacketSpec>, TransportError> {
        let Some(spec) = source.next_packet() else {
            return Ok(None);
        };
        self.check(spec).map(Some)
    }

    /// `spec`, if this transport can send it.
    pub(crate) fn check(&self, spec: PacketSpec) -> Result<PacketSpec, TransportError> {
        let bad = if spec.len == 0 {
            BadPacket::Empty
        } else if spec.len > self.max_len {
            BadPacket::TooLong {
                len: spec.len,
                max: self.max_len,
            }
        } else if spec.substream >= self.substreams {
            BadPacket::NoSuchSubstream {
                index: spec.substream,
                substreams: self.substreams,
            }
        } else {
            return Ok(spec);
        };
        Err(TransportError::BadPacket(bad))
    }

    /// Fills a batch: asks `source` for packets until it ends the batch,
    /// `max` have been taken, or `take` says there is no room for more
    /// (returning `false`), handing each packet to `take` only once it is
    /// checked. Returns how many were taken; the first error ends the
    /// batch.
    pub(crate) fn fill<'s>(
        &self,
        source: &mut dyn PacketSource<'s>,
        max: usize,
        mut take: impl FnMut(&mut dyn PacketSource<'s>, PacketSpec) -> Result<bool, TransportError>,
    ) -> Result<usize, TransportError> {
        let mut taken = 0;
        while taken < max {
            let Some(spec) = self.next(source)? else {
                break;
            };
            taken += 1;
            if !take(source, spec)? {
                break;
            }
        }
        Ok(taken)
    }

    /// Fills a batch as [`fill`](Self::fill) does, each packet written
    /// whole into `scratch` (of the prepared size) and its bytes handed to
    /// `take` with its substream: for transports that keep copies.
    pub(crate) fn fill_copies(
        &self,
        source: &mut dyn PacketSource<'_>,
        scratch: &mut [u8],
        max: usize,
        mut take: impl FnMut(usize, &[u8]) -> Result<(), TransportError>,
    ) -> Result<usize, TransportError> {
        self.fill(source, max, |source, spec| {
            let packet = &mut scratch[..spec.len];
            source.write(packet);
            take(spec.substream, packet)?;
            Ok(true)
        })
    }
}

/// Checks that written bytes and pieces make the packet described.
pub(crate) fn check_pieces(spec: PacketSpec, pieces: &PacketPieces<'_>) -> Result<(), TransportError> {
    // Summed with a check: a source may state any piece length.
    let total = pieces
        .pieces()
        .iter()
        .try_fold(pieces.written(), |total, piece| total.checked_add(piece.len()));
    if pieces.written() <= spec.len && total == Some(spec.len) {
        return Ok(());
    }
    Err(TransportError::BadPacket(BadPacket::LengthMismatch {
        described: spec.len,
        written: pieces.written(),
        referenced: total.unwrap_or(usize::MAX).saturating_sub(pieces.written()),
    }))
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

    /// Times so far that sending had to wait for ring space or free
    /// buffers (a sign the wire or the kernel is the bottleneck).
    fn ring_stalls(&self) -> u64 {
        0
    }

    /// Sends a batch of at most [`max_batch`](Self::max_batch) packets
    /// taken from `packets` and returns how many. Each packet's length and
    /// destination are checked before a buffer is taken for it (or, where
    /// a batch is written in one call, before any of it goes); a breach
    /// fails the batch ([`TransportError::BadPacket`]): the socket
    /// transports (UDP, TCP, AF_XDP) then send none of it, the memory and
    /// pcap transports keep the packets before it, as on any failure
    /// part-way through a batch.
    fn send(&mut self, packets: &mut dyn PacketSource<'_>) -> Result<usize, TransportError>;
}
