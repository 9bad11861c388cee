//! spead-send against spead2_send.py: with the same options, both sending
//! UDP to loopback ports, the UDP payload sequences at each destination are
//! identical; and spead-send prints spead2's closing line.

mod common;

use std::process::Command;
use std::thread::JoinHandle;

fn run(program: &mut Command, options: &[&str], destinations: usize) -> (Vec<Vec<Vec<u8>>>, String) {
    let captures: Vec<_> = (0..destinations).map(|_| common::capture_udp()).collect();
    let out = program
        .args(options)
        .args(captures.iter().map(|(port, _)| format!("127.0.0.1:{port}")))
        .output()
        .expect("start sender");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{program:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let packets = captures.into_iter().map(|(_, h)| h.join().unwrap()).collect();
    (packets, stdout)
}

fn compare(options: &[&str], destinations: usize) {
    let python = common::python();
    let mut spead2 = Command::new(&python);
    spead2.arg(python.with_file_name("spead2_send.py"));
    let (theirs, _) = run(&mut spead2, options, destinations);
    let mut ours = Command::new(env!("CARGO_BIN_EXE_spead-send"));
    ours.arg("--quiet");
    let (mine, stdout) = run(&mut ours, options, destinations);
    for (d, (a, b)) in mine.iter().zip(&theirs).enumerate() {
        assert!(!b.is_empty(), "spead2_send sent nothing to destination {d}");
        assert_eq!(a.len(), b.len(), "destination {d}: datagram count");
        assert!(a == b, "destination {d}: payloads differ");
    }
    let line = stdout.lines().last().unwrap_or_default();
    assert!(
        line.starts_with("Sent ") && line.ends_with(" Gb/s"),
        "closing line: {stdout:?}"
    );
    let total: usize = mine.iter().flatten().map(Vec::len).sum();
    println!("{options:?} to {destinations} destination(s): {total} bytes identical; {line}");
}

#[test]
fn same_payloads_as_spead2_send_one_destination() {
    compare(
        &[
            "--heaps",
            "6",
            "--heap-size",
            "200000",
            "--items",
            "2",
            "--dtype",
            "<u2",
            "--addr-bits",
            "40",
            "--rate",
            "0.2",
        ],
        1,
    );
}

#[test]
fn same_payloads_as_spead2_send_two_destinations_and_descriptor_frequency() {
    compare(
        &[
            "--heaps",
            "7",
            "--heap-size",
            "100000",
            "--addr-bits",
            "48",
            "--packet",
            "8192",
            "--descriptors",
            "3",
            "--rate",
            "0.2",
        ],
        2,
    );
}

/// Accepts one TCP connection and returns everything sent on it.
fn capture_tcp() -> (u16, JoinHandle<Vec<u8>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (mut connection, _) = listener.accept().unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut connection, &mut bytes).unwrap();
        bytes
    });
    (port, handle)
}

#[test]
fn same_bytes_as_spead2_send_over_tcp() {
    let options = [
        "--tcp",
        "--heaps",
        "5",
        "--heap-size",
        "300000",
        "--addr-bits",
        "48",
    ];
    let python = common::python();
    let mut streams = Vec::new();
    for sender in ["spead2", "ours"] {
        let (port, capture) = capture_tcp();
        let mut command = if sender == "spead2" {
            let mut c = Command::new(&python);
            c.arg(python.with_file_name("spead2_send.py"));
            c
        } else {
            let mut c = Command::new(env!("CARGO_BIN_EXE_spead-send"));
            c.arg("--quiet");
            c
        };
        let out = command
            .args(options)
            .arg(format!("127.0.0.1:{port}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{sender}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        streams.push(capture.join().unwrap());
    }
    assert!(!streams[0].is_empty());
    assert_eq!(streams[0].len(), streams[1].len(), "TCP byte count");
    assert!(streams[0] == streams[1], "TCP bytes differ");
    println!(
        "TCP: {} bytes identical to spead2_send.py --tcp",
        streams[0].len()
    );
}

/// The value of a sample line `name` in Prometheus text.
fn sample(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
        .parse::<f64>()
        .unwrap() as u64
}

#[test]
fn metrics_are_served_in_prometheus_format_while_sending() {
    use std::io::BufRead;
    use std::process::Stdio;
    let pcap = std::env::temp_dir().join(format!("spead-send-metrics-{}.pcap", std::process::id()));
    // 3 heaps of 4 MiB and an end heap at 50 Mb/s: about 2.7 s.
    let mut child = Command::new(env!("CARGO_BIN_EXE_spead-send"))
        .args(["--quiet", "--transport", "pcap", "--rate", "0.05", "--heaps", "3"])
        .args(["--metrics", "127.0.0.1:0", "--pcap"])
        .arg(&pcap)
        .arg("127.0.0.1:7148")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start spead-send");
    let (lines, stderr) = std::sync::mpsc::channel();
    let reader = std::io::BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let address = loop {
        let line = stderr
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("spead-send names its metrics address");
        if let Some((_, rest)) = line.split_once("metrics at http://") {
            break rest.trim_end_matches("/metrics").to_string();
        }
    };
    let packets = r#"spead_send_packets_total{worker="0"}"#;
    let bytes = r#"spead_send_bytes_total{worker="0"}"#;
    // Scraped until the figures show packets, then until they grow: the
    // figures are live, not a final count.
    let scrape_until = |done: &dyn Fn(&str) -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let (status, body) = common::http_get(&*address, "/metrics");
            assert_eq!(status, "HTTP/1.0 200 OK");
            if done(&body) {
                return body;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "figures never moved:\n{body}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    let first = scrape_until(&|body| sample(body, packets) > 0);
    let second = scrape_until(&|body| sample(body, packets) > sample(&first, packets));
    let (status, _) = common::http_get(&*address, "/nothing");
    assert_eq!(status, "HTTP/1.0 404 Not Found");
    // Packets of at most 1472 bytes (spead2's default), most of them full.
    let (p, b) = (sample(&second, packets), sample(&second, bytes));
    assert!(b <= p * 1472 && b > p * 1400, "{p} packets, {b} bytes");
    assert!(sample(&second, "spead_send_heaps_total") <= 4, "{second}");
    assert_eq!(sample(&second, "spead_send_errors_total"), 0, "{second}");

    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_file(&pcap);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let sent: u64 = stdout
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("closing line: {stdout}"));
    assert!(sent > b, "sent {sent} bytes in all, {b} when scraped");
    println!("scraped {p} packets, {b} bytes mid-stream; {stdout}");
}

/// Ctrl-C stops new data heaps: what is queued is flushed and the end heap
/// still goes, the counts are reported, and the exit status is 130. Every
/// heap it reports sent is in the capture, whole, and nothing else is.
#[test]
fn ctrl_c_flushes_queued_heaps_and_reports_them() {
    use spead_xdp::receive::PcapSource;
    use spead_xdp::receive::{Event, Receiver, Source};
    let pcap = std::env::temp_dir().join(format!("spead-send-sigint-{}.pcap", std::process::id()));
    // Until interrupted: 1 MiB heaps at 200 Mb/s, about 24 a second.
    let child = Command::new(env!("CARGO_BIN_EXE_spead-send"))
        .args([
            "--quiet",
            "--transport",
            "pcap",
            "--rate",
            "0.2",
            "--heap-size",
            "1048576",
        ])
        .arg("--pcap")
        .arg(&pcap)
        .arg("127.0.0.1:7148")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start spead-send");
    // Interrupted once heaps are going out (the first written whole).
    common::wait_for("the first heap in the capture", || {
        std::fs::metadata(&pcap).is_ok_and(|m| m.len() > 1 << 20)
    });
    // SAFETY: kill sends a signal to a child this test started.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let started = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{stderr}");
    assert_eq!(out.status.code(), Some(130), "{stdout}\n{stderr}");
    // "interrupted: N heaps submitted (D data heaps, then 1 end heap(s)), S sent, 0 failed, none left queued"
    let report = stderr
        .lines()
        .find(|l| l.contains("interrupted:"))
        .unwrap_or_else(|| panic!("{stderr}"));
    let numbers: Vec<u64> = report
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    let [submitted, data, end, sent, failed] = numbers[..] else {
        panic!("{report}")
    };
    assert!(data >= 5, "{report}");
    assert_eq!(
        (submitted, end, sent, failed),
        (data + 1, 1, data + 1, 0),
        "{report}"
    );
    let bytes: u64 = stdout
        .split_whitespace()
        .nth(1)
        .and_then(|b| b.parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));

    let source = Source::Pcap(PcapSource::open(&pcap).unwrap());
    let mut receiver = Receiver::new(vec![source], Default::default()).unwrap();
    while !matches!(
        receiver.next_event(std::time::Duration::from_secs(1)).unwrap(),
        Event::End
    ) {}
    let stats = receiver.stats();
    let _ = std::fs::remove_file(&pcap);
    // Every data heap whole; the end heap ends the stream (not counted).
    assert_eq!(
        (stats.heaps_complete, stats.heaps_incomplete),
        (data, 0),
        "{stats:?}"
    );
    assert_eq!(stats.bytes, bytes, "{stats:?}");
}
