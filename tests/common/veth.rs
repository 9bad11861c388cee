//! The veth harness (scripts/setup-veth.sh) for tests and benchmarks: up
//! with a name and subnet of the caller's own, its KEY=VALUE output parsed,
//! down on drop (even when the caller panics). Benchmarks include this file
//! by path.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::Command;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/setup-veth.sh")
}

/// A harness brought up by scripts/setup-veth.sh.
pub struct VethHarness {
    name: String,
    env: HashMap<String, String>,
}

impl VethHarness {
    /// `setup-veth.sh up NAME --subnet S --mtu M --queues Q`.
    pub fn up(name: &str, subnet: u8, mtu: u32, queues: u32) -> Self {
        let (subnet, mtu, queues) = (subnet.to_string(), mtu.to_string(), queues.to_string());
        let out = Command::new("bash")
            .arg(script())
            .args([
                "up", name, "--subnet", &subnet, "--mtu", &mtu, "--queues", &queues,
            ])
            .output()
            .expect("run setup-veth.sh");
        // Made before checking, so a half-built harness still comes down.
        let harness = VethHarness {
            name: name.to_owned(),
            env: String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        };
        assert!(
            out.status.success(),
            "setup-veth.sh up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        harness
    }

    /// A value setup-veth.sh printed (NETNS, HOST_IF, PEER_IP, ...).
    pub fn get(&self, key: &str) -> &str {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("setup-veth.sh printed no {key}"))
    }

    /// A UDP socket bound to the peer end's `port`, inside the peer
    /// namespace, with a 16 MiB receive buffer.
    pub fn peer_socket(&self, port: u16) -> std::net::UdpSocket {
        super::netns::run_in(self.get("NETNS"), || {
            let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
            socket.set_recv_buffer_size(16 << 20).unwrap();
            socket.bind(&self.peer(port).into()).unwrap();
            std::net::UdpSocket::from(socket)
        })
    }

    /// The peer end's address with `port`.
    pub fn peer(&self, port: u16) -> SocketAddrV4 {
        let ip: Ipv4Addr = self.get("PEER_IP").parse().expect("PEER_IP is IPv4");
        SocketAddrV4::new(ip, port)
    }
}

impl Drop for VethHarness {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .args(["down", &self.name])
            .output();
    }
}
