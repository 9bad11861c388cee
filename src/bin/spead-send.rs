//! spead-send: generate and send SPEAD heaps, with spead2_send's options,
//! defaults (except --addr-bits, 48) and heap sequence, so the SPEAD bytes
//! on the wire are the same as spead2_send.py's.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use spead_xdp::pacing::ClockChoice;
use spead_xdp::protocol::{Descriptor, Flavour, NumpyDtype};
use spead_xdp::stream::{
    Completion, HeapRef, ItemGroup, MetricsServer, Selection, SendError, StatsHandle, Stream, StreamConfig,
    WorkerConfig,
};
use spead_xdp::transport::{
    self, HugePages, MulticastInterface, PcapConfig, PcapTransport, TcpTransport, TransportChoice, UdpConfig,
    UdpTransport, UmemArea, XdpConfig, XdpCounters, XdpMode, XdpTransport,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TransportKind {
    /// AF_XDP where the interface's driver offers AF_XDP zero-copy (and
    /// AF_XDP can be opened), else UDP; the choice is logged with its reason.
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
    /// Socket buffer size (with AF_XDP: bytes of UMEM for packet frames).
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
    /// Network interface: AF_XDP sends on it (default: the one the route
    /// to the first destination leaves by); the UDP transport binds to it
    /// (SO_BINDTODEVICE), so packets leave by it or not at all.
    #[arg(long, value_name = "IFACE", help_heading = "Transport options")]
    interface: Option<String>,
    /// UMEM pages for AF_XDP: huge pages when reserved (auto), required, or never.
    #[arg(long, value_enum, default_value_t = HugePagesArg::Auto, help_heading = "Transport options")]
    huge_pages: HugePagesArg,
    /// AF_XDP only, one worker: the heaps' payload lives in the UMEM and
    /// packets reference it instead of copying it, as an engine would
    /// allocate its buffers there (with a zero-copy driver nothing copies
    /// the payload at all).
    #[arg(long, help_heading = "Transport options")]
    zero_copy: bool,
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
    /// of up to this much busy CPU each time a thread would sleep. A poll
    /// shorter than a heap takes to send still sleeps on every heap.
    #[arg(
        long,
        value_name = "MICROSECONDS",
        default_value_t = 200,
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

fn resolve(endpoint: &str) -> Result<SocketAddr> {
    ensure!(
        endpoint.contains(':'),
        "destination {endpoint:?} must have the form <host>:<port>"
    );
    endpoint
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {endpoint:?}"))?
        .next()
        .with_context(|| format!("{endpoint:?} resolves to no address"))
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
fn single(args: &Args, what: &str) -> Result<WorkerConfig> {
    match worker_configs(args).as_slice() {
        [one] => Ok(*one),
        _ => bail!("{what} takes one worker; --workers must be 1"),
    }
}

/// The transport --transport and --tcp name, `auto` decided.
fn transport_kind(args: &Args, destinations: &[SocketAddr]) -> Result<TransportKind> {
    let kind = match (args.tcp, args.transport) {
        (true, TransportKind::Auto | TransportKind::Tcp) => TransportKind::Tcp,
        (true, other) => bail!("--tcp contradicts --transport {other:?}"),
        (false, TransportKind::Auto) => auto_transport(args, destinations)?,
        (false, kind) => kind,
    };
    if args.interface.is_some() && matches!(kind, TransportKind::Tcp | TransportKind::Pcap) {
        tracing::warn!("--interface applies to the AF_XDP and UDP transports only; ignored");
    }
    Ok(kind)
}

/// `--transport auto`: AF_XDP where the interface's driver sends from the
/// UMEM itself (zero-copy), the UDP transport (faster than copy-mode
/// AF_XDP) elsewhere; logged with the reason.
fn auto_transport(args: &Args, destinations: &[SocketAddr]) -> Result<TransportKind> {
    if let Some(name) = &args.interface {
        nix::net::if_::if_nametoindex(name.as_str()).with_context(|| format!("--interface {name}"))?;
    }
    let interface = ipv4_destinations(destinations, "AF_XDP").and_then(|v4| xdp_interface(args, &v4));
    let choice = match interface {
        Ok(interface) => TransportChoice::for_interface(&interface),
        Err(why) => TransportChoice::Udp {
            reason: format!("{why:#}"),
        },
    };
    match choice {
        TransportChoice::Xdp { reason } => {
            tracing::info!("--transport auto: AF_XDP, since {reason}");
            Ok(TransportKind::Xdp)
        }
        TransportChoice::Udp { reason } => {
            tracing::info!("--transport auto: UDP, since {reason}");
            Ok(TransportKind::Udp)
        }
    }
}

/// What --zero-copy adds to a stream: the payload every item shares,
/// allocated in its UMEM, and the counters that show it went by
/// reference.
struct ZeroCopy {
    payload: Bytes,
    counters: Arc<XdpCounters>,
}

/// The stream, and what --zero-copy adds to it.
fn open_stream(
    args: &Args,
    destinations: &[SocketAddr],
    config: StreamConfig,
) -> Result<(Stream, Option<ZeroCopy>)> {
    if args.zero_copy {
        ensure!(
            matches!(args.transport, TransportKind::Xdp | TransportKind::Auto),
            "--zero-copy needs the AF_XDP transport (--transport xdp)"
        );
        ensure!(
            args.workers == 1,
            "--zero-copy takes one worker (each AF_XDP socket has its own UMEM)"
        );
        return open_xdp_zero_copy(args, destinations, config)
            .map(|(stream, zero_copy)| (stream, Some(zero_copy)));
    }
    let stream = match transport_kind(args, destinations)? {
        // Chosen for zero-copy: in zero-copy mode only, else UDP.
        TransportKind::Xdp if args.transport == TransportKind::Auto => {
            open_xdp(args, destinations, config, XdpMode::ZeroCopy).or_else(|why| {
                tracing::info!("AF_XDP zero-copy not possible ({why:#}); using the UDP transport");
                open_udp(args, destinations, config)
            })
        }
        TransportKind::Xdp => open_xdp(args, destinations, config, XdpMode::Auto),
        TransportKind::Udp | TransportKind::Auto => open_udp(args, destinations, config),
        TransportKind::Tcp => open_tcp(args, destinations, config),
        TransportKind::Pcap => open_pcap(args, destinations, config),
    }?;
    Ok((stream, None))
}

/// A stream over kernel UDP sockets, one per worker.
fn open_udp(args: &Args, destinations: &[SocketAddr], config: StreamConfig) -> Result<Stream> {
    let mut udp = UdpConfig::new(destinations.to_vec());
    udp.interface = args.interface.clone();
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
        .context("opening the UDP transport")?;
    Ok(Stream::with_workers(transports, config, workers)?)
}

/// A stream over one TCP connection.
fn open_tcp(args: &Args, destinations: &[SocketAddr], config: StreamConfig) -> Result<Stream> {
    let [destination] = destinations else {
        bail!("only one destination is supported with TCP");
    };
    let bind = args.bind.map(|ip| SocketAddr::new(ip, 0));
    let buffer = args.buffer.unwrap_or(TcpTransport::DEFAULT_BUFFER_SIZE);
    let worker = single(args, "TCP")?;
    let transport = TcpTransport::connect(*destination, bind, buffer)?;
    Ok(Stream::with_worker(transport, config, worker)?)
}

/// A stream into a pcap file.
fn open_pcap(args: &Args, destinations: &[SocketAddr], config: StreamConfig) -> Result<Stream> {
    let path = args.pcap.clone().context("--transport pcap needs --pcap FILE")?;
    let mut pcap = PcapConfig::new(path, ipv4_destinations(destinations, "pcap")?);
    if let Some(IpAddr::V4(source)) = args.bind {
        pcap.source.set_ip(source);
    }
    if let Some(ttl) = args.ttl {
        pcap.ttl = ipv4_ttl(ttl)?;
    }
    let worker = single(args, "pcap")?;
    Ok(Stream::with_worker(
        PcapTransport::create(&pcap)?,
        config,
        worker,
    )?)
}

/// The destinations as IPv4 addresses, for transports that write IPv4 frames.
fn ipv4_destinations(destinations: &[SocketAddr], transport: &str) -> Result<Vec<SocketAddrV4>> {
    destinations
        .iter()
        .map(|d| match d {
            SocketAddr::V4(v4) => Ok(*v4),
            SocketAddr::V6(_) => Err(anyhow!("{transport} frames are IPv4; {d} is not")),
        })
        .collect()
}

fn ipv4_ttl(ttl: u32) -> Result<u8> {
    u8::try_from(ttl).map_err(|_| anyhow!("--ttl {ttl} does not fit IPv4's 8 bits"))
}

/// --interface, or the interface the route to the first destination
/// leaves by.
fn xdp_interface(args: &Args, destinations: &[SocketAddrV4]) -> Result<String> {
    match &args.interface {
        Some(name) => Ok(name.clone()),
        None => Ok(transport::interface_towards(*destinations[0].ip())?),
    }
}

/// The AF_XDP settings the options ask for.
fn xdp_config(args: &Args, destinations: &[SocketAddr], mode: XdpMode) -> Result<XdpConfig> {
    let v4 = ipv4_destinations(destinations, "AF_XDP")?;
    let mut xdp = XdpConfig::new(xdp_interface(args, &v4)?, v4);
    xdp.mode = mode;
    xdp.source = match args.bind {
        None => None,
        Some(IpAddr::V4(source)) => Some(source),
        Some(IpAddr::V6(source)) => bail!("--bind {source}: AF_XDP frames are IPv4"),
    };
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
        xdp.ttl = ipv4_ttl(ttl)?;
    }
    Ok(xdp)
}

/// A stream over AF_XDP in `mode`: one socket (TX queue) per worker.
fn open_xdp(args: &Args, destinations: &[SocketAddr], config: StreamConfig, mode: XdpMode) -> Result<Stream> {
    let xdp = xdp_config(args, destinations, mode)?;
    let workers = worker_configs(args);
    let transports = (0..workers.len() as u32)
        .map(|queue| XdpTransport::new(&XdpConfig { queue, ..xdp.clone() }))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("opening AF_XDP on {}", xdp.interface))?;
    Ok(Stream::with_workers(transports, config, workers)?)
}

/// A one-worker AF_XDP stream whose UMEM also holds the payload every item
/// shares: packets reference it rather than copy it.
fn open_xdp_zero_copy(
    args: &Args,
    destinations: &[SocketAddr],
    config: StreamConfig,
) -> Result<(Stream, ZeroCopy)> {
    let xdp = xdp_config(args, destinations, XdpMode::Auto)?;
    let payload_len = item_payload_len(args)?;
    let area = UmemArea::with_pages(xdp.buffer_size, payload_len, xdp.huge_pages)?;
    let payload = Bytes::from_owner(area.alloc(payload_len)?);
    let transport = XdpTransport::with_area(&xdp, area)
        .with_context(|| format!("opening AF_XDP on {}", xdp.interface))?;
    let counters = transport.counters();
    let stream = Stream::with_worker(transport, config, single(args, "--zero-copy")?)?;
    Ok((stream, ZeroCopy { payload, counters }))
}

fn stream_config(args: &Args) -> Result<StreamConfig> {
    let config = StreamConfig {
        max_packet_size: args.packet,
        rate: args.rate * 1e9 / 8.0,
        burst_size: args.burst,
        max_heaps: args.max_heaps,
        burst_rate_ratio: args.burst_rate_ratio,
    };
    config.validate()?;
    Ok(config)
}

/// Bytes of each item's value: --heap-size shared by --items of --dtype,
/// rounded down to whole elements.
fn item_payload_len(args: &Args) -> Result<usize> {
    let dtype = NumpyDtype::new(&args.dtype)?;
    ensure!(args.items > 0, "--items must be at least 1");
    Ok((args.heap_size / (args.items * dtype.itemsize()) * dtype.itemsize()) as usize)
}

/// spead2_send's items: --items of --dtype, filling --heap-size between
/// them (rounded down to whole elements), all sharing one zero buffer
/// (`payload`, in the UMEM with --zero-copy).
fn item_group(args: &Args, payload: Option<Bytes>) -> Result<ItemGroup> {
    let flavour = Flavour::new(args.addr_bits)?;
    let dtype = NumpyDtype::new(&args.dtype)?;
    ensure!(args.items > 0, "--items must be at least 1");
    let elements = args.heap_size / (args.items * dtype.itemsize());
    let heap_size = elements * args.items * dtype.itemsize();
    if heap_size != args.heap_size {
        tracing::warn!(
            "Heap size is not an exact multiple: using {heap_size} instead of {}",
            args.heap_size
        );
    }
    let mut group = ItemGroup::new(flavour);
    if let Some(every) = args.descriptors {
        group = group.with_descriptor_frequency(every);
    }
    // One zero buffer shared by every item of every heap: no copies.
    let zeros = payload.unwrap_or_else(|| Bytes::from(vec![0u8; (elements * dtype.itemsize()) as usize]));
    for i in 0..args.items {
        let descriptor = Descriptor::with_dtype(
            group.free_id(),
            format!("Test item {i}"),
            "A test item with arbitrary value",
            vec![elements],
            dtype.as_str(),
            false,
        )?;
        group.add(descriptor, Some(zeros.clone()))?;
    }
    Ok(group)
}

/// What reports on the stream while it runs: the metrics server and the
/// progress printer.
struct Reporters {
    _metrics: Option<MetricsServer>,
    progress: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl Reporters {
    fn start(args: &Args, stream: &Stream) -> Result<Self> {
        let metrics = args
            .metrics
            .map(|address| {
                let server = stream
                    .serve_metrics(address)
                    .with_context(|| format!("--metrics: cannot listen on {address}"))?;
                tracing::info!("metrics at http://{}/metrics", server.local_addr());
                anyhow::Ok(server)
            })
            .transpose()?;
        let progress = (!args.quiet).then(|| {
            let (stats, done) = (stream.stats_handle(), Arc::new(AtomicBool::new(false)));
            let thread = std::thread::spawn({
                let done = Arc::clone(&done);
                move || print_progress(&stats, &done)
            });
            (done, thread)
        });
        Ok(Reporters {
            _metrics: metrics,
            progress,
        })
    }

    fn stop(self) {
        if let Some((done, thread)) = self.progress {
            done.store(true, Ordering::Relaxed);
            let _ = thread.join();
        }
    }
}

/// A flag Ctrl-C raises: it stops new data heaps; what is queued is
/// flushed and counted, and the end heaps still go. A second Ctrl-C exits
/// at once.
fn interrupt_flag() -> Result<Arc<AtomicBool>> {
    let interrupted = Arc::new(AtomicBool::new(false));
    let raised = Arc::clone(&interrupted);
    ctrlc::set_handler(move || {
        if raised.swap(true, Ordering::SeqCst) {
            eprintln!("spead-send: interrupted again: exiting without waiting for queued heaps");
            std::process::exit(130);
        }
    })
    .context("cannot handle Ctrl-C")?;
    Ok(interrupted)
}

/// How sending went.
#[derive(Debug, Default)]
struct Outcome {
    /// Heaps submitted, data and end heaps.
    submitted: u64,
    /// Data heaps submitted.
    data_heaps: u64,
    bytes: u64,
    completed: u64,
    failed: u64,
    last_error: Option<SendError>,
    interrupted: bool,
    elapsed: Duration,
}

impl Outcome {
    /// Waits for the oldest `count` heaps and counts how they went: first
    /// for the newest of them (completions come in order, so the others
    /// are then done), so the thread sleeps at most once.
    fn settle_oldest(&mut self, in_flight: &mut VecDeque<Completion>, count: usize, spin: Duration) {
        let count = count.min(in_flight.len());
        if count == 0 {
            return;
        }
        let newest = in_flight.remove(count - 1).expect("count <= in flight");
        let result = newest.wait_spinning(spin);
        for completion in in_flight.drain(..count - 1) {
            self.settle(completion, Duration::ZERO);
        }
        self.count(result);
    }

    /// Waits for a heap and counts how it went.
    fn settle(&mut self, completion: Completion, spin: Duration) {
        self.count(completion.wait_spinning(spin));
    }

    /// Counts a heap's outcome.
    fn count(&mut self, result: Result<u64, SendError>) {
        match result {
            Ok(sent) => {
                self.bytes += sent;
                self.completed += 1;
            }
            Err(e) => {
                self.failed += 1;
                self.last_error = Some(e);
            }
        }
    }
}

/// Heaps to settle at a time once --max-heaps are in flight: half of them,
/// so the feeding thread is woken once per half window, not once a heap
/// (a wake-up between cores costs the worker a system call and, on a VM,
/// an interrupt; with small heaps they were most of a heap's fixed cost).
fn refill(max_heaps: usize) -> usize {
    (max_heaps / 2).max(1)
}

/// Sends --heaps data heaps (or until interrupted), then an end heap per
/// substream, with at most --max-heaps in flight.
fn send_heaps(
    args: &Args,
    stream: &Stream,
    mut group: ItemGroup,
    interrupted: &AtomicBool,
) -> Result<Outcome> {
    let substreams = stream.substreams() as u64;
    let spin = idle_poll(args);
    let start = Instant::now();
    let mut outcome = Outcome {
        data_heaps: args.heaps.unwrap_or(u64::MAX),
        ..Outcome::default()
    };
    let mut total = args.heaps.map_or(u64::MAX, |n| n + substreams);
    let mut in_flight: VecDeque<Completion> = VecDeque::new();
    let mut i = 0u64;
    while i < total {
        if i < outcome.data_heaps && interrupted.load(Ordering::Relaxed) {
            outcome.data_heaps = i;
            total = i + substreams;
        }
        if in_flight.len() >= args.max_heaps {
            outcome.settle_oldest(&mut in_flight, refill(args.max_heaps), spin);
        }
        let heap = if i >= outcome.data_heaps {
            group.get_end()
        } else {
            // Every substream gets the descriptors in its first heap.
            let descriptors = if i < substreams {
                Selection::All
            } else {
                Selection::Stale
            };
            group.get_heap(descriptors, Selection::All)?
        };
        let heap = HeapRef::new(heap).substream((i % substreams) as usize);
        in_flight.push_back(stream.submit(heap)?);
        i += 1;
    }
    while let Some(completion) = in_flight.pop_front() {
        outcome.settle(completion, spin);
    }
    outcome.submitted = i;
    outcome.elapsed = start.elapsed();
    outcome.interrupted = interrupted.load(Ordering::SeqCst);
    Ok(outcome)
}

/// spead2_send's closing line, and what an interruption left.
fn report(stream: &Stream, outcome: Outcome) {
    if let Some(error) = outcome.last_error {
        tracing::warn!(
            "{} errors, last one: {:#}",
            stream.stats().errors,
            anyhow::Error::from(error)
        );
    }
    let seconds = outcome.elapsed.as_secs_f64();
    println!(
        "Sent {} bytes in {seconds:.6}s, {:.6} Gb/s",
        outcome.bytes,
        outcome.bytes as f64 * 8.0 / seconds / 1e9
    );
    if outcome.interrupted {
        eprintln!(
            "spead-send: interrupted: {} heaps submitted ({} data heaps, then {} end heap(s)), \
             {} sent, {} failed, none left queued",
            outcome.submitted,
            outcome.data_heaps,
            stream.substreams(),
            outcome.completed,
            outcome.failed
        );
    }
}

/// Sends, and says whether it ran to the end (false: interrupted).
fn run(args: &Args) -> Result<bool> {
    let destinations = args
        .destination
        .iter()
        .map(|d| resolve(d))
        .collect::<Result<Vec<_>>>()?;
    let (stream, zero_copy) = open_stream(args, &destinations, stream_config(args)?)?;
    let group = item_group(args, zero_copy.as_ref().map(|z| z.payload.clone()))?;
    // Keep this thread (building heaps, waiting on completions) off the
    // pinned workers' cores where it can, so it does not preempt pacing.
    if let Some(core) = spare_core(args) {
        core_affinity::set_for_current(core);
    }
    let reporters = Reporters::start(args, &stream)?;
    let interrupted = interrupt_flag()?;
    let outcome = send_heaps(args, &stream, group, &interrupted)?;
    reporters.stop();
    let interrupted = outcome.interrupted;
    report(&stream, outcome);
    if let Some(ZeroCopy { counters, .. }) = zero_copy {
        println!(
            "Zero copy: {} of {} packets referenced their payload in the UMEM",
            counters.by_reference(),
            counters.packets()
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
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        // As a shell reports a process ended by SIGINT.
        Ok(false) => ExitCode::from(130),
        Err(error) => {
            eprintln!("spead-send: {error:#}");
            ExitCode::FAILURE
        }
    }
}
