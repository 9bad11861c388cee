//! Where received packets come from: a UDP socket (unicast, or a multicast
//! group joined on an interface, with SO_REUSEADDR so several monitors can
//! share a group) or a pcap file of Ethernet/IPv4/UDP frames.

use std::fs::File;
use std::io::BufReader;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::{Path, PathBuf};

use pcap_file::pcap::PcapReader;
use socket2::{Domain, Protocol, Socket, Type};
use thiserror::Error;

use crate::transport::InprocQueue;

/// Why a source could not be opened or read.
#[derive(Debug, Error)]
pub enum SourceError {
    /// A source spec that is neither a file, a port nor host:port.
    #[error("source {0:?} is not a pcap file, PORT or HOST:PORT")]
    Spec(String),
    /// An OS error, with what was being done.
    #[error("{what}")]
    Io {
        /// What failed.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// A pcap file that cannot be read.
    #[error("reading pcap file {}", path.display())]
    Pcap {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: pcap_file::PcapError,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SourceError {
    let what = what.into();
    move |source| SourceError::Io { what, source }
}

/// How to open UDP sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpOptions {
    /// Local address to bind unicast sockets to (default: any).
    pub bind: Option<IpAddr>,
    /// Interface address to join multicast groups on (default: any).
    pub interface: Option<Ipv4Addr>,
    /// Socket receive buffer in bytes.
    pub buffer: usize,
}

impl Default for UdpOptions {
    fn default() -> Self {
        UdpOptions {
            bind: None,
            interface: None,
            buffer: 8 << 20,
        }
    }
}

/// Sets `socket`'s receive buffer to `size` bytes: past the system's cap
/// (`net.core.rmem_max`) where this process may (CAP_NET_ADMIN), since a
/// monitor's buffer is what rides out its reader's stalls; where it may
/// not, the buffer is what the cap allows, and a warning says so (as
/// spead2 warns).
fn set_receive_buffer(socket: &Socket, size: usize) -> Result<(), SourceError> {
    socket
        .set_recv_buffer_size(size)
        .map_err(io(format!("setting the receive buffer to {size} bytes")))?;
    // Linux reports twice what was set (the rest is its bookkeeping).
    let granted = |socket: &Socket| socket.recv_buffer_size().map_or(size, |got| got / 2);
    if granted(socket) >= size {
        return Ok(());
    }
    let forced = nix::sys::socket::setsockopt(socket, nix::sys::socket::sockopt::RcvBufForce, &size);
    if forced.is_err() || granted(socket) < size {
        tracing::warn!(
            "UDP receive buffer: asked for {size} bytes, got {} (raise net.core.rmem_max, or run with CAP_NET_ADMIN)",
            granted(socket)
        );
    }
    Ok(())
}

/// What reading a pcap source gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// A datagram, now in the buffer.
    Datagram,
    /// The source has no more (the end of the file).
    End,
}

/// A packet source.
#[derive(Debug)]
pub enum Source {
    /// A UDP socket.
    Udp(UdpSocket),
    /// UDP payloads read from a pcap file.
    Pcap(PcapSource),
    /// Packets from an in-process queue (spead2's `InprocQueue`).
    Inproc(InprocQueue),
}

/// UDP payloads from a pcap file of Ethernet/IPv4/UDP frames.
pub struct PcapSource {
    path: PathBuf,
    reader: PcapReader<BufReader<File>>,
}

impl std::fmt::Debug for PcapSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapSource").field("path", &self.path).finish()
    }
}

impl PcapSource {
    /// Opens a pcap file.
    pub fn open(path: &Path) -> Result<Self, SourceError> {
        let file = File::open(path).map_err(io(format!("opening {}", path.display())))?;
        let reader = PcapReader::new(BufReader::new(file)).map_err(|source| SourceError::Pcap {
            path: path.to_owned(),
            source,
        })?;
        Ok(PcapSource {
            path: path.to_owned(),
            reader,
        })
    }

    /// The next frame's UDP payload (frames that are not IPv4/UDP are
    /// skipped), appended to `out`.
    pub fn append_payload(&mut self, out: &mut Vec<u8>) -> Result<Received, SourceError> {
        loop {
            let Some(packet) = self.reader.next_packet() else {
                return Ok(Received::End);
            };
            let packet = packet.map_err(|source| SourceError::Pcap {
                path: self.path.clone(),
                source,
            })?;
            if let Some(payload) = udp_payload(&packet.data) {
                out.extend_from_slice(payload);
                return Ok(Received::Datagram);
            }
        }
    }
}

/// The UDP payload of an Ethernet/IPv4/UDP frame (options allowed), if it
/// is one and is whole.
pub fn udp_payload(frame: &[u8]) -> Option<&[u8]> {
    let ip = frame.get(14..)?;
    if frame.get(12..14)? != [0x08, 0x00] || ip.first()? >> 4 != 4 || ip.get(9)? != &17 {
        return None;
    }
    let header = usize::from(ip[0] & 0x0f) * 4;
    let udp = ip.get(header..)?;
    let len = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
    udp.get(8..len.max(8))
}

impl Source {
    /// Opens `spec`: an existing file is a pcap file; `PORT` listens on all
    /// addresses; `HOST:PORT` binds that address, or joins the group when
    /// it is multicast.
    pub fn open(spec: &str, options: &UdpOptions) -> Result<Self, SourceError> {
        if Path::new(spec).is_file() {
            return Ok(Source::Pcap(PcapSource::open(Path::new(spec))?));
        }
        let address: SocketAddr = match spec.parse::<u16>() {
            Ok(port) => SocketAddr::new(options.bind.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), port),
            Err(_) => spec
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| SourceError::Spec(spec.to_owned()))?,
        };
        Self::udp(address, options)
    }

    /// A UDP socket bound to `address`, or, for a multicast address, bound
    /// to its port and joined to the group on `options.interface`; with
    /// SO_REUSEADDR, so that several monitors can share a port or group.
    pub fn udp(address: SocketAddr, options: &UdpOptions) -> Result<Self, SourceError> {
        let socket = Socket::new(Domain::for_address(address), Type::DGRAM, Some(Protocol::UDP))
            .map_err(io("creating a UDP socket"))?;
        socket
            .set_reuse_address(true)
            .map_err(io("setting SO_REUSEADDR"))?;
        set_receive_buffer(&socket, options.buffer)?;
        match address.ip() {
            IpAddr::V4(group) if group.is_multicast() => {
                let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), address.port());
                socket
                    .bind(&any.into())
                    .map_err(io(format!("binding to {any}")))?;
                let interface = options.interface.unwrap_or(Ipv4Addr::UNSPECIFIED);
                socket
                    .join_multicast_v4(&group, &interface)
                    .map_err(io(format!("joining {group} on {interface}")))?;
            }
            _ => socket
                .bind(&address.into())
                .map_err(io(format!("binding to {address}")))?,
        }
        Ok(Source::Udp(socket.into()))
    }

    /// The local address of a UDP source (`None` for others).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Source::Udp(socket) => socket.local_addr().ok(),
            Source::Pcap(_) | Source::Inproc(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receive_buffer_past_the_system_cap_is_granted_to_root() {
        let cap: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        set_receive_buffer(&socket, 2 * cap).unwrap();
        let granted = socket.recv_buffer_size().unwrap() / 2;
        // The effective uid: the second field of /proc/self/status's Uid line.
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap();
        if uid.split_whitespace().nth(1) == Some("0") {
            assert_eq!(granted, 2 * cap, "root gets the buffer asked for");
        } else if std::env::var_os("SPEAD_SKIP_PRIVILEGED").is_some() {
            assert_eq!(granted, cap, "others get the system's cap");
        } else {
            panic!("this test needs root to check the forced buffer (SPEAD_SKIP_PRIVILEGED=1 checks the cap only)");
        }
    }

    #[test]
    fn udp_payloads_are_found_in_frames() {
        let mut frame = vec![0u8; 42 + 4];
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        frame[14] = 0x45;
        frame[23] = 17;
        frame[38..40].copy_from_slice(&12u16.to_be_bytes());
        frame[42..].copy_from_slice(b"abcd");
        assert_eq!(udp_payload(&frame), Some(&b"abcd"[..]));
        frame[23] = 6; // TCP
        assert_eq!(udp_payload(&frame), None);
        assert_eq!(udp_payload(&frame[..20]), None);
    }

    #[test]
    fn specs_are_parsed_or_refused() {
        let options = UdpOptions::default();
        let source = Source::open("127.0.0.1:0", &options).unwrap();
        assert!(source.local_addr().is_some_and(|a| a.ip().is_loopback()));
        let err = Source::open("not a source", &options).unwrap_err();
        assert!(err.to_string().contains("not a source"), "{err}");
    }
}
