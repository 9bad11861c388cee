//! Bad input gets an error that names the bad value, never a panic and
//! never a silent drop: one test per input the stream, the protocol and the
//! transports take. The AF_XDP ones that need an interface run as root on
//! the veth harness (SPEAD_SKIP_PRIVILEGED=1 skips them).

mod common;

use std::process::Command;

use common::netns::privileged;
use common::veth::VethHarness;
use spead_xdp::protocol::{Flavour, Heap, Item, PacketSizing};
use spead_xdp::stream::{HeapRef, Stream, StreamConfig, StreamError};
use spead_xdp::transport::{HugePages, MemoryTransport, TransportError, UmemArea, XdpConfig, XdpTransport};

fn config_error(config: StreamConfig) -> String {
    Stream::new(MemoryTransport::new(1), config)
        .expect_err("the configuration is refused")
        .to_string()
}

fn says(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "{message:?} should say {part:?}");
    }
}

#[test]
fn stream_settings_name_the_bad_value() {
    let d = StreamConfig::default();
    says(
        &config_error(StreamConfig {
            max_packet_size: 40,
            ..d
        }),
        &["40", "too small"],
    );
    says(&config_error(StreamConfig { rate: -1.0, ..d }), &["rate", "-1"]);
    says(
        &config_error(StreamConfig { rate: f64::NAN, ..d }),
        &["rate", "NaN"],
    );
    says(
        &config_error(StreamConfig { burst_size: 100, ..d }),
        &["burst_size 100", "1472"],
    );
    says(&config_error(StreamConfig { max_heaps: 0, ..d }), &["max_heaps"]);
    says(
        &config_error(StreamConfig {
            burst_rate_ratio: 0.9,
            ..d
        }),
        &["burst_rate_ratio", "0.9"],
    );
    let stream = Stream::new(MemoryTransport::new(1), d).unwrap();
    says(
        &stream.set_cnt_sequence(1, 0).unwrap_err().to_string(),
        &["step", "0"],
    );
}

#[test]
fn heaps_refuse_reserved_out_of_range_and_duplicate_ids() {
    let mut heap = Heap::new(Flavour::SPEAD_64_48);
    says(
        &heap.add(Item::immediate(0x3, 1)).unwrap_err().to_string(),
        &["0x3", "reserved"],
    );
    // 64-48: 15 bits of item ID.
    says(
        &heap.add(Item::immediate(0x8000, 1)).unwrap_err().to_string(),
        &["0x8000", "15 bits"],
    );
    heap.add(Item::immediate(0x1600, 1)).unwrap();
    says(
        &heap.add(Item::immediate(0x1600, 2)).unwrap_err().to_string(),
        &["0x1600", "already"],
    );
}

#[test]
fn a_heap_larger_than_its_address_bits_reach_is_refused() {
    // 64-16: heap addresses of 16 bits reach 65536 bytes.
    let mut heap = Heap::new(Flavour::new(16).unwrap());
    let error = heap
        .add(Item::new(0x1000, vec![0u8; 70_000]))
        .unwrap_err()
        .to_string();
    says(&error, &["70000", "16-bit"]);
}

#[test]
fn packets_too_small_for_the_pointers_are_refused() {
    says(
        &PacketSizing::new(40).unwrap_err().to_string(),
        &["40", "too small"],
    );
    // Repeated pointers must all fit every packet.
    let mut heap = Heap::new(Flavour::SPEAD_64_48);
    for id in 0..40 {
        heap.add(Item::immediate(0x1000 + id, id)).unwrap();
    }
    heap.set_repeat_pointers(true);
    let error = PacketSizing::new(256)
        .unwrap()
        .packets(&heap, 1)
        .expect_err("too many pointers")
        .to_string();
    says(&error, &["repeat_pointers", "256-byte packet"]);
    let stream = Stream::new(
        MemoryTransport::new(1),
        StreamConfig {
            max_packet_size: 256,
            ..Default::default()
        },
    )
    .unwrap();
    let refused = stream
        .submit(heap)
        .expect_err("refused at submission")
        .to_string();
    says(&refused, &["entry 0", "repeat_pointers"]);
}

#[test]
fn an_explicit_cnt_beyond_the_flavour_is_refused() {
    let stream = Stream::new(MemoryTransport::new(1), StreamConfig::default()).unwrap();
    let mut heap = Heap::new(Flavour::SPEAD_64_48);
    heap.add(Item::immediate(0x1600, 1)).unwrap();
    let refused = stream
        .submit(HeapRef::new(heap).cnt(1 << 48))
        .expect_err("cnt too large")
        .to_string();
    says(&refused, &["0x1000000000000", "48 bits"]);
}

#[test]
fn an_unknown_interface_is_named() {
    let config = XdpConfig::new("nosuchif0", vec!["10.200.99.2:7148".parse().unwrap()]);
    let error = XdpTransport::new(&config).unwrap_err();
    assert!(
        matches!(&error, TransportError::NoSuchInterface { name, .. } if name == "nosuchif0"),
        "{error}"
    );
    says(&error.to_string(), &["unknown interface", "nosuchif0"]);
}

#[test]
fn missing_huge_pages_are_named_when_required() {
    let free: usize = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("HugePages_Free:")?.trim().parse().ok())
        .unwrap_or(0);
    // One 2 MiB page more than are free.
    let error = UmemArea::with_pages((free + 1) * (2 << 20), 0, HugePages::Require).unwrap_err();
    assert!(
        matches!(error, TransportError::HugePagesUnavailable { free: Some(f), .. } if f as usize == free),
        "{error}"
    );
    says(
        &error.to_string(),
        &["huge pages required", "nr_hugepages", &format!("{free} of")],
    );
    assert!(UmemArea::with_pages(1 << 20, 0, HugePages::Never).is_ok());
}

#[test]
fn a_packet_above_the_mtu_is_refused_before_sending() {
    if !privileged("a_packet_above_the_mtu_is_refused_before_sending") {
        return;
    }
    let harness = VethHarness::up(&format!("sxva{}", std::process::id() % 100_000), 232, 1500, 1);
    let config = XdpConfig::new(harness.get("HOST_IF"), vec![harness.peer(7148)]);
    let stream_config = StreamConfig {
        max_packet_size: 8192,
        ..Default::default()
    };
    let error = Stream::new(XdpTransport::new(&config).unwrap(), stream_config).unwrap_err();
    assert!(
        matches!(
            &error,
            StreamError::Transport(TransportError::AboveMtu {
                interface,
                packet: 8192,
                ip_packet: 8220,
                mtu: 1500,
            }) if interface == harness.get("HOST_IF")
        ),
        "{error}"
    );
    says(
        &error.to_string(),
        &["packets of 8192 bytes", "8220-byte IP packets", "MTU", "(1500)"],
    );
}

#[test]
fn af_xdp_without_permission_says_what_it_needs() {
    if !privileged("af_xdp_without_permission_says_what_it_needs") {
        return;
    }
    let harness = VethHarness::up(&format!("sxvb{}", std::process::id() % 100_000), 233, 1500, 1);
    // As nobody, with no capabilities.
    let out = Command::new("setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(env!("CARGO_BIN_EXE_spead-send"))
        .args([
            "--transport",
            "xdp",
            "--heaps",
            "1",
            "--interface",
            harness.get("HOST_IF"),
        ])
        .arg(harness.peer(7148).to_string())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    says(
        &stderr,
        &["AF_XDP needs root or CAP_NET_RAW", "Operation not permitted"],
    );
}

#[test]
fn an_ipv6_bind_address_for_af_xdp_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_spead-send"))
        .args([
            "--transport",
            "xdp",
            "--interface",
            "lo",
            "--bind",
            "::1",
            "--heaps",
            "1",
            "127.0.0.1:7148",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    says(&stderr, &["--bind ::1", "AF_XDP frames are IPv4"]);
}

#[test]
fn a_umem_too_small_for_one_packet_is_refused_and_buffer_sizes_it() {
    if !privileged("a_umem_too_small_for_one_packet_is_refused_and_buffer_sizes_it") {
        return;
    }
    let harness = VethHarness::up(&format!("sxvc{}", std::process::id() % 100_000), 234, 9000, 1);
    let send = |buffer: &str| {
        Command::new(env!("CARGO_BIN_EXE_spead-send"))
            .args([
                "--quiet",
                "--transport",
                "xdp",
                "--interface",
                harness.get("HOST_IF"),
            ])
            .args([
                "--packet",
                "8192",
                "--heaps",
                "2",
                "--heap-size",
                "65536",
                "--buffer",
                buffer,
            ])
            .arg(harness.peer(7148).to_string())
            .output()
            .unwrap()
    };
    // One 4 KiB frame; an 8192-byte packet needs three.
    let out = send("4096");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    says(
        &stderr,
        &["the UMEM's 4096 bytes of frames hold no packet of 8192 bytes (12288 bytes"],
    );
    // 64 KiB: five packets' frames, enough to send (slowly).
    let out = send("65536");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let sent: u64 = stdout
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no 'Sent N bytes' line: {stdout}"));
    assert!(sent > 2 * 65536, "{stdout}");
}

#[test]
fn transport_auto_takes_udp_on_veth_and_says_why() {
    if !privileged("transport_auto_takes_udp_on_veth_and_says_why") {
        return;
    }
    let harness = VethHarness::up(&format!("sxau{}", std::process::id() % 100_000), 235, 1500, 1);
    let receiver = harness.peer_socket(7148);
    let out = Command::new(env!("CARGO_BIN_EXE_spead-send"))
        .args([
            "--quiet",
            "--transport",
            "auto",
            "--heaps",
            "2",
            "--heap-size",
            "14000",
        ])
        .args(["--interface", harness.get("HOST_IF")])
        .arg(harness.peer(7148).to_string())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // veth's driver reports XDP features, zero-copy not among them.
    says(
        &stderr,
        &[
            "--transport auto: UDP, since",
            harness.get("HOST_IF"),
            "offers no AF_XDP zero-copy (xdp-features: basic",
        ],
    );
    // Two data heaps of ten 1472-byte packets and an end heap, all there.
    receiver
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 2048];
    for k in 0..21 {
        receiver
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("packet {k} of 21: {e}"));
    }
}
