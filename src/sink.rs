//! The XDP sink (feature `sink`): loads `bpf/spead_sink.bpf.c` through its
//! libbpf-rs skeleton, attaches it to an interface (inside a network
//! namespace if asked) with a BPF link, and reads its per-CPU counters.
//! The link is a file descriptor: the kernel detaches the program when the
//! sink is dropped or the process exits, however it exits. No bpffs pin is
//! needed, so it works under `ip netns exec` too.

use std::fs::File;
use std::mem::MaybeUninit;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags};
use nix::sched::{setns, CloneFlags};
use thiserror::Error;

#[allow(missing_docs, unsafe_code, clippy::all, clippy::pedantic)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/spead_sink.skel.rs"));
}
use skel::{SpeadSinkSkel, SpeadSinkSkelBuilder};

/// Where and how to attach the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkConfig {
    /// Interface to attach to.
    pub interface: String,
    /// Network namespace of the interface (a name under /run/netns).
    pub netns: Option<String>,
    /// UDP port counted as SPEAD.
    pub port: u16,
    /// Pass counted packets on (to a socket or tcpdump) instead of dropping.
    pub pass: bool,
    /// A gap between packets longer than this starts a new burst.
    pub burst_gap: std::time::Duration,
    /// The rate is measured from the first burst starting this long after
    /// the first packet (past a sender's start-up transient).
    pub settle: std::time::Duration,
}

impl SinkConfig {
    /// Counting UDP port 7148 on `interface`, dropping what it counts.
    pub fn new(interface: impl Into<String>) -> Self {
        SinkConfig {
            interface: interface.into(),
            netns: None,
            port: 7148,
            pass: false,
            burst_gap: std::time::Duration::from_micros(10),
            settle: std::time::Duration::from_millis(10),
        }
    }
}

/// Why the sink could not start or be read.
#[derive(Debug, Error)]
pub enum SinkError {
    /// The namespace could not be entered (or left).
    #[error("network namespace {name}")]
    Namespace {
        /// Namespace name.
        name: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// No such interface.
    #[error("interface {name}")]
    Interface {
        /// Interface name.
        name: String,
        /// The OS error.
        source: nix::Error,
    },
    /// A libbpf step failed.
    #[error("{what}")]
    Bpf {
        /// What was being done.
        what: &'static str,
        /// libbpf's error.
        source: libbpf_rs::Error,
    },
}

/// The sink's counters, summed over CPUs, and the arrival timing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// UDP packets to the SPEAD port.
    pub packets: u64,
    /// Their whole frame lengths, fragments included.
    pub bytes: u64,
    /// Of them, valid SPEAD packets.
    pub spead_packets: u64,
    /// Of them, not valid SPEAD.
    pub malformed: u64,
    /// Heaps whose payload fully arrived.
    pub heaps: u64,
    /// When and how the packets arrived.
    pub timing: ArrivalTiming,
}

/// Number of log2 buckets in the gap histogram.
pub const GAP_BUCKETS: usize = 32;

/// Arrival timing of the counted packets (kernel clock, ns).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArrivalTiming {
    /// Time of the first packet (0 if none).
    pub first_ns: u64,
    /// Time of the last packet.
    pub last_ns: u64,
    /// UDP payload (SPEAD) bytes of all packets.
    pub payload_bytes: u64,
    /// Inter-packet gaps seen.
    pub gaps: u64,
    /// Sum of the gaps (ns).
    pub gap_sum: u64,
    /// Sum of the squared gaps (ns^2).
    pub gap_sum_sq: u64,
    /// Bursts: runs of packets with gaps at most the burst gap.
    pub bursts: u64,
    /// UDP payload bytes of the current (last) burst.
    pub burst_bytes: u64,
    /// The largest burst, in UDP payload bytes.
    pub burst_max: u64,
    /// When the last burst began.
    pub burst_start_ns: u64,
    /// UDP payload bytes that arrived before the last burst began.
    pub bytes_before_burst: u64,
    /// When the rate anchor (the first burst after the settle time) began.
    pub anchor_ns: u64,
    /// UDP payload bytes that arrived before the anchor.
    pub bytes_before_anchor: u64,
    /// Least-squares sums over burst starts after the anchor (x: KiB before
    /// the burst, y: microseconds, both from the anchor): n, x, y, x^2, xy.
    pub fit: [u64; 5],
    /// Gaps by floor(log2(ns)).
    pub gap_hist: [u64; GAP_BUCKETS],
}

impl ArrivalTiming {
    fn from_bytes(bytes: &[u8]) -> Self {
        let field = |i: usize| u64::from_ne_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        let mut gap_hist = [0; GAP_BUCKETS];
        for (i, bucket) in gap_hist.iter_mut().enumerate() {
            *bucket = field(18 + i);
        }
        ArrivalTiming {
            first_ns: field(0),
            last_ns: field(1),
            payload_bytes: field(2),
            gaps: field(3),
            gap_sum: field(4),
            gap_sum_sq: field(5),
            bursts: field(6),
            burst_bytes: field(7),
            burst_max: field(8),
            burst_start_ns: field(9),
            bytes_before_burst: field(10),
            anchor_ns: field(11),
            bytes_before_anchor: field(12),
            fit: [field(13), field(14), field(15), field(16), field(17)],
            gap_hist,
        }
    }

    /// Seconds from the first packet to the last.
    pub fn span_seconds(&self) -> f64 {
        self.last_ns.saturating_sub(self.first_ns) as f64 / 1e9
    }

    /// Mean gap between packets (ns).
    pub fn gap_mean_ns(&self) -> f64 {
        self.gap_sum as f64 / self.gaps.max(1) as f64
    }

    /// Coefficient of variation of the gaps (standard deviation / mean).
    pub fn gap_cv(&self) -> f64 {
        let n = self.gaps.max(1) as f64;
        let mean = self.gap_sum as f64 / n;
        let variance = (self.gap_sum_sq as f64 / n - mean * mean).max(0.0);
        variance.sqrt() / mean.max(f64::MIN_POSITIVE)
    }

    /// The achieved rate in UDP payload bytes per second: the slope of a
    /// least-squares line through every burst's start (time against bytes
    /// sent before it), from the first burst after the settle time on. Each
    /// burst is due when the bytes before it are, so the line's slope is the
    /// rate; a few late bursts barely move it, and a sender's start-up
    /// transient is left out. `None` with fewer than three bursts.
    pub fn rate(&self) -> Option<f64> {
        let [n, x, y, xx, xy] = self.fit.map(|v| v as f64);
        if n < 3.0 {
            return None;
        }
        // Slope of y (us) on x (KiB).
        let slope = (n * xy - x * y) / (n * xx - x * x);
        (slope > 0.0).then(|| 1024.0 * 1e6 / slope)
    }
}

impl ArrivalTiming {
    /// The average rate over the whole stream, bytes per second: the UDP
    /// payload bytes that arrived before the last burst began, over the
    /// time from the first packet to that burst's start (so a burst's own
    /// back-to-back bytes neither inflate nor deflate it).
    pub fn average_rate(&self) -> Option<f64> {
        let span = self.burst_start_ns.checked_sub(self.first_ns)?;
        (span > 0).then(|| self.bytes_before_burst as f64 / (span as f64 / 1e9))
    }
}

impl SinkStats {
    /// UDP payload (SPEAD) bytes: frame bytes less the 42 bytes of
    /// Ethernet, IPv4 and UDP headers of each counted packet.
    pub fn udp_payload_bytes(&self) -> u64 {
        self.bytes.saturating_sub(42 * self.packets)
    }

    /// Seconds from the first packet to the last.
    pub fn span_seconds(&self) -> f64 {
        self.timing.span_seconds()
    }

    fn from_cpu(bytes: &[u8]) -> Self {
        let field = |i: usize| u64::from_ne_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        SinkStats {
            packets: field(0),
            bytes: field(1),
            spead_packets: field(2),
            malformed: field(3),
            heaps: field(4),
            timing: ArrivalTiming::default(),
        }
    }

    fn merge(self, cpu: SinkStats) -> Self {
        SinkStats {
            packets: self.packets + cpu.packets,
            bytes: self.bytes + cpu.bytes,
            spead_packets: self.spead_packets + cpu.spead_packets,
            malformed: self.malformed + cpu.malformed,
            heaps: self.heaps + cpu.heaps,
            timing: self.timing,
        }
    }
}

/// An attached sink; dropping it detaches the program.
pub struct Sink {
    skel: SpeadSinkSkel<'static>,
    _link: Link,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink").finish_non_exhaustive()
    }
}

/// Runs `body` with the calling thread in namespace `name`, then returns it
/// to the namespace it was in.
fn in_netns<T>(name: &str, body: impl FnOnce() -> T) -> Result<T, SinkError> {
    let fail = |source| SinkError::Namespace {
        name: name.to_owned(),
        source,
    };
    let home = File::open("/proc/thread-self/ns/net").map_err(fail)?;
    let target = File::open(format!("/run/netns/{name}")).map_err(fail)?;
    setns(&target, CloneFlags::CLONE_NEWNET).map_err(|e| fail(e.into()))?;
    let result = body();
    setns(&home, CloneFlags::CLONE_NEWNET).map_err(|e| fail(e.into()))?;
    Ok(result)
}

impl Sink {
    /// Loads the program and attaches it as `config` says.
    pub fn attach(config: &SinkConfig) -> Result<Self, SinkError> {
        let bpf = |what| move |source| SinkError::Bpf { what, source };
        // The skeleton borrows its object for as long as it lives; a sink
        // lives about as long as the process, so the object is leaked.
        let object = Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = SpeadSinkSkelBuilder::default()
            .open(object)
            .map_err(bpf("opening the sink program"))?;
        let rodata = open
            .maps
            .rodata_data
            .as_deref_mut()
            .expect("the sink's settings are in mapped rodata");
        rodata.spead_port = config.port;
        rodata.pass_packets = u8::from(config.pass);
        rodata.burst_gap_ns = config.burst_gap.as_nanos() as u64;
        rodata.settle_ns = config.settle.as_nanos() as u64;
        let skel = open.load().map_err(bpf("loading the sink program"))?;
        let attach = || -> Result<Link, SinkError> {
            let index = nix::net::if_::if_nametoindex(config.interface.as_str()).map_err(|source| {
                SinkError::Interface {
                    name: config.interface.clone(),
                    source,
                }
            })?;
            skel.progs
                .spead_sink
                .attach_xdp(index as i32)
                .map_err(bpf("attaching the sink to the interface"))
        };
        let link = match &config.netns {
            Some(name) => in_netns(name, attach)??,
            None => attach()?,
        };
        Ok(Sink { skel, _link: link })
    }

    /// The counters so far, summed over CPUs, and the arrival timing.
    pub fn stats(&self) -> Result<SinkStats, SinkError> {
        let read = |what| move |source| SinkError::Bpf { what, source };
        let key = 0u32.to_ne_bytes();
        let per_cpu = self
            .skel
            .maps
            .counters
            .lookup_percpu(&key, MapFlags::ANY)
            .map_err(read("reading the sink's counters"))?
            .unwrap_or_default();
        let timing = self
            .skel
            .maps
            .timing
            .lookup(&key, MapFlags::ANY)
            .map_err(read("reading the sink's timing"))?
            .map(|bytes| ArrivalTiming::from_bytes(&bytes))
            .unwrap_or_default();
        let counters = per_cpu
            .iter()
            .map(|cpu| SinkStats::from_cpu(cpu))
            .fold(SinkStats::default(), SinkStats::merge);
        Ok(SinkStats { timing, ..counters })
    }
}
