//! spead-send: generate and send SPEAD heaps, with spead2_send's options,
//! defaults (except --addr-bits, 48) and heap sequence, so the SPEAD bytes
//! on the wire are the same as spead2_send.py's.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use spead_xdp::pacing::ClockChoice;
use spead_xdp::protocol::{Descriptor, Flavour, NumpyDtype};
use spead_xdp::stream::{
    Completion, HeapRef, ItemGroup, Selection, StatsHandle, Stream, StreamConfig, WorkerConfig,
};
use spead_xdp::transport::{
    self, HugePages, MulticastInterface, PcapConfig, PcapTransport, TcpTransport, UdpConfig, UdpTransport,
    XdpConfig, XdpTransport,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TransportKind {
    /// AF_XDP where possible (root, a driver with AF_XDP, IPv4), else UDP.
    Auto,
    /// AF_XDP kernel bypass.
    Xdp,
    /// Kernel UDP sockets (sendmmsg, GSO).
    Udp,
    /// TCP, packets back to back.
    Tcp,
    /// A pcap file (Ethernet/IPv4/UDP framing).
    Pcap,
}

/// Generate and send SPEAD packets (options as spead2_send).
#[derive(Debug, Parser)]
#[command(name = "spead-send", version)]
struct Args {
    /// Destinations, one substream each.
    #[arg(value_name = "HOST:PORT", required = true)]
    destination: Vec<String>,
    /// Payload size for heap.
    #[arg(
        long,
        value_name = "BYTES",
        default_value_t = 4_194_304,
        help_heading = "Data options"
    )]
    heap_size: u64,
    /// Number of items per heap.
    #[arg(long, default_value_t = 1, help_heading = "Data options")]
    items: u64,
    /// Numpy data type.
    #[arg(long, default_value = "<c8", help_heading = "Data options")]
    dtype: String,
    /// Number of data heaps to send (default: until interrupted).
    #[arg(long, help_heading = "Data options")]
    heaps: Option<u64>,
    /// Log level.
    #[arg(
        long,
        value_name = "LEVEL",
        default_value = "INFO",
        help_heading = "Output options"
    )]
    log: tracing::Level,
    /// No live progress on stderr.
    #[arg(long, help_heading = "Output options")]
    quiet: bool,
    /// Serve the stream's statistics in Prometheus text format over HTTP
    /// at this address (GET /metrics) while sending.
    #[arg(long, value_name = "HOST:PORT", help_heading = "Output options")]
    metrics: Option<SocketAddr>,
    /// Heap address bits.
    #[arg(long, default_value_t = 48, help_heading = "Protocol and performance options")]
    addr_bits: u32,
    /// Maximum packet size to send.
    #[arg(
        long,
        default_value_t = 1472,
        help_heading = "Protocol and performance options"
    )]
    packet: usize,
    /// Burst size.
    #[arg(
        long,
        value_name = "BYTES",
        default_value_t = 65536,
        help_heading = "Protocol and performance options"
    )]
    burst: usize,
    /// Hard rate limit, relative to --rate.
    #[arg(
        long,
        value_name = "RATIO",
        default_value_t = 1.05,
        help_heading = "Protocol and performance options"
    )]
    burst_rate_ratio: f64,
    /// Maximum heaps in flight.
    #[arg(
        long,
        value_name = "HEAPS",
        default_value_t = 4,
        help_heading = "Protocol and performance options"
    )]
    max_heaps: usize,
    /// Transmission rate bound [no limit].
    #[arg(
        long,
        value_name = "Gb/s",
        default_value_t = 0.0,
        help_heading = "Protocol and performance options"
    )]
    rate: f64,
    /// TTL for multicast target.
    #[arg(long, help_heading = "Protocol and performance options")]
    ttl: Option<u32>,
    /// Interface address (the packets' source address; with AF_XDP, one of
    /// the interface's IPv4 addresses).
    #[arg(long, help_heading = "Protocol and performance options")]
    bind: Option<IpAddr>,
    /// Socket buffer size (with AF_XDP: the UMEM's size, in 4 KiB frames).
    #[arg(long, help_heading = "Protocol and performance options")]
    buffer: Option<usize>,
    /// Description issue frequency [only at start].
    #[arg(long, help_heading = "Protocol and performance options")]
    descriptors: Option<u64>,
    /// Use TCP instead of UDP.
    #[arg(long, help_heading = "Protocol and performance options")]
    tcp: bool,
    /// Transport.
    #[arg(long, value_enum, default_value_t = TransportKind::Auto, help_heading = "Transport options")]
    transport: TransportKind,
    /// Output file for --transport pcap.
    #[arg(long, value_name = "FILE", help_heading = "Transport options")]
    pcap: Option<PathBuf>,
    /// Network interface for AF_XDP.
    #[arg(long, value_name = "IFACE", help_heading = "Transport options")]
    interface: Option<String>,
    /// UMEM pages for AF_XDP: huge pages when reserved (auto), required, or never.
    #[arg(long, value_enum, default_value_t = HugePagesArg::Auto, help_heading = "Transport options")]
    huge_pages: HugePagesArg,
    /// Sending workers (threads), each with its own socket and an equal
    /// share of every heap's packets and of the rate.
    #[arg(long, default_value_t = 1, help_heading = "Pacing options")]
    workers: usize,
    /// Pin the workers to these cores (worker k to the k-th, round robin).
    #[arg(
        long,
        value_name = "CORE,...",
        value_delimiter = ',',
        help_heading = "Pacing options"
    )]
    core: Vec<usize>,
    /// Spin (instead of sleeping) for at least the last this-many
    /// microseconds of a pacing wait; more where this host's sleeps wake
    /// later (learned as it runs).
    #[arg(
        long,
        value_name = "MICROSECONDS",
        default_value_t = 100,
        help_heading = "Pacing options"
    )]
    spin_us: u64,
    /// Poll this long for work (workers) and completions (the feeding
    /// thread) before sleeping, when --core leaves the feeding thread a core
    /// of its own (else 0): saves wake-ups when heaps are small, at the cost
    /// of up to this much busy CPU each time a thread would sleep.
    #[arg(
        long,
        value_name = "MICROSECONDS",
        default_value_t = 20,
        help_heading = "Pacing options"
    )]
    poll_us: u64,
    /// Pacing clock: the invariant TSC where there is one, or CLOCK_MONOTONIC.
    #[arg(long, value_enum, default_value_t = ClockArg::Auto, help_heading = "Pacing options")]
    clock: ClockArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum HugePagesArg {
    /// Huge pages when reserved, normal pages otherwise.
    Auto,
    /// Huge pages, or fail saying how to reserve them.
    Require,
    /// Normal pages.
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ClockArg {
    /// The invariant TSC where the CPU has one.
    Auto,
    /// CLOCK_MONOTONIC.
    Monotonic,
}

fn resolve(endpoint: &str) -> Result<SocketAddr, String> {
    if !endpoint.contains(':') {
        return Err(format!(
            "destination {endpoint:?} must have the form <host>:<port>"
        ));
    }
    endpoint
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {endpoint:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{endpoint:?} resolves to no address"))
}

/// Prints the stream's figures every second until `done`.
fn print_progress(stats: &StatsHandle, done: &AtomicBool) {
    let mut last = stats.snapshot();
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        let now = stats.snapshot();
        let seconds = (now.elapsed - last.elapsed).as_secs_f64();
        if seconds < 1.0 {
            continue;
        }
        eprintln!(
            "{:8.1} s  {:8.3} Gb/s  {:10.0} packets/s  {} heaps  {} errors  {} queue full  {} ring stalls",
            now.elapsed.as_secs_f64(),
            (now.bytes() - last.bytes()) as f64 * 8.0 / seconds / 1e9,
            (now.packets() - last.packets()) as f64 / seconds,
            now.heaps,
            now.errors,
            now.queue_full,
            now.ring_stalls(),
        );
        last = now;
    }
}

/// Answers HTTP requests on `listener` with the stream's figures in
/// Prometheus text format until `done`, one connection at a time (scrapers
/// ask once every few seconds).
fn serve_metrics(listener: TcpListener, stats: &StatsHandle, done: &AtomicBool) {
    if let Err(e) = listener.set_nonblocking(true) {
        tracing::warn!("metrics server stopped: {e}");
        return;
    }
    while !done.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((connection, peer)) => {
                if let Err(e) = answer_scrape(connection, stats) {
                    tracing::debug!("metrics request from {peer}: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => tracing::debug!("metrics accept: {e}"),
        }
    }
}

/// Reads one request's head and writes the figures (or 404 for another path).
fn answer_scrape(mut connection: TcpStream, stats: &StatsHandle) -> std::io::Result<()> {
    connection.set_nonblocking(false)?;
    connection.set_read_timeout(Some(Duration::from_secs(1)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let n = connection.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let request = String::from_utf8_lossy(&head);
    let path = request.split_whitespace().nth(1).unwrap_or("");
    let (status, body) = if path == "/metrics" || path == "/" {
        ("200 OK", stats.snapshot().to_prometheus())
    } else {
        (
            "404 Not Found",
            format!("no {path}: the figures are at /metrics\n"),
        )
    };
    write!(
        connection,
        "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A core for the thread that feeds the stream, when the workers are
/// pinned and leave one free.
fn spare_core(args: &Args) -> Option<core_affinity::CoreId> {
    if args.core.is_empty() {
        return None;
    }
    core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .find(|c| !args.core.contains(&c.id))
}

/// How long threads poll (for work or completions) before sleeping:
/// --poll-us where the feeding thread has a core of its own; else not at
/// all, since polling would take time from a thread on the same core.
fn idle_poll(args: &Args) -> Duration {
    match spare_core(args) {
        Some(_) => Duration::from_micros(args.poll_us),
        None => Duration::ZERO,
    }
}

fn worker_configs(args: &Args) -> Vec<WorkerConfig> {
    (0..args.workers)
        .map(|k| WorkerConfig {
            core: (!args.core.is_empty()).then(|| args.core[k % args.core.len()]),
            idle_poll: idle_poll(args),
            spin_threshold: Duration::from_micros(args.spin_us),
            clock: match args.clock {
                ClockArg::Auto => ClockChoice::Auto,
                ClockArg::Monotonic => ClockChoice::Monotonic,
            },
        })
        .collect()
}

/// One worker: the transports that carry a single stream of bytes.
fn single(args: &Args, what: &str) -> Result<WorkerConfig, String> {
    match worker_configs(args).as_slice() {
        [one] => Ok(*one),
        _ => Err(format!("{what} takes one worker; --workers must be 1")),
    }
}

fn open_stream(args: &Args, destinations: &[SocketAddr], config: StreamConfig) -> Result<Stream, String> {
    let kind = match (args.tcp, args.transport) {
        (true, TransportKind::Auto | TransportKind::Tcp) => TransportKind::Tcp,
        (true, other) => return Err(format!("--tcp contradicts --transport {other:?}")),
        (false, kind) => kind,
    };
    if args.interface.is_some() && !matches!(kind, TransportKind::Xdp | TransportKind::Auto) {
        tracing::warn!("--interface applies to the AF_XDP transport only; ignored");
    }
    match kind {
        TransportKind::Auto => match open_xdp(args, destinations, config) {
            Ok(stream) => return Ok(stream),
            Err(why) => tracing::info!("AF_XDP not possible ({why}); using the UDP transport"),
        },
        TransportKind::Udp => {}
        TransportKind::Xdp => return open_xdp(args, destinations, config),
        TransportKind::Tcp => {
            let [destination] = destinations else {
                return Err("only one destination is supported with TCP".into());
            };
            let bind = args.bind.map(|ip| SocketAddr::new(ip, 0));
            let buffer = args.buffer.unwrap_or(TcpTransport::DEFAULT_BUFFER_SIZE);
            let worker = single(args, "TCP")?;
            let transport = TcpTransport::connect(*destination, bind, buffer).map_err(|e| e.to_string())?;
            return Stream::with_worker(transport, config, worker).map_err(|e| e.to_string());
        }
        TransportKind::Pcap => {
            let path = args.pcap.clone().ok_or("--transport pcap needs --pcap FILE")?;
            let mut pcap = PcapConfig::new(path, ipv4_destinations(destinations, "pcap")?);
            if let Some(IpAddr::V4(source)) = args.bind {
                pcap.source.set_ip(source);
            }
            if let Some(ttl) = args.ttl {
                pcap.ttl =
                    u8::try_from(ttl).map_err(|_| format!("--ttl {ttl} does not fit IPv4's 8 bits"))?;
            }
            let worker = single(args, "pcap")?;
            let transport = PcapTransport::create(&pcap).map_err(|e| e.to_string())?;
            return Stream::with_worker(transport, config, worker).map_err(|e| e.to_string());
        }
    }

    let mut udp = UdpConfig::new(destinations.to_vec());
    if let Some(buffer) = args.buffer {
        udp.buffer_size = buffer;
    }
    udp.ttl = args.ttl;
    if let Some(bind) = args.bind {
        udp.bind = Some(SocketAddr::new(bind, 0));
        if let IpAddr::V4(v4) = bind {
            if destinations.iter().any(|d| d.ip().is_multicast()) {
                udp.multicast_interface = Some(MulticastInterface::Address(v4));
            }
        }
    }
    let workers = worker_configs(args);
    let transports = (0..workers.len())
        .map(|_| UdpTransport::new(&udp))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    Stream::with_workers(transports, config, workers).map_err(|e| e.to_string())
}

/// The destinations as IPv4 addresses, for transports that write IPv4 frames.
fn ipv4_destinations(destinations: &[SocketAddr], transport: &str) -> Result<Vec<SocketAddrV4>, String> {
    destinations
        .iter()
        .map(|d| match d {
            SocketAddr::V4(v4) => Ok(*v4),
            SocketAddr::V6(_) => Err(format!("{transport} frames are IPv4; {d} is not")),
        })
        .collect()
}

/// A stream over AF_XDP: one socket (TX queue) per worker, on --interface or
/// the interface the route to the first destination leaves by.
fn open_xdp(args: &Args, destinations: &[SocketAddr], config: StreamConfig) -> Result<Stream, String> {
    let v4 = ipv4_destinations(destinations, "AF_XDP")?;
    let interface = match &args.interface {
        Some(name) => name.clone(),
        None => transport::interface_towards(*v4[0].ip()).map_err(|e| e.to_string())?,
    };
    let source = match args.bind {
        None => None,
        Some(IpAddr::V4(source)) => Some(source),
        Some(IpAddr::V6(source)) => return Err(format!("--bind {source}: AF_XDP frames are IPv4")),
    };
    let mut xdp = XdpConfig::new(interface, v4);
    xdp.source = source;
    // As spead2's --buffer sizes its ibverbs memory region.
    if let Some(buffer) = args.buffer {
        xdp.buffer_size = buffer;
    }
    xdp.huge_pages = match args.huge_pages {
        HugePagesArg::Auto => HugePages::Auto,
        HugePagesArg::Require => HugePages::Require,
        HugePagesArg::Never => HugePages::Never,
    };
    if let Some(ttl) = args.ttl {
        xdp.ttl = u8::try_from(ttl).map_err(|_| format!("--ttl {ttl} does not fit IPv4's 8 bits"))?;
    }
    let workers = worker_configs(args);
    let transports = (0..workers.len())
        .map(|queue| {
            // One TX queue per worker; the rest as above.
            let xdp = XdpConfig {
                queue: queue as u32,
                ..xdp.clone()
            };
            XdpTransport::new(&xdp).map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    Stream::with_workers(transports, config, workers).map_err(|e| e.to_string())
}

/// Sends, and says whether it ran to the end (false: interrupted).
fn run(args: Args) -> Result<bool, String> {
    let destinations = args
        .destination
        .iter()
        .map(|d| resolve(d))
        .collect::<Result<Vec<_>, _>>()?;
    let flavour = Flavour::new(args.addr_bits).map_err(|e| e.to_string())?;
    let dtype = NumpyDtype::new(&args.dtype).map_err(|e| e.to_string())?;
    if args.items == 0 {
        return Err("--items must be at least 1".into());
    }
    let elements = args.heap_size / (args.items * dtype.itemsize());
    let heap_size = elements * args.items * dtype.itemsize();
    if heap_size != args.heap_size {
        tracing::warn!(
            "Heap size is not an exact multiple: using {heap_size} instead of {}",
            args.heap_size
        );
    }
    let config = StreamConfig {
        max_packet_size: args.packet,
        rate: args.rate * 1e9 / 8.0,
        burst_size: args.burst,
        max_heaps: args.max_heaps,
        burst_rate_ratio: args.burst_rate_ratio,
    };
    config.validate().map_err(|e| e.to_string())?;
    let mut group = ItemGroup::new(flavour);
    if let Some(every) = args.descriptors {
        group = group.with_descriptor_frequency(every);
    }
    // One zero buffer shared by every item of every heap: no copies.
    let zeros = Bytes::from(vec![0u8; (elements * dtype.itemsize()) as usize]);
    for i in 0..args.items {
        let descriptor = Descriptor::with_dtype(
            group.free_id(),
            format!("Test item {i}"),
            "A test item with arbitrary value",
            vec![elements],
            dtype.as_str(),
            false,
        )
        .map_err(|e| e.to_string())?;
        group
            .add(descriptor, Some(zeros.clone()))
            .map_err(|e| e.to_string())?;
    }
    let stream = open_stream(&args, &destinations, config)?;
    // Keep this thread (building heaps, waiting on completions) off the
    // pinned workers' cores where it can, so it does not preempt pacing.
    if let Some(core) = spare_core(&args) {
        core_affinity::set_for_current(core);
    }
    let substreams = stream.substreams() as u64;

    let done = Arc::new(AtomicBool::new(false));
    let mut helpers = Vec::new();
    if let Some(address) = args.metrics {
        let listener =
            TcpListener::bind(address).map_err(|e| format!("--metrics: cannot listen on {address}: {e}"))?;
        let bound = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!("metrics at http://{bound}/metrics");
        let (stats, done) = (stream.stats_handle(), Arc::clone(&done));
        helpers.push(std::thread::spawn(move || serve_metrics(listener, &stats, &done)));
    }
    if !args.quiet {
        let (stats, done) = (stream.stats_handle(), Arc::clone(&done));
        helpers.push(std::thread::spawn(move || print_progress(&stats, &done)));
    }

    // Ctrl-C stops new data heaps; what is queued is flushed and counted,
    // and the end heaps still go. A second Ctrl-C exits at once.
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let interrupted = Arc::clone(&interrupted);
        ctrlc::set_handler(move || {
            if interrupted.swap(true, Ordering::SeqCst) {
                eprintln!("spead-send: interrupted again: exiting without waiting for queued heaps");
                std::process::exit(130);
            }
        })
        .map_err(|e| format!("cannot handle Ctrl-C: {e}"))?;
    }

    let start = Instant::now();
    let mut in_flight: VecDeque<Completion> = VecDeque::new();
    let (mut bytes, mut completed, mut failed) = (0u64, 0u64, 0u64);
    let mut last_error = None;
    let spin = idle_poll(&args);
    let mut settle = |completion: Completion| match completion.wait_spinning(spin) {
        Ok(sent) => {
            bytes += sent;
            completed += 1;
        }
        Err(e) => {
            failed += 1;
            last_error = Some(e.to_string());
        }
    };
    let mut data_heaps = args.heaps.unwrap_or(u64::MAX);
    let mut total = args.heaps.map_or(u64::MAX, |n| n + substreams);
    let mut i = 0u64;
    while i < total {
        if i < data_heaps && interrupted.load(Ordering::Relaxed) {
            data_heaps = i;
            total = i + substreams;
        }
        if in_flight.len() >= args.max_heaps {
            settle(in_flight.pop_front().expect("non-empty"));
        }
        let heap = if i >= data_heaps {
            group.get_end()
        } else {
            let descriptors = if i < substreams {
                Selection::All
            } else {
                Selection::Stale
            };
            group
                .get_heap(descriptors, Selection::All)
                .map_err(|e| e.to_string())?
        };
        let heap = HeapRef::new(heap).substream((i % substreams) as usize);
        in_flight.push_back(stream.submit(heap).map_err(|e| e.to_string())?);
        i += 1;
    }
    while let Some(completion) = in_flight.pop_front() {
        settle(completion);
    }
    let interrupted = interrupted.load(Ordering::SeqCst);
    let elapsed = start.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    for helper in helpers {
        let _ = helper.join();
    }
    if let Some(error) = last_error {
        tracing::warn!("{} errors, last one: {error}", stream.stats().errors);
    }
    println!(
        "Sent {bytes} bytes in {elapsed:.6}s, {:.6} Gb/s",
        bytes as f64 * 8.0 / elapsed / 1e9
    );
    if interrupted {
        eprintln!(
            "spead-send: interrupted: {i} heaps submitted ({data_heaps} data heaps, then {substreams} end heap(s)), \
             {completed} sent, {failed} failed, none left queued"
        );
    }
    Ok(!interrupted)
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_max_level(args.log)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        // As a shell reports a process ended by SIGINT.
        Ok(false) => ExitCode::from(130),
        Err(message) => {
            eprintln!("spead-send: {message}");
            ExitCode::FAILURE
        }
    }
}
