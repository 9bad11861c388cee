//! Accounting under load (feature `sink`; root needed,
//! SPEAD_SKIP_PRIVILEGED=1 skips): ten million packets over AF_XDP on the
//! veth harness, unpaced, with a full queue of heaps all the way. Every
//! heap the stream accepts completes exactly once, as sent, and the XDP
//! sink counts exactly the packets and heaps the stream says it sent.
#![cfg(feature = "sink")]

mod common;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::harness::{settle, Harness};
use common::netns::privileged;
use spead_xdp::protocol::{Flavour, Heap, Item, PacketSizing};
use spead_xdp::stream::{Stream, StreamConfig};
use spead_xdp::transport::{XdpConfig, XdpTransport};

const PACKETS: u64 = 10_000_000;
const HEAP_BYTES: usize = 4 << 20;
const PACKET_SIZE: usize = 1472;

#[test]
fn ten_million_packets_every_heap_completes_once_and_the_sink_counts_each() {
    if !privileged("ten_million_packets_every_heap_completes_once_and_the_sink_counts_each") {
        return;
    }
    let harness = Harness::up("sk", 230, 1500);
    let sink = harness.sink(false);
    let config = XdpConfig::new(harness.get("HOST_IF"), vec![harness.0.peer(7148)]);
    let stream_config = StreamConfig {
        max_packet_size: PACKET_SIZE,
        max_heaps: 8,
        ..Default::default()
    };
    let stream = Stream::new(XdpTransport::new(&config).unwrap(), stream_config).unwrap();

    let payload = Bytes::from(vec![0x5a; HEAP_BYTES]);
    let mut heap = Heap::new(Flavour::SPEAD_64_48);
    heap.add(Item::immediate(0x1600, 0)).unwrap();
    heap.add(Item::new(0x1800, payload)).unwrap();
    let heap = Arc::new(heap);
    let per_heap = PacketSizing::new(PACKET_SIZE)
        .unwrap()
        .packets(&heap, 1)
        .unwrap()
        .remaining() as u64;
    let heaps = PACKETS.div_ceil(per_heap);

    let started = Instant::now();
    let (mut in_flight, mut sent_ok, mut bytes) = (VecDeque::new(), 0u64, 0u64);
    for _ in 0..heaps {
        if in_flight.len() == stream_config.max_heaps {
            let completion: spead_xdp::stream::Completion = in_flight.pop_front().unwrap();
            bytes += completion.wait().expect("every heap is sent");
            sent_ok += 1;
        }
        in_flight.push_back(stream.submit(Arc::clone(&heap)).expect("a queue slot is free"));
    }
    for completion in in_flight {
        bytes += completion.wait().expect("every heap is sent");
        sent_ok += 1;
    }
    let elapsed = started.elapsed();

    let stats = stream.stats();
    assert_eq!(sent_ok, heaps);
    assert_eq!(
        (stats.heaps, stats.errors, stats.queue_full),
        (heaps, 0, 0),
        "{stats:?}"
    );
    assert_eq!(stats.packets(), heaps * per_heap, "{stats:?}");
    assert_eq!(stats.bytes(), bytes, "{stats:?}");
    assert!(stats.packets() >= PACKETS);
    drop(stream);
    let seen = settle(&sink, heaps * per_heap);
    // Settled: nothing more comes.
    std::thread::sleep(Duration::from_millis(200));
    let seen_later = sink.stats().unwrap();
    assert_eq!(
        seen.packets, seen_later.packets,
        "packets after the stream was done"
    );
    assert_eq!(
        (seen.packets, seen.heaps, seen.malformed),
        (heaps * per_heap, heaps, 0),
        "{seen:?}"
    );
    assert_eq!(seen.udp_payload_bytes(), bytes, "{seen:?}");
    println!(
        "{} packets in {heaps} heaps in {elapsed:.2?} ({:.0} packets/s): all sent, all counted",
        stats.packets(),
        stats.packets() as f64 / elapsed.as_secs_f64()
    );
}
