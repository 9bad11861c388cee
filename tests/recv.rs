//! spead-recv against spead2's sender: spead2_send.py multicasts inside a
//! network namespace of this test's own (root; SPEAD_SKIP_PRIVILEGED=1
//! skips), and two spead-recv monitors joined to the same group both
//! decode every heap and value.

mod common;

use std::process::{Command, Stdio};

use common::netns::{privileged, Netns};

#[test]
fn two_monitors_on_one_group_decode_every_heap_from_spead2() {
    if !privileged("two_monitors_on_one_group_decode_every_heap_from_spead2") {
        return;
    }
    let ns = Netns::with_veth_pair("recv", "1500");
    let group = "239.10.1.1:7148";
    let monitors: Vec<_> = (0..2)
        .map(|_| {
            Command::new("ip")
                .args(["netns", "exec", ns.name(), env!("CARGO_BIN_EXE_spead-recv")])
                .args([
                    "--values",
                    "--descriptors",
                    "--quiet",
                    "--interface",
                    "10.9.0.1",
                    group,
                ])
                .stdout(Stdio::piped())
                .spawn()
                .expect("start spead-recv")
        })
        .collect();
    // Both monitors joined before anything is sent.
    common::wait_for("two monitors joining the group", || {
        let out = Command::new("ip")
            .args(["-n", ns.name(), "maddr", "show"])
            .output()
            .expect("ip maddr");
        String::from_utf8_lossy(&out.stdout).contains("239.10.1.1 users 2")
    });
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
