//! Why a transport failed: one variant per failure a caller may want to
//! tell apart, each naming the bad value and keeping the operating
//! system's error where there is one.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use super::udp::MulticastInterface;

/// How a packet offered to a transport broke the contract.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BadPacket {
    /// Longer than the size the transport was prepared for.
    #[error("a packet of {len} bytes exceeds the {max} bytes the transport was prepared for")]
    TooLong {
        /// The length asked for.
        len: usize,
        /// The prepared max packet size.
        max: usize,
    },
    /// A packet of no bytes.
    #[error("a packet of 0 bytes")]
    Empty,
    /// No such destination.
    #[error("substream {index} does not exist (the transport has {substreams})")]
    NoSuchSubstream {
        /// The index asked for.
        index: usize,
        /// Substreams of the transport.
        substreams: usize,
    },
    /// The bytes written and pieces do not add up to the length described.
    #[error(
        "a packet described as {described} bytes came as {written} bytes written and {referenced} in pieces"
    )]
    LengthMismatch {
        /// The length from `next_packet`.
        described: usize,
        /// Bytes written into the buffer.
        written: usize,
        /// Bytes in pieces.
        referenced: usize,
    },
}

/// Why a transport could not be opened or could not take packets. Errors
/// from the operating system are kept (shared, so an error can be handed to
/// every heap it failed): [`os_error`](Self::os_error) gives the
/// `io::Error`, and `source()` the same as the next link of the chain. As
/// everywhere in this crate, a message does not repeat its source: print
/// the chain (`anyhow`'s `{:#}` does) to see both.
#[derive(Debug, Clone, Error)]
pub enum TransportError {
    /// The transport cannot carry packets this large.
    #[error("packets of {packet} bytes do not fit the transport's limit of {limit} bytes")]
    PacketTooLarge {
        /// Requested packet size.
        packet: usize,
        /// The transport's limit.
        limit: usize,
    },
    /// Packets this large make IP packets above the interface's MTU.
    #[error(
        "packets of {packet} bytes make {ip_packet}-byte IP packets, above the MTU of {interface} ({mtu})"
    )]
    AboveMtu {
        /// The interface.
        interface: String,
        /// Requested packet (UDP payload) size.
        packet: usize,
        /// The IP packet it makes.
        ip_packet: usize,
        /// The interface's MTU.
        mtu: usize,
    },
    /// A packet source broke the transport contract; nothing of the packet
    /// was sent.
    #[error("bad packet")]
    BadPacket(#[from] BadPacket),
    /// An in-process queue was full: its receiver has not kept up.
    #[error("the in-process queue is full ({capacity} packets): its receiver has not kept up")]
    InprocFull {
        /// Packets the queue holds.
        capacity: usize,
    },
    /// An in-process queue was stopped and takes no more packets.
    #[error("the in-process queue has been stopped")]
    InprocStopped,
    /// A transport was given no destination.
    #[error("a {transport} transport needs at least one destination")]
    NoDestinations {
        /// Which transport ("UDP", "AF_XDP", "pcap").
        transport: &'static str,
    },
    /// Destinations of one socket mix IPv4 and IPv6.
    #[error("destinations {first} and {other} are of different address families")]
    MixedAddressFamilies {
        /// The first destination.
        first: SocketAddr,
        /// One of another family.
        other: SocketAddr,
    },
    /// A multicast interface named the wrong way for the destinations'
    /// family (IPv4 takes an address, IPv6 an index).
    #[error(
        "{family} multicast needs an interface {}, not {interface}",
        if *family == "IPv4" { "address" } else { "index" }
    )]
    MulticastInterfaceFamily {
        /// The interface as given.
        interface: MulticastInterface,
        /// The destinations' family.
        family: &'static str,
    },
    /// The transports of one stream have different numbers of
    /// destinations.
    #[error("a stream's transports need the same substreams ({first} and {other})")]
    SubstreamsDiffer {
        /// The first transport's.
        first: usize,
        /// Another's.
        other: usize,
    },
    /// No interface has this name.
    #[error("unknown interface {name:?}")]
    NoSuchInterface {
        /// The name asked for.
        name: String,
        /// The kernel's answer.
        source: Arc<io::Error>,
    },
    /// The kernel has no route to the destination (from the source, when
    /// one is named).
    #[error("no route to {destination}{}", from.map(|f| format!(" from {f}")).unwrap_or_default())]
    NoRoute {
        /// Where packets were to go.
        destination: Ipv4Addr,
        /// The source address asked for.
        from: Option<Ipv4Addr>,
        /// The kernel's answer.
        source: Arc<io::Error>,
    },
    /// The kernel routes the destination out of another interface than the
    /// transport's: raw frames sent would be lost.
    #[error("the kernel routes {destination} out of {route_interface}, not {interface}")]
    RoutedElsewhere {
        /// The destination.
        destination: Ipv4Addr,
        /// The interface the kernel's route leaves by.
        route_interface: String,
        /// The transport's interface.
        interface: String,
    },
    /// No interface holds this address.
    #[error("no interface holds the address {address}")]
    NoInterfaceWithAddress {
        /// The address asked for.
        address: Ipv4Addr,
    },
    /// The interface has no Ethernet address, so no Ethernet frames.
    #[error("interface {interface} has no Ethernet link layer for AF_XDP frames")]
    NoEthernet {
        /// The interface.
        interface: String,
    },
    /// The interface has no IPv4 address to send from.
    #[error("interface {interface} has no IPv4 address")]
    NoIpv4Address {
        /// The interface.
        interface: String,
    },
    /// The source address asked for is not one of the interface's.
    #[error("{address} is not an address of interface {interface} (it has {addresses:?})")]
    NotInterfaceAddress {
        /// The address asked for.
        address: Ipv4Addr,
        /// The interface.
        interface: String,
        /// The interface's IPv4 addresses.
        addresses: Vec<Ipv4Addr>,
    },
    /// The next hop's Ethernet address could not be learnt.
    #[error("no neighbour entry for {hop} on {interface} (ARP unanswered after {waited:?})")]
    NeighbourUnresolved {
        /// The next hop (the destination, or the route's gateway).
        hop: Ipv4Addr,
        /// The interface.
        interface: String,
        /// How long the transport waited for an answer.
        waited: Duration,
    },
    /// A UMEM of this size cannot be mapped.
    #[error("a UMEM of {slot_bytes} + {user_bytes} bytes is too large to map")]
    UmemTooLarge {
        /// Bytes asked for packet slots.
        slot_bytes: usize,
        /// Bytes asked for user buffers.
        user_bytes: usize,
    },
    /// Huge pages were required and are not there.
    #[error(
        "huge pages required for {bytes} bytes of UMEM ({} 2 MiB pages), but {}; \
         reserve them with `echo N > /proc/sys/vm/nr_hugepages`",
        bytes / (2 << 20),
        match (free, reserved) {
            (Some(free), Some(total)) => format!("{free} of {total} reserved huge pages are free"),
            _ => "this kernel reports no huge pages".to_owned(),
        }
    )]
    HugePagesUnavailable {
        /// The mapping's size.
        bytes: usize,
        /// Free huge pages (`HugePages_Free`), where the kernel says.
        free: Option<u64>,
        /// Reserved huge pages (`HugePages_Total`), where the kernel says.
        reserved: Option<u64>,
    },
    /// The UMEM's user part has no room for a buffer this large.
    #[error("UMEM user area full: {asked} bytes asked, {free} of {user_bytes} free")]
    UmemFull {
        /// Bytes asked for.
        asked: usize,
        /// Bytes free.
        free: usize,
        /// The user part's size.
        user_bytes: usize,
    },
    /// The UMEM area's packet slots belong to another transport already.
    #[error("this UMEM area already belongs to a transport")]
    UmemTaken,
    /// The UMEM's slot part holds no packet of the prepared size.
    #[error("the UMEM's {slot_bytes} bytes of frames hold no packet of {packet} bytes ({frame_bytes} bytes of frames each)")]
    UmemTooSmall {
        /// Bytes of packet slots.
        slot_bytes: usize,
        /// The packet size prepared for.
        packet: usize,
        /// Bytes of UMEM frames one packet takes.
        frame_bytes: usize,
    },
    /// The interface the transport sends through is administratively
    /// down.
    #[error("interface {interface} is down")]
    LinkDown {
        /// Its name.
        interface: String,
    },
    /// The interface is up but has no carrier.
    #[error("interface {interface} is up but has no carrier (link down)")]
    NoCarrier {
        /// Its name.
        interface: String,
    },
    /// The interface has gone (deleted, or moved to another namespace).
    #[error("interface {interface} no longer exists")]
    InterfaceGone {
        /// Its name.
        interface: String,
    },
    /// The kernel stopped taking or completing an AF_XDP socket's packets.
    #[error("AF_XDP TX on {interface} queue {queue} stalled for {waited:?}: {what} ({in_flight} packets in flight)")]
    RingStalled {
        /// The interface.
        interface: String,
        /// Its TX queue.
        queue: u32,
        /// How long the transport waited.
        waited: Duration,
        /// What did not happen.
        what: &'static str,
        /// Packets handed to the kernel and not completed.
        in_flight: usize,
    },
    /// The operating system refused for want of privilege.
    #[error("{what} (AF_XDP needs root or CAP_NET_RAW)")]
    Permission {
        /// What was refused.
        what: String,
        /// EPERM or EACCES.
        source: Arc<io::Error>,
    },
    /// A datagram larger than the path allows (EMSGSIZE; with
    /// don't-fragment set, larger than the path MTU).
    #[error("sending a UDP packet of {len} bytes to {destination}")]
    MessageTooLong {
        /// The datagram's length.
        len: usize,
        /// Where it was going.
        destination: String,
        /// The kernel's EMSGSIZE.
        source: Arc<io::Error>,
    },
    /// Any other operating-system error, with what was being done.
    #[error("{what}")]
    Io {
        /// What failed, for people to read.
        what: String,
        /// The OS error: its kind and code tell failures apart.
        source: Arc<io::Error>,
    },
}

impl TransportError {
    /// An operating-system error while doing `what` (for transports of
    /// one's own, too).
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        TransportError::Io {
            what: what.into(),
            source: Arc::new(source),
        }
    }

    /// A closure turning an operating-system error into
    /// [`TransportError::Io`] while doing `what`, for `map_err`.
    pub(crate) fn doing(what: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let what = what.into();
        move |source| TransportError::io(what, source)
    }

    /// The operating system's error under this one, where there is one.
    pub fn os_error(&self) -> Option<&io::Error> {
        use TransportError::*;
        match self {
            NoSuchInterface { source, .. }
            | NoRoute { source, .. }
            | Permission { source, .. }
            | MessageTooLong { source, .. }
            | Io { source, .. } => Some(source),
            _ => None,
        }
    }

    /// The kind of failure this is, as `std::io::ErrorKind` names it:
    /// the operating system's where it gave one, else this crate's
    /// reading of the failure (an interface or route that does not exist
    /// is `NotFound` or `HostUnreachable`, a bad setting `InvalidInput`).
    pub fn kind(&self) -> io::ErrorKind {
        use io::ErrorKind;
        use TransportError::*;
        match self {
            LinkDown { .. } | NoCarrier { .. } => ErrorKind::NetworkDown,
            InterfaceGone { .. } | NoSuchInterface { .. } => ErrorKind::NotFound,
            NoRoute { .. } | RoutedElsewhere { .. } | NeighbourUnresolved { .. } => {
                ErrorKind::HostUnreachable
            }
            RingStalled { .. } => ErrorKind::TimedOut,
            InprocFull { .. } => ErrorKind::WouldBlock,
            InprocStopped => ErrorKind::BrokenPipe,
            Permission { .. } => ErrorKind::PermissionDenied,
            UmemFull { .. } | HugePagesUnavailable { .. } | UmemTooLarge { .. } => ErrorKind::OutOfMemory,
            MessageTooLong { source, .. } | Io { source, .. } => source.kind(),
            PacketTooLarge { .. }
            | AboveMtu { .. }
            | BadPacket(_)
            | NoDestinations { .. }
            | MixedAddressFamilies { .. }
            | MulticastInterfaceFamily { .. }
            | SubstreamsDiffer { .. }
            | NoEthernet { .. }
            | NoIpv4Address { .. }
            | NoInterfaceWithAddress { .. }
            | NotInterfaceAddress { .. }
            | UmemTaken
            | UmemTooSmall { .. } => ErrorKind::InvalidInput,
        }
    }
}
