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
