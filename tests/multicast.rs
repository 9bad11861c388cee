//! UDP multicast end to end, in a network namespace this test makes (root
//! needed; SPEAD_SKIP_PRIVILEGED=1 skips): two monitors joined to one group
//! both receive every packet exactly; with multicast loopback off, neither
//! hears anything.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use spead_xdp::protocol::{Flavour, Heap, Item, Packetizer};
use spead_xdp::stream::{Stream, StreamConfig};
use spead_xdp::transport::{MulticastInterface, UdpConfig, UdpTransport};

/// Whether to run: root runs; otherwise SPEAD_SKIP_PRIVILEGED=1 skips and
/// anything else fails with what to do.
fn privileged(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("SPEAD_SKIP_PRIVILEGED").as_deref() == Ok("1") {
        println!("{test}: skipped (needs root; SPEAD_SKIP_PRIVILEGED=1)");
        return false;
    }
    panic!("{test} needs root for network namespaces: run as root, or set SPEAD_SKIP_PRIVILEGED=1 to skip");
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace of this test's own, deleted on drop (even when the
/// test fails).
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Self {
        let name = format!("spx-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        let ns = Netns(name);
        // Monitors join on veth0; what veth0 sends arrives on veth1, which
        // is in no group, so monitors hear only the kernel's multicast
        // loopback copy. (On `lo` the sent packet would come straight back
        // in to the members, loopback setting or not.)
        ip(&[
            "-n", &ns.0, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1",
        ]);
        ip(&["-n", &ns.0, "link", "set", "veth1", "up"]);
        ip(&["-n", &ns.0, "link", "set", "veth0", "up", "multicast", "on"]);
        ip(&["-n", &ns.0, "addr", "add", "10.9.0.1/24", "dev", "veth0"]);
        ip(&["-n", &ns.0, "route", "add", "224.0.0.0/4", "dev", "veth0"]);
        ns
    }

    /// Moves the calling thread (and threads it starts) into the namespace.
    fn enter(&self) {
        let file = std::fs::File::open(format!("/run/netns/{}", self.0)).expect("open the namespace");
        // SAFETY: a valid namespace file descriptor; affects this thread only.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// The address of the namespace's veth0.
const LOCAL: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);

/// A monitor joined to `group` on veth0, sharing the port.
fn monitor(group: SocketAddrV4) -> UdpSocket {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket
        .bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, group.port())).into())
        .unwrap();
    socket.join_multicast_v4(group.ip(), &LOCAL).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    socket.into()
}

fn drain(socket: &UdpSocket) -> Vec<Vec<u8>> {
    let mut buf = vec![0u8; 65536];
    let mut got = Vec::new();
    while let Ok(len) = socket.recv(&mut buf) {
        got.push(buf[..len].to_vec());
    }
    got
}

fn heap(seed: u8) -> Heap<'static> {
    let mut heap = Heap::new(Flavour::SPEAD_64_48);
    heap.add(Item::immediate(0x1600, u64::from(seed))).unwrap();
    heap.add(Item::new(0x1800, vec![seed; 10_000])).unwrap();
    heap
}

/// Sends two heaps to `group` with loopback `looped`; returns what each of
/// two monitors heard and what was sent.
fn send_to_group(looped: bool) -> (Vec<Vec<Vec<u8>>>, Vec<Vec<u8>>) {
    let group = SocketAddrV4::new(Ipv4Addr::new(239, 10, 20, 30), 7148);
    let monitors = [monitor(group), monitor(group)];
    let mut config = UdpConfig::new(vec![SocketAddr::V4(group)]);
    config.ttl = Some(1);
    config.multicast_interface = Some(MulticastInterface::Address(LOCAL));
    config.multicast_loop = Some(looped);
    let stream = Stream::new(UdpTransport::new(&config).unwrap(), StreamConfig::default()).unwrap();
    let sizing = Packetizer::new(1472).unwrap();
    let mut sent = Vec::new();
    for seed in 1..=2 {
        sent.extend(sizing.packets(&heap(seed), u64::from(seed)).unwrap());
        stream.send_heap(heap(seed)).unwrap();
    }
    (monitors.iter().map(drain).collect(), sent)
}

#[test]
fn multicast_reaches_every_monitor_and_loopback_off_is_honoured() {
    if !privileged("multicast_reaches_every_monitor_and_loopback_off_is_honoured") {
        return;
    }
    let ns = Netns::new("mcast");
    let worker = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                ns.enter();
                let (heard, sent) = send_to_group(true);
                for (i, got) in heard.iter().enumerate() {
                    assert_eq!(got.len(), sent.len(), "monitor {i}: datagram count");
                    assert!(*got == sent, "monitor {i}: datagrams differ");
                }
                let (silent, _) = send_to_group(false);
                assert!(
                    silent.iter().all(Vec::is_empty),
                    "loopback off, yet a monitor heard packets"
                );
                sent.len()
            })
            .join()
    });
    let packets = worker.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    println!("multicast: 2 monitors each heard all {packets} packets; loopback off: none");
}
