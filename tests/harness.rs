//! The veth harness with the XDP sink (feature `sink`; root needed,
//! SPEAD_SKIP_PRIVILEGED=1 skips): each test brings up a harness of its own
//! with scripts/setup-veth.sh, attaches the sink to the peer end, sends with
//! the UDP transport, and checks what the sink counted: every packet and
//! heap arrived, none malformed. The harness comes down even on failure.
#![cfg(feature = "sink")]

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};

use std::process::Command;
use std::time::Duration;

use common::harness::{heap, settle, Harness};
use common::netns::{privileged, run_in};
use spead_xdp::protocol::{Flavour, Heap, Item, PacketSizing};
use spead_xdp::stream::{Stream, StreamConfig, WorkerConfig};
use spead_xdp::transport::{UdpConfig, UdpTransport, UmemArea, XdpConfig, XdpTransport};

/// Sends `heaps` heaps and an end heap over the harness and checks the
/// sink's counts against what was sent.
fn every_packet_and_heap_arrives(tag: &str, subnet: u8, mtu: u32, packet_size: usize) {
    let harness = Harness::up(tag, subnet, mtu);
    let sink = harness.sink(false);
    let sizing = PacketSizing::new(packet_size).unwrap();
    let mut heaps: Vec<Heap<'static>> = (0..40u8)
        .map(|i| heap(i, 50_000 + 1000 * usize::from(i)))
        .collect();
    let mut end = Heap::new(Flavour::SPEAD_64_48);
    end.add_end().unwrap();
    heaps.push(end);
    let lengths: Vec<usize> = heaps
        .iter()
        .enumerate()
        .flat_map(|(i, h)| {
            sizing
                .packets(h, i as u64 + 1)
                .unwrap()
                .map(|p| p.len())
                .collect::<Vec<_>>()
        })
        .collect();
    let transport = UdpTransport::new(&UdpConfig::new(vec![harness.peer(7148)])).unwrap();
    let config = StreamConfig {
        max_packet_size: packet_size,
        rate: 2e9 / 8.0,
        ..Default::default()
    };
    let stream = Stream::new(transport, config).unwrap();
    for h in heaps {
        stream.send_heap(h).unwrap();
    }
    let stats = settle(&sink, lengths.len() as u64);
    let frame_bytes: u64 = lengths.iter().map(|l| (l + 42) as u64).sum();
    assert_eq!(stats.packets, lengths.len() as u64, "packets: {stats:?}");
    assert_eq!(stats.spead_packets, stats.packets, "SPEAD packets: {stats:?}");
    assert_eq!(stats.malformed, 0, "{stats:?}");
    assert_eq!(stats.heaps, 41, "heaps: {stats:?}");
    assert_eq!(stats.bytes, frame_bytes, "frame bytes: {stats:?}");
    println!(
        "MTU {mtu}, {packet_size}-byte packets: sink counted {} packets, {} heaps, {} bytes, 0 malformed",
        stats.packets, stats.heaps, stats.bytes
    );
}

#[test]
fn every_packet_and_heap_arrives_at_mtu_1500() {
    if privileged("every_packet_and_heap_arrives_at_mtu_1500") {
        every_packet_and_heap_arrives("a", 201, 1500, 1472);
    }
}

#[test]
fn every_jumbo_packet_and_heap_arrives_at_mtu_9000() {
    if privileged("every_jumbo_packet_and_heap_arrives_at_mtu_9000") {
        every_packet_and_heap_arrives("b", 202, 9000, 8192);
    }
}

#[test]
fn malformed_packets_are_counted_and_other_traffic_passes() {
    if !privileged("malformed_packets_are_counted_and_other_traffic_passes") {
        return;
    }
    let harness = Harness::up("c", 203, 1500);
    let sink = harness.sink(false);
    // A socket in the peer namespace on another port still receives: the
    // sink passes what is not UDP to the SPEAD port.
    let other = run_in(harness.get("NETNS"), || {
        UdpSocket::bind(harness.peer(9999)).unwrap()
    });
    other.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
    socket.send_to(b"not SPEAD at all", harness.peer(7148)).unwrap();
    socket
        .send_to(&[0x53, 0x04, 0x02, 0x06, 0, 0, 0, 9], harness.peer(7148))
        .unwrap(); // truncated
    socket.send_to(b"hello", harness.peer(9999)).unwrap();
    let stats = settle(&sink, 2);
    assert_eq!(
        (stats.packets, stats.malformed, stats.spead_packets, stats.heaps),
        (2, 2, 0, 0),
        "{stats:?}"
    );
    let mut buf = [0u8; 64];
    let len = other.recv(&mut buf).expect("non-SPEAD traffic passes the sink");
    assert_eq!(&buf[..len], b"hello");
}

#[test]
fn pass_mode_lets_a_socket_see_the_packets() {
    if !privileged("pass_mode_lets_a_socket_see_the_packets") {
        return;
    }
    let harness = Harness::up("d", 204, 1500);
    let sink = harness.sink(true);
    let receiver = run_in(harness.get("NETNS"), || {
        UdpSocket::bind(harness.peer(7148)).unwrap()
    });
    receiver.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let transport = UdpTransport::new(&UdpConfig::new(vec![harness.peer(7148)])).unwrap();
    let stream = Stream::new(transport, StreamConfig::default()).unwrap();
    stream.send_heap(heap(9, 100)).unwrap();
    let mut buf = [0u8; 2048];
    let len = receiver.recv(&mut buf).expect("passed packets reach the socket");
    let want = PacketSizing::new(1472)
        .unwrap()
        .packets(&heap(9, 100), 1)
        .unwrap()
        .next()
        .unwrap();
    assert_eq!(&buf[..len], &want[..]);
    let stats = settle(&sink, 1);
    assert_eq!((stats.packets, stats.heaps), (1, 1), "{stats:?}");
}

#[test]
fn two_workers_on_two_cores_deliver_every_packet_and_heap() {
    if !privileged("two_workers_on_two_cores_deliver_every_packet_and_heap") {
        return;
    }
    let harness = Harness::up("e", 205, 9000);
    let sink = harness.sink(false);
    let sizing = PacketSizing::new(8192).unwrap();
    let mut heaps: Vec<Heap<'static>> = (0..20u8).map(|i| heap(i, 200_000)).collect();
    let mut end = Heap::new(Flavour::SPEAD_64_48);
    end.add_end().unwrap();
    heaps.push(end);
    let packets: usize = heaps
        .iter()
        .enumerate()
        .map(|(i, h)| sizing.packets(h, i as u64 + 1).unwrap().remaining())
        .sum();
    let transports: Vec<UdpTransport> = (0..2)
        .map(|_| UdpTransport::new(&UdpConfig::new(vec![harness.peer(7148)])).unwrap())
        .collect();
    send_on_two_pinned_workers(transports, heaps, packets);
    let stats = settle(&sink, packets as u64);
    assert_eq!(
        (stats.packets, stats.heaps, stats.malformed),
        (packets as u64, 21, 0),
        "{stats:?}"
    );
    println!(
        "two workers: sink counted {} packets, {} heaps",
        stats.packets, stats.heaps
    );
}

/// Sends `heaps` at 2 Gb/s in 8192-byte packets through two workers, one
/// per transport, pinned to cores 0 and 1, waits for the last, and checks
/// the stream's statistics: every heap and packet counted, split evenly.
fn send_on_two_pinned_workers<T: spead_xdp::transport::Transport>(
    transports: Vec<T>,
    heaps: Vec<Heap<'static>>,
    packets: usize,
) {
    let count = heaps.len() as u64;
    let workers = (0..2)
        .map(|core| WorkerConfig {
            core: Some(core),
            ..Default::default()
        })
        .collect();
    let config = StreamConfig {
        max_packet_size: 8192,
        rate: 2e9 / 8.0,
        ..Default::default()
    };
    let stream = Stream::with_workers(transports, config, workers).unwrap();
    for h in heaps {
        stream.send_heap(h).unwrap();
    }
    let stats = stream.stats();
    assert_eq!(
        (stats.heaps, stats.errors, stats.queue_full),
        (count, 0, 0),
        "{stats:?}"
    );
    assert_eq!(stats.packets(), packets as u64, "{stats:?}");
    for worker in &stats.workers {
        assert!(worker.packets.abs_diff(packets as u64 / 2) <= 1, "{stats:?}");
    }
    println!(
        "stream stats: {} heaps, {} packets ({:?} per worker), {} ring stalls",
        stats.heaps,
        stats.packets(),
        stats.workers.iter().map(|w| w.packets).collect::<Vec<_>>(),
        stats.ring_stalls()
    );
}

/// A UDP socket on the peer's SPEAD port, inside the peer namespace.
fn peer_receiver(harness: &Harness) -> UdpSocket {
    let receiver = harness.0.peer_socket(7148);
    receiver.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    receiver
}

/// Up to `count` datagrams (fewer if none comes for 2 s).
fn receive(receiver: &UdpSocket, count: usize) -> Vec<Vec<u8>> {
    let mut buf = vec![0u8; 65536];
    let mut got = Vec::new();
    while got.len() < count {
        match receiver.recv(&mut buf) {
            Ok(len) => got.push(buf[..len].to_vec()),
            Err(_) => break,
        }
    }
    got
}

/// Sends heaps over AF_XDP from the host end and checks that the peer's
/// socket receives exactly the packets the UDP transport sends for them.
fn af_xdp_matches_udp(tag: &str, subnet: u8, mtu: u32, packet_size: usize) {
    let harness = Harness::up(tag, subnet, mtu);
    let sink = harness.sink(true);
    let receiver = peer_receiver(&harness);
    let sizing = PacketSizing::new(packet_size).unwrap();
    let heaps: Vec<Heap<'static>> = (0..10u8)
        .map(|i| heap(i, 30_000 + 997 * usize::from(i)))
        .collect();
    let expected: Vec<Vec<u8>> = heaps
        .iter()
        .enumerate()
        .flat_map(|(i, h)| sizing.packets(h, i as u64 + 1).unwrap().collect::<Vec<_>>())
        .collect();
    let peer = peer_v4(&harness);
    let transport = XdpTransport::new(&XdpConfig::new(harness.get("HOST_IF"), vec![peer])).unwrap();
    let config = StreamConfig {
        max_packet_size: packet_size,
        rate: 1e9 / 8.0,
        ..Default::default()
    };
    let stream = Stream::new(transport, config).unwrap();
    for h in heaps {
        stream.send_heap(h).unwrap();
    }
    drop(stream);
    let got = receive(&receiver, expected.len());
    assert_eq!(got.len(), expected.len(), "datagrams received over AF_XDP");
    assert!(
        got == expected,
        "AF_XDP datagrams differ from the UDP transport's packets"
    );
    let stats = settle(&sink, expected.len() as u64);
    assert_eq!(
        (stats.packets, stats.heaps, stats.malformed),
        (expected.len() as u64, 10, 0),
        "{stats:?}"
    );
    println!(
        "AF_XDP at MTU {mtu}, {packet_size}-byte packets: {} datagrams identical",
        got.len()
    );
}

#[test]
fn af_xdp_packets_match_udp_at_mtu_1500() {
    if privileged("af_xdp_packets_match_udp_at_mtu_1500") {
        af_xdp_matches_udp("f", 206, 1500, 1472);
    }
}

#[test]
fn af_xdp_jumbo_packets_match_udp_at_mtu_9000() {
    if privileged("af_xdp_jumbo_packets_match_udp_at_mtu_9000") {
        af_xdp_matches_udp("g", 207, 9000, 8192);
    }
}

fn peer_v4(harness: &Harness) -> std::net::SocketAddrV4 {
    harness.0.peer(7148)
}

/// AF_XDP to a multicast group reaches a socket joined in the peer
/// namespace with exactly the packets sent.
fn af_xdp_multicast(tag: &str, subnet: u8, mtu: u32, packet_size: usize) {
    let harness = Harness::up(tag, subnet, mtu);
    let _sink = harness.sink(true);
    let group = std::net::SocketAddrV4::new(Ipv4Addr::new(239, 10, 0, subnet), 7148);
    let peer_ip: Ipv4Addr = harness.get("PEER_IP").parse().unwrap();
    let receiver = run_in(harness.get("NETNS"), || {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        socket.set_reuse_address(true).unwrap();
        socket.set_recv_buffer_size(16 << 20).unwrap();
        socket
            .bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 7148)).into())
            .unwrap();
        socket.join_multicast_v4(group.ip(), &peer_ip).unwrap();
        UdpSocket::from(socket)
    });
    receiver.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let transport = XdpTransport::new(&XdpConfig::new(harness.get("HOST_IF"), vec![group])).unwrap();
    let config = StreamConfig {
        max_packet_size: packet_size,
        ..Default::default()
    };
    let stream = Stream::new(transport, config).unwrap();
    let sizing = PacketSizing::new(packet_size).unwrap();
    let expected: Vec<Vec<u8>> = (0..3u8)
        .flat_map(|i| {
            sizing
                .packets(&heap(i, 20_000), u64::from(i) + 1)
                .unwrap()
                .collect::<Vec<_>>()
        })
        .collect();
    for i in 0..3u8 {
        stream.send_heap(heap(i, 20_000)).unwrap();
    }
    let got = receive(&receiver, expected.len());
    assert!(
        got == expected,
        "multicast over AF_XDP: {} of {} packets, or different",
        got.len(),
        expected.len()
    );
}

#[test]
fn af_xdp_multicast_reaches_a_joined_socket() {
    if privileged("af_xdp_multicast_reaches_a_joined_socket") {
        af_xdp_multicast("h", 208, 1500, 1472);
    }
}

#[test]
fn af_xdp_jumbo_multicast_reaches_a_joined_socket() {
    if privileged("af_xdp_jumbo_multicast_reaches_a_joined_socket") {
        af_xdp_multicast("m", 213, 9000, 8192);
    }
}

#[test]
fn af_xdp_on_two_queues_delivers_every_packet_and_heap() {
    if !privileged("af_xdp_on_two_queues_delivers_every_packet_and_heap") {
        return;
    }
    let harness = Harness::with_queues("i", 209, 9000, 2);
    assert_eq!(harness.get("QUEUES"), "2");
    let sink = harness.sink(true);
    let receiver = peer_receiver(&harness);
    let sizing = PacketSizing::new(8192).unwrap();
    let heaps: Vec<Heap<'static>> = (0..20u8).map(|i| heap(i, 100_000)).collect();
    let mut expected: Vec<Vec<u8>> = heaps
        .iter()
        .enumerate()
        .flat_map(|(i, h)| sizing.packets(h, i as u64 + 1).unwrap().collect::<Vec<_>>())
        .collect();
    let packets = expected.len();
    let transports: Vec<XdpTransport> = (0..2)
        .map(|queue| {
            let mut config = XdpConfig::new(harness.get("HOST_IF"), vec![peer_v4(&harness)]);
            config.queue = queue;
            XdpTransport::new(&config).unwrap()
        })
        .collect();
    send_on_two_pinned_workers(transports, heaps, packets);
    let stats = settle(&sink, packets as u64);
    assert_eq!(
        (stats.packets, stats.heaps, stats.malformed),
        (packets as u64, 20, 0),
        "{stats:?}"
    );
    // Two queues interleave packets: compare them as sets.
    let mut got = receive(&receiver, packets);
    got.sort();
    expected.sort();
    assert!(
        got == expected,
        "datagrams over two queues differ ({} of {packets})",
        got.len()
    );
    println!(
        "AF_XDP on 2 queues: {} packets, {} heaps, byte-identical",
        stats.packets, stats.heaps
    );
}

#[test]
fn spead2_decodes_heaps_sent_over_af_xdp() {
    if !privileged("spead2_decodes_heaps_sent_over_af_xdp") {
        return;
    }
    let harness = Harness::up("j", 210, 9000);
    let python = common::python();
    let mut receiver = Command::new("ip")
        .args(["netns", "exec", harness.get("NETNS")])
        .arg(&python)
        .arg(common::script("recv_heaps.py"))
        .args([
            "9000",
            "20",
            "--summary",
            "--bind",
            &format!("{}:7148", harness.get("PEER_IP")),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start spead2's receiver in the peer namespace");
    let mut stdout = std::io::BufReader::new(receiver.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert!(line.starts_with("PORT 7148"), "receiver said {line:?}");
    let transport =
        XdpTransport::new(&XdpConfig::new(harness.get("HOST_IF"), vec![peer_v4(&harness)])).unwrap();
    let config = StreamConfig {
        max_packet_size: 8192,
        rate: 1e9 / 8.0,
        ..Default::default()
    };
    let stream = Stream::new(transport, config).unwrap();
    for i in 0..30u8 {
        stream.send_heap(heap(i, 200_000)).unwrap();
    }
    let mut end = Heap::new(Flavour::SPEAD_64_48);
    end.add_end().unwrap();
    stream.send_heap(end).unwrap();
    let mut report = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut report).unwrap();
    assert!(receiver.wait().unwrap().success());
    let report: serde_json::Value = serde_json::from_str(report.trim()).expect("JSON from the receiver");
    let heaps = &report["heaps"];
    assert_eq!(
        (heaps["heaps"].as_u64(), heaps["complete"].as_u64()),
        (Some(30), Some(30)),
        "{report}"
    );
    assert_eq!(heaps["payload_bytes"].as_u64(), Some(30 * 200_000), "{report}");
    println!("spead2 in the peer namespace decoded 30 heaps sent over AF_XDP");
}

/// Heaps whose data lives in UMEM buffers go by reference (no copy) and
/// arrive byte-identical to the same heaps built from ordinary memory.
fn umem_buffers_go_by_reference(tag: &str, subnet: u8, mtu: u32, packet_size: usize) {
    let harness = Harness::up(tag, subnet, mtu);
    let _sink = harness.sink(true);
    let receiver = peer_receiver(&harness);
    let area = UmemArea::new(4096 * 4096, 2 << 20).unwrap();
    let sizing = PacketSizing::new(packet_size).unwrap();
    let mut expected = Vec::new();
    let mut heaps = Vec::new();
    for i in 0..4u8 {
        let data: Vec<u8> = (0..300_000u32).map(|j| (j as u8).wrapping_mul(i + 1)).collect();
        let mut plain = Heap::new(Flavour::SPEAD_64_48);
        plain.add(Item::immediate(0x1600, u64::from(i))).unwrap();
        plain.add(Item::new(0x1800, data.clone())).unwrap();
        expected.extend(sizing.packets(&plain, u64::from(i) + 1).unwrap());
        let mut buffer = area.alloc(data.len()).unwrap();
        buffer.as_mut().copy_from_slice(&data);
        let mut heap = Heap::new(Flavour::SPEAD_64_48);
        heap.add(Item::immediate(0x1600, u64::from(i))).unwrap();
        heap.add(Item::new(0x1800, bytes::Bytes::from_owner(buffer)))
            .unwrap();
        heaps.push(heap);
    }
    let config = XdpConfig::new(harness.get("HOST_IF"), vec![peer_v4(&harness)]);
    let transport = XdpTransport::with_area(&config, area).unwrap();
    let counters = transport.counters();
    let stream_config = StreamConfig {
        max_packet_size: packet_size,
        rate: 1e9 / 8.0,
        ..Default::default()
    };
    let stream = Stream::new(transport, stream_config).unwrap();
    for heap in heaps {
        stream.send_heap(heap).unwrap();
    }
    drop(stream);
    let got = receive(&receiver, expected.len());
    assert_eq!(got.len(), expected.len(), "datagrams received");
    assert!(
        got == expected,
        "by-reference datagrams differ from ordinary ones"
    );
    let by_reference = counters.by_reference();
    assert_eq!(
        by_reference,
        expected.len() as u64,
        "every packet's payload went by reference"
    );
    println!("UMEM buffers at MTU {mtu}: {by_reference} packets sent by reference, all identical");
}

#[test]
fn umem_buffers_go_by_reference_at_mtu_1500() {
    if privileged("umem_buffers_go_by_reference_at_mtu_1500") {
        umem_buffers_go_by_reference("k", 211, 1500, 1472);
    }
}

#[test]
fn umem_buffers_go_by_reference_at_mtu_9000() {
    if privileged("umem_buffers_go_by_reference_at_mtu_9000") {
        umem_buffers_go_by_reference("l", 212, 9000, 8192);
    }
}

/// spead-send's datagrams on the harness, and what it printed, for
/// `options` (the peer's SPEAD port as destination).
fn spead_send_datagrams(
    harness: &Harness,
    receiver: &UdpSocket,
    options: &[&str],
    count: usize,
) -> (Vec<Vec<u8>>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_spead-send"))
        .args(["--transport", "xdp", "--interface", harness.get("HOST_IF")])
        .args(options)
        .arg(harness.peer(7148).to_string())
        .output()
        .expect("start spead-send");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "spead-send failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (receive(receiver, count), stdout)
}

/// `spead-send --zero-copy` puts the heaps' payload in the UMEM and sends
/// it by reference: the same datagrams as the copying path, and every
/// packet of the data heaps by reference (the first heap's descriptors and
/// the end heap are the sender's own bytes, copied).
fn zero_copy_matches_copying(tag: &str, subnet: u8, mtu: u32, packet: &str) {
    let harness = Harness::up(tag, subnet, mtu);
    let receiver = peer_receiver(&harness);
    let options = [
        "--heaps",
        "6",
        "--heap-size",
        "200000",
        "--packet",
        packet,
        "--rate",
        "1",
    ];
    let expected_packets = {
        let (copied, _) = spead_send_datagrams(&harness, &receiver, &options, usize::MAX);
        copied
    };
    assert!(
        expected_packets.len() > 6 * 20,
        "{} datagrams",
        expected_packets.len()
    );
    let with_zero_copy: Vec<&str> = options.iter().copied().chain(["--zero-copy"]).collect();
    let (got, stdout) = spead_send_datagrams(&harness, &receiver, &with_zero_copy, expected_packets.len());
    assert!(
        got == expected_packets,
        "--zero-copy datagrams differ from the copying path's"
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("Zero copy: "))
        .unwrap_or_else(|| panic!("no zero-copy line in:\n{stdout}"));
    let numbers: Vec<u64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    let (by_reference, packets) = (numbers[0], numbers[1]);
    assert_eq!(packets, got.len() as u64, "{line}");
    // The descriptors ride in the first heap's first packet(s); the end
    // heap is one packet: everything else went by reference.
    assert!(by_reference >= packets - 3 && by_reference < packets, "{line}");
    println!("--zero-copy at MTU {mtu}: {line}; datagrams identical to the copying path");
}

#[test]
fn spead_send_zero_copy_matches_the_copying_path_at_mtu_1500() {
    if privileged("spead_send_zero_copy_matches_the_copying_path_at_mtu_1500") {
        zero_copy_matches_copying("zc", 217, 1500, "1472");
    }
}

#[test]
fn spead_send_zero_copy_matches_the_copying_path_at_mtu_9000() {
    if privileged("spead_send_zero_copy_matches_the_copying_path_at_mtu_9000") {
        zero_copy_matches_copying("zj", 218, 9000, "8192");
    }
}
