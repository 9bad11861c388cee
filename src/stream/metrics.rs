//! A stream's figures over HTTP, in Prometheus text format, for scrapers
//! (Prometheus, katcp bridges, curl): one thread, one connection at a time
//! (scrapers ask once every few seconds), `/metrics` (or `/`) answered,
//! anything else 404.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::stats::StatsHandle;

/// How long a scraper may take over its whole request, and over taking
/// the answer: no client holds the server (or its shutdown) longer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest request head read.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// Serves a stream's figures ([`StreamStats::to_prometheus`]) at
/// `http://ADDRESS/metrics` until dropped.
///
/// [`StreamStats::to_prometheus`]: super::StreamStats::to_prometheus
#[derive(Debug)]
pub struct MetricsServer {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Listens on `address` (port 0: any free port) and serves `stats`
    /// from a thread of its own.
    pub fn start(address: impl ToSocketAddrs, stats: StatsHandle) -> io::Result<Self> {
        let listener = TcpListener::bind(address)?;
        let address = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new().name("spead-metrics".into()).spawn({
            let stop = Arc::clone(&stop);
            move || serve(&listener, &stats, &stop)
        })?;
        Ok(MetricsServer {
            address,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for MetricsServer {
    /// Stops the server: its thread, blocked in `accept`, is woken by a
    /// connection of our own and joined.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let mut wake = self.address;
        wake.set_ip(reachable(wake.ip()));
        if TcpStream::connect_timeout(&wake, REQUEST_TIMEOUT).is_ok() {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
        // Unreachable (never, short of a firewall on loopback): the thread
        // ends at its next connection.
    }
}

/// An address of this host at which a listener bound to `ip` answers.
fn reachable(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    }
}

fn serve(listener: &TcpListener, stats: &StatsHandle, stop: &AtomicBool) {
    for connection in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let answered = connection.and_then(|connection| answer(connection, stats));
        if let Err(e) = answered {
            tracing::debug!("metrics request: {e}");
        }
    }
}

/// Reads one request's head and writes the figures (or 404 for another
/// path).
fn answer(mut connection: TcpStream, stats: &StatsHandle) -> io::Result<()> {
    connection.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST_HEAD {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request not sent within 1 s",
            ));
        }
        connection.set_read_timeout(Some(left))?;
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
