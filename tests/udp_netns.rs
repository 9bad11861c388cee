//! UDP in network namespaces this test makes (root needed;
//! SPEAD_SKIP_PRIVILEGED=1 skips): multicast to two monitors with loopback
//! on and off, and EMSGSIZE over a 1500-byte MTU with don't-fragment.

mod common;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use common::netns::{privileged, Netns};
use socket2::{Domain, Protocol, Socket, Type};
use spead_xdp::protocol::{Flavour, Heap, Item, PacketSizing};
use spead_xdp::stream::{SendError, Stream, StreamConfig};
use spead_xdp::transport::{MulticastInterface, TransportError, UdpConfig, UdpTransport};

/// The address of the namespace's veth0.
const LOCAL: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
/// The address of its peer, veth1.
const PEER: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);

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

fn heap(seed: u8, size: usize) -> Heap<'static> {
    let mut heap = Heap::new(Flavour::SPEAD_64_48);
    heap.add(Item::immediate(0x1600, u64::from(seed))).unwrap();
    heap.add(Item::new(0x1800, vec![seed; size])).unwrap();
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
    let sizing = PacketSizing::new(1472).unwrap();
    let mut sent = Vec::new();
    for seed in 1..=2 {
        sent.extend(sizing.packets(&heap(seed, 10_000), u64::from(seed)).unwrap());
        stream.send_heap(heap(seed, 10_000)).unwrap();
    }
    (monitors.iter().map(drain).collect(), sent)
}

#[test]
fn multicast_reaches_every_monitor_and_loopback_off_is_honoured() {
    if !privileged("multicast_reaches_every_monitor_and_loopback_off_is_honoured") {
        return;
    }
    // Monitors join on veth0; what veth0 sends arrives on veth1, which is
    // in no group, so monitors hear only the kernel's multicast loopback
    // copy. (On `lo` the sent packet would come straight back in to the
    // members, loopback setting or not.)
    let ns = Netns::with_veth_pair("mcast", "1500");
    let packets = ns.run(|| {
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
    });
    println!("multicast: 2 monitors each heard all {packets} packets; loopback off: none");
}

#[test]
fn oversized_packets_fail_their_heap_with_emsgsize_when_not_fragmenting() {
    if !privileged("oversized_packets_fail_their_heap_with_emsgsize_when_not_fragmenting") {
        return;
    }
    // Sender and receiver in two namespaces joined by a 1500-byte veth (in
    // one namespace the peer's address would be local, routed over `lo`).
    let sender_ns = Netns::new("mtu-tx");
    let receiver_ns = Netns::new("mtu-rx");
    sender_ns.ip(&[
        "link",
        "add",
        "veth0",
        "mtu",
        "1500",
        "type",
        "veth",
        "peer",
        "name",
        "veth1",
        "netns",
        receiver_ns.name(),
    ]);
    sender_ns.ip(&["addr", "add", "10.9.0.1/24", "dev", "veth0"]);
    sender_ns.ip(&["link", "set", "veth0", "up"]);
    receiver_ns.ip(&["addr", "add", "10.9.0.2/24", "dev", "veth1"]);
    receiver_ns.ip(&["link", "set", "veth1", "up"]);
    // A socket stays in the namespace it was made in.
    let receiver = receiver_ns.run(|| UdpSocket::bind((PEER, 7148)).unwrap());
    receiver.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let message = sender_ns.run(|| {
        let mut config = UdpConfig::new(vec![SocketAddr::from((PEER, 7148))]);
        config.dont_fragment = true;
        let stream_config = StreamConfig {
            max_packet_size: 8192,
            ..Default::default()
        };
        let stream = Stream::new(UdpTransport::new(&config).unwrap(), stream_config).unwrap();
        let err = stream.send_heap(heap(1, 20_000)).unwrap_err();
        assert!(
            matches!(
                &err,
                SendError::Transport(TransportError::MessageTooLong { len: 8192, source, .. })
                    if source.raw_os_error() == Some(libc::EMSGSIZE)
            ),
            "{err:?}"
        );
        // A heap whose one packet fits the MTU still goes.
        stream.send_heap(heap(2, 500)).unwrap();
        err.to_string()
    });
    assert!(
        message.contains("UDP packet of 8192 bytes to 10.9.0.2:7148"),
        "{message}"
    );
    let mut buf = [0u8; 2048];
    let len = receiver.recv(&mut buf).unwrap();
    let want = PacketSizing::new(8192)
        .unwrap()
        .packets(&heap(2, 500), 2)
        .unwrap()
        .next()
        .unwrap();
    assert_eq!(&buf[..len], &want[..]);
    println!("EMSGSIZE: {message}; the next heap arrived");
}
