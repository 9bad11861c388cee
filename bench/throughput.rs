//! Line rate on the veth harness, counted at the receiver by the XDP sink
//! (drop mode), all senders unpaced and pinned to core 1: our AF_XDP and
//! UDP transports (through spead-send), spead2_send.py from PyPI, the same
//! two transports with two workers on two cores (two AF_XDP TX queues),
//! and the ceiling of each of our transports (prebuilt packets pushed through the
//! same transport with no packetizing or stream). Heaps of 128 KiB and
//! 4 MiB, packets of 1472, 4096 and 8192 bytes, and small heaps (16 KiB of
//! 1472-byte packets, 64 KiB of 8192-byte ones). Every sender runs once per
//! round, in an order that rotates between rounds, so drift on this shared
//! machine hits all of them alike; the tables give medians (and the range
//! of packets/s), CPU seconds per GB, and the ratios ours/spead2 and
//! ours/ceiling. The runs are also written to `target/throughput.csv` for
//! `scripts/plot-throughput.py`.
//!
//! Needs root and the `sink` feature:
//! `cargo bench --features sink --bench throughput`
//! (`SPEAD_BENCH_ROUNDS`, default 3, sets the rounds;
//! `SPEAD_BENCH_ONLY=1472,8192` keeps the workloads with those packet sizes;
//! `SPEAD_BENCH_HEAP_KIB=16,64` those with those heap sizes;
//! `SPEAD_BENCH_BASELINE=PATH` adds the spead-send at PATH, say a build of
//! an earlier commit, as four more senders in the same rounds, with the
//! ratios of ours to it.)

use std::collections::HashMap;
use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

use spead_xdp::protocol::{Flavour, Heap, Item, PacketSizing};
#[path = "../tests/common/mod.rs"]
mod common;

use spead_xdp::sink::{Sink, SinkConfig, SinkStats};
use spead_xdp::transport::{
    PacketSource, PacketSpec, Transport, UdpConfig, UdpTransport, XdpConfig, XdpTransport,
};

/// Bytes of heap payload per run (so every run sends about the same).
const BYTES_PER_RUN: u64 = 400 << 20;
/// (heap size, packet size) workloads.
const WORKLOADS: [(u64, usize); 7] = [
    (16 << 10, 1472),
    (64 << 10, 8192),
    (128 << 10, 1472),
    (128 << 10, 8192),
    (4 << 20, 1472),
    (4 << 20, 4096),
    (4 << 20, 8192),
];

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

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Sender {
    Xdp,
    /// AF_XDP with the heaps' payload in the UMEM (`--zero-copy`).
    XdpZeroCopy,
    Udp,
    Spead2,
    XdpCeiling,
    UdpCeiling,
    /// Two workers on cores 0 and 1, one TX queue (AF_XDP) or socket each.
    XdpTwoQueues,
    UdpTwoWorkers,
    /// The same four through the baseline spead-send (SPEAD_BENCH_BASELINE).
    BaselineXdp,
    BaselineUdp,
    BaselineXdpTwoQueues,
    BaselineUdpTwoWorkers,
}

const SENDERS: [Sender; 8] = [
    Sender::Xdp,
    Sender::XdpZeroCopy,
    Sender::Udp,
    Sender::Spead2,
    Sender::XdpCeiling,
    Sender::UdpCeiling,
    Sender::XdpTwoQueues,
    Sender::UdpTwoWorkers,
];

impl Sender {
    fn name(self) -> &'static str {
        match self {
            Sender::Xdp => "spead-xdp AF_XDP",
            Sender::XdpZeroCopy => "spead-xdp AF_XDP, payload in the UMEM",
            Sender::Udp => "spead-xdp UDP",
            Sender::Spead2 => "spead2_send.py",
            Sender::XdpCeiling => "raw AF_XDP ring (ceiling)",
            Sender::UdpCeiling => "raw UDP sendmmsg/GSO (ceiling)",
            Sender::XdpTwoQueues => "spead-xdp AF_XDP, 2 queues, 2 cores",
            Sender::UdpTwoWorkers => "spead-xdp UDP, 2 workers, 2 cores",
            Sender::BaselineXdp => "baseline AF_XDP",
            Sender::BaselineUdp => "baseline UDP",
            Sender::BaselineXdpTwoQueues => "baseline AF_XDP, 2 queues, 2 cores",
            Sender::BaselineUdpTwoWorkers => "baseline UDP, 2 workers, 2 cores",
        }
    }

    /// This sender through the baseline spead-send.
    fn baseline(self) -> Option<Sender> {
        match self {
            Sender::Xdp => Some(Sender::BaselineXdp),
            Sender::Udp => Some(Sender::BaselineUdp),
            Sender::XdpTwoQueues => Some(Sender::BaselineXdpTwoQueues),
            Sender::UdpTwoWorkers => Some(Sender::BaselineUdpTwoWorkers),
            _ => None,
        }
    }
}

/// The baseline spead-send to compare with, if asked for.
fn baseline_binary() -> Option<String> {
    std::env::var("SPEAD_BENCH_BASELINE").ok()
}

/// The senders of every round: ours, spead2, the ceilings, and the
/// baseline's where there is one.
fn senders() -> Vec<Sender> {
    let mut all = SENDERS.to_vec();
    if baseline_binary().is_some() {
        all.extend(SENDERS.iter().filter_map(|s| s.baseline()));
    }
    all
}

/// The size of one workload.
#[derive(Clone, Copy)]
struct Workload {
    heap_size: u64,
    heaps: u64,
    packet: usize,
}

#[derive(Clone, Copy)]
struct Result {
    pps: f64,
    gbps: f64,
    cpu_per_gb: f64,
}

fn measure(stats: &SinkStats, cpu: f64) -> Result {
    assert_eq!(stats.malformed, 0, "the sink saw malformed packets: {stats:?}");
    let seconds = stats.span_seconds().max(1e-9);
    let bytes = stats.udp_payload_bytes() as f64;
    Result {
        pps: stats.packets as f64 / seconds,
        gbps: bytes * 8.0 / seconds / 1e9,
        cpu_per_gb: cpu / (bytes / 1e9),
    }
}

/// Runs spead-send or spead2_send.py, unpaced, and returns what the sink saw.
fn run_command(harness: &common::veth::VethHarness, sender: Sender, work: Workload) -> Result {
    let sink = attach(harness);
    let options = [
        "--heaps".to_owned(),
        work.heaps.to_string(),
        "--heap-size".into(),
        work.heap_size.to_string(),
        "--packet".into(),
        work.packet.to_string(),
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
            let is_baseline = SENDERS.iter().any(|s| s.baseline() == Some(sender));
            let binary = match baseline_binary() {
                Some(path) if is_baseline => path,
                _ => env!("CARGO_BIN_EXE_spead-send").to_owned(),
            };
            let mut c = Command::new(binary);
            let transport = match sender {
                Sender::Xdp
                | Sender::XdpZeroCopy
                | Sender::XdpTwoQueues
                | Sender::BaselineXdp
                | Sender::BaselineXdpTwoQueues => "xdp",
                _ => "udp",
            };
            let (workers, cores) = match sender {
                Sender::XdpTwoQueues
                | Sender::UdpTwoWorkers
                | Sender::BaselineXdpTwoQueues
                | Sender::BaselineUdpTwoWorkers => ("2", "0,1"),
                _ => ("1", "1"),
            };
            c.args([
                "--quiet",
                "--workers",
                workers,
                "--core",
                cores,
                "--transport",
                transport,
            ])
            .args(["--interface", harness.get("HOST_IF")]);
            if sender == Sender::XdpZeroCopy {
                c.arg("--zero-copy");
            }
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

/// The ceiling of `transport`: as many packets as the workload has, in
/// each heap's real sequence of lengths (so UDP's GSO messages end at each
/// heap's short last packet, as they do for real heaps), written from
/// prebuilt packets and then sent again as they are (no packetizing, no
/// stream, no pacing).
/// A heap's packets, replayed `total` times over in their real sequence
/// of lengths. The transports reuse a fixed set of slots (AF_XDP has 4096
/// frames, UDP fewer batch buffers): once each holds a full packet, only a
/// heap's last packet is written again (once a heap). A slot that held a
/// last packet is still a valid SPEAD packet when sent longer: its payload
/// length is shorter.
struct Replay<'a> {
    lengths: &'a [usize],
    middle: &'a [u8],
    last: &'a [u8],
    sent: u64,
    total: u64,
    written: u64,
}

impl PacketSource<'_> for Replay<'_> {
    fn next_packet(&mut self) -> Option<PacketSpec> {
        (self.sent < self.total).then(|| PacketSpec {
            len: self.lengths[(self.sent % self.lengths.len() as u64) as usize],
            substream: 0,
        })
    }

    fn write(&mut self, buf: &mut [u8]) {
        if buf.len() < self.middle.len() {
            buf.copy_from_slice(self.last);
        } else if self.written < 4096 {
            buf.copy_from_slice(self.middle);
            self.written += 1;
        }
        self.sent += 1;
    }
}

fn run_ceiling<T: Transport>(
    harness: &common::veth::VethHarness,
    mut transport: T,
    work: Workload,
) -> Result {
    let sink = attach(harness);
    let sizing = PacketSizing::new(work.packet).unwrap();
    let mut heap = Heap::new(Flavour::SPEAD_64_48);
    heap.add(Item::new(0x1800, vec![0u8; work.heap_size as usize]))
        .unwrap();
    let packets: Vec<Vec<u8>> = sizing.packets(&heap, 1).unwrap().collect();
    let lengths: Vec<usize> = packets.iter().map(Vec::len).collect();
    let per_heap = lengths.len() as u64;
    // A full packet from the middle of the heap, and the heap's last one.
    let (middle, last) = (&packets[1], packets.last().expect("a heap has packets"));
    let total = work.heaps * per_heap;
    transport.prepare(work.packet).unwrap();
    // On a thread of its own pinned to core 1, so the pinning is not
    // inherited by the senders started after it.
    let cpu = std::thread::scope(|scope| {
        scope
            .spawn(move || {
                core_affinity::set_for_current(core_affinity::CoreId { id: 1 });
                let before = cpu_seconds(libc::RUSAGE_THREAD);
                let mut replay = Replay {
                    lengths: &lengths,
                    middle,
                    last,
                    sent: 0,
                    total,
                    written: 0,
                };
                while replay.sent < total {
                    transport.send(&mut replay).unwrap();
                }
                drop(transport);
                cpu_seconds(libc::RUSAGE_THREAD) - before
            })
            .join()
            .unwrap()
    });
    std::thread::sleep(Duration::from_millis(200));
    measure(&sink.stats().unwrap(), cpu)
}

fn run(harness: &common::veth::VethHarness, sender: Sender, work: Workload) -> Result {
    let peer = vec![harness.peer(7148).into()];
    match sender {
        Sender::XdpCeiling => {
            let config = XdpConfig::new(harness.get("HOST_IF"), vec![harness.peer(7148)]);
            run_ceiling(harness, XdpTransport::new(&config).unwrap(), work)
        }
        Sender::UdpCeiling => run_ceiling(harness, UdpTransport::new(&UdpConfig::new(peer)).unwrap(), work),
        _ => run_command(harness, sender, work),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
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
    let rounds: usize = std::env::var("SPEAD_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3)
        .max(1);
    let harness = common::veth::VethHarness::up("sxtput", 251, 9000, 2);
    println!(
        "line rate on the veth harness (MTU 9000, 2 queues), counted by the XDP sink; unpaced, core 1 \
         (two-worker rows: cores 0 and 1); \
         {} MiB per run; medians of {rounds} alternating rounds",
        BYTES_PER_RUN >> 20
    );
    let senders = senders();
    let mut csv = String::from("heap_size,packet,sender,round,packets_per_s,gbps,cpu_s_per_gb\n");
    let only: Option<Vec<usize>> = std::env::var("SPEAD_BENCH_ONLY")
        .ok()
        .map(|v| v.split(',').filter_map(|p| p.trim().parse().ok()).collect());
    let only_heaps: Option<Vec<u64>> = std::env::var("SPEAD_BENCH_HEAP_KIB")
        .ok()
        .map(|v| v.split(',').filter_map(|h| h.trim().parse().ok()).collect());
    for (heap_size, packet) in WORKLOADS {
        if only.as_ref().is_some_and(|o| !o.contains(&packet))
            || only_heaps
                .as_ref()
                .is_some_and(|h| !h.contains(&(heap_size >> 10)))
        {
            continue;
        }
        let work = Workload {
            heap_size,
            heaps: BYTES_PER_RUN / heap_size,
            packet,
        };
        let mut runs: HashMap<Sender, Vec<Result>> = HashMap::new();
        for round in 0..rounds {
            for k in 0..senders.len() {
                let sender = senders[(round + k) % senders.len()];
                let r = run(&harness, sender, work);
                let _ = writeln!(
                    csv,
                    "{heap_size},{packet},\"{}\",{round},{:.0},{:.3},{:.3}",
                    sender.name(),
                    r.pps,
                    r.gbps,
                    r.cpu_per_gb
                );
                runs.entry(sender).or_default().push(r);
            }
        }
        let med = |s: Sender, f: fn(&Result) -> f64| median(runs[&s].iter().map(f).collect());
        println!();
        println!(
            "{} KiB heaps, {packet}-byte packets ({} heaps per run):",
            heap_size >> 10,
            work.heaps
        );
        println!("| sender | packets/s (median) | range | Gb/s | CPU s per GB |");
        println!("| --- | --- | --- | --- | --- |");
        for &sender in &senders {
            let pps: Vec<f64> = runs[&sender].iter().map(|r| r.pps).collect();
            let (lo, hi) = pps
                .iter()
                .fold((f64::MAX, 0.0f64), |(lo, hi), &p| (lo.min(p), hi.max(p)));
            println!(
                "| {} | {:.0} | {lo:.0}-{hi:.0} | {:.2} | {:.2} |",
                sender.name(),
                median(pps.clone()),
                med(sender, |r| r.gbps),
                med(sender, |r| r.cpu_per_gb)
            );
        }
        let ratio = |a: Sender, b: Sender| med(a, |r| r.pps) / med(b, |r| r.pps);
        println!(
            "ratios of median packets/s: AF_XDP/spead2 {:.2}, UDP/spead2 {:.2}, \
             AF_XDP/its ceiling {:.2}, UDP/its ceiling {:.2}; on 2 cores: AF_XDP/spead2 {:.2}, \
             UDP/spead2 {:.2}; payload in the UMEM/copied {:.2}",
            ratio(Sender::Xdp, Sender::Spead2),
            ratio(Sender::Udp, Sender::Spead2),
            ratio(Sender::Xdp, Sender::XdpCeiling),
            ratio(Sender::Udp, Sender::UdpCeiling),
            ratio(Sender::XdpTwoQueues, Sender::Spead2),
            ratio(Sender::UdpTwoWorkers, Sender::Spead2),
            ratio(Sender::XdpZeroCopy, Sender::Xdp)
        );
        if baseline_binary().is_some() {
            let cells: Vec<String> = SENDERS
                .iter()
                .filter_map(|&s| Some(format!("{} {:.2}", s.name(), ratio(s, s.baseline()?))))
                .collect();
            println!("ratios to the baseline: {}", cells.join(", "));
        }
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/throughput.csv");
    match std::fs::write(&path, csv) {
        Ok(()) => println!("\nruns written to {}", path.display()),
        Err(e) => eprintln!("cannot write {}: {e}", path.display()),
    }
}
