//! spead-recv as a multicast monitor, in network namespaces of the tests'
//! own (root; SPEAD_SKIP_PRIVILEGED=1 skips): two monitors joined to the
//! same group both decode every heap and value spead2_send.py sends, and
//! both take every heap of a 2 Gb/s spead-send stream.
//!
//! The tests take turns: on a 2-core machine the first one's Python start
//! would otherwise compete with the second one's monitors for a core.

mod common;

use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};

use common::netns::{privileged, Netns};

/// Held by each test while it runs.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn take_turn() -> MutexGuard<'static, ()> {
    // A test that failed holding the turn poisons it; the next still runs.
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn two_monitors_on_one_group_decode_every_heap_from_spead2() {
    if !privileged("two_monitors_on_one_group_decode_every_heap_from_spead2") {
        return;
    }
    let _turn = take_turn();
    let ns = Netns::with_veth_pair("recv", "1500");
    let group = "239.10.1.1:7148";
    let monitors = monitors(&ns, group, 2, &["--values", "--descriptors"]);
    let python = common::python();
    let sent = Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .arg(&python)
        .arg(python.with_file_name("spead2_send.py"))
        .args([
            "--heaps",
            "5",
            "--heap-size",
            "40",
            "--items",
            "2",
            "--dtype",
            "<u2",
            "--addr-bits",
            "48",
        ])
        .args(["--bind", "10.9.0.1", "--ttl", "1", "--rate", "0.01", group])
        .output()
        .expect("start spead2_send.py");
    assert!(
        sent.status.success(),
        "spead2_send.py: {}",
        String::from_utf8_lossy(&sent.stderr)
    );
    for (i, monitor) in monitors.into_iter().enumerate() {
        let out = monitor.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let heaps = text.lines().filter(|l| l.starts_with("Received heap")).count();
        let values = text
            .lines()
            .filter(|l| l.starts_with("Test item") && l.contains(" = [0, 0, 0"))
            .count();
        assert_eq!((heaps, values), (5, 10), "monitor {i} saw:\n{text}");
        assert!(
            text.contains("Descriptor for Test item 0 (0x1000)"),
            "monitor {i}:\n{text}"
        );
        assert!(
            text.contains("Shutting down stream 239.10.1.1:7148 after 5 heaps"),
            "monitor {i}:\n{text}"
        );
        assert!(text.contains("malformed: 0"), "monitor {i}:\n{text}");
    }
    println!("two spead-recv monitors each decoded all 5 heaps (10 values) from spead2_send.py");
}

/// Starts `count` spead-recv monitors on `group` (joined on 10.9.0.1) in
/// `ns`, and returns once the kernel lists them all as the group's users.
fn monitors(ns: &Netns, group: &str, count: usize, extra: &[&str]) -> Vec<std::process::Child> {
    let children = (0..count)
        .map(|_| {
            Command::new("ip")
                .args(["netns", "exec", ns.name(), env!("CARGO_BIN_EXE_spead-recv")])
                .args(["--quiet", "--interface", "10.9.0.1"])
                .args(extra)
                .arg(group)
                .stdout(Stdio::piped())
                .spawn()
                .expect("start spead-recv")
        })
        .collect();
    let (address, _) = group.split_once(':').expect("GROUP:PORT");
    let users = format!("{address} users {count}");
    common::wait_for("the monitors joining the group", || {
        let out = Command::new("ip")
            .args(["-n", ns.name(), "maddr", "show"])
            .output()
            .expect("ip maddr");
        String::from_utf8_lossy(&out.stdout).contains(&users)
    });
    children
}

/// Heaps of 256 KiB in the 2 Gb/s stream: about a second of it.
const FAST_HEAPS: usize = 1000;

/// Two monitors on the group of a spead-send stream at 2 Gb/s (1000 heaps
/// of 256 KiB, 262 MB) each take every heap whole, and say that neither
/// the kernel nor their ring dropped anything. Their 32 MiB socket buffers
/// ride out a 130 ms stall of this shared host, but hold an eighth of the
/// stream: a monitor slower than 1.7 Gb/s still loses heaps.
#[test]
fn two_monitors_take_every_heap_of_a_2_gbps_multicast_stream() {
    if !privileged("two_monitors_take_every_heap_of_a_2_gbps_multicast_stream") {
        return;
    }
    let _turn = take_turn();
    let ns = Netns::with_veth_pair("recvfast", "1500");
    let group = "239.10.1.2:7148";
    let buffer = (32 << 20).to_string();
    let children = monitors(&ns, group, 2, &["--buffer", &buffer]);
    let sent = Command::new("ip")
        .args(["netns", "exec", ns.name(), env!("CARGO_BIN_EXE_spead-send")])
        .args([
            "--quiet",
            "--heaps",
            &FAST_HEAPS.to_string(),
            "--heap-size",
            "262144",
            "--rate",
            "2",
        ])
        .args(["--transport", "udp", "--bind", "10.9.0.1", "--ttl", "1", group])
        .output()
        .expect("run spead-send");
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    for (i, monitor) in children.into_iter().enumerate() {
        let out = monitor.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let complete = text
            .lines()
            .filter(|l| l.starts_with("Received heap") && !l.contains("incomplete"))
            .count();
        let figures = text.lines().last().unwrap_or_default();
        assert_eq!(complete, FAST_HEAPS, "monitor {i}: {figures}");
        assert!(
            figures.starts_with(&format!("heaps: {FAST_HEAPS} complete, 0 incomplete"))
                && figures.contains("kernel drops: 0; ring drops: 0"),
            "monitor {i}: {figures}"
        );
    }
}
