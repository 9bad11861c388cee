//! Sender statistics: counters per worker (packets, bytes, transport ring
//! stalls) and per stream (heaps sent, heaps failed, queue-full refusals),
//! updated once per batch or group, never per packet, and readable from
//! any thread; snapshots render as Prometheus text.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One worker's counters.
#[derive(Debug, Default)]
pub(super) struct WorkerCounters {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    pub ring_stalls: AtomicU64,
}

/// A stream's counters, shared with its workers and stats handles.
#[derive(Debug)]
pub(super) struct Counters {
    pub started: Instant,
    pub heaps: AtomicU64,
    pub errors: AtomicU64,
    pub queue_full: AtomicU64,
    pub workers: Vec<WorkerCounters>,
}

impl Counters {
    pub fn new(workers: usize) -> Self {
        Counters {
            started: Instant::now(),
            heaps: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            queue_full: AtomicU64::new(0),
            workers: (0..workers).map(|_| WorkerCounters::default()).collect(),
        }
    }
}

/// One worker's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Packets handed to the transport.
    pub packets: u64,
    /// Their bytes (SPEAD packets, or raw datagrams).
    pub bytes: u64,
    /// Times the transport had to wait for ring space or frames.
    pub ring_stalls: u64,
}

/// A stream's figures at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamStats {
    /// Heaps (and datagram lists) completed without error.
    pub heaps: u64,
    /// Heaps completed with an error.
    pub errors: u64,
    /// Submissions refused because the queue was full.
    pub queue_full: u64,
    /// Since the stream started.
    pub elapsed: Duration,
    /// Per worker.
    pub workers: Vec<WorkerStats>,
}

impl StreamStats {
    /// Packets of all workers.
    pub fn packets(&self) -> u64 {
        self.workers.iter().map(|w| w.packets).sum()
    }

    /// Bytes of all workers.
    pub fn bytes(&self) -> u64 {
        self.workers.iter().map(|w| w.bytes).sum()
    }

    /// Ring stalls of all workers.
    pub fn ring_stalls(&self) -> u64 {
        self.workers.iter().map(|w| w.ring_stalls).sum()
    }

    /// Achieved rate since the stream started, in bytes per second.
    pub fn rate(&self) -> f64 {
        self.bytes() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The figures in Prometheus text exposition format (version 0.0.4),
    /// per worker where they are counted per worker.
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, values: Vec<(String, String)>| {
            let _ = writeln!(out, "# HELP spead_send_{name} {help}");
            let _ = writeln!(out, "# TYPE spead_send_{name} {kind}");
            for (labels, value) in values {
                let _ = writeln!(out, "spead_send_{name}{labels} {value}");
            }
        };
        let per_worker = |f: fn(&WorkerStats) -> u64| {
            self.workers
                .iter()
                .enumerate()
                .map(|(i, w)| (format!("{{worker=\"{i}\"}}"), f(w).to_string()))
                .collect::<Vec<_>>()
        };
        metric(
            "packets_total",
            "counter",
            "Packets handed to the transport.",
            per_worker(|w| w.packets),
        );
        metric(
            "bytes_total",
            "counter",
            "Bytes of those packets.",
            per_worker(|w| w.bytes),
        );
        metric(
            "ring_stalls_total",
            "counter",
            "Waits for transport ring space or frames.",
            per_worker(|w| w.ring_stalls),
        );
        let one = |v: String| vec![(String::new(), v)];
        metric(
            "heaps_total",
            "counter",
            "Heaps completed without error.",
            one(self.heaps.to_string()),
        );
        metric(
            "errors_total",
            "counter",
            "Heaps completed with an error.",
            one(self.errors.to_string()),
        );
        metric(
            "queue_full_total",
            "counter",
            "Submissions refused because the queue was full.",
            one(self.queue_full.to_string()),
        );
        metric(
            "rate_bytes_per_second",
            "gauge",
            "Bytes per second since the stream started.",
            one(format!("{:.1}", self.rate())),
        );
        out
    }
}

/// Reads a stream's statistics from any thread (cheap to clone).
#[derive(Debug, Clone)]
pub struct StatsHandle(pub(super) Arc<Counters>);

impl StatsHandle {
    /// The figures now.
    pub fn snapshot(&self) -> StreamStats {
        let c = &self.0;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StreamStats {
            heaps: load(&c.heaps),
            errors: load(&c.errors),
            queue_full: load(&c.queue_full),
            elapsed: c.started.elapsed(),
            workers: c
                .workers
                .iter()
                .map(|w| WorkerStats {
                    packets: load(&w.packets),
                    bytes: load(&w.bytes),
                    ring_stalls: load(&w.ring_stalls),
                })
                .collect(),
        }
    }
}
