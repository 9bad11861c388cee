//! Throughput on the veth harness, counted at the receiver by the XDP sink
//! (drop mode), all senders unpaced, in one run: our AF_XDP transport, our
//! UDP transport (both through spead-send), spead2_send.py from PyPI, and
//! the raw-ring ceiling (constant prebuilt frames pushed through the same
//! AF_XDP transport with no packetizing). Prints packets/s, Gb/s of UDP
//! payload, CPU seconds per GB sent, and the ratios ours/spead2 and
//! ours/ceiling, at 1472- and 8192-byte packets.
//!
//! Needs root and the `sink` feature:
//! `cargo bench --features sink --bench throughput`.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use spead_xdp::protocol::{Flavour, Heap, Item, Packetizer};
#[path = "../tests/common/mod.rs"]
mod common;

use spead_xdp::sink::{Sink, SinkConfig, SinkStats};
use spead_xdp::transport::{PacketMeta, Transport, XdpConfig, XdpTransport};

const HEAP_SIZE: u64 = 4 << 20;
const HEAPS: u64 = 200;

/// CPU seconds (user + system) used so far by this process's finished
/// children, or by this process itself.
fn cpu_seconds(who: libc::c_int) -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        libc::getrusage(who, usage.as_mut_ptr());
        usage.assume_init()
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sender {
    Xdp,
    Udp,
    Spead2,
    Ceiling,
}

impl Sender {
    fn name(self) -> &'static str {
        match self {
            Sender::Xdp => "spead-xdp AF_XDP",
            Sender::Udp => "spead-xdp UDP",
            Sender::Spead2 => "spead2_send.py",
            Sender::Ceiling => "raw AF_XDP ring",
        }
    }
}

struct Result {
    pps: f64,
    gbps: f64,
    cpu_per_gb: f64,
}

fn measure(stats: &SinkStats, cpu: f64) -> Result {
    let seconds = stats.span_seconds().max(1e-9);
    let bytes = stats.udp_payload_bytes() as f64;
    Result {
        pps: stats.packets as f64 / seconds,
        gbps: bytes * 8.0 / seconds / 1e9,
        cpu_per_gb: cpu / (bytes / 1e9),
    }
}

/// Runs spead-send or spead2_send.py, unpaced, and returns what the sink saw.
fn run_command(harness: &common::veth::VethHarness, sender: Sender, packet: usize) -> Result {
    let sink = attach(harness);
    let options = [
        "--heaps".to_owned(),
        HEAPS.to_string(),
        "--heap-size".into(),
        HEAP_SIZE.to_string(),
        "--packet".into(),
        packet.to_string(),
        "--dtype".into(),
        "u1".into(),
        "--addr-bits".into(),
        "48".into(),
    ];
    let mut command = match sender {
        Sender::Spead2 => {
            let python = common::python();
            let mut c = Command::new(&python);
            c.arg(python.with_file_name("spead2_send.py"));
            c
        }
        _ => {
            let mut c = Command::new(env!("CARGO_BIN_EXE_spead-send"));
            let transport = if sender == Sender::Xdp { "xdp" } else { "udp" };
            c.args([
                "--quiet",
                "--core",
                "1",
                "--transport",
                transport,
                "--interface",
                harness.get("HOST_IF"),
            ]);
            c
        }
    };
    let before = cpu_seconds(libc::RUSAGE_CHILDREN);
    let out = command
        .args(&options)
        .arg(harness.peer(7148).to_string())
        .output()
        .expect("start sender");
    assert!(
        out.status.success(),
        "{}: {}",
        sender.name(),
        String::from_utf8_lossy(&out.stderr)
    );
    let cpu = cpu_seconds(libc::RUSAGE_CHILDREN) - before;
    std::thread::sleep(Duration::from_millis(200));
    measure(&sink.stats().unwrap(), cpu)
}

fn attach(harness: &common::veth::VethHarness) -> Sink {
    let config = SinkConfig {
        netns: Some(harness.get("NETNS").to_owned()),
        ..SinkConfig::new(harness.get("PEER_IF"))
    };
    Sink::attach(&config).expect("attach the sink")
}

/// The ceiling: the same number of packets through the AF_XDP transport,
/// each slot written once with a prebuilt packet and then resent as is.
fn run_ceiling(harness: &common::veth::VethHarness, packet: usize) -> Result {
    let sink = attach(harness);
    let mut heap = Heap::new(Flavour::SPEAD_64_48);
    heap.add(Item::new(0x1800, vec![0u8; HEAP_SIZE as usize]))
        .unwrap();
    let prebuilt = Packetizer::new(packet)
        .unwrap()
        .packets(&heap, 1)
        .unwrap()
        .nth(1)
        .unwrap();
    let total = HEAPS * (HEAP_SIZE / (prebuilt.len() as u64 - 40));
    let mut transport =
        XdpTransport::new(&XdpConfig::new(harness.get("HOST_IF"), vec![harness.peer(7148)])).unwrap();
    transport.prepare(packet).unwrap();
    core_affinity::set_for_current(core_affinity::CoreId { id: 1 });
    let before = cpu_seconds(libc::RUSAGE_THREAD);
    let (mut sent, mut written) = (0u64, 0u64);
    while sent < total {
        let mut fill = |buf: &mut [u8]| -> Option<PacketMeta> {
            if sent >= total {
                return None;
            }
            // Slots are recycled: after the first 4096 packets every slot
            // already holds the packet.
            if written < 4096 {
                buf[..prebuilt.len()].copy_from_slice(&prebuilt);
                written += 1;
            }
            sent += 1;
            Some(PacketMeta::written(prebuilt.len(), 0))
        };
        transport.send(&mut fill).unwrap();
    }
    drop(transport);
    let cpu = cpu_seconds(libc::RUSAGE_THREAD) - before;
    std::thread::sleep(Duration::from_millis(200));
    measure(&sink.stats().unwrap(), cpu)
}

fn main() {
    if !Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"))
    {
        eprintln!("throughput benchmark: needs root (veth harness, AF_XDP, XDP sink); skipped");
        return;
    }
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let harness = common::veth::VethHarness::up("sxtput", 251, 9000, 1);
    println!(
        "throughput on the veth harness (MTU 9000), counted by the XDP sink; {HEAPS} heaps of 4 MiB, unpaced"
    );
    for packet in [1472usize, 8192] {
        println!();
        println!("{packet}-byte packets:");
        println!("| sender | packets/s | Gb/s | CPU s per GB |");
        println!("| --- | --- | --- | --- |");
        let mut results = HashMap::new();
        for sender in [Sender::Xdp, Sender::Udp, Sender::Spead2, Sender::Ceiling] {
            let r = match sender {
                Sender::Ceiling => run_ceiling(&harness, packet),
                _ => run_command(&harness, sender, packet),
            };
            println!(
                "| {} | {:.0} | {:.2} | {:.2} |",
                sender.name(),
                r.pps,
                r.gbps,
                r.cpu_per_gb
            );
            results.insert(sender.name(), r.pps);
        }
        let ratio = |a: Sender, b: Sender| results[a.name()] / results[b.name()];
        println!(
            "ratios (packets/s): AF_XDP/spead2 {:.2}, UDP/spead2 {:.2}, AF_XDP/ceiling {:.2}",
            ratio(Sender::Xdp, Sender::Spead2),
            ratio(Sender::Udp, Sender::Spead2),
            ratio(Sender::Xdp, Sender::Ceiling)
        );
    }
}
