//! Faults on the veth harness (feature `sink`; root needed,
//! SPEAD_SKIP_PRIVILEGED=1 skips): the link goes down and comes back, the
//! destination's namespace and with it the link disappear, the destination
//! loses its address. Heaps fail with errors that say what happened, never
//! hang, and the stream goes on when the link is back; what the sink counts
//! is exactly what the stream says it sent.
#![cfg(feature = "sink")]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::harness::{settle, Harness};
use common::netns::{privileged, run_ip as ip};
use common::wait_for;
use spead_xdp::protocol::{Flavour, Heap, Item};
use spead_xdp::stream::{SendError, Stream, StreamConfig};
use spead_xdp::transport::{TransportError, UdpConfig, UdpTransport, XdpConfig, XdpTransport};

/// Heaps of 100,000 bytes: 70 packets at MTU 1500.
const HEAP_BYTES: usize = 100_000;
const PACKETS_PER_HEAP: u64 = 70;

fn heap(seed: u8) -> Heap<'static> {
    common::harness::heap(seed, HEAP_BYTES)
}

fn xdp_stream(harness: &Harness) -> Stream {
    let config = XdpConfig::new(harness.get("HOST_IF"), vec![harness.0.peer(7148)]);
    Stream::new(XdpTransport::new(&config).unwrap(), StreamConfig::default()).unwrap()
}

/// Bound to the harness's interface, so that no packet takes another route
/// while it is down.
fn udp_stream(harness: &Harness) -> Stream {
    let config = UdpConfig {
        interface: Some(harness.get("HOST_IF").to_owned()),
        ..UdpConfig::new(vec![harness.peer(7148)])
    };
    Stream::new(UdpTransport::new(&config).unwrap(), StreamConfig::default()).unwrap()
}

/// How a heap is to fail: the transport's error it must carry, and the
/// words its message must hold.
struct Failing<'a> {
    error: fn(&TransportError, &str) -> bool,
    interface: &'a str,
    says: String,
}

/// Sends `count` heaps one at a time; each must succeed (or, with
/// `failing`, fail as it says, within a second).
fn send(stream: &Stream, count: u8, failing: Option<&Failing<'_>>) {
    for i in 0..count {
        let started = Instant::now();
        let result = stream.send_heap(heap(i));
        match failing {
            None => assert!(result.is_ok(), "heap {i}: {result:?}"),
            Some(failing) => {
                let error = result.expect_err("the heap should fail");
                let SendError::Transport(transport) = &error else {
                    panic!("heap {i}: not the transport's error: {error}");
                };
                assert!(
                    (failing.error)(transport, failing.interface),
                    "heap {i}: {error:?}"
                );
                assert!(error.to_string().contains(&failing.says), "heap {i}: {error}");
                assert!(
                    started.elapsed() < Duration::from_secs(2),
                    "heap {i} took {:?}",
                    started.elapsed()
                );
            }
        }
    }
}

fn link_down(e: &TransportError, name: &str) -> bool {
    matches!(e, TransportError::LinkDown { interface } if interface == name)
}

fn no_carrier(e: &TransportError, name: &str) -> bool {
    matches!(e, TransportError::NoCarrier { interface } if interface == name)
}

fn gone(e: &TransportError, name: &str) -> bool {
    matches!(e, TransportError::InterfaceGone { interface } if interface == name)
}

/// Takes the link down (the host end, then the peer end, which leaves the
/// host end without a carrier) and back up, sending heaps in each state.
fn heaps_fail_while_the_link_is_down(tag: &str, subnet: u8, stream: fn(&Harness) -> Stream) {
    let harness = Harness::up(tag, subnet, 1500);
    let sink = harness.sink(false);
    let (host, peer, netns) = (
        harness.get("HOST_IF"),
        harness.get("PEER_IF"),
        harness.get("NETNS"),
    );
    let stream = stream(&harness);
    send(&stream, 3, None);
    ip(&["link", "set", host, "down"]);
    let down = Failing {
        error: link_down,
        interface: host,
        says: format!("interface {host} is down"),
    };
    send(&stream, 3, Some(&down));
    ip(&["link", "set", host, "up"]);
    wait_until_running(host);
    send(&stream, 3, None);
    ip(&["-n", netns, "link", "set", peer, "down"]);
    let no_carrier = Failing {
        error: no_carrier,
        interface: host,
        says: format!("interface {host} is up but has no carrier"),
    };
    send(&stream, 2, Some(&no_carrier));
    ip(&["-n", netns, "link", "set", peer, "up"]);
    wait_until_running(host);
    send(&stream, 3, None);
    let stats = stream.stats();
    assert_eq!((stats.heaps, stats.errors), (9, 5), "{stats:?}");
    assert_eq!(stats.packets(), 9 * PACKETS_PER_HEAP, "{stats:?}");
    let seen = settle(&sink, stats.packets());
    assert_eq!(
        (seen.packets, seen.heaps, seen.malformed),
        (stats.packets(), 9, 0),
        "{seen:?}"
    );
}

/// Waits until the kernel reports `interface` running.
fn wait_until_running(interface: &str) {
    wait_for(&format!("{interface} coming back up"), || {
        std::fs::read_to_string(format!("/sys/class/net/{interface}/operstate"))
            .is_ok_and(|s| s.trim() == "up")
    });
}

#[test]
fn af_xdp_heaps_fail_while_the_link_is_down_and_go_again_after() {
    if privileged("af_xdp_heaps_fail_while_the_link_is_down_and_go_again_after") {
        heaps_fail_while_the_link_is_down("fa", 221, xdp_stream);
    }
}

#[test]
fn udp_heaps_fail_while_the_link_is_down_and_go_again_after() {
    if privileged("udp_heaps_fail_while_the_link_is_down_and_go_again_after") {
        heaps_fail_while_the_link_is_down("fb", 222, udp_stream);
    }
}

/// Deletes the destination's namespace mid-stream, and with it the veth
/// pair: heaps fail saying the interface is gone, nothing hangs, and the
/// stream is dropped at once.
fn the_destination_disappears(tag: &str, subnet: u8, stream: fn(&Harness) -> Stream) {
    let harness = Harness::up(tag, subnet, 1500);
    let host = harness.get("HOST_IF");
    let stream = stream(&harness);
    send(&stream, 3, None);
    ip(&["netns", "del", harness.get("NETNS")]);
    // The kernel dismantles a namespace in the background.
    wait_for(&format!("{host} going with its peer's namespace"), || {
        !std::path::Path::new(&format!("/sys/class/net/{host}")).exists()
    });
    let gone = Failing {
        error: gone,
        interface: host,
        says: format!("interface {host} no longer exists"),
    };
    send(&stream, 3, Some(&gone));
    let stats = stream.stats();
    assert_eq!((stats.heaps, stats.errors), (3, 3), "{stats:?}");
    let dropped = Instant::now();
    drop(stream);
    assert!(
        dropped.elapsed() < Duration::from_secs(2),
        "drop took {:?}",
        dropped.elapsed()
    );
}

#[test]
fn af_xdp_heaps_fail_when_the_destination_and_link_disappear() {
    if privileged("af_xdp_heaps_fail_when_the_destination_and_link_disappear") {
        the_destination_disappears("fc", 223, xdp_stream);
    }
}

#[test]
fn udp_heaps_fail_when_the_destination_and_link_disappear() {
    if privileged("udp_heaps_fail_when_the_destination_and_link_disappear") {
        the_destination_disappears("fd", 224, udp_stream);
    }
}

/// The destination loses its address (the link stays up): datagrams are
/// fire and forget, so heaps still complete as sent, nothing waits, and
/// the frames still reach the wire, where the sink counts every one.
#[test]
fn heaps_go_on_when_the_destination_loses_its_address() {
    if !privileged("heaps_go_on_when_the_destination_loses_its_address") {
        return;
    }
    let harness = Harness::up("fe", 225, 1500);
    let sink = harness.sink(false);
    let (peer, netns) = (harness.get("PEER_IF"), harness.get("NETNS"));
    let streams = [xdp_stream(&harness), udp_stream(&harness)];
    for stream in &streams {
        send(stream, 2, None);
    }
    ip(&["-n", netns, "addr", "flush", "dev", peer]);
    for stream in &streams {
        send(stream, 2, None);
    }
    let sent: u64 = streams.iter().map(|s| s.stats().packets()).sum();
    assert_eq!(sent, 8 * PACKETS_PER_HEAP);
    let seen = settle(&sink, sent);
    assert_eq!((seen.packets, seen.heaps), (sent, 8), "{seen:?}");
}

/// The kernel takes no descriptors from the TX ring while the link stays
/// up (the socket's queue is receive-only: the interface has two RX
/// queues but one TX queue): heaps fail after a bounded wait, saying the
/// ring stalled, and the stream neither hangs nor deadlocks; once the
/// queue transmits again, the ring drains and heaps go again.
#[test]
fn af_xdp_heaps_fail_after_a_bounded_wait_when_the_tx_ring_stays_full() {
    if !privileged("af_xdp_heaps_fail_after_a_bounded_wait_when_the_tx_ring_stays_full") {
        return;
    }
    let harness = Harness::with_queues("ff", 226, 1500, 2);
    let sink = harness.sink(false);
    let host = harness.get("HOST_IF");
    let ethtool = |tx: &str| {
        let out = Command::new("ethtool")
            .args(["-L", host, "tx", tx])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ethtool: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ethtool("1");
    let config = XdpConfig {
        queue: 1,
        ..XdpConfig::new(host, vec![harness.0.peer(7148)])
    };
    let stream = Stream::new(XdpTransport::new(&config).unwrap(), StreamConfig::default()).unwrap();
    let started = Instant::now();
    let failed = stream.send_heap(heap(7)).expect_err("no TX queue to send on");
    let waited = started.elapsed();
    assert!(
        matches!(
            &failed,
            SendError::Transport(TransportError::RingStalled {
                queue: 1,
                what: "the kernel took no descriptors from the TX ring",
                ..
            })
        ),
        "{failed:?}"
    );
    assert!(failed.to_string().contains("stalled for 1s"), "{failed}");
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    ethtool("2");
    send(&stream, 3, None);
    let stats = stream.stats();
    assert_eq!((stats.heaps, stats.errors), (3, 1), "{stats:?}");
    assert!(stats.workers[0].ring_stalls >= 1, "{stats:?}");
    drop(stream);
    // The failed heap's packets left the ring once the queue transmitted.
    let seen = settle(&sink, 4 * PACKETS_PER_HEAP);
    assert_eq!((seen.packets, seen.heaps), (4 * PACKETS_PER_HEAP, 4), "{seen:?}");
}

/// The link goes down while a paced heap is half sent: that heap fails
/// (its other packets are not sent), and the next one, with the link back,
/// goes whole.
#[test]
fn af_xdp_a_heap_in_flight_fails_when_the_link_goes_down_under_it() {
    if !privileged("af_xdp_a_heap_in_flight_fails_when_the_link_goes_down_under_it") {
        return;
    }
    let harness = Harness::up("fg", 227, 1500);
    let sink = harness.sink(false);
    let host = harness.get("HOST_IF");
    let config = XdpConfig::new(host, vec![harness.0.peer(7148)]);
    // 4 MiB at 100 Mb/s: about 0.34 s on the wire.
    let stream_config = StreamConfig {
        rate: 100e6 / 8.0,
        ..Default::default()
    };
    let stream = Stream::new(XdpTransport::new(&config).unwrap(), stream_config).unwrap();
    let mut big = Heap::new(Flavour::SPEAD_64_48);
    big.add(Item::new(0x1800, vec![1u8; 4 << 20])).unwrap();
    let in_flight = stream.submit(big).unwrap();
    wait_for("the heap's first packets leaving", || {
        stream.stats().packets() > 0
    });
    ip(&["link", "set", host, "down"]);
    let error = in_flight.wait().expect_err("the link went down under it");
    assert!(
        matches!(&error, SendError::Transport(TransportError::LinkDown { interface }) if interface == host),
        "{error}"
    );
    let partial = stream.stats().packets();
    assert!(
        partial > 0 && partial < 2000,
        "{partial} of the heap's ~2860 packets went before the link did"
    );
    ip(&["link", "set", host, "up"]);
    wait_until_running(host);
    send(&stream, 1, None);
    let stats = stream.stats();
    assert_eq!((stats.heaps, stats.errors), (1, 1), "{stats:?}");
    let seen = settle(&sink, stats.packets());
    assert_eq!((seen.packets, seen.heaps), (stats.packets(), 1), "{seen:?}");
}
