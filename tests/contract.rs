//! The transport contract holds whatever a caller does: a packet source
//! that asks for more than a transport's buffers, names a destination that
//! does not exist, or hands back pieces that do not make the packet it
//! described gets an error, and nothing of the batch is sent; a worker
//! whose transport fails or panics completes its heaps with an error
//! rather than leaving `flush()` waiting. The AF_XDP tests need root (veth
//! harness; SPEAD_SKIP_PRIVILEGED=1 skips them).

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use common::netns::privileged;
use common::veth::VethHarness;
use spead_xdp::protocol::{Flavour, ForeignBytes, ForeignMemory, Heap, Item, ItemValue, Piece};
use spead_xdp::stream::{SendError, Stream, StreamConfig};
use spead_xdp::transport::{
    BadPacket, MemoryTransport, PacketPieces, PacketSource, PacketSpec, PcapConfig, PcapTransport, Transport,
    TransportError, UdpConfig, UdpTransport, UmemArea, XdpConfig, XdpTransport,
};

/// Packets of the lengths given, to substream 0 unless told otherwise,
/// each filled with its index.
struct Lying {
    lengths: Vec<usize>,
    substream: usize,
    next: usize,
}

impl Lying {
    fn new(lengths: Vec<usize>) -> Self {
        Lying {
            lengths,
            substream: 0,
            next: 0,
        }
    }
}

impl PacketSource<'_> for Lying {
    fn next_packet(&mut self) -> Option<PacketSpec> {
        Some(PacketSpec {
            len: *self.lengths.get(self.next)?,
            substream: self.substream,
        })
    }

    fn write(&mut self, buf: &mut [u8]) {
        buf.fill(self.next as u8);
        self.next += 1;
    }
}

fn bad_packet(result: Result<usize, TransportError>) -> BadPacket {
    match result {
        Err(TransportError::BadPacket(bad)) => bad,
        other => panic!("expected a bad-packet error, got {other:?}"),
    }
}

/// A loopback socket to send to, and its address.
fn loopback_receiver() -> (UdpSocket, SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let address = socket.local_addr().unwrap();
    (socket, address)
}

#[test]
fn udp_refuses_a_packet_longer_than_its_slot_and_sends_none_of_the_batch() {
    // The first program of issue 13: 63 packets of 1000 bytes, then one
    // claiming 4000 bytes of a 1000-byte slot.
    let (receiver, address) = loopback_receiver();
    let mut config = UdpConfig::new(vec![address]);
    config.gso = false;
    let mut transport = UdpTransport::new(&config).unwrap();
    transport.prepare(1000).unwrap();
    let mut lengths = vec![1000; 63];
    lengths.push(4000);
    let bad = bad_packet(transport.send(&mut Lying::new(lengths)));
    assert_eq!(bad, BadPacket::TooLong { len: 4000, max: 1000 });
    // Nothing of the failed batch left: the next datagram is the marker.
    assert_eq!(transport.send(&mut Lying::new(vec![7])).unwrap(), 1);
    let mut buf = [0u8; 2048];
    assert_eq!(receiver.recv(&mut buf).unwrap(), 7, "the marker came first");
}

#[test]
fn udp_refuses_an_unknown_substream_and_an_empty_packet() {
    let (_receiver, address) = loopback_receiver();
    let mut transport = UdpTransport::new(&UdpConfig::new(vec![address])).unwrap();
    transport.prepare(1472).unwrap();
    let mut source = Lying::new(vec![100]);
    source.substream = 1;
    assert_eq!(
        bad_packet(transport.send(&mut source)),
        BadPacket::NoSuchSubstream {
            index: 1,
            substreams: 1
        }
    );
    assert_eq!(
        bad_packet(transport.send(&mut Lying::new(vec![0]))),
        BadPacket::Empty
    );
}

#[test]
fn a_transport_not_yet_prepared_takes_no_packet() {
    let mut transport = MemoryTransport::new(1);
    assert_eq!(
        bad_packet(transport.send(&mut Lying::new(vec![8]))),
        BadPacket::TooLong { len: 8, max: 0 }
    );
}

#[test]
fn memory_and_pcap_transports_check_lengths_and_substreams() {
    let mut memory = MemoryTransport::new(2);
    memory.prepare(1472).unwrap();
    assert_eq!(
        bad_packet(memory.send(&mut Lying::new(vec![1473]))),
        BadPacket::TooLong { len: 1473, max: 1472 }
    );
    let path = std::env::temp_dir().join(format!("contract-{}.pcap", std::process::id()));
    let config = PcapConfig::new(&path, vec!["127.0.0.1:7148".parse().unwrap()]);
    let mut pcap = PcapTransport::create(&config).unwrap();
    pcap.prepare(1472).unwrap();
    let mut source = Lying::new(vec![100]);
    source.substream = 3;
    assert_eq!(
        bad_packet(pcap.send(&mut source)),
        BadPacket::NoSuchSubstream {
            index: 3,
            substreams: 1
        }
    );
    drop(pcap);
    let _ = std::fs::remove_file(path);
}

/// Fails every batch with a bad packet, or panics, as told.
struct Breaking {
    panic: bool,
}

impl Transport for Breaking {
    fn substreams(&self) -> usize {
        1
    }

    fn max_batch(&self) -> usize {
        16
    }

    fn prepare(&mut self, _max_packet_size: usize) -> Result<(), TransportError> {
        Ok(())
    }

    fn send(&mut self, packets: &mut dyn PacketSource<'_>) -> Result<usize, TransportError> {
        let spec = packets.next_packet().expect("a packet to send");
        assert!(!self.panic, "a transport that panics");
        Err(BadPacket::TooLong {
            len: spec.len,
            max: 0,
        }
        .into())
    }
}

fn small_heap() -> Heap<'static> {
    let mut heap = Heap::new(Flavour::SPEAD_64_48);
    heap.add(Item::new(0x1800, vec![1u8; 5000])).unwrap();
    heap
}

#[test]
fn a_transports_breach_fails_the_heap_and_the_worker_goes_on() {
    let stream = Stream::new(Breaking { panic: false }, StreamConfig::default()).unwrap();
    for _ in 0..3 {
        match stream.send_heap(small_heap()) {
            Err(SendError::Transport(TransportError::BadPacket(BadPacket::TooLong { max: 0, .. }))) => {}
            other => panic!("expected the transport's error, got {other:?}"),
        }
    }
    stream.flush();
    assert_eq!(stream.stats().errors, 3);
}

#[test]
fn a_panicking_worker_fails_its_heaps_instead_of_hanging_flush() {
    let stream = Stream::new(Breaking { panic: true }, StreamConfig::default()).unwrap();
    let first = stream.submit(small_heap()).unwrap();
    assert!(matches!(first.wait(), Err(SendError::Closed)));
    // Heaps submitted after the worker is gone fail too, and flush returns.
    let later = stream.submit(small_heap()).unwrap();
    assert!(matches!(later.wait(), Err(SendError::Closed)));
    stream.flush();
    assert_eq!(stream.stats().errors, 2);
}

/// Pieces as told: a header of `written` bytes, then slices of `payload`.
struct Pieces<'a> {
    len: usize,
    written: usize,
    payload: Vec<&'a [u8]>,
    sent: bool,
}

impl<'a> PacketSource<'a> for Pieces<'a> {
    fn next_packet(&mut self) -> Option<PacketSpec> {
        (!self.sent).then_some(PacketSpec {
            len: self.len,
            substream: 0,
        })
    }

    fn write(&mut self, buf: &mut [u8]) {
        let pieces = self.write_pieces(buf);
        assert_eq!(
            pieces.len(),
            buf.len(),
            "test sources describe their packets truly"
        );
    }

    fn write_pieces(&mut self, buf: &mut [u8]) -> PacketPieces<'a> {
        self.sent = true;
        buf[..self.written].fill(0x5A);
        let mut pieces = PacketPieces::new(self.written);
        for piece in &self.payload {
            pieces.push(&piece[..]).unwrap();
        }
        pieces
    }
}

/// A socket on the harness's peer end, inside its namespace.
fn peer_socket(harness: &VethHarness) -> UdpSocket {
    let socket = harness.peer_socket(7148);
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    socket
}

#[test]
fn af_xdp_refuses_lying_sources_and_copies_pieces_outside_its_umem() {
    if !privileged("af_xdp_refuses_lying_sources_and_copies_pieces_outside_its_umem") {
        return;
    }
    let harness = VethHarness::up(&format!("sxc{}", std::process::id() % 100_000), 215, 9000, 1);
    let receiver = peer_socket(&harness);
    let area = UmemArea::new(256 * 4096, 1 << 20).unwrap();
    let mut in_umem = area.alloc(8000).unwrap();
    in_umem.as_mut().fill(0xC3);
    let config = XdpConfig::new(harness.get("HOST_IF"), vec![harness.peer(7148)]);
    let mut transport = XdpTransport::with_area(&config, area).unwrap();
    transport.prepare(8192).unwrap();

    // The second program of issue 13: a packet of 8 x 4000 + 4100 bytes,
    // far more than the 8192 prepared.
    let far = vec![0u8; 8 * 4000 + 4100];
    let mut source = Pieces {
        len: far.len(),
        written: 100,
        payload: vec![&far[100..]],
        sent: false,
    };
    assert_eq!(
        bad_packet(transport.send(&mut source)),
        BadPacket::TooLong {
            len: 36100,
            max: 8192
        }
    );
    // Pieces that add up to more than the packet described.
    let ordinary = vec![0x3Cu8; 6000];
    let mut source = Pieces {
        len: 1000,
        written: 100,
        payload: vec![&ordinary[..]],
        sent: false,
    };
    assert_eq!(
        bad_packet(transport.send(&mut source)),
        BadPacket::LengthMismatch {
            described: 1000,
            written: 100,
            referenced: 6000
        }
    );

    // Pieces of ordinary memory are copied; pieces of the UMEM's user part
    // go by reference; both arrive as described.
    let counters = transport.counters();
    for (payload, by_reference) in [(&ordinary[..5000], 0), (&in_umem.as_ref()[..5000], 1)] {
        let mut source = Pieces {
            len: 5100,
            written: 100,
            payload: vec![&payload[..2000], &payload[2000..]],
            sent: false,
        };
        assert_eq!(transport.send(&mut source).unwrap(), 1);
        let mut buf = vec![0u8; 9000];
        let len = receiver.recv(&mut buf).unwrap();
        assert_eq!(len, 5100);
        assert!(buf[..100].iter().all(|b| *b == 0x5A));
        assert_eq!(&buf[100..len], payload);
        let referenced = counters.by_reference();
        assert_eq!(referenced, by_reference, "packets sent by reference so far");
    }
    drop(in_umem);
}

/// Copying AF_XDP (no user buffers in its UMEM) takes a batch the source
/// writes in one call into as many frames as are free.
#[test]
fn af_xdp_copying_refuses_lying_sources_and_sends_none_of_the_batch() {
    if !privileged("af_xdp_copying_refuses_lying_sources_and_sends_none_of_the_batch") {
        return;
    }
    let harness = VethHarness::up(&format!("sxw{}", std::process::id() % 100_000), 217, 9000, 1);
    let receiver = peer_socket(&harness);
    let mut config = XdpConfig::new(harness.get("HOST_IF"), vec![harness.peer(7148)]);
    // 16 frames of 3 chunks (8192-byte packets and their headers).
    config.buffer_size = 16 * 3 * 4096;
    let mut transport = XdpTransport::new(&config).unwrap();
    // Not yet prepared (no frames): refused, not waited for; and nothing
    // to send is sent, not a stall.
    assert_eq!(
        bad_packet(transport.send(&mut Lying::new(vec![8]))),
        BadPacket::TooLong { len: 8, max: 0 }
    );
    assert_eq!(transport.send(&mut Lying::new(vec![])).unwrap(), 0);
    transport.prepare(8192).unwrap();
    // Written into its frame (which has room) but longer than prepared;
    // longer than its frame (stated, never written); no length; no such
    // destination. Each after good packets, none of which may go.
    for (lengths, substream, refused) in [
        (
            vec![1000, 1000, 9000],
            0,
            BadPacket::TooLong { len: 9000, max: 8192 },
        ),
        (
            vec![1000, 36100],
            0,
            BadPacket::TooLong {
                len: 36100,
                max: 8192,
            },
        ),
        (vec![1000, 0], 0, BadPacket::Empty),
        (
            vec![1000],
            1,
            BadPacket::NoSuchSubstream {
                index: 1,
                substreams: 1,
            },
        ),
    ] {
        let mut source = Lying::new(lengths);
        source.substream = substream;
        assert_eq!(bad_packet(transport.send(&mut source)), refused);
    }
    // The refused batches' frames are all free again: one batch fills all
    // 16, and it arrives first, whole and in order.
    let lengths: Vec<usize> = (0..16).map(|k| 100 + k).collect();
    assert_eq!(transport.send(&mut Lying::new(lengths.clone())).unwrap(), 16);
    let mut buf = vec![0u8; 9000];
    for (k, &len) in lengths.iter().enumerate() {
        let got = receiver
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("packet {k}: {e}"));
        assert_eq!(got, len, "packet {k}");
        assert!(buf[..got].iter().all(|b| *b == k as u8), "packet {k}'s bytes");
    }
}

#[test]
fn af_xdp_with_few_frames_sends_every_packet_in_batches_that_wait_for_frames() {
    if !privileged("af_xdp_with_few_frames_sends_every_packet_in_batches_that_wait_for_frames") {
        return;
    }
    // 16 frames against batches of up to 256 packets: batches end when the
    // frames run out, and the next waits for completions.
    let harness = VethHarness::up(&format!("sxd{}", std::process::id() % 100_000), 216, 1500, 1);
    let receiver = peer_socket(&harness);
    let mut config = XdpConfig::new(harness.get("HOST_IF"), vec![harness.peer(7148)]);
    config.buffer_size = 16 * 4096;
    let stream = Stream::new(XdpTransport::new(&config).unwrap(), StreamConfig::default()).unwrap();
    let mut heap = Heap::new(Flavour::SPEAD_64_48);
    heap.add(Item::new(0x1800, vec![9u8; 40_000])).unwrap();
    let heap = std::sync::Arc::new(heap);
    let completions: Vec<_> = (0..4).map(|_| stream.submit(heap.clone()).unwrap()).collect();
    for completion in completions {
        completion.wait().unwrap();
    }
    let packets = stream.stats().packets();
    assert_eq!(packets, 4 * 28, "packets the stream sent");
    let mut buf = vec![0u8; 2048];
    let mut arrived = Vec::new();
    for k in 0..packets {
        let len = receiver
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("packet {k} of {packets}: {e}"));
        arrived.push(buf[..len].to_vec());
    }
    let sizing = spead_xdp::protocol::PacketSizing::new(1472).unwrap();
    let expected: Vec<Vec<u8>> = (1..=4)
        .flat_map(|cnt| sizing.packets(&heap, cnt).unwrap())
        .collect();
    assert!(arrived == expected, "the packets as sent, in order");
}

/// Foreign memory that is what it says: `len` bytes of `byte`.
#[derive(Debug)]
struct Filled {
    len: usize,
}

impl ForeignMemory for Filled {
    fn len(&self) -> usize {
        self.len
    }

    fn copy_to(&self, _offset: usize, dst: &mut [u8]) {
        dst.fill(0x77);
    }

    fn address(&self) -> usize {
        0
    }
}

/// One packet whose pieces state lengths that wrap around: a slice, then a
/// foreign piece of `usize::MAX` bytes, summing (mod 2^64) to one byte
/// less than the slice, the length described.
struct Wrapping<'a> {
    bytes: &'a [u8],
    foreign: &'a ForeignBytes,
    sent: bool,
}

impl<'a> PacketSource<'a> for Wrapping<'a> {
    fn next_packet(&mut self) -> Option<PacketSpec> {
        (!self.sent).then_some(PacketSpec {
            len: self.bytes.len() - 1,
            substream: 0,
        })
    }

    fn write(&mut self, _buf: &mut [u8]) {
        unreachable!("the UDP transport asks for pieces");
    }

    fn write_pieces(&mut self, _buf: &mut [u8]) -> PacketPieces<'a> {
        self.sent = true;
        let mut pieces = PacketPieces::new(0);
        pieces.push(self.bytes).unwrap();
        pieces
            .push(Piece::Foreign {
                memory: self.foreign,
                offset: 0,
                len: usize::MAX,
            })
            .unwrap();
        pieces
    }
}

#[test]
fn piece_lengths_that_wrap_around_are_a_bad_packet_not_a_panic() {
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    receiver
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut transport = UdpTransport::new(&UdpConfig::new(vec![receiver.local_addr().unwrap()])).unwrap();
    transport.prepare(1472).unwrap();
    let value = ItemValue::from(Arc::new(Filled { len: 100 }) as Arc<dyn ForeignMemory>);
    let ItemValue::Foreign(foreign) = &value else {
        panic!("foreign memory makes a foreign value");
    };
    let bytes = vec![1u8; 1000];
    let mut source = Wrapping {
        bytes: &bytes,
        foreign,
        sent: false,
    };
    assert_eq!(
        bad_packet(transport.send(&mut source)),
        BadPacket::LengthMismatch {
            described: 999,
            written: 0,
            referenced: usize::MAX,
        }
    );
    let mut buf = [0u8; 2048];
    assert!(receiver.recv(&mut buf).is_err(), "nothing of the batch is sent");
}
