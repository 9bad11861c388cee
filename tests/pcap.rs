//! The pcap transport: every frame is a valid Ethernet/IPv4/UDP frame
//! (checked with etherparse) carrying exactly the packet, to the right MAC
//! and port; and spead2's pcap reader decodes the heaps.

mod common;

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Command;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use pcap_file::pcap::PcapReader;
use serde_json::Value;
use spead_xdp::protocol::{Flavour, Heap, Item, PacketSizing};
use spead_xdp::stream::{HeapRef, Stream, StreamConfig};
use spead_xdp::transport::{PcapConfig, PcapTransport};

fn heap(seed: u8) -> Heap<'static> {
    let mut heap = Heap::new(Flavour::SPEAD_64_48);
    heap.add(Item::immediate(0x1600, u64::from(seed) * 1000)).unwrap();
    heap.add(Item::new(0x1800, vec![seed; 5000])).unwrap();
    heap
}

#[test]
fn frames_are_valid_and_spead2_reads_the_file() {
    let dir = std::env::temp_dir().join(format!("spead-xdp-pcap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("out.pcap");
    let group = SocketAddrV4::new(Ipv4Addr::new(239, 1, 2, 3), 7148);
    let unicast = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 7149);
    let transport = PcapTransport::create(&PcapConfig::new(&path, vec![group, unicast])).unwrap();
    let stream = Stream::new(transport, StreamConfig::default()).unwrap();
    let sizing = PacketSizing::new(1472).unwrap();
    let mut expected = Vec::new(); // (substream, packet)
    for i in 0..4u8 {
        let substream = usize::from(i % 2);
        let h = heap(i);
        expected.extend(
            sizing
                .packets(&h, u64::from(i) + 1)
                .unwrap()
                .map(|p| (substream, p)),
        );
        stream.send_heap(HeapRef::new(h).substream(substream)).unwrap();
    }
    let mut end = Heap::new(Flavour::SPEAD_64_48);
    end.add_end().unwrap();
    expected.extend(sizing.packets(&end, 5).unwrap().map(|p| (0, p)));
    stream.send_heap(end).unwrap();
    drop(stream);

    let mut reader = PcapReader::new(File::open(&path).unwrap()).unwrap();
    let mut frames = 0;
    while let Some(packet) = reader.next_packet() {
        let packet = packet.unwrap();
        let (substream, want) = &expected[frames];
        let sliced = SlicedPacket::from_ethernet(&packet.data).expect("valid Ethernet frame");
        let Some(NetSlice::Ipv4(ip)) = sliced.net else {
            panic!("not IPv4")
        };
        let header = ip.header().to_header();
        assert_eq!(
            header.header_checksum,
            header.calc_header_checksum(),
            "IPv4 checksum"
        );
        let Some(TransportSlice::Udp(udp)) = sliced.transport else {
            panic!("not UDP")
        };
        let (dst, mac) = if *substream == 0 {
            (group, [0x01, 0x00, 0x5e, 0x01, 0x02, 0x03])
        } else {
            (unicast, [0x02, 0, 0, 0, 0, 0x02])
        };
        assert_eq!(&packet.data[..6], &mac);
        assert_eq!(Ipv4Addr::from(header.destination), *dst.ip());
        assert_eq!(udp.destination_port(), dst.port());
        assert_eq!(usize::from(udp.length()), want.len() + 8);
        assert_eq!(udp.payload(), &want[..], "frame {frames}");
        frames += 1;
    }
    assert_eq!(frames, expected.len());

    let out = Command::new(common::python())
        .arg(common::script("recv_heaps.py"))
        .args(["1472", "10", "--pcap"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let heaps = report["heaps"].as_array().unwrap();
    assert_eq!(heaps.len(), 4, "{report}");
    for (i, h) in heaps.iter().enumerate() {
        assert_eq!(h["cnt"], i as u64 + 1);
        assert_eq!(h["complete"], true);
        let spectrum = h["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|it| it[0] == 0x1800)
            .unwrap();
        assert_eq!(spectrum[2], hex::encode(vec![i as u8; 5000]));
    }
    println!(
        "{frames} frames valid; spead2's pcap reader decoded {} heaps",
        heaps.len()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
