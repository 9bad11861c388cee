//! Lossy input, crafted as a pcap file: packets dropped, duplicated and
//! reordered, plus junk. The receiver's counters report each exactly and
//! nothing panics.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use pcap_file::pcap::{PcapPacket, PcapWriter};
use spead_xdp::protocol::{Flavour, Heap, Item, PacketSizing};
use spead_xdp::receive::{Event, Receiver, ReceiverConfig, Source, UdpOptions};
use spead_xdp::transport::internals::UdpFrameTemplate;
use spead_xdp::transport::MacAddress;

#[test]
fn drops_duplicates_reordering_and_junk_are_counted_exactly() {
    let sizing = PacketSizing::new(1472).unwrap();
    // Ten heaps of 5 packets each, cnt 1..=10.
    let heaps: Vec<Vec<Vec<u8>>> = (1..=10u64)
        .map(|cnt| {
            let mut heap = Heap::new(Flavour::SPEAD_64_48);
            heap.add(Item::new(0x1800, vec![cnt as u8; 6000])).unwrap();
            sizing.packets(&heap, cnt).unwrap().collect()
        })
        .collect();
    assert!(heaps.iter().all(|h| h.len() == 5));
    let mut packets: Vec<Vec<u8>> = Vec::new();
    for (i, heap) in heaps.iter().enumerate() {
        let cnt = i + 1;
        match cnt {
            3 => packets.extend(heap.iter().take(4).cloned()), // one packet lost: incomplete
            5 => {}                                            // heap lost whole: a cnt gap
            6 => {
                // reordered and one packet duplicated
                for j in [4, 2, 0, 1, 3, 2] {
                    packets.push(heap[j].clone());
                }
            }
            _ => packets.extend(heap.iter().cloned()),
        }
    }
    packets.push(b"definitely not SPEAD".to_vec());
    let template = UdpFrameTemplate::new(
        MacAddress([2, 0, 0, 0, 0, 1]),
        MacAddress([2, 0, 0, 0, 0, 2]),
        SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 40000),
        SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 7148),
        64,
    );
    let path = std::env::temp_dir().join(format!("spead-lossy-{}.pcap", std::process::id()));
    {
        let mut writer = PcapWriter::new(File::create(&path).unwrap()).unwrap();
        for (i, p) in packets.iter().enumerate() {
            let mut frame = vec![0u8; 42 + p.len()];
            template.write(&mut frame, p.len(), i as u16);
            frame[42..].copy_from_slice(p);
            writer
                .write_packet(&PcapPacket::new(
                    Duration::from_micros(i as u64),
                    frame.len() as u32,
                    &frame,
                ))
                .unwrap();
        }
    }
    let source = Source::open(path.to_str().unwrap(), &UdpOptions::default()).unwrap();
    let config = ReceiverConfig {
        deliver_incomplete: true,
        ..Default::default()
    };
    let mut receiver = Receiver::new(vec![source], config).unwrap();
    let mut delivered = Vec::new();
    loop {
        match receiver.next_event(Duration::from_secs(1)).unwrap() {
            Event::Heap(heap) => delivered.push((heap.cnt(), heap.is_complete())),
            Event::Timeout => panic!("a pcap source does not time out"),
            Event::End => break,
        }
    }
    std::fs::remove_file(&path).unwrap();
    delivered.sort();
    let expected: Vec<(u64, bool)> = [1, 2, 3, 4, 6, 7, 8, 9, 10]
        .iter()
        .map(|&c| (c, c != 3))
        .collect();
    assert_eq!(delivered, expected);
    let stats = receiver.stats();
    assert_eq!(stats.packets, packets.len() as u64);
    assert_eq!((stats.heaps_complete, stats.heaps_incomplete), (8, 1));
    assert_eq!((stats.duplicates, stats.malformed), (1, 1));
    // cnt 5 never arrived; cnt 3 arrived incomplete (not a gap).
    assert_eq!(stats.cnt_gaps, 1);
}
