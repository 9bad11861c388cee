//! The veth harness of one test, with the XDP sink at its peer end
//! (feature `sink`): named after the test's tag and the process, so tests
//! run in parallel, and down on drop even when the test fails.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use spead_xdp::protocol::{Flavour, Heap, Item};
use spead_xdp::sink::{Sink, SinkConfig, SinkStats};

use super::veth::VethHarness;

/// A harness of this test's own (named after the tag and the process).
pub struct Harness(pub VethHarness);

impl Harness {
    pub fn up(tag: &str, subnet: u8, mtu: u32) -> Self {
        Self::with_queues(tag, subnet, mtu, 1)
    }

    pub fn with_queues(tag: &str, subnet: u8, mtu: u32, queues: u32) -> Self {
        let name = format!("sx{tag}{}", std::process::id() % 100_000);
        Harness(VethHarness::up(&name, subnet, mtu, queues))
    }

    pub fn get(&self, key: &str) -> &str {
        self.0.get(key)
    }

    pub fn peer(&self, port: u16) -> SocketAddr {
        SocketAddr::V4(self.0.peer(port))
    }

    pub fn sink(&self, pass: bool) -> Sink {
        let config = SinkConfig {
            netns: Some(self.get("NETNS").to_owned()),
            pass,
            ..SinkConfig::new(self.get("PEER_IF"))
        };
        Sink::attach(&config).expect("attach the sink")
    }
}

/// Waits (at most 5 s) until the sink has counted `packets` packets.
pub fn settle(sink: &Sink, packets: u64) -> SinkStats {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stats = sink.stats().unwrap();
        if stats.packets >= packets || Instant::now() > deadline {
            return stats;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A heap of a timestamp (`seed`) and `size` bytes of `seed`.
pub fn heap(seed: u8, size: usize) -> Heap<'static> {
    let mut heap = Heap::new(Flavour::SPEAD_64_48);
    heap.add(Item::immediate(0x1600, u64::from(seed))).unwrap();
    heap.add(Item::new(0x1800, vec![seed; size])).unwrap();
    heap
}
