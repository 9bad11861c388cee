//! What a raw-frame transport needs to know about an interface and its
//! neighbours: index, MAC, MTU and IPv4 address of the interface, and the
//! MAC of the next hop towards a destination (the group's MAC for
//! multicast; otherwise from the kernel's neighbour table, probed with one
//! datagram when absent). IPv4 only.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use super::frame::MacAddress;
use super::TransportError;

/// An interface of this network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Name.
    pub name: String,
    /// Index.
    pub index: u32,
    /// MAC address.
    pub mac: MacAddress,
    /// MTU (bytes of IP packet).
    pub mtu: usize,
    /// First IPv4 address and its prefix length.
    pub ipv4: Option<(Ipv4Addr, u8)>,
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
        let socket = UdpSocket::bind("0.0.0.0:0").map_err(|source| TransportError::Io {
            what: "opening a socket to watch the link".into(),
            source,
        })?;
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
        let down = |what: String, errno: i32| TransportError::Io {
            what,
            source: std::io::Error::from_raw_os_error(errno),
        };
        let flags = interface_flags(&self.socket, &self.name).map_err(|e| match e.raw_os_error() {
            Some(libc::ENODEV) => down(format!("interface {} no longer exists", self.name), libc::ENODEV),
            _ => down(
                format!("reading the flags of interface {}: {e}", self.name),
                libc::EIO,
            ),
        })?;
        if flags & libc::IFF_UP == 0 {
            return Err(down(format!("interface {} is down", self.name), libc::ENETDOWN));
        }
        if flags & libc::IFF_RUNNING == 0 {
            return Err(down(
                format!("interface {} is up but has no carrier (link down)", self.name),
                libc::ENETDOWN,
            ));
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

fn config_error(what: String) -> TransportError {
    TransportError::Config { what }
}

fn parse_mac(text: &str) -> Option<MacAddress> {
    let bytes: Vec<u8> = text
        .trim()
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).ok())
        .collect::<Option<_>>()?;
    Some(MacAddress(bytes.try_into().ok()?))
}

impl Interface {
    /// Looks an interface up by name.
    pub fn lookup(name: &str) -> Result<Self, TransportError> {
        let index = nix::net::if_::if_nametoindex(name)
            .map_err(|e| config_error(format!("unknown interface {name:?}: {e}")))?;
        let sys = |file: &str| std::fs::read_to_string(format!("/sys/class/net/{name}/{file}"));
        let mac = sys("address")
            .ok()
            .and_then(|t| parse_mac(&t))
            .ok_or_else(|| config_error(format!("interface {name} has no Ethernet address")))?;
        let mtu = sys("mtu")
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .ok_or_else(|| config_error(format!("cannot read the MTU of {name}")))?;
        let ipv4 = nix::ifaddrs::getifaddrs()
            .map_err(|e| config_error(format!("listing interface addresses: {e}")))?
            .filter(|a| a.interface_name == name)
            .find_map(|a| {
                let addr = a.address?.as_sockaddr_in()?.ip();
                let mask = a.netmask?.as_sockaddr_in()?.ip();
                Some((addr, u32::from(mask).count_ones() as u8))
            });
        Ok(Interface {
            name: name.to_owned(),
            index,
            mac,
            mtu,
            ipv4,
        })
    }

    /// The interface the kernel would send to `destination` from: the one
    /// holding the local address a connected UDP socket picks.
    pub fn towards(destination: Ipv4Addr) -> Result<Self, TransportError> {
        let socket = UdpSocket::bind("0.0.0.0:0")
            .and_then(|s| s.connect(SocketAddrV4::new(destination, 9)).map(|()| s))
            .map_err(|e| config_error(format!("no route to {destination}: {e}")))?;
        let local = match socket.local_addr() {
            Ok(std::net::SocketAddr::V4(a)) => *a.ip(),
            _ => return Err(config_error(format!("no IPv4 route to {destination}"))),
        };
        let name = nix::ifaddrs::getifaddrs()
            .map_err(|e| config_error(format!("listing interface addresses: {e}")))?
            .find(|a| a.address.and_then(|s| s.as_sockaddr_in().map(|v| v.ip())) == Some(local))
            .map(|a| a.interface_name)
            .ok_or_else(|| {
                config_error(format!(
                    "no interface holds {local}, the source towards {destination}"
                ))
            })?;
        Self::lookup(&name)
    }

    /// The interface's IPv4 address, or an error naming the interface.
    pub fn ipv4_address(&self) -> Result<Ipv4Addr, TransportError> {
        self.ipv4
            .map(|(a, _)| a)
            .ok_or_else(|| config_error(format!("interface {} has no IPv4 address", self.name)))
    }

    /// Whether `ip` is on this interface's subnet.
    fn on_link(&self, ip: Ipv4Addr) -> bool {
        self.ipv4.is_some_and(|(a, prefix)| {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(a) & mask == u32::from(ip) & mask
        })
    }

    /// The gateway of this interface's default route, from /proc/net/route.
    fn gateway(&self) -> Option<Ipv4Addr> {
        let table = std::fs::read_to_string("/proc/net/route").ok()?;
        table.lines().skip(1).find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.len() > 2 && f[0] == self.name && f[1] == "00000000")
                .then(|| u32::from_str_radix(f[2], 16).ok())
                .flatten()
                .map(|g| Ipv4Addr::from(u32::from_be(g)))
        })
    }

    /// The destination MAC for `destination`: the group's for multicast,
    /// else the next hop's from the neighbour table (probing once, and
    /// waiting up to `wait`, if it is not there).
    pub fn next_hop_mac(&self, destination: Ipv4Addr, wait: Duration) -> Result<MacAddress, TransportError> {
        if destination.is_multicast() {
            return Ok(MacAddress::for_multicast(destination));
        }
        let hop = if self.on_link(destination) {
            destination
        } else {
            self.gateway().ok_or_else(|| {
                config_error(format!(
                    "{destination} is not on {}'s subnet and it has no default route",
                    self.name
                ))
            })?
        };
        if let Some(mac) = neighbour(hop, &self.name) {
            return Ok(mac);
        }
        // Make the kernel resolve it: one empty datagram to the discard port.
        let probe =
            UdpSocket::bind("0.0.0.0:0").and_then(|s| s.send_to(&[], SocketAddrV4::new(hop, 9)).map(|_| s));
        if let Err(e) = probe {
            return Err(config_error(format!(
                "probing the neighbour {hop} on {}: {e}",
                self.name
            )));
        }
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if let Some(mac) = neighbour(hop, &self.name) {
                return Ok(mac);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(config_error(format!(
            "no neighbour entry for {hop} on {} (ARP unanswered after {wait:?})",
            self.name
        )))
    }
}

/// The complete neighbour entry for `ip` on `device`, from /proc/net/arp.
fn neighbour(ip: Ipv4Addr, device: &str) -> Option<MacAddress> {
    let table = std::fs::read_to_string("/proc/net/arp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // IP address, HW type, Flags, HW address, Mask, Device; flag 0x2
        // is ATF_COM (complete).
        let complete = f
            .get(2)
            .and_then(|x| u32::from_str_radix(x.trim_start_matches("0x"), 16).ok())?
            & 0x2
            != 0;
        (f.len() >= 6 && f[5] == device && f[0].parse() == Ok(ip) && complete)
            .then(|| parse_mac(f[3]))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_found_and_unknown_names_are_refused() {
        let lo = Interface::lookup("lo").unwrap();
        assert_eq!(lo.mac, MacAddress([0; 6]));
        assert_eq!(lo.ipv4, Some((Ipv4Addr::LOCALHOST, 8)));
        assert!(lo.on_link(Ipv4Addr::new(127, 9, 9, 9)));
        assert!(!lo.on_link(Ipv4Addr::new(10, 0, 0, 1)));
        let err = Interface::lookup("no-such-if0").unwrap_err();
        assert!(err.to_string().contains("no-such-if0"), "{err}");
    }

    #[test]
    fn multicast_needs_no_neighbour() {
        let lo = Interface::lookup("lo").unwrap();
        let mac = lo
            .next_hop_mac(Ipv4Addr::new(239, 1, 2, 3), Duration::ZERO)
            .unwrap();
        assert_eq!(mac, MacAddress::for_multicast(Ipv4Addr::new(239, 1, 2, 3)));
    }

    #[test]
    fn macs_parse() {
        assert_eq!(
            parse_mac("02:00:0a:ff:00:01\n"),
            Some(MacAddress([2, 0, 10, 255, 0, 1]))
        );
        assert_eq!(parse_mac("02:00"), None);
        assert_eq!(parse_mac("zz:00:00:00:00:00"), None);
    }
}
