//! The UDP transport: one socket (IPv4 or IPv6, unicast or multicast), one
//! or more destinations (substreams), packets sent in `sendmmsg` batches of
//! up to 64. Runs of full-size packets to one destination go as single UDP
//! GSO (`UDP_SEGMENT`) messages, which the kernel splits; if the kernel or
//! the device refuses GSO, the transport logs it and carries on without.
//!
//! Each packet's first bytes (its SPEAD header, or all of it) are written
//! into a fixed slot of `max_packet_size` bytes; payload pieces the source
//! lends as plain memory go by reference, an iovec each, so that the
//! kernel's copy into its buffers is the only one. A message's iovecs are
//! its packets' in order, contiguous ones merged (full packets written
//! whole into consecutive slots make one).

use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::iface::{LinkWatch, LINK_CHECK_EVERY};
use super::{
    check_pieces, check_udp_payload, Limits, PacketPieces, PacketSource, PacketSpec, Transport,
    TransportError, MAX_UDP_PAYLOAD,
};
use crate::protocol::{Piece, MAX_PARTS};

/// `UDP_SEGMENT` from the kernel's `linux/udp.h` (libc lacks it for glibc).
const UDP_SEGMENT: libc::c_int = 103;
/// Packets per `sendmmsg` batch.
const MAX_BATCH: usize = 64;
/// Segments the kernel takes in one GSO message.
const MAX_GSO_SEGMENTS: usize = 64;
/// Most iovecs one packet makes: runs of its slot between lent pieces.
const MAX_PACKET_IOVECS: usize = 2 * MAX_PARTS + 1;
// A GSO message's iovecs stay within the kernel's UIO_MAXIOV.
const _: () = assert!(MAX_GSO_SEGMENTS * MAX_PACKET_IOVECS <= 1024);

/// One part of a packet as sent.
#[derive(Debug, Clone, Copy)]
enum Part {
    /// `len` bytes from `start` of the transport's buffer (made a pointer
    /// only once the batch is written, from one pointer to the buffer).
    Slot { start: usize, len: usize },
    /// A piece the source lent as plain memory.
    Lent(libc::iovec),
}

/// The egress interface for multicast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MulticastInterface {
    /// IPv4: the interface with this address.
    Address(Ipv4Addr),
    /// IPv6: the interface with this index.
    Index(u32),
}

impl std::fmt::Display for MulticastInterface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MulticastInterface::Address(address) => write!(f, "address {address}"),
            MulticastInterface::Index(index) => write!(f, "index {index}"),
        }
    }
}

/// How to open a UDP transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpConfig {
    /// One destination per substream, all of one address family.
    pub destinations: Vec<SocketAddr>,
    /// Local address to bind (address and port), if any.
    pub bind: Option<SocketAddr>,
    /// Interface the socket is bound to (SO_BINDTODEVICE), if any: packets
    /// leave through it or not at all, so while it is down heaps fail
    /// instead of taking another route.
    pub interface: Option<String>,
    /// Socket send buffer size in bytes.
    pub buffer_size: usize,
    /// Hop limit for multicast (and unicast) packets.
    pub ttl: Option<u32>,
    /// Egress interface for multicast.
    pub multicast_interface: Option<MulticastInterface>,
    /// Whether multicast packets loop back to local listeners.
    pub multicast_loop: Option<bool>,
    /// Use UDP GSO where the kernel allows it.
    pub gso: bool,
    /// Refuse to fragment: a packet larger than the path MTU fails its heap
    /// with EMSGSIZE instead of leaving as IP fragments (which many SPEAD
    /// receivers drop). Off by default, as in spead2.
    pub dont_fragment: bool,
}

impl UdpConfig {
    /// spead2's default UDP send buffer, in bytes.
    pub const DEFAULT_BUFFER_SIZE: usize = 512 * 1024;

    /// Defaults (spead2's buffer size, GSO on) for these destinations.
    pub fn new(destinations: Vec<SocketAddr>) -> Self {
        UdpConfig {
            destinations,
            bind: None,
            interface: None,
            buffer_size: Self::DEFAULT_BUFFER_SIZE,
            ttl: None,
            multicast_interface: None,
            multicast_loop: None,
            gso: true,
            dont_fragment: false,
        }
    }
}

/// Sends packets over UDP.
pub struct UdpTransport {
    socket: Socket,
    destinations: Vec<SockAddr>,
    gso: bool,
    /// GSO was refused and the batch is being retried without it.
    probing_gso: bool,
    /// Messages sent as GSO runs so far.
    gso_messages: u64,
    /// Payload bytes sent from the source's memory by reference so far.
    bytes_by_reference: u64,
    buffer: Vec<u8>,
    /// The batch's packets: packet `i` is in slot `i` of `buffer`.
    packets: Vec<PacketSpec>,
    limits: Limits,
    /// The batch's packets as parts, in order: slot bytes and lent
    /// pieces. Packet `i`'s end at `packet_ends[i]`; its bytes sent by
    /// reference are `packet_referenced[i]`.
    packet_parts: Vec<Part>,
    packet_ends: Vec<usize>,
    packet_referenced: Vec<u64>,
    /// The messages' iovecs (a message's packets' iovecs, contiguous ones
    /// merged).
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
    /// One `cmsghdr` + u16 per message, 8-byte aligned.
    controls: Vec<[u64; 4]>,
    /// First packet of each message.
    message_start: Vec<usize>,
    /// The bound interface's state, checked before batches.
    link: Option<LinkWatch>,
}

// SAFETY: the raw pointers in the parts, iovecs and `headers` point into
// this transport's own buffers or into pieces a source lent for one
// `send`, and are rebuilt in each `send` before use (never read after it
// returns); nothing is shared between threads.
unsafe impl Send for UdpTransport {}

impl std::fmt::Debug for UdpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpTransport")
            .field("destinations", &self.destinations.len())
            .field("gso", &self.gso)
            .finish()
    }
}

impl UdpTransport {
    /// Opens a socket as `config` says.
    pub fn new(config: &UdpConfig) -> Result<Self, TransportError> {
        let first = config
            .destinations
            .first()
            .ok_or(TransportError::NoDestinations { transport: "UDP" })?;
        if let Some(other) = config
            .destinations
            .iter()
            .find(|d| d.is_ipv4() != first.is_ipv4())
        {
            return Err(TransportError::MixedAddressFamilies {
                first: *first,
                other: *other,
            });
        }
        let socket = Socket::new(Domain::for_address(*first), Type::DGRAM, Some(Protocol::UDP))
            .map_err(TransportError::doing("creating a UDP socket"))?;
        socket
            .set_send_buffer_size(config.buffer_size)
            .map_err(TransportError::doing(format!(
                "setting the send buffer to {} bytes",
                config.buffer_size
            )))?;
        if let Some(interface) = &config.interface {
            socket
                .bind_device(Some(interface.as_bytes()))
                .map_err(TransportError::doing(format!("binding to interface {interface}")))?;
        }
        if let Some(bind) = config.bind {
            socket
                .bind(&bind.into())
                .map_err(TransportError::doing(format!("binding to {bind}")))?;
        }
        let v4 = first.is_ipv4();
        if let Some(ttl) = config.ttl {
            let result = if v4 {
                socket
                    .set_multicast_ttl_v4(ttl)
                    .and_then(|()| socket.set_ttl(ttl))
            } else {
                socket
                    .set_multicast_hops_v6(ttl)
                    .and_then(|()| socket.set_unicast_hops_v6(ttl))
            };
            result.map_err(TransportError::doing(format!("setting TTL {ttl}")))?;
        }
        if let Some(interface) = config.multicast_interface {
            let result = match (interface, v4) {
                (MulticastInterface::Address(addr), true) => socket.set_multicast_if_v4(&addr),
                (MulticastInterface::Index(index), false) => socket.set_multicast_if_v6(index),
                (MulticastInterface::Index(_), true) | (MulticastInterface::Address(_), false) => {
                    return Err(TransportError::MulticastInterfaceFamily {
                        interface,
                        family: if v4 { "IPv4" } else { "IPv6" },
                    })
                }
            };
            result.map_err(TransportError::doing(format!(
                "setting the multicast interface to {interface}"
            )))?;
        }
        if let Some(enabled) = config.multicast_loop {
            let result = if v4 {
                socket.set_multicast_loop_v4(enabled)
            } else {
                socket.set_multicast_loop_v6(enabled)
            };
            result.map_err(TransportError::doing("setting multicast loopback"))?;
        }
        if config.dont_fragment {
            set_dont_fragment(&socket, v4).map_err(TransportError::doing("setting don't-fragment"))?;
        }
        let mut transport = Self::with_socket(socket, &config.destinations, config.gso);
        if let Some(interface) = &config.interface {
            transport.link = Some(LinkWatch::new(interface, LINK_CHECK_EVERY)?);
        }
        Ok(transport)
    }

    /// Sends through a socket the caller made (for options this crate does
    /// not set). It must be a UDP socket of the destinations' family.
    pub fn from_socket(socket: UdpSocket, destinations: &[SocketAddr], gso: bool) -> Self {
        Self::with_socket(Socket::from(socket), destinations, gso)
    }

    fn with_socket(socket: Socket, destinations: &[SocketAddr], gso: bool) -> Self {
        UdpTransport {
            socket,
            limits: Limits {
                max_len: 0,
                substreams: destinations.len(),
            },
            destinations: destinations.iter().map(|d| SockAddr::from(*d)).collect(),
            gso: gso && Self::kernel_has_gso_for(destinations),
            probing_gso: false,
            gso_messages: 0,
            bytes_by_reference: 0,
            buffer: Vec::new(),
            packets: Vec::with_capacity(MAX_BATCH),
            packet_parts: Vec::with_capacity(MAX_BATCH * MAX_PACKET_IOVECS),
            packet_ends: Vec::with_capacity(MAX_BATCH),
            packet_referenced: Vec::with_capacity(MAX_BATCH),
            iovecs: Vec::with_capacity(MAX_BATCH * MAX_PACKET_IOVECS),
            headers: Vec::with_capacity(MAX_BATCH),
            controls: vec![[0; 4]; MAX_BATCH],
            message_start: Vec::with_capacity(MAX_BATCH),
            link: None,
        }
    }

    /// Whether a socket of the destinations' family accepts `UDP_SEGMENT`.
    fn kernel_has_gso_for(destinations: &[SocketAddr]) -> bool {
        let domain = match destinations.first() {
            Some(SocketAddr::V6(_)) => Domain::IPV6,
            _ => Domain::IPV4,
        };
        let Ok(probe) = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)) else {
            return false;
        };
        let segment: libc::c_int = 0;
        // SAFETY: a valid socket, an option value of the size given.
        let rc = unsafe {
            libc::setsockopt(
                probe.as_raw_fd(),
                libc::SOL_UDP,
                UDP_SEGMENT,
                (&segment as *const libc::c_int).cast(),
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            tracing::info!(
                "UDP GSO unavailable ({}); sending one datagram per packet",
                io::Error::last_os_error()
            );
        }
        rc == 0
    }

    /// Bytes per packet slot in `buffer`: the prepared max packet size,
    /// which every packet is checked against.
    fn slot(&self) -> usize {
        self.limits.max_len
    }

    /// Whether GSO is in use.
    pub fn gso(&self) -> bool {
        self.gso
    }

    /// Messages the kernel took as GSO runs (several packets to one
    /// destination in one message) so far.
    pub fn gso_messages(&self) -> u64 {
        self.gso_messages
    }

    /// Payload bytes sent from the source's own memory by reference (the
    /// kernel's copy the only one) so far.
    pub fn bytes_by_reference(&self) -> u64 {
        self.bytes_by_reference
    }

    /// The socket, to read (or set) options this crate does not cover.
    pub fn socket(&self) -> socket2::SockRef<'_> {
        socket2::SockRef::from(&self.socket)
    }

    /// The local address of the socket.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.socket.local_addr().ok()?.as_socket()
    }

    /// Groups the batch's packets from `first` on into messages.
    fn build_messages(&mut self, first: usize) {
        self.iovecs.clear();
        self.headers.clear();
        self.message_start.clear();
        let max_segments = MAX_GSO_SEGMENTS.min(MAX_UDP_PAYLOAD / self.slot().max(1));
        // Slots become pointers from this one, taken once the batch is
        // written (none is written again before it is sent).
        let buffer = self.buffer.as_mut_ptr();
        let mut i = first;
        while i < self.packets.len() {
            let substream = self.packets[i].substream;
            let mut end = i + 1;
            if self.gso {
                while end < self.packets.len()
                    && end - i < max_segments
                    && self.packets[end - 1].len == self.slot()
                    && self.packets[end].substream == substream
                {
                    end += 1;
                }
            }
            let first_iovec = self.iovecs.len();
            let start = if i == 0 { 0 } else { self.packet_ends[i - 1] };
            for part in &self.packet_parts[start..self.packet_ends[end - 1]] {
                let iovec = match *part {
                    Part::Slot { start, len } => libc::iovec {
                        iov_base: buffer.wrapping_add(start).cast(),
                        iov_len: len,
                    },
                    Part::Lent(iovec) => iovec,
                };
                match self.iovecs[first_iovec..].last_mut() {
                    Some(last) if last.iov_base.wrapping_byte_add(last.iov_len) == iovec.iov_base => {
                        last.iov_len += iovec.iov_len;
                    }
                    _ => self.iovecs.push(iovec),
                }
            }
            let destination = &self.destinations[substream];
            // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
            let mut header: libc::mmsghdr = unsafe { mem::zeroed() };
            header.msg_hdr.msg_name = destination.as_ptr() as *mut libc::c_void;
            header.msg_hdr.msg_namelen = destination.len();
            header.msg_hdr.msg_iovlen = self.iovecs.len() - first_iovec;
            if end - i > 1 {
                let control = &mut self.controls[self.headers.len()];
                // SAFETY: CMSG_SPACE/CMSG_LEN only compute sizes.
                let (space, len) = unsafe { (libc::CMSG_SPACE(2), libc::CMSG_LEN(2)) };
                let cmsg = libc::cmsghdr {
                    cmsg_len: len as _,
                    cmsg_level: libc::SOL_UDP,
                    cmsg_type: UDP_SEGMENT,
                };
                let bytes = control.as_mut_ptr().cast::<u8>();
                // SAFETY: `control` is 32 bytes, 8-aligned: room for the
                // 16-byte header and the 2-byte segment size after it.
                unsafe {
                    std::ptr::write(bytes.cast::<libc::cmsghdr>(), cmsg);
                    std::ptr::write_unaligned(
                        bytes.add(mem::size_of::<libc::cmsghdr>()).cast::<u16>(),
                        self.slot() as u16,
                    );
                }
                header.msg_hdr.msg_control = bytes.cast();
                header.msg_hdr.msg_controllen = space as _;
            }
            self.headers.push(header);
            self.message_start.push(i);
            i = end;
        }
        // The iovec vector is complete: point each header at its first
        // (the messages' iovecs follow one another).
        let mut first = self.iovecs.as_mut_ptr();
        for header in &mut self.headers {
            header.msg_hdr.msg_iov = first;
            first = first.wrapping_add(header.msg_hdr.msg_iovlen);
        }
    }

    /// The packets of built messages `messages`.
    fn packets_of(&self, messages: std::ops::Range<usize>) -> std::ops::Range<usize> {
        let end = self
            .message_start
            .get(messages.end)
            .copied()
            .unwrap_or(self.packets.len());
        self.message_start[messages.start]..end
    }

    /// Sends every built message. As spead2 does: when a GSO message is
    /// refused, the batch is retried without GSO; if that works GSO stays
    /// off (logged), and if it fails too GSO was not the cause and stays on.
    fn send_messages(&mut self) -> Result<(), TransportError> {
        let mut sent = 0;
        while sent < self.headers.len() {
            let pending = &mut self.headers[sent..];
            // SAFETY: every header points at this transport's live buffers,
            // destinations and control blocks, built by build_messages in
            // this `send` from packets this transport checked against its
            // slot size and substreams (`Limits::next`); each iovec lies in
            // `buffer` or in a piece the source lent as `&'s [u8]`, borrowed
            // for longer than this `send` and not written while borrowed.
            // The kernel only reads them.
            let rc = unsafe {
                libc::sendmmsg(
                    self.socket.as_raw_fd(),
                    pending.as_mut_ptr(),
                    pending.len() as _,
                    0,
                )
            };
            if rc >= 0 {
                if self.probing_gso {
                    tracing::warn!(
                        "UDP GSO refused by the kernel or device; sending one datagram per packet"
                    );
                    self.probing_gso = false;
                }
                let taken = &self.headers[sent..sent + rc as usize];
                self.gso_messages += taken.iter().filter(|h| h.msg_hdr.msg_controllen != 0).count() as u64;
                let packets = self.packets_of(sent..sent + rc as usize);
                self.bytes_by_reference += self.packet_referenced[packets].iter().sum::<u64>();
                sent += rc as usize;
                continue;
            }
            let error = io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            if self.gso && self.headers[sent].msg_hdr.msg_controllen != 0 {
                self.gso = false;
                self.probing_gso = true;
                let first = self.message_start[sent];
                self.build_messages(first);
                sent = 0;
                continue;
            }
            if self.probing_gso {
                // Without GSO it fails too: GSO was not the problem.
                self.gso = true;
                self.probing_gso = false;
            }
            let packet = self.packets[self.message_start[sent]];
            let destination = self.destinations[packet.substream]
                .as_socket()
                .map_or_else(|| "?".into(), |d| d.to_string());
            if error.raw_os_error() == Some(libc::EMSGSIZE) {
                return Err(TransportError::MessageTooLong {
                    len: packet.len,
                    destination,
                    source: Arc::new(error),
                });
            }
            return Err(TransportError::io(
                format!("sending a UDP packet of {} bytes to {destination}", packet.len),
                error,
            ));
        }
        Ok(())
    }
}

/// A packet built in `frame` (its slot, at `frame_start` of the buffer,
/// the packet's length; `pieces` checked to make exactly that length) as
/// parts: the bytes written, then each piece by reference where the source
/// lent it as plain memory, else copied into the frame behind what went
/// before. Returns the bytes referenced.
fn push_packet_parts(
    parts: &mut Vec<Part>,
    frame: &mut [u8],
    frame_start: usize,
    pieces: &PacketPieces<'_>,
) -> u64 {
    let mut at = pieces.written();
    // Bytes of the frame not yet in a part start here.
    let mut from = 0;
    let mut referenced = 0;
    for piece in pieces.pieces() {
        match piece {
            Piece::Bytes(bytes) => {
                push_slot(parts, frame_start + from, at - from);
                if !bytes.is_empty() {
                    parts.push(Part::Lent(libc::iovec {
                        // Only ever read (by sendmmsg).
                        iov_base: bytes.as_ptr().cast_mut().cast(),
                        iov_len: bytes.len(),
                    }));
                }
                at += bytes.len();
                from = at;
                referenced += bytes.len() as u64;
            }
            Piece::Foreign { .. } => {
                // Copied out: the memory's own address is not trusted.
                piece.copy_to(&mut frame[at..]);
                at += piece.len();
            }
        }
    }
    push_slot(parts, frame_start + from, at - from);
    referenced
}

fn push_slot(parts: &mut Vec<Part>, start: usize, len: usize) {
    if len > 0 {
        parts.push(Part::Slot { start, len });
    }
}

/// Sets IP_MTU_DISCOVER to "do" (IPv4) or IPV6_DONTFRAG (IPv6).
fn set_dont_fragment(socket: &Socket, v4: bool) -> io::Result<()> {
    let (level, name, value) = if v4 {
        (libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, libc::IP_PMTUDISC_DO)
    } else {
        (libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG, 1)
    };
    // SAFETY: a valid socket and an option value of the size given.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Transport for UdpTransport {
    fn substreams(&self) -> usize {
        self.destinations.len()
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    fn prepare(&mut self, max_packet_size: usize) -> Result<(), TransportError> {
        check_udp_payload(max_packet_size)?;
        self.limits.max_len = max_packet_size;
        self.buffer = vec![0; MAX_BATCH * max_packet_size];
        Ok(())
    }

    fn send(&mut self, source: &mut dyn PacketSource<'_>) -> Result<usize, TransportError> {
        if let Some(link) = &mut self.link {
            link.check()?;
        }
        self.packets.clear();
        self.packet_parts.clear();
        self.packet_ends.clear();
        self.packet_referenced.clear();
        // Checked against the slot size: every packet's bytes written lie
        // inside `buffer`.
        let (limits, slot) = (self.limits, self.slot());
        limits.fill(source, MAX_BATCH, |source, spec| {
            let start = self.packets.len() * slot;
            let frame = &mut self.buffer[start..start + spec.len];
            let pieces = source.write_pieces(frame);
            check_pieces(spec, &pieces)?;
            let referenced = push_packet_parts(&mut self.packet_parts, frame, start, &pieces);
            self.packet_ends.push(self.packet_parts.len());
            self.packet_referenced.push(referenced);
            self.packets.push(spec);
            Ok(true)
        })?;
        if self.packets.is_empty() {
            return Ok(0);
        }
        self.build_messages(0);
        self.send_messages()?;
        Ok(self.packets.len())
    }
}
