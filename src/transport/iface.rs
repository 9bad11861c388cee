//! What a raw-frame transport needs to know about an interface and its
//! neighbours: index, MAC, MTU and IPv4 address of the interface, and the
//! MAC of the next hop towards a destination (the group's MAC for
//! multicast; otherwise the kernel's route and neighbour table, asked over
//! rtnetlink, the neighbour probed with one datagram when absent). IPv4
//! only.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::frame::MacAddress;
use super::{netlink, TransportError};

/// An interface of this network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Name.
    pub name: String,
    /// Index.
    pub index: u32,
    /// MAC address (all zeros where the interface has none).
    pub mac: MacAddress,
    /// MTU (bytes of IP packet).
    pub mtu: usize,
    /// IPv4 addresses and their prefix lengths, the primary first.
    pub ipv4: Vec<(Ipv4Addr, u8)>,
}

/// How often, at most, a transport checks that its link is up before a
/// batch (on every batch while it is down).
pub(crate) const LINK_CHECK_EVERY: Duration = Duration::from_millis(1);

/// Watches whether an interface is up and has a carrier: one ioctl
/// (SIOCGIFFLAGS), made at most once per `every` while the link is well,
/// and on every call while it is not, so that batches rarely pay for it
/// and a link that comes back is seen at once.
#[derive(Debug)]
pub(crate) struct LinkWatch {
    name: String,
    /// Any datagram socket answers SIOCGIFFLAGS.
    socket: UdpSocket,
    every: Duration,
    /// When the link was last seen well.
    well_at: Option<Instant>,
}

impl LinkWatch {
    /// Watches `name`, checking at most once per `every` while it is well.
    pub fn new(name: &str, every: Duration) -> Result<Self, TransportError> {
        let socket = UdpSocket::bind("0.0.0.0:0")
            .map_err(TransportError::doing("opening a socket to watch the link"))?;
        Ok(LinkWatch {
            name: name.to_owned(),
            socket,
            every,
            well_at: None,
        })
    }

    /// Whether the interface is up with a carrier, or why not.
    pub fn check(&mut self) -> Result<(), TransportError> {
        if self.well_at.is_some_and(|at| at.elapsed() < self.every) {
            return Ok(());
        }
        self.well_at = None;
        let interface = || self.name.clone();
        let flags = interface_flags(&self.socket, &self.name).map_err(|e| match e.raw_os_error() {
            Some(libc::ENODEV) => TransportError::InterfaceGone {
                interface: interface(),
            },
            _ => TransportError::io(format!("reading the flags of interface {}", self.name), e),
        })?;
        if flags & libc::IFF_UP == 0 {
            return Err(TransportError::LinkDown {
                interface: interface(),
            });
        }
        if flags & libc::IFF_RUNNING == 0 {
            return Err(TransportError::NoCarrier {
                interface: interface(),
            });
        }
        self.well_at = Some(Instant::now());
        Ok(())
    }
}

/// The interface flags (IFF_*) of `name`.
fn interface_flags(socket: &UdpSocket, name: &str) -> std::io::Result<i32> {
    use std::os::fd::AsRawFd;
    // SAFETY: ifreq is plain old data; all zeros is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= request.ifr_name.len() {
        return Err(std::io::Error::from_raw_os_error(libc::ENODEV));
    }
    for (to, from) in request.ifr_name.iter_mut().zip(name.bytes()) {
        *to = from as libc::c_char;
    }
    // SAFETY: a valid socket, and an ifreq with a NUL-terminated name that
    // the kernel fills in.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS set the flags member of the union.
    Ok(i32::from(unsafe { request.ifr_ifru.ifru_flags }))
}

impl Interface {
    /// Looks an interface up by name.
    pub fn lookup(name: &str) -> Result<Self, TransportError> {
        let index = nix::net::if_::if_nametoindex(name).map_err(|errno| TransportError::NoSuchInterface {
            name: name.to_owned(),
            source: Arc::new(errno.into()),
        })?;
        Self::with_index(index)
    }

    /// The name of the interface that holds IPv4 `address`.
    pub fn with_address(address: Ipv4Addr) -> Result<String, TransportError> {
        nix::ifaddrs::getifaddrs()
            .map_err(|errno| TransportError::io("listing interface addresses", errno.into()))?
            .find(|a| {
                a.address
                    .as_ref()
                    .and_then(|s| s.as_sockaddr_in())
                    .is_some_and(|s| s.ip() == address)
            })
            .map(|a| a.interface_name)
            .ok_or(TransportError::NoInterfaceWithAddress { address })
    }

    /// The interface the kernel's route to `destination` leaves by.
    pub fn towards(destination: Ipv4Addr) -> Result<Self, TransportError> {
        let route = netlink::route_to(destination, None).map_err(no_route(destination, None))?;
        Self::with_index(route.interface)
    }

    /// The interface with index `index`: name, MAC and MTU from rtnetlink,
    /// IPv4 addresses from getifaddrs.
    fn with_index(index: u32) -> Result<Self, TransportError> {
        let netlink::Link { name, mac, mtu } =
            netlink::link(index).map_err(TransportError::doing(format!("describing interface {index}")))?;
        let ipv4 = nix::ifaddrs::getifaddrs()
            .map_err(|errno| TransportError::io("listing interface addresses", errno.into()))?
            .filter(|a| a.interface_name == name)
            .filter_map(|a| {
                let addr = a.address?.as_sockaddr_in()?.ip();
                let mask = a.netmask?.as_sockaddr_in()?.ip();
                Some((addr, u32::from(mask).count_ones() as u8))
            })
            .collect();
        Ok(Interface {
            name,
            index,
            // No link-layer address (a tunnel, say): no Ethernet frames.
            mac: mac.unwrap_or(MacAddress([0; 6])),
            mtu,
            ipv4,
        })
    }

    /// The source address for frames sent from this interface: `wanted`
    /// if the interface holds it, or its primary IPv4 address; an error
    /// naming the interface otherwise.
    pub fn source_address(&self, wanted: Option<Ipv4Addr>) -> Result<Ipv4Addr, TransportError> {
        match wanted {
            Some(ip) if self.ipv4.iter().any(|(a, _)| *a == ip) => Ok(ip),
            Some(address) => Err(TransportError::NotInterfaceAddress {
                address,
                interface: self.name.clone(),
                addresses: self.ipv4.iter().map(|(a, _)| *a).collect(),
            }),
            None => self
                .ipv4
                .first()
                .map(|(a, _)| *a)
                .ok_or_else(|| TransportError::NoIpv4Address {
                    interface: self.name.clone(),
                }),
        }
    }

    /// The destination MAC for `destination`: the group's for multicast,
    /// else the next hop's (the destination, or the gateway the kernel's
    /// route to it from `source` names) from the neighbour table, probing
    /// once and waiting up to `wait` if it is not there. The kernel's route
    /// must leave by this interface: frames sent anywhere else would be
    /// lost.
    pub fn next_hop_mac(
        &self,
        destination: Ipv4Addr,
        source: Ipv4Addr,
        wait: Duration,
    ) -> Result<MacAddress, TransportError> {
        if destination.is_multicast() {
            return Ok(MacAddress::for_multicast(destination));
        }
        let route =
            netlink::route_to(destination, Some(source)).map_err(no_route(destination, Some(source)))?;
        if route.interface != self.index {
            return Err(TransportError::RoutedElsewhere {
                destination,
                route_interface: netlink::link(route.interface)
                    .map_or_else(|_| format!("interface {}", route.interface), |l| l.name),
                interface: self.name.clone(),
            });
        }
        let hop = route.gateway.unwrap_or(destination);
        let neighbour = || {
            netlink::neighbour(hop, self.index).map_err(TransportError::doing(format!(
                "reading the neighbour table for {hop}"
            )))
        };
        if let Some(mac) = neighbour()? {
            return Ok(mac);
        }
        // Make the kernel resolve it: one empty datagram to the discard port.
        let probe =
            UdpSocket::bind("0.0.0.0:0").and_then(|s| s.send_to(&[], SocketAddrV4::new(hop, 9)).map(|_| s));
        if let Err(e) = probe {
            return Err(TransportError::io(
                format!("probing the neighbour {hop} on {}", self.name),
                e,
            ));
        }
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if let Some(mac) = neighbour()? {
                return Ok(mac);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(TransportError::NeighbourUnresolved {
            hop,
            interface: self.name.clone(),
            waited: wait,
        })
    }
}

/// A closure turning rtnetlink's answer to a route lookup into
/// [`TransportError::NoRoute`].
fn no_route(destination: Ipv4Addr, from: Option<Ipv4Addr>) -> impl FnOnce(std::io::Error) -> TransportError {
    move |source| TransportError::NoRoute {
        destination,
        from,
        source: Arc::new(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_found_and_unknown_names_are_refused() {
        let lo = Interface::lookup("lo").unwrap();
        assert_eq!(lo.mac, MacAddress([0; 6]));
        assert_eq!(lo.ipv4, vec![(Ipv4Addr::LOCALHOST, 8)]);
        assert_eq!(lo.source_address(None).unwrap(), Ipv4Addr::LOCALHOST);
        let other = lo.source_address(Some(Ipv4Addr::new(127, 0, 0, 2))).unwrap_err();
        assert!(
            matches!(&other, TransportError::NotInterfaceAddress { interface, .. } if interface == "lo"),
            "{other}"
        );
        assert_eq!(Interface::towards(Ipv4Addr::new(127, 9, 9, 9)).unwrap(), lo);
        assert_eq!(Interface::with_address(Ipv4Addr::LOCALHOST).unwrap(), "lo");
        assert!(matches!(
            Interface::with_address(Ipv4Addr::new(198, 51, 100, 7)),
            Err(TransportError::NoInterfaceWithAddress { .. })
        ));
        let err = Interface::lookup("no-such-if0").unwrap_err();
        assert!(
            matches!(&err, TransportError::NoSuchInterface { name, .. } if name == "no-such-if0"),
            "{err}"
        );
    }

    #[test]
    fn multicast_needs_no_neighbour() {
        let lo = Interface::lookup("lo").unwrap();
        let mac = lo
            .next_hop_mac(Ipv4Addr::new(239, 1, 2, 3), Ipv4Addr::LOCALHOST, Duration::ZERO)
            .unwrap();
        assert_eq!(mac, MacAddress::for_multicast(Ipv4Addr::new(239, 1, 2, 3)));
    }
}
