//! The UDP transport on loopback: every packet arrives as its own datagram,
//! byte for byte, at the right destination, with GSO and without, over IPv4
//! and IPv6; a failing destination completes its heap with an error and the
//! stream goes on; payload lent as plain memory goes by reference, foreign
//! memory is copied out.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use spead_xdp::protocol::{Flavour, ForeignMemory, Heap, HeapPackets, Item, PacketPieces, PacketSizing};
use spead_xdp::stream::{HeapRef, SendError, Stream, StreamConfig, StreamError};
use spead_xdp::transport::{
    MulticastInterface, PacketSource, PacketSpec, TcpTransport, Transport, TransportError, UdpConfig,
    UdpTransport,
};

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
    let sizing = PacketSizing::new(max_packet_size).unwrap();
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
    // Every kernel this runs on (Linux >= 4.18) has UDP_SEGMENT.
    assert_eq!(transport.gso(), gso, "GSO as asked");
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

/// Full-size packets to one destination: `count` of `len` bytes.
struct FullPackets {
    len: usize,
    left: usize,
}

impl PacketSource<'_> for FullPackets {
    fn next_packet(&mut self) -> Option<PacketSpec> {
        (self.left > 0).then_some(PacketSpec {
            len: self.len,
            substream: 0,
        })
    }

    fn write(&mut self, buf: &mut [u8]) {
        buf.fill(self.left as u8);
        self.left -= 1;
    }
}

#[test]
fn runs_of_full_packets_go_as_gso_messages_only_when_gso_is_on() {
    for gso in [true, false] {
        let (addr, rx) = receiver("127.0.0.1:0", 40);
        let mut config = UdpConfig::new(vec![addr]);
        config.gso = gso;
        let mut transport = UdpTransport::new(&config).unwrap();
        transport.prepare(1472).unwrap();
        let sent = transport.send(&mut FullPackets { len: 1472, left: 40 }).unwrap();
        assert_eq!(sent, 40);
        // 40 full packets to one destination: one GSO message with GSO on
        // (the kernel splits it), none without.
        assert_eq!(transport.gso_messages(), u64::from(gso), "GSO {gso}");
        let got = rx.join().unwrap();
        assert_eq!(got.len(), 40, "GSO {gso}: datagrams");
        assert!(got.iter().all(|d| d.len() == 1472), "GSO {gso}: each one packet");
    }
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
    match &err {
        SendError::Transport(TransportError::Io { what, source }) => {
            assert!(what.contains("255.255.255.255:9"), "{what}");
            assert_eq!(source.kind(), std::io::ErrorKind::PermissionDenied, "{source}");
        }
        other => panic!("{other}"),
    }
    let bytes = stream.send_heap(HeapRef::new(heap(2, 100)).substream(1)).unwrap();
    assert_eq!(rx.join().unwrap().len(), 1);
    assert!(bytes > 100);
}

#[test]
fn bad_configurations_are_named() {
    let v4: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let v6: SocketAddr = "[::1]:9".parse().unwrap();
    let err = UdpTransport::new(&UdpConfig::new(vec![v4, v6])).unwrap_err();
    assert!(
        matches!(err, TransportError::MixedAddressFamilies { first, other } if first == v4 && other == v6),
        "{err}"
    );
    let err = UdpTransport::new(&UdpConfig::new(vec![])).unwrap_err();
    assert!(
        matches!(err, TransportError::NoDestinations { transport: "UDP" }),
        "{err}"
    );
    let transport = UdpTransport::new(&UdpConfig::new(vec![v4])).unwrap();
    let config = StreamConfig {
        max_packet_size: 65536,
        ..Default::default()
    };
    let err = Stream::new(transport, config).unwrap_err();
    assert!(
        matches!(
            err,
            StreamError::Transport(TransportError::PacketTooLarge {
                packet: 65536,
                limit: 65507
            })
        ),
        "{err}"
    );
}

#[test]
fn socket_options_take_effect() {
    let group: SocketAddr = "239.255.10.1:7148".parse().unwrap();
    let mut config = UdpConfig::new(vec![group]);
    config.ttl = Some(4);
    config.multicast_loop = Some(false);
    config.multicast_interface = Some(MulticastInterface::Address(Ipv4Addr::LOCALHOST));
    config.bind = Some("127.0.0.1:0".parse().unwrap());
    config.buffer_size = 1 << 20;
    let transport = UdpTransport::new(&config).unwrap();
    let socket = transport.socket();
    assert_eq!(socket.multicast_ttl_v4().unwrap(), 4);
    assert!(!socket.multicast_loop_v4().unwrap());
    assert_eq!(socket.multicast_if_v4().unwrap(), Ipv4Addr::LOCALHOST);
    // Linux doubles the requested size for bookkeeping (capped by wmem_max).
    // At least the default wmem_max (212992), to which the request is capped.
    assert!(socket.send_buffer_size().unwrap() >= 212_992);
    assert_eq!(transport.local_addr().unwrap().ip(), Ipv4Addr::LOCALHOST);
    let err = UdpTransport::new(&UdpConfig {
        multicast_interface: Some(MulticastInterface::Index(1)),
        ..UdpConfig::new(vec![group])
    })
    .unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::MulticastInterfaceFamily {
                interface: MulticastInterface::Index(1),
                family: "IPv4"
            }
        ),
        "{err}"
    );
}

#[test]
fn a_caller_supplied_udp_socket_is_used_as_is() {
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    receiver.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let own = UdpSocket::bind("127.0.0.1:0").unwrap();
    let own_addr = own.local_addr().unwrap();
    let transport = UdpTransport::from_socket(own, &[receiver.local_addr().unwrap()], true);
    let stream = Stream::new(transport, StreamConfig::default()).unwrap();
    stream.send_heap(heap(3, 100)).unwrap();
    let mut buf = [0u8; 2048];
    let (len, from) = receiver.recv_from(&mut buf).unwrap();
    assert_eq!(from, own_addr, "the datagram left from the caller's socket");
    let want = PacketSizing::new(1472)
        .unwrap()
        .packets(&heap(3, 100), 1)
        .unwrap()
        .next()
        .unwrap();
    assert_eq!(&buf[..len], &want[..]);
}

#[test]
fn a_caller_supplied_tcp_connection_carries_packets_back_to_back() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let reader = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut conn, &mut bytes).unwrap();
        bytes
    });
    let connection = std::net::TcpStream::connect(addr).unwrap();
    connection.set_nodelay(true).unwrap();
    let stream = Stream::new(TcpTransport::from_stream(connection), StreamConfig::default()).unwrap();
    let sizing = PacketSizing::new(1472).unwrap();
    let mut expected = Vec::new();
    for i in 0..3u8 {
        expected.extend(
            sizing
                .packets(&heap(i, 4000), u64::from(i) + 1)
                .unwrap()
                .flatten(),
        );
        stream.send_heap(heap(i, 4000)).unwrap();
    }
    drop(stream);
    assert_eq!(reader.join().unwrap(), expected);
}

/// SO_NO_CHECK from the kernel's asm-generic/socket.h.
const SO_NO_CHECK: libc::c_int = 11;

#[test]
fn gso_refused_at_send_falls_back_to_one_datagram_per_packet() {
    // The kernel refuses GSO (EINVAL) on sockets without UDP checksums, but
    // sends plain datagrams from them: a refusal the transport must survive.
    let own = UdpSocket::bind("127.0.0.1:0").unwrap();
    let one: libc::c_int = 1;
    // SAFETY: a valid socket and an option value of the size given.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&own),
            libc::SOL_SOCKET,
            SO_NO_CHECK,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    let sizing = PacketSizing::new(1472).unwrap();
    let heaps: Vec<Heap<'static>> = (0..3).map(|i| heap(i, 30_000)).collect();
    let expected: Vec<Vec<u8>> = heaps
        .iter()
        .enumerate()
        .flat_map(|(i, h)| sizing.packets(h, i as u64 + 1).unwrap().collect::<Vec<_>>())
        .collect();
    let (dest, rx) = receiver("127.0.0.1:0", expected.len());
    let transport = UdpTransport::from_socket(own, &[dest], true);
    assert!(transport.gso(), "GSO should be tried first");
    let config = StreamConfig {
        rate: 100e6,
        ..Default::default()
    };
    let stream = Stream::new(transport, config).unwrap();
    for h in heaps {
        stream
            .send_heap(h)
            .expect("the refused GSO send is retried without GSO");
    }
    let got = rx.join().unwrap();
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "datagrams differ after the fallback");
}

/// Foreign memory whose address is another buffer's: a transport that sent
/// it by address would send the wrong bytes.
#[derive(Debug)]
struct MisleadingMemory {
    bytes: Vec<u8>,
    elsewhere: Vec<u8>,
}

impl ForeignMemory for MisleadingMemory {
    fn len(&self) -> usize {
        self.bytes.len()
    }

    fn copy_to(&self, offset: usize, dst: &mut [u8]) {
        dst.copy_from_slice(&self.bytes[offset..offset + dst.len()]);
    }

    fn address(&self) -> usize {
        self.elsewhere.as_ptr() as usize
    }
}

/// A heap's packets as the packetizer lends them: headers written, payload
/// as pieces of the items' memory.
struct LentPieces<'p>(HeapPackets<'p>);

impl<'p> PacketSource<'p> for LentPieces<'p> {
    fn next_packet(&mut self) -> Option<PacketSpec> {
        Some(PacketSpec {
            len: self.0.next_packet_len()?,
            substream: 0,
        })
    }

    fn write(&mut self, buf: &mut [u8]) {
        self.0.write_next(buf).unwrap();
    }

    fn write_pieces(&mut self, buf: &mut [u8]) -> PacketPieces<'p> {
        self.0.next_packet_parts(buf).unwrap().expect("described")
    }
}

#[test]
fn lent_payload_goes_by_reference_and_foreign_memory_is_copied() {
    let big: Vec<u8> = (0..30_000u32).map(|i| (i * 7) as u8).collect();
    let lent: Vec<u8> = (0..3_000u32).map(|i| (i * 11) as u8).collect();
    let foreign = Arc::new(MisleadingMemory {
        bytes: lent.clone(),
        elsewhere: vec![0xEE; lent.len()],
    });
    let mut heap = Heap::new(Flavour::SPEAD_64_48);
    heap.add(Item::new(0x1000, vec![1u8; 5])).unwrap();
    heap.add(Item::new(0x1001, foreign as Arc<dyn ForeignMemory>))
        .unwrap();
    heap.add(Item::new(0x1002, big.clone())).unwrap();
    heap.add(Item::new(0x1003, vec![3u8; 3])).unwrap();
    let mut owned = Heap::new(Flavour::SPEAD_64_48);
    owned.add(Item::new(0x1000, vec![1u8; 5])).unwrap();
    owned.add(Item::new(0x1001, lent)).unwrap();
    owned.add(Item::new(0x1002, big)).unwrap();
    owned.add(Item::new(0x1003, vec![3u8; 3])).unwrap();
    let sizing = PacketSizing::new(1472).unwrap();
    let expected: Vec<Vec<u8>> = sizing.packets(&owned, 7).unwrap().collect();
    for gso in [true, false] {
        let (addr, rx) = receiver("127.0.0.1:0", expected.len());
        let mut config = UdpConfig::new(vec![addr]);
        config.gso = gso;
        let mut transport = UdpTransport::new(&config).unwrap();
        transport.prepare(1472).unwrap();
        let mut source = LentPieces(sizing.packets(&heap, 7).unwrap());
        let mut sent = 0;
        while sent < expected.len() {
            sent += transport.send(&mut source).unwrap();
        }
        let got = rx.join().unwrap();
        assert_eq!(got.len(), expected.len(), "GSO {gso}: datagrams");
        assert!(got == expected, "GSO {gso}: datagrams differ");
        // The Vec items' bytes went from their own memory; the foreign
        // item's were copied out.
        assert_eq!(transport.bytes_by_reference(), 30_008, "GSO {gso}");
    }
}
