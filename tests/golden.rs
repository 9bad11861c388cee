//! Golden vectors: every heap spead2 4.5.1 packetized, rebuilt from its
//! contents and packetized by us, must give the same packets byte for byte.
//! Reads the project's copy, `tests/data/spead2-heaps.json` (see
//! `tests/data/VECTORS.md`), or the file `SPEAD_VECTORS` names.

use std::path::PathBuf;

use serde_json::Value;
use spead_xdp::protocol::{Descriptor, Flavour, FormatField, Heap, Item, PacketSizing, StreamControl};

fn vectors_path() -> PathBuf {
    match std::env::var_os("SPEAD_VECTORS") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/spead2-heaps.json"),
    }
}

fn field<'a>(value: &'a Value, key: &str) -> &'a Value {
    value
        .get(key)
        .unwrap_or_else(|| panic!("vector entry has no {key:?}: {value}"))
}

fn uint(value: &Value, key: &str) -> u64 {
    field(value, key)
        .as_u64()
        .unwrap_or_else(|| panic!("{key:?} is not an unsigned integer"))
}

fn descriptor(d: &Value) -> Descriptor {
    let id = uint(d, "id");
    let name = field(d, "name").as_str().expect("name is a string");
    let description = field(d, "description").as_str().expect("description is a string");
    let shape: Vec<Option<u64>> = field(d, "shape")
        .as_array()
        .expect("shape is a list")
        .iter()
        .map(Value::as_u64)
        .collect();
    if let Some(dtype) = d.get("dtype") {
        let dims = shape.iter().map(|d| d.expect("numpy shapes are fixed")).collect();
        let fortran = field(d, "fortran_order")
            .as_bool()
            .expect("fortran_order is a bool");
        Descriptor::with_dtype(
            id,
            name,
            description,
            dims,
            dtype.as_str().expect("dtype"),
            fortran,
        )
        .expect("valid dtype")
    } else {
        let format = field(d, "format")
            .as_array()
            .expect("format is a list")
            .iter()
            .map(|f| {
                let code = f[0].as_str().expect("type code").as_bytes()[0];
                FormatField::new(code, f[1].as_u64().expect("bits"))
            })
            .collect();
        Descriptor::with_format(id, name, description, shape, format)
    }
}

#[test]
fn packets_match_spead2_byte_for_byte() {
    let path = vectors_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read golden vectors {}: {e}", path.display()));
    let doc: Value = serde_json::from_str(&text).expect("vectors are JSON");
    let cases = field(&doc, "cases").as_array().expect("cases is a list");
    let mut packets_checked = 0;
    for case in cases {
        let name = field(case, "name").as_str().expect("name");
        let bits = uint(case, "heap_address_bits") as u32;
        let mut heap = Heap::new(Flavour::new(bits).expect("valid flavour"));
        heap.set_repeat_pointers(field(case, "repeat_pointers").as_bool().expect("bool"));
        for content in field(case, "contents").as_array().expect("list") {
            if let Some(item) = content.get("item") {
                let allow = field(item, "allow_immediate").as_bool().expect("bool");
                let value = hex::decode(field(item, "value").as_str().expect("hex")).expect("valid hex");
                heap.add(Item::new(uint(item, "id"), value).allow_immediate(allow))
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            } else if let Some(d) = content.get("descriptor") {
                heap.add_descriptor(&descriptor(d))
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            } else if let Some(control) = content.get("stream_control") {
                let control = match control.as_str() {
                    Some("start") => StreamControl::Start,
                    Some("end") => StreamControl::Stop,
                    other => panic!("{name}: unknown stream control {other:?}"),
                };
                heap.add_stream_control(control)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            } else {
                panic!("{name}: unknown content {content}");
            }
        }
        let sizing = PacketSizing::new(uint(case, "max_packet_size") as usize).expect("valid size");
        let ours: Vec<String> = sizing
            .packets(&heap, uint(case, "cnt"))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .map(hex::encode)
            .collect();
        let theirs: Vec<&str> = field(case, "packets")
            .as_array()
            .expect("packets is a list")
            .iter()
            .map(|p| p.as_str().expect("hex string"))
            .collect();
        assert_eq!(ours.len(), theirs.len(), "{name}: packet count");
        for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            assert_eq!(a, b, "{name}: packet {i} differs");
        }
        packets_checked += theirs.len();
    }
    println!(
        "golden vectors: {} cases, {packets_checked} packets checked byte for byte ({})",
        cases.len(),
        path.display()
    );
    assert!(
        !cases.is_empty() && packets_checked > 0,
        "no golden vectors were checked"
    );
}
