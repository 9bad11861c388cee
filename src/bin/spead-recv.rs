//! spead-recv: receive SPEAD heaps from UDP (unicast or multicast groups,
//! shared with other monitors) or pcap files, print them as spead2_recv
//! does, and report per-second and final figures: heaps complete and
//! incomplete, packets, bytes, malformed packets, gaps in heap cnts, and
//! what was dropped where (the kernel at the socket, the ring to this
//! printer). Each source is drained by a reader thread of the library's;
//! printing happens here and never stalls a reader.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use spead_xdp::protocol::{DataType, Descriptor, ReassemblerConfig, ReceivedHeap};
use spead_xdp::receive::{Event, Receiver, ReceiverConfig, ReceiverStats, Source, UdpOptions};

/// Receive SPEAD packets and show the heaps (options as spead2_recv).
#[derive(Debug, Parser)]
#[command(name = "spead-recv", version)]
struct Args {
    /// Sources: a pcap file, PORT, HOST:PORT, or GROUP:PORT (multicast).
    #[arg(value_name = "SOURCE", required = true)]
    source: Vec<String>,
    /// Show heap values.
    #[arg(long, help_heading = "Output options")]
    values: bool,
    /// Show descriptors.
    #[arg(long, help_heading = "Output options")]
    descriptors: bool,
    /// No per-second figures on stderr.
    #[arg(long, help_heading = "Output options")]
    quiet: bool,
    /// Stop receiving after this many heaps.
    #[arg(long, help_heading = "Input options")]
    max_heaps: Option<u64>,
    /// Treat all sources as a single stream.
    #[arg(long, help_heading = "Input options")]
    joint: bool,
    /// Local address to bind unicast sources to.
    #[arg(long, help_heading = "Input options")]
    bind: Option<IpAddr>,
    /// Interface address to join multicast groups on.
    #[arg(long, help_heading = "Input options")]
    interface: Option<Ipv4Addr>,
    /// Socket receive buffer size.
    #[arg(long, default_value_t = 8 << 20, help_heading = "Input options")]
    buffer: usize,
    /// Heaps under reassembly at once.
    #[arg(
        long,
        alias = "concurrent-heaps",
        default_value_t = 4,
        help_heading = "Input options"
    )]
    heaps: usize,
    /// Heaps the ring between the readers and the printer holds; when it
    /// is full, further heaps are dropped (and counted), never the socket
    /// left to overflow.
    #[arg(long, default_value_t = 64, help_heading = "Input options")]
    ring_heaps: usize,
    /// Also show heaps that arrived incomplete (marked so).
    #[arg(long, help_heading = "Output options")]
    incomplete: bool,
    /// Also write what is received to this pcap file (one stream only).
    #[arg(long, value_name = "FILE", help_heading = "Output options")]
    capture: Option<PathBuf>,
}

fn figures(stats: &ReceiverStats) -> String {
    format!(
        "heaps: {} complete, {} incomplete; packets: {}; bytes: {}; malformed: {}; duplicates: {}; cnt gaps: {}; \
         kernel drops: {}; ring drops: {}",
        stats.heaps_complete,
        stats.heaps_incomplete,
        stats.packets,
        stats.bytes,
        stats.malformed,
        stats.duplicates,
        stats.cnt_gaps,
        stats.kernel_drops,
        stats.ring_drops
    )
}

/// A descriptor as spead2_recv prints it.
fn describe(out: &mut String, d: &Descriptor) {
    let (format, dtype) = match &d.data_type {
        DataType::Format(f) => (
            format!(
                "{:?}",
                f.iter().map(|x| (char::from(x.code), x.bits)).collect::<Vec<_>>()
            ),
            "None".to_owned(),
        ),
        DataType::Numpy { dtype, fortran_order } => (
            "None".to_owned(),
            format!("{} (fortran_order {fortran_order})", dtype.as_str()),
        ),
    };
    let dims: Vec<String> = d
        .shape
        .iter()
        .map(|x| x.map_or("None".into(), |n| n.to_string()))
        .collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let _ = writeln!(
        out,
        "    Descriptor for {} ({:#x})\n      description: {}\n      format:      {format}\n      dtype:       {dtype}\n      shape:       {shape}",
        d.name, d.id, d.description
    );
}

/// A heap as spead2_recv prints it: its cnt, descriptors if asked for,
/// then its items (names, and values if asked for).
fn render(out: &mut String, name: &str, heap: &ReceivedHeap, receiver: &Receiver, args: &Args) {
    let state = if heap.is_complete() { "" } else { " (incomplete)" };
    let _ = writeln!(out, "Received heap {} on stream {name}{state}", heap.cnt());
    if args.descriptors {
        for d in heap.descriptors().unwrap_or_default() {
            describe(out, &d);
        }
    }
    for item in heap.items() {
        // Values are decoded only when shown: a large array costs.
        let _ = match (args.values, receiver.descriptor(item.id())) {
            (false, Some(d)) => writeln!(out, "{}", d.name),
            (false, None) => writeln!(out, "{:#x}", item.id()),
            (true, _) => match receiver.decode(&item) {
                Some((name, Some(value))) => writeln!(out, "{name} = {value}"),
                Some((name, None)) => writeln!(out, "{name} = {:02x?}", item.value()),
                None => writeln!(out, "{:#x} = {:02x?}", item.id(), item.value()),
            },
        };
    }
}

/// Prints a stream's heaps until it ends, --max-heaps, or Ctrl-C; each
/// heap's text goes out in one write. Says whether every source ran
/// without failing.
fn run_stream(name: &str, mut receiver: Receiver, args: &Args, stop: &AtomicBool) -> bool {
    let mut failed = false;
    let mut heaps = 0u64;
    let started = Instant::now();
    let mut last_report = started;
    let mut text = String::new();
    while !stop.load(Ordering::Relaxed) && args.max_heaps.is_none_or(|max| heaps < max) {
        let event = match receiver.next_event(Duration::from_millis(200)) {
            Ok(event) => event,
            Err(e) => {
                eprintln!("spead-recv: {name}: {:#}", anyhow::Error::from(e));
                failed = true;
                continue;
            }
        };
        if !args.quiet && last_report.elapsed() >= Duration::from_secs(1) {
            eprintln!(
                "{name}: {:.0} s: {}",
                started.elapsed().as_secs_f64(),
                figures(&receiver.stats())
            );
            last_report = Instant::now();
        }
        let heap = match event {
            Event::Heap(heap) => heap,
            Event::Timeout => continue,
            Event::End => break,
        };
        heaps += 1;
        text.clear();
        render(&mut text, name, &heap, &receiver, args);
        if std::io::stdout().write_all(text.as_bytes()).is_err() {
            break;
        }
    }
    // A closed stdout (`| head`) ends the output quietly.
    let _ = writeln!(
        std::io::stdout(),
        "Shutting down stream {name} after {heaps} heaps\n{}",
        figures(&receiver.stats())
    );
    !failed
}

fn open(args: &Args, specs: &[String]) -> Result<Receiver> {
    let options = UdpOptions {
        bind: args.bind,
        interface: args.interface,
        buffer: args.buffer,
    };
    let sources = specs
        .iter()
        .map(|s| Source::open(s, &options))
        .collect::<Result<Vec<_>, _>>()?;
    let config = ReceiverConfig {
        reassembly: ReassemblerConfig {
            max_heaps: args.heaps,
            ..Default::default()
        },
        ring_heaps: args.ring_heaps,
        deliver_incomplete: args.incomplete,
        capture: args.capture.clone(),
    };
    Receiver::new(sources, config).with_context(|| format!("receiving from {}", specs.join(", ")))
}

/// Runs every stream; says whether all ran without a source failing.
fn run(args: Args) -> Result<bool> {
    let stop = Arc::new(AtomicBool::new(false));
    let on_signal = Arc::clone(&stop);
    ctrlc::set_handler(move || on_signal.store(true, Ordering::Relaxed)).context("cannot handle Ctrl-C")?;
    let groups: Vec<Vec<String>> = if args.joint {
        vec![args.source.clone()]
    } else {
        args.source.iter().map(|s| vec![s.clone()]).collect()
    };
    if args.capture.is_some() && groups.len() > 1 {
        bail!("--capture takes one stream: use one source or --joint");
    }
    let receivers = groups
        .iter()
        .map(|g| open(&args, g).map(|r| (g[0].clone(), r)))
        .collect::<Result<Vec<_>>>()?;
    let all_well = std::thread::scope(|scope| {
        let streams: Vec<_> = receivers
            .into_iter()
            .map(|(name, receiver)| {
                let (args, stop) = (&args, &stop);
                scope.spawn(move || run_stream(&name, receiver, args, stop))
            })
            .collect();
        streams.into_iter().all(|s| s.join().unwrap_or(false))
    });
    Ok(all_well)
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("spead-recv: {error:#}");
            ExitCode::FAILURE
        }
    }
}
