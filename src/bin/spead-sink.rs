//! spead-sink: attaches the XDP sink (bpf/spead_sink.bpf.c) to an interface,
//! in a network namespace if asked, prints per-second and final figures
//! (packets/s, Gb/s, heaps, malformed), and detaches on exit or Ctrl-C.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use spead_xdp::sink::{Sink, SinkConfig, SinkStats};

/// Count SPEAD packets arriving on an interface with an XDP program.
#[derive(Debug, Parser)]
#[command(name = "spead-sink", version)]
struct Args {
    /// Interface to attach to (the veth harness's peer end).
    #[arg(long, short)]
    interface: String,
    /// Network namespace of the interface.
    #[arg(long)]
    netns: Option<String>,
    /// UDP port counted as SPEAD.
    #[arg(long, default_value_t = 7148)]
    port: u16,
    /// Pass counted packets on (to a socket or tcpdump) instead of dropping.
    #[arg(long)]
    pass: bool,
    /// Stop after this many seconds [until Ctrl-C].
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// Stop once packets have arrived and none came for this many seconds.
    #[arg(long, value_name = "SECONDS")]
    idle: Option<f64>,
    /// A gap longer than this starts a new burst (for the burst figures).
    #[arg(long, value_name = "MICROSECONDS", default_value_t = 10.0)]
    burst_gap_us: f64,
    /// Measure the rate from the first burst this long after the first packet.
    #[arg(long, value_name = "MILLISECONDS", default_value_t = 10.0)]
    settle_ms: f64,
    /// Final figures only.
    #[arg(long)]
    quiet: bool,
}

fn report(label: &str, stats: &SinkStats, seconds: f64) -> String {
    format!(
        "{label}: {} packets ({} SPEAD, {} malformed), {} bytes, {} heaps; {:.0} packets/s, {:.3} Gb/s ({:.3} Gb/s of UDP payload)",
        stats.packets,
        stats.spead_packets,
        stats.malformed,
        stats.bytes,
        stats.heaps,
        stats.packets as f64 / seconds.max(1e-9),
        stats.bytes as f64 * 8.0 / seconds.max(1e-9) / 1e9,
        stats.udp_payload_bytes() as f64 * 8.0 / seconds.max(1e-9) / 1e9,
    )
}

fn run(args: Args) -> anyhow::Result<()> {
    let config = SinkConfig {
        interface: args.interface.clone(),
        netns: args.netns.clone(),
        port: args.port,
        pass: args.pass,
        burst_gap: Duration::from_secs_f64(args.burst_gap_us / 1e6),
        settle: Duration::from_secs_f64(args.settle_ms / 1e3),
    };
    let sink = Sink::attach(&config)?;
    let stop = Arc::new(AtomicBool::new(false));
    let on_signal = Arc::clone(&stop);
    ctrlc::set_handler(move || on_signal.store(true, Ordering::Relaxed)).context("cannot handle Ctrl-C")?;
    println!(
        "attached to {}{}; counting UDP port {} ({})",
        args.interface,
        args.netns
            .as_ref()
            .map_or(String::new(), |n| format!(" in netns {n}")),
        args.port,
        if args.pass { "passing" } else { "dropping" }
    );
    let started = Instant::now();
    let (mut last, mut last_tick, mut last_change) = (SinkStats::default(), started, started);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        let now = Instant::now();
        let stats = sink.stats()?;
        if stats.packets != last.packets {
            last_change = now;
        }
        if now - last_tick >= Duration::from_secs(1) {
            if !args.quiet {
                let delta = SinkStats {
                    packets: stats.packets - last.packets,
                    spead_packets: stats.spead_packets - last.spead_packets,
                    malformed: stats.malformed - last.malformed,
                    bytes: stats.bytes - last.bytes,
                    heaps: stats.heaps - last.heaps,
                    timing: stats.timing,
                };
                let second = (now - started).as_secs_f64();
                eprintln!(
                    "{}",
                    report(
                        &format!("{second:6.1} s"),
                        &delta,
                        (now - last_tick).as_secs_f64()
                    )
                );
            }
            last = stats;
            last_tick = now;
        }
        let elapsed = (now - started).as_secs_f64();
        let quiet_for = (now - last_change).as_secs_f64();
        if args.duration.is_some_and(|d| elapsed >= d)
            || args.idle.is_some_and(|i| stats.packets > 0 && quiet_for >= i)
        {
            break;
        }
    }
    let stats = sink.stats()?;
    println!("{}", report("total", &stats, stats.span_seconds()));
    let t = &stats.timing;
    println!(
        "timing: rate {} Gb/s of UDP payload (fit over bursts), gaps mean {:.0} ns CV {:.3}, {} bursts, largest {} bytes",
        t.rate().map_or("-".into(), |r| format!("{:.6}", r * 8.0 / 1e9)),
        t.gap_mean_ns(),
        t.gap_cv(),
        t.bursts,
        t.burst_max
    );
    let hist: Vec<String> = t
        .gap_hist
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(b, n)| format!("{}-{} ns: {n}", 1u64 << b, (2u64 << b) - 1))
        .collect();
    println!("gaps: {}", hist.join(", "));
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("spead-sink: {error:#}");
            ExitCode::FAILURE
        }
    }
}
