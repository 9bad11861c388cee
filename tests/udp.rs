//! The UDP transport on loopback: every packet arrives as its own datagram,
//! byte for byte, at the right destination, with GSO and without, over IPv4
//! and IPv6; a failing destination completes its heap with an error and the
//! stream goes on.

use std::net::{SocketAddr, UdpSocket};
use std::thread::JoinHandle;
use std::time::Duration;

use spead_xdp::protocol::{Flavour, Heap, Item, Packetizer};
use spead_xdp::stream::{HeapRef, SendError, Stream, StreamConfig};
use spead_xdp::transport::{UdpConfig, UdpTransport};

/// Receives up to `count` datagrams (or stops after a quiet second).
fn receiver(bind: &str, count: usize) -> (SocketAddr, JoinHandle<Vec<Vec<u8>>>) {
    let socket = UdpSocket::bind(bind).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let addr = socket.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        let mut got = Vec::new();
        while got.len() < count {
            match socket.recv(&mut buf) {
                Ok(len) => got.push(buf[..len].to_vec()),
                Err(_) => break,
            }
        }
        got
    });
    (addr, handle)
}

fn heap(seed: u8, size: usize) -> Heap<'static> {
    let mut heap = Heap::new(Flavour::SPEAD_64_48);
    heap.add(Item::immediate(0x1600, u64::from(seed))).unwrap();
    heap.add(Item::new(0x1800, vec![seed; size])).unwrap();
    heap
}

/// Sends 6 heaps alternating between two destinations and checks each
/// receiver got exactly its heaps' packets, in order.
fn round_trip(bind: &str, max_packet_size: usize, gso: bool) {
    let sizing = Packetizer::new(max_packet_size).unwrap();
    let heaps: Vec<Heap<'static>> = (0..6).map(|i| heap(i, 20_000 + 999 * i as usize)).collect();
    let mut expected = [Vec::new(), Vec::new()];
    for (i, h) in heaps.iter().enumerate() {
        expected[i % 2].extend(sizing.packets(h, i as u64 + 1).unwrap());
    }
    let (a, rx_a) = receiver(bind, expected[0].len());
    let (b, rx_b) = receiver(bind, expected[1].len());
    let mut config = UdpConfig::new(vec![a, b]);
    config.gso = gso;
    let transport = UdpTransport::new(&config).unwrap();
    let using_gso = transport.gso();
    let stream_config = StreamConfig {
        max_packet_size,
        rate: 100e6, // bytes/s: gentle enough for loopback receive buffers
        ..Default::default()
    };
    let stream = Stream::new(transport, stream_config).unwrap();
    for (i, h) in heaps.into_iter().enumerate() {
        stream.send_heap(HeapRef::new(h).substream(i % 2)).unwrap();
    }
    let got = [rx_a.join().unwrap(), rx_b.join().unwrap()];
    for (substream, (got, want)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(got.len(), want.len(), "substream {substream}: datagram count");
        assert!(got == want, "substream {substream}: datagrams differ");
    }
    println!(
        "{bind} {max_packet_size}-byte packets, GSO {}: {} datagrams identical",
        if using_gso { "on" } else { "off" },
        expected[0].len() + expected[1].len()
    );
}

#[test]
fn ipv4_with_gso() {
    round_trip("127.0.0.1:0", 1472, true);
}

#[test]
fn ipv4_without_gso() {
    round_trip("127.0.0.1:0", 1472, false);
}

#[test]
fn ipv4_jumbo_with_gso() {
    round_trip("127.0.0.1:0", 8192, true);
}

#[test]
fn ipv6_with_gso() {
    round_trip("[::1]:0", 1472, true);
}

#[test]
fn a_failing_destination_fails_its_heap_and_the_stream_goes_on() {
    let (good, rx) = receiver("127.0.0.1:0", 1);
    // Broadcast without SO_BROADCAST is refused (EACCES), even for root.
    let refused: SocketAddr = "255.255.255.255:9".parse().unwrap();
    let transport = UdpTransport::new(&UdpConfig::new(vec![refused, good])).unwrap();
    let stream = Stream::new(transport, StreamConfig::default()).unwrap();
    let err = stream
        .send_heap(HeapRef::new(heap(1, 100)).substream(0))
        .unwrap_err();
    assert!(matches!(err, SendError::Transport(_)), "{err}");
    assert!(err.to_string().contains("255.255.255.255:9"), "{err}");
    let bytes = stream.send_heap(HeapRef::new(heap(2, 100)).substream(1)).unwrap();
    assert_eq!(rx.join().unwrap().len(), 1);
    assert!(bytes > 100);
}

#[test]
fn bad_configurations_are_named() {
    let v4: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let v6: SocketAddr = "[::1]:9".parse().unwrap();
    let err = UdpTransport::new(&UdpConfig::new(vec![v4, v6])).unwrap_err();
    assert!(err.to_string().contains("different address families"), "{err}");
    let err = UdpTransport::new(&UdpConfig::new(vec![])).unwrap_err();
    assert!(err.to_string().contains("at least one destination"), "{err}");
    let transport = UdpTransport::new(&UdpConfig::new(vec![v4])).unwrap();
    let config = StreamConfig {
        max_packet_size: 65536,
        ..Default::default()
    };
    let err = Stream::new(transport, config).unwrap_err();
    assert!(err.to_string().contains("65507"), "{err}");
}
