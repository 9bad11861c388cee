//! The highest rate at which a receiver takes 200 heaps with zero loss,
//! found by stepping the rate: spead-recv beside spead2_recv.py from PyPI,
//! the same sender (spead-send over UDP on loopback), the same run, rates
//! taken in turn by each receiver (which goes first alternating), 262144-
//! byte heaps in 1472- and 8192-byte packets. A receiver passes a rate
//! when it prints all 200 heaps complete. The last step is unpaced (the
//! sender's own ceiling on this machine, shared with the receiver); where
//! the sender falls short of a rate asked (under 90 % of it), the table
//! says so.
//!
//! `cargo bench --bench receive` (no root: loopback). Python comes from
//! SPEAD2_PYTHON or .venv (scripts/test.sh makes it). SPEAD_BENCH_RATES
//! (comma-separated Gb/s) replaces the rate steps.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;

const HEAPS: u32 = 200;
const HEAP_SIZE: u32 = 262_144;
/// Gb/s; 0 is unpaced.
const RATES: [f64; 9] = [0.5, 1.0, 2.0, 4.0, 6.0, 8.0, 12.0, 16.0, 0.0];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Receiver {
    Ours,
    Spead2,
}

impl Receiver {
    fn name(self) -> &'static str {
        match self {
            Receiver::Ours => "spead-recv",
            Receiver::Spead2 => "spead2_recv.py",
        }
    }

    fn command(self, port: u16, packet: usize) -> Command {
        let source = format!("127.0.0.1:{port}");
        match self {
            Receiver::Ours => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_spead-recv"));
                c.args(["--quiet", &source]);
                c
            }
            Receiver::Spead2 => {
                let python = common::python();
                let mut c = Command::new(&python);
                c.arg(python.with_file_name("spead2_recv.py"));
                c.args(["--packet", &(packet + 64).to_string(), &source]);
                c
            }
        }
    }
}

/// One receiver at one rate.
#[derive(Debug, Clone, Copy)]
struct Run {
    /// Heaps the receiver printed complete.
    complete: u32,
    /// The sender's achieved rate (Gb/s), as spead-send reports it.
    achieved: f64,
}

/// Counts the "Received heap" lines (complete heaps) of a receiver's
/// stdout until it ends.
fn count_heaps(child: &mut Child) -> JoinHandle<u32> {
    let stdout = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter(|l| l.starts_with("Received heap") && !l.contains("incomplete"))
            .count() as u32
    })
}

/// Whether a UDP socket is bound to `port` (from /proc/net/udp).
fn bound(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let wanted = format!(":{port:04X} ");
    table.lines().skip(1).any(|l| {
        l.split_whitespace()
            .nth(1)
            .is_some_and(|local| format!("{local} ").ends_with(&wanted))
    })
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "{what} did not happen within 20 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A port nobody holds now.
fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn send(port: u16, packet: usize, rate: f64) -> f64 {
    let out = Command::new(env!("CARGO_BIN_EXE_spead-send"))
        .args(["--quiet", "--transport", "udp", "--heaps", &HEAPS.to_string()])
        .args([
            "--heap-size",
            &HEAP_SIZE.to_string(),
            "--packet",
            &packet.to_string(),
        ])
        .args(["--rate", &rate.to_string(), &format!("127.0.0.1:{port}")])
        .output()
        .expect("run spead-send");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "spead-send: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // "Sent N bytes in T s, X Gb/s"
    stdout
        .split_whitespace()
        .rev()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("no rate in {stdout:?}"))
}

fn run(receiver: Receiver, packet: usize, rate: f64) -> Run {
    let port = free_port();
    let mut child = receiver
        .command(port, packet)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the receiver");
    let heaps = count_heaps(&mut child);
    wait_until(&format!("{} binding port {port}", receiver.name()), || {
        bound(port)
    });
    let achieved = send(port, packet, rate);
    // The end heap stops it; if that was lost, it is stopped here.
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    Run {
        complete: heaps.join().unwrap_or(0),
        achieved,
    }
}

/// A receiver's stepping: the highest rate it passed before it first lost
/// a heap, with the sender's achieved rate there.
#[derive(Debug, Default, Clone, Copy)]
struct Stepping {
    best: Option<(f64, f64)>,
    failed_at: Option<(f64, u32)>,
}

/// A rate step as said in the table.
fn asked(rate: f64) -> String {
    if rate == 0.0 {
        "unpaced".into()
    } else {
        format!("{rate} Gb/s")
    }
}

fn rates() -> Vec<f64> {
    match std::env::var("SPEAD_BENCH_RATES") {
        Ok(list) => list.split(',').filter_map(|r| r.trim().parse().ok()).collect(),
        Err(_) => RATES.to_vec(),
    }
}

fn step(packet: usize) {
    let receivers = [Receiver::Ours, Receiver::Spead2];
    let mut results = [Stepping::default(); 2];
    let mut sender_limit = None;
    for (round, rate) in rates().into_iter().enumerate() {
        let mut order = receivers;
        if round % 2 == 1 {
            order.reverse();
        }
        for receiver in order {
            let k = receivers.iter().position(|r| *r == receiver).expect("listed");
            if results[k].failed_at.is_some() {
                continue;
            }
            let outcome = run(receiver, packet, rate);
            println!(
                "  {packet} B, {} asked ({:.2} Gb/s sent): {:14} {} of {HEAPS} heaps",
                asked(rate),
                outcome.achieved,
                receiver.name(),
                outcome.complete
            );
            if rate == 0.0 || outcome.achieved < 0.9 * rate {
                let limit: &mut f64 = sender_limit.get_or_insert(0.0);
                *limit = limit.max(outcome.achieved);
            }
            if outcome.complete == HEAPS {
                results[k].best = Some((rate, outcome.achieved));
            } else {
                results[k].failed_at = Some((rate, outcome.complete));
            }
        }
        if results.iter().all(|r| r.failed_at.is_some()) {
            break;
        }
    }
    println!("{packet}-byte packets, {HEAPS} heaps of {HEAP_SIZE} bytes:");
    for (receiver, result) in receivers.iter().zip(results) {
        let best = result
            .best
            .map_or("none".into(), |(r, a)| format!("{} ({a:.2} Gb/s sent)", asked(r)));
        let failed = result
            .failed_at
            .map_or("no loss at any rate tried".into(), |(r, n)| {
                format!("first loss at {} ({n} heaps)", asked(r))
            });
        println!("  {:14} highest loss-free rate {best}; {failed}", receiver.name());
    }
    let paced = |r: f64| if r == 0.0 { f64::INFINITY } else { r };
    if let (Some((ours, ours_sent)), Some((theirs, theirs_sent))) = (results[0].best, results[1].best) {
        println!(
            "  spead-recv / spead2_recv.py, highest loss-free step: {:.2} asked, {:.2} sent",
            paced(ours) / paced(theirs),
            ours_sent / theirs_sent
        );
        let last_paced = rates().into_iter().filter(|r| *r > 0.0).fold(0.0, f64::max);
        if ours == theirs && ours == last_paced {
            println!(
                "  the paced sender's limit came first: both took every heap at every paced step (up to {last_paced} Gb/s asked)"
            );
        }
    }
    if let Some(limit) = sender_limit {
        println!("  the sender fell short of a rate asked; its best: {limit:.2} Gb/s sent");
    }
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    println!(
        "receive: highest loss-free rate over loopback, stepping {:?} Gb/s",
        rates()
    );
    for packet in [1472, 8192] {
        step(packet);
    }
}
