//! Links, routes and neighbours, asked of the kernel over rtnetlink (in the
//! calling thread's network namespace): an interface's MAC and MTU, the
//! route the kernel would take to a destination (as `ip route get` does, so
//! policy rules, specific routes and their gateways all count) and its
//! neighbour table's entry for a next hop. Each call opens a socket and makes one request:
//! for setting a transport up, never per packet. IPv4 only.

use std::io;
use std::net::Ipv4Addr;

use netlink_packet_core::{
    NetlinkDeserializable, NetlinkHeader, NetlinkMessage, NetlinkPayload, NetlinkSerializable, NLM_F_DUMP,
    NLM_F_REQUEST,
};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;

use super::frame::MacAddress;

/// How long to wait for each of the kernel's answers.
const ANSWER_TIMEOUT_SECONDS: i64 = 5;

/// An interface as the kernel describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Name.
    pub name: String,
    /// Link-layer address, when it is an Ethernet one.
    pub mac: Option<MacAddress>,
    /// MTU (bytes of IP packet).
    pub mtu: usize,
}

/// The interface with index `index`.
pub fn link(index: u32) -> io::Result<Link> {
    let mut request = LinkMessage::default();
    request.header.index = index;
    let link = ask(
        RouteNetlinkMessage::GetLink(request),
        "link",
        |reply| match reply {
            RouteNetlinkMessage::NewLink(link) => Some(link),
            _ => None,
        },
    )?;
    let mut found = Link {
        name: String::new(),
        mac: None,
        mtu: 0,
    };
    for attribute in link.attributes {
        match attribute {
            LinkAttribute::IfName(name) => found.name = name,
            LinkAttribute::Address(bytes) => {
                found.mac = <[u8; 6]>::try_from(bytes.as_slice()).ok().map(MacAddress)
            }
            LinkAttribute::Mtu(mtu) => found.mtu = mtu as usize,
            _ => {}
        }
    }
    Ok(found)
}

/// Where the kernel sends packets for one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Index of the interface they leave by.
    pub interface: u32,
    /// The gateway they go through; `None` when the destination is on link.
    pub gateway: Option<Ipv4Addr>,
    /// The source address the kernel would give them.
    pub source: Option<Ipv4Addr>,
}

/// The kernel's route to `destination` for packets from `source` when given
/// (`ip route get DESTINATION [from SOURCE]`; source-based policy rules
/// then count too).
pub fn route_to(destination: Ipv4Addr, source: Option<Ipv4Addr>) -> io::Result<Route> {
    let mut request = RouteMessage::default();
    request.header.address_family = AddressFamily::Inet;
    request.header.destination_prefix_length = 32;
    request
        .attributes
        .push(RouteAttribute::Destination(RouteAddress::Inet(destination)));
    if let Some(source) = source {
        request.header.source_prefix_length = 32;
        request
            .attributes
            .push(RouteAttribute::Source(RouteAddress::Inet(source)));
    }
    let route = ask(
        RouteNetlinkMessage::GetRoute(request),
        "route",
        |reply| match reply {
            RouteNetlinkMessage::NewRoute(route) => Some(route),
            _ => None,
        },
    )?;
    let inet = |address: &RouteAddress| match address {
        RouteAddress::Inet(ip) => Some(*ip),
        _ => None,
    };
    let mut found = Route {
        interface: 0,
        gateway: None,
        source: None,
    };
    for attribute in &route.attributes {
        match attribute {
            RouteAttribute::Oif(index) => found.interface = *index,
            RouteAttribute::Gateway(address) => found.gateway = inet(address),
            RouteAttribute::PrefSource(address) => found.source = inet(address),
            _ => {}
        }
    }
    if found.interface == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "the kernel's route names no outgoing interface",
        ));
    }
    Ok(found)
}

/// The link-layer address the neighbour table holds for `ip` on interface
/// `index`, when the entry is usable (reachable, stale, being confirmed,
/// permanent or needing no ARP); `None` when there is no such entry.
pub fn neighbour(ip: Ipv4Addr, index: u32) -> io::Result<Option<MacAddress>> {
    let mut request = NeighbourMessage::default();
    request.header.family = AddressFamily::Inet;
    let replies = exchange(
        RouteNetlinkMessage::GetNeighbour(request),
        NLM_F_REQUEST | NLM_F_DUMP,
    )?;
    Ok(replies.into_iter().find_map(|reply| {
        let RouteNetlinkMessage::NewNeighbour(entry) = reply else {
            return None;
        };
        let usable = matches!(
            entry.header.state,
            NeighbourState::Reachable
                | NeighbourState::Stale
                | NeighbourState::Delay
                | NeighbourState::Probe
                | NeighbourState::Permanent
                | NeighbourState::Noarp
        );
        if entry.header.ifindex != index || !usable {
            return None;
        }
        let is_ip = entry
            .attributes
            .contains(&NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
        let mac = entry.attributes.iter().find_map(|a| match a {
            NeighbourAttribute::LinkLayerAddress(bytes) => <[u8; 6]>::try_from(bytes.as_slice()).ok(),
            _ => None,
        });
        mac.filter(|_| is_ip).map(MacAddress)
    }))
}

/// The kernel's answer to a plain (not dump) `request`, as `pick` takes it;
/// an error naming `what` when the answer is not one.
fn ask<T>(
    request: RouteNetlinkMessage,
    what: &str,
    pick: impl FnMut(RouteNetlinkMessage) -> Option<T>,
) -> io::Result<T> {
    exchange(request, NLM_F_REQUEST)?
        .into_iter()
        .find_map(pick)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("the kernel answered with no {what}"),
            )
        })
}

/// Sends one rtnetlink request and gathers the kernel's answers.
fn exchange(request: RouteNetlinkMessage, flags: u16) -> io::Result<Vec<RouteNetlinkMessage>> {
    exchange_on(NETLINK_ROUTE, request, flags)
}

/// Sends one request over a netlink socket of `protocol` and gathers the
/// kernel's answers: the first for a plain request, all of them up to the
/// end marker for a dump.
pub(super) fn exchange_on<M>(protocol: isize, request: M, flags: u16) -> io::Result<Vec<M>>
where
    M: NetlinkSerializable + NetlinkDeserializable + std::fmt::Debug,
{
    let mut socket = Socket::new(protocol)?;
    // The kernel answers at once; a bound on the wait turns a lost answer
    // into an error instead of a hang.
    setsockopt(
        &socket,
        sockopt::ReceiveTimeout,
        &TimeVal::new(ANSWER_TIMEOUT_SECONDS, 0),
    )?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = 1;
    let mut message = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(request));
    message.finalize();
    let mut bytes = vec![0; message.buffer_len()];
    message.serialize(&mut bytes);
    socket.send(&bytes, 0)?;
    let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
    let mut answers = Vec::new();
    loop {
        let (received, _) = socket.recv_from_full()?;
        let mut rest = received.as_slice();
        while !rest.is_empty() {
            let answer = NetlinkMessage::<M>::deserialize(rest)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("netlink answer: {e}")))?;
            // Messages are padded to 4 bytes.
            let length = (answer.header.length as usize).next_multiple_of(4);
            match answer.payload {
                NetlinkPayload::InnerMessage(inner) => {
                    answers.push(inner);
                    if !dump {
                        return Ok(answers);
                    }
                }
                NetlinkPayload::Done(_) => return Ok(answers),
                NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
                _ => {}
            }
            if length == 0 || length > rest.len() {
                break;
            }
            rest = &rest[length..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback_index() -> u32 {
        nix::net::if_::if_nametoindex("lo").expect("lo exists")
    }

    #[test]
    fn loopback_destinations_route_by_lo_without_a_gateway() {
        let route = route_to(Ipv4Addr::LOCALHOST, None).unwrap();
        assert_eq!(route.interface, loopback_index(), "{route:?}");
        assert_eq!(route.gateway, None);
        assert_eq!(route.source, Some(Ipv4Addr::LOCALHOST));
    }

    #[test]
    fn a_source_this_host_does_not_hold_is_refused() {
        // 198.51.100.7 (TEST-NET-2) is nobody's address here.
        let from = Some(Ipv4Addr::new(198, 51, 100, 7));
        let error = route_to(Ipv4Addr::LOCALHOST, from).unwrap_err();
        assert!(error.raw_os_error().is_some(), "{error:?}");
    }

    #[test]
    fn a_source_this_host_holds_is_kept() {
        let route = route_to(Ipv4Addr::LOCALHOST, Some(Ipv4Addr::LOCALHOST)).unwrap();
        assert_eq!(route.interface, loopback_index(), "{route:?}");
    }

    #[test]
    fn loopback_is_described() {
        let lo = link(loopback_index()).unwrap();
        assert_eq!(lo.name, "lo");
        assert_eq!(lo.mac, Some(MacAddress([0; 6])));
        assert!(lo.mtu >= 1500, "{lo:?}");
    }

    #[test]
    fn an_unknown_index_is_an_error() {
        assert!(link(u32::MAX).is_err());
    }

    #[test]
    fn loopback_has_no_neighbours() {
        assert_eq!(neighbour(Ipv4Addr::LOCALHOST, loopback_index()).unwrap(), None);
    }
}
