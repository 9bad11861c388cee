//! Interop with the real spead2 from PyPI, over UDP on loopback:
//! - our packets are decoded by spead2's receiver with identical values;
//! - spead2's sender's packets are decoded by our reassembler with identical
//!   values.
//!
//! Expected values are computed from what each side put in, never from our
//! own decoder. The Python comes from `SPEAD2_PYTHON`, or the venv that
//! `scripts/test.sh` creates at `.venv/`.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::UdpSocket;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{python, script};
use serde_json::{json, Value};
use spead_xdp::protocol::{
    DataType, Descriptor, Flavour, FormatField, Heap, Item, PacketSizing, Reassembler, StreamControl,
};

/// Kills the child if the test fails before it exits.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn finish(mut child: Reaped, mut stdout: impl Read) -> Value {
    let mut text = String::new();
    stdout.read_to_string(&mut text).expect("read python output");
    let status = child.0.wait().expect("wait for python");
    assert!(status.success(), "python exited with {status}; stdout: {text}");
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("bad JSON from python ({e}): {text}"))
}

/// The bytes a receiver should report for an item: immediates as their
/// right-aligned field, others as sent.
fn expected_value(item: &Item<'_>, flavour: Flavour) -> (bool, String) {
    match item.immediate_value(flavour) {
        Some(v) => (
            true,
            hex::encode(&v.to_be_bytes()[8 - flavour.immediate_size()..]),
        ),
        None => (false, hex::encode(item.value().bytes().unwrap_or_default())),
    }
}

/// A descriptor in the form both Python scripts print. Where a numpy header
/// is present it carries the shape, and spead2's receiver reports no shape.
fn descriptor_json(d: &Descriptor) -> Value {
    let (format, numpy_header) = match &d.data_type {
        DataType::Format(fields) => (
            fields
                .iter()
                .map(|f| json!([char::from(f.code).to_string(), f.bits]))
                .collect(),
            String::new(),
        ),
        DataType::Numpy { .. } => (Vec::new(), d.numpy_header().expect("numpy header")),
    };
    normalise_descriptor(json!({
        "id": d.id,
        "name": d.name,
        "description": d.description,
        "shape": d.shape,
        "format": format,
        "numpy_header": numpy_header,
    }))
}

fn normalise_descriptor(mut d: Value) -> Value {
    if d["numpy_header"].as_str().is_some_and(|h| !h.is_empty()) {
        d["shape"] = json!([]);
    }
    d
}

/// Descriptors as a Python script printed them, normalised.
fn python_descriptors(list: &Value) -> Vec<Value> {
    list.as_array()
        .expect("descriptor list")
        .iter()
        .cloned()
        .map(normalise_descriptor)
        .collect()
}

fn sorted_items(items: &Value) -> Vec<Value> {
    let mut items = items.as_array().expect("items list").clone();
    items.sort_by_key(|i| i[0].as_u64());
    items
}

/// The heaps our side sends: descriptors and a start heap, data heaps of
/// every item kind, the padding case spead2 itself mis-orders, and an end.
fn heaps_to_send<'a>(flavour: Flavour, big: &'a [u8], shared: &Bytes) -> (Vec<Heap<'a>>, Vec<Descriptor>) {
    let mut heaps = Vec::new();
    let mut first = Heap::new(flavour);
    let descriptors = vec![
        Descriptor::with_format(
            0x1600,
            "timestamp",
            "ADC sample count",
            vec![],
            vec![FormatField::new(b'u', 40)],
        ),
        Descriptor::with_format(
            0x1700,
            "text",
            "a string",
            vec![None],
            vec![FormatField::new(b'c', 8)],
        ),
        Descriptor::with_dtype(0x1800, "spectrum", "power", vec![4096], "<u2", false).unwrap(),
        Descriptor::with_dtype(0x1801, "vis", "visibilities", vec![16, 4], "<c8", true).unwrap(),
    ];
    for d in &descriptors {
        first.add_descriptor(d).unwrap();
    }
    first.add_start().unwrap();
    heaps.push(first);
    for i in 0..6u64 {
        let mut heap = Heap::new(flavour);
        heap.add(Item::immediate(0x1600, 1_000_000 * i + 3)).unwrap();
        heap.add(Item::new(0x1700, format!("heap {i}").into_bytes()))
            .unwrap();
        heap.add(Item::new(0x1800, big)).unwrap();
        heap.add(Item::new(0x1801, shared.clone())).unwrap();
        heap.add(Item::new(0x1802, vec![i as u8, 2, 3]).allow_immediate(true))
            .unwrap();
        heap.add(Item::new(0x1803, &big[..7]).allow_immediate(true))
            .unwrap();
        heaps.push(heap);
    }
    // Pointers that need two packets at 88 bytes and only 3 bytes of real
    // payload: spead2 4.5.1 writes the padding before the data here.
    let mut padded = Heap::new(flavour);
    for id in 0..6u64 {
        padded
            .add(Item::new(0x2000 + id, vec![id as u8; 2]).allow_immediate(true))
            .unwrap();
    }
    padded.add(Item::new(0x2100, vec![7, 8, 9])).unwrap();
    heaps.push(padded);
    let mut end = Heap::new(flavour);
    end.add_end().unwrap();
    heaps.push(end);
    (heaps, descriptors)
}

fn spawn_receiver(max_packet: usize) -> (Reaped, BufReader<ChildStdout>, u16) {
    let mut child = Command::new(python())
        .arg(script("recv_heaps.py"))
        .args([max_packet.to_string(), "20".into()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start spead2 receiver");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read receiver port");
    let port = line
        .strip_prefix("PORT ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("receiver did not announce a port: {line:?}"));
    (Reaped(child), stdout, port)
}

fn ours_to_spead2(flavour: Flavour, max_packet: usize) {
    let big: Vec<u8> = (0..8192u32).map(|i| (i * 7) as u8).collect();
    let shared = Bytes::from((0..512u32).map(|i| (i * 13) as u8).collect::<Vec<_>>());
    let (heaps, descriptors) = heaps_to_send(flavour, &big, &shared);
    let (receiver, stdout, port) = spawn_receiver(max_packet);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sizing = PacketSizing::new(max_packet).unwrap();
    let padded_sizing = PacketSizing::new(88).unwrap();
    let mut frame = vec![0u8; max_packet];
    let mut expected = BTreeMap::new();
    let mut sent_packets = 0;
    for (i, heap) in heaps.iter().enumerate() {
        let cnt = i as u64 + 1;
        let is_padded_case = heap.items().iter().any(|item| item.id() == 0x2100);
        let sizing = if is_padded_case { padded_sizing } else { sizing };
        let mut packets = sizing.packets(heap, cnt).unwrap();
        while let Some(len) = packets.write_next(&mut frame).unwrap() {
            socket.send_to(&frame[..len], ("127.0.0.1", port)).unwrap();
            sent_packets += 1;
        }
        // Loopback has no pacing of its own: give the receiver time.
        std::thread::sleep(Duration::from_millis(2));
        let items: Vec<Value> = heap
            .items()
            .iter()
            .filter(|item| item.id() != 5) // spead2 lists descriptors apart
            .map(|item| {
                let (immediate, value) = expected_value(item, flavour);
                json!([item.id(), immediate, value])
            })
            .collect();
        expected.insert(cnt, items);
    }
    let report = finish(receiver, stdout);
    let received = report["heaps"].as_array().expect("heaps");
    // The stop heap ends spead2's stream and is not delivered.
    assert_eq!(
        received.len(),
        heaps.len() - 1,
        "heaps spead2 delivered: {report}"
    );
    assert_eq!(report["stats"]["incomplete_heaps_evicted"], 0);
    for heap in received {
        let cnt = heap["cnt"].as_u64().unwrap();
        assert_eq!(heap["complete"], true, "heap {cnt}");
        assert_eq!(
            sorted_items(&heap["items"]),
            sorted_items(&json!(expected[&cnt])),
            "items of heap {cnt}"
        );
    }
    let first = &received.iter().find(|h| h["cnt"] == 1).unwrap()["descriptors"];
    let want: Vec<Value> = descriptors.iter().map(descriptor_json).collect();
    assert_eq!(python_descriptors(first), want);
    let padded = received
        .iter()
        .find(|h| h["cnt"] == heaps.len() as u64 - 1)
        .unwrap();
    assert!(sorted_items(&padded["items"]).contains(&json!([0x2100, false, "070809"])));
    // spead2's packet counter may miss the stop packet, read as the stream ends.
    let counted = report["stats"]["packets"].as_u64().unwrap();
    assert!(
        counted + 1 >= sent_packets,
        "spead2 counted {counted} of {sent_packets} packets"
    );
    println!(
        "spead2 decoded {} heaps from our {sent_packets} packets, flavour 64-{}, {max_packet}-byte packets",
        received.len(),
        flavour.heap_address_bits()
    );
}

#[test]
fn our_packets_decode_in_spead2_64_48() {
    ours_to_spead2(Flavour::SPEAD_64_48, 1472);
}

#[test]
fn our_jumbo_packets_decode_in_spead2_64_40() {
    ours_to_spead2(Flavour::SPEAD_64_40, 8192);
}

fn spead2_to_ours(max_packet: usize, n_heaps: usize) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    // Room for the whole run, so a busy machine does not drop on loopback.
    socket2::SockRef::from(&socket)
        .set_recv_buffer_size(8 << 20)
        .unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let port = socket.local_addr().unwrap().port();
    let mut child = Command::new(python())
        .arg(script("send_heaps.py"))
        .args([port.to_string(), max_packet.to_string(), n_heaps.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start spead2 sender");
    let stdout = child.stdout.take().unwrap();
    let sender = Reaped(child);
    let mut reassembler = Reassembler::default();
    let mut heaps = BTreeMap::new();
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stopped = false;
    while !stopped && Instant::now() < deadline {
        let Ok(len) = socket.recv(&mut buf) else { continue };
        reassembler
            .add_packet(&buf[..len])
            .expect("spead2's packets are valid");
        while let Some(heap) = reassembler.next_heap() {
            stopped |= heap.stream_control() == Some(StreamControl::Stop);
            heaps.insert(heap.cnt(), heap);
        }
    }
    assert!(stopped, "no stop heap from spead2 within 30 s");
    let report = finish(sender, stdout);
    let sent = report["heaps"].as_array().unwrap();
    assert_eq!(sent.len(), n_heaps);
    for want in sent {
        let cnt = want["cnt"].as_u64().unwrap();
        let got = heaps.get(&cnt).unwrap_or_else(|| panic!("heap {cnt} missing"));
        assert!(got.is_complete(), "heap {cnt} incomplete");
        let items: Vec<Value> = got
            .items()
            .map(|i| json!([i.id(), i.is_immediate(), hex::encode(i.value())]))
            .collect();
        assert_eq!(
            sorted_items(&json!(items)),
            sorted_items(&want["items"]),
            "items of heap {cnt}"
        );
        let descriptors: Vec<Value> = got.descriptors().unwrap().iter().map(descriptor_json).collect();
        assert_eq!(
            descriptors,
            python_descriptors(&want["descriptors"]),
            "descriptors of heap {cnt}"
        );
    }
    let stats = reassembler.stats();
    assert_eq!((stats.malformed, stats.heaps_incomplete), (0, 0));
    println!(
        "we decoded {} heaps ({} packets) sent by spead2, {max_packet}-byte packets",
        heaps.len(),
        stats.packets
    );
}

#[test]
fn spead2_packets_decode_in_ours() {
    spead2_to_ours(1472, 20);
}

#[test]
fn spead2_jumbo_packets_decode_in_ours() {
    spead2_to_ours(8192, 20);
}
