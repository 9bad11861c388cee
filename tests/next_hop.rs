//! Addressing of raw frames. The next hop, from the kernel's own route and
//! neighbour tables (rtnetlink), in a namespace of the test's own: on link,
//! through a gateway on a specific route (not a default one), out of
//! another interface (refused), and with no route at all (refused). And the
//! source address AF_XDP frames carry on the veth harness: the interface's
//! primary one, or another of its addresses when asked (`--bind`).

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use common::netns::{privileged, run_in, run_ip, Netns};
use common::veth::VethHarness;
use spead_xdp::protocol::{Flavour, Heap, Item};
use spead_xdp::stream::{Stream, StreamConfig};
use spead_xdp::transport::internals::Interface;
use spead_xdp::transport::MacAddress;
use spead_xdp::transport::{TransportError, XdpConfig, XdpTransport};

/// veth0 10.9.0.1/24 with a host 10.9.0.7 and a gateway 10.9.0.254 (to
/// 10.77.0.0/16) beside it; veth1 10.8.0.1/24 with a host 10.8.0.9. The
/// neighbours are permanent entries, so no ARP is needed.
fn routed_namespace(tag: &str) -> Netns {
    let ns = Netns::new(tag);
    ns.ip(&["link", "add", "veth0", "type", "veth", "peer", "name", "veth1"]);
    ns.ip(&["addr", "add", "10.9.0.1/24", "dev", "veth0"]);
    ns.ip(&["addr", "add", "10.8.0.1/24", "dev", "veth1"]);
    ns.ip(&["link", "set", "veth0", "up"]);
    ns.ip(&["link", "set", "veth1", "up"]);
    for (ip, mac, dev) in [
        ("10.9.0.7", "02:00:00:00:00:07", "veth0"),
        ("10.9.0.254", "02:00:00:00:00:fe", "veth0"),
        ("10.8.0.9", "02:00:00:00:00:09", "veth1"),
    ] {
        ns.ip(&["neigh", "add", ip, "lladdr", mac, "dev", dev, "nud", "permanent"]);
    }
    ns.ip(&[
        "route",
        "add",
        "10.77.0.0/16",
        "via",
        "10.9.0.254",
        "dev",
        "veth0",
    ]);
    ns
}

#[test]
fn the_next_hop_follows_the_kernels_routes() {
    if !privileged("the_next_hop_follows_the_kernels_routes") {
        return;
    }
    let ns = routed_namespace("nhroutes");
    ns.run(|| {
        let veth0 = Interface::lookup("veth0").unwrap();
        let source = veth0.source_address(None).unwrap();
        let hop = |ip: [u8; 4]| veth0.next_hop_mac(Ipv4Addr::from(ip), source, Duration::from_millis(200));

        // On link: the host's own entry.
        assert_eq!(hop([10, 9, 0, 7]).unwrap(), MacAddress([2, 0, 0, 0, 0, 7]));
        // Through the gateway of a specific route (there is no default route).
        assert_eq!(hop([10, 77, 1, 2]).unwrap(), MacAddress([2, 0, 0, 0, 0, 0xfe]));
        // The kernel sends it out of veth1: frames from veth0 would be lost.
        let elsewhere = hop([10, 8, 0, 9]).unwrap_err();
        assert!(
            matches!(
                &elsewhere,
                TransportError::RoutedElsewhere { destination, route_interface, interface }
                    if *destination == Ipv4Addr::new(10, 8, 0, 9) && route_interface == "veth1" && interface == "veth0"
            ),
            "{elsewhere}"
        );
        // Nowhere to go.
        let nowhere = hop([10, 66, 0, 1]).unwrap_err();
        assert!(
            matches!(&nowhere, TransportError::NoRoute { destination, .. } if *destination == Ipv4Addr::new(10, 66, 0, 1)),
            "{nowhere}"
        );

        // The interface a destination's route leaves by.
        assert_eq!(
            Interface::towards(Ipv4Addr::new(10, 77, 1, 2)).unwrap().name,
            "veth0"
        );
        assert_eq!(
            Interface::towards(Ipv4Addr::new(10, 8, 0, 9)).unwrap().name,
            "veth1"
        );
    });
}

#[test]
fn an_unanswered_neighbour_is_an_error_naming_it() {
    if !privileged("an_unanswered_neighbour_is_an_error_naming_it") {
        return;
    }
    let ns = routed_namespace("nhunanswered");
    ns.run(|| {
        let veth0 = Interface::lookup("veth0").unwrap();
        // On veth0's subnet, but nobody answers ARP for it.
        let error = veth0
            .next_hop_mac(
                Ipv4Addr::new(10, 9, 0, 99),
                Ipv4Addr::new(10, 9, 0, 1),
                Duration::from_millis(200),
            )
            .unwrap_err();
        assert!(
            matches!(
                &error,
                TransportError::NeighbourUnresolved { hop, interface, .. }
                    if *hop == Ipv4Addr::new(10, 9, 0, 99) && interface == "veth0"
            ),
            "{error}"
        );
    });
}

/// The source address of the first datagram `source` (None: the
/// interface's primary address) makes the peer receive over AF_XDP.
fn received_from(harness: &VethHarness, source: Option<Ipv4Addr>) -> SocketAddr {
    let peer = harness.peer(7148);
    let receiver = run_in(harness.get("NETNS"), || UdpSocket::bind(peer).unwrap());
    receiver.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut config = XdpConfig::new(harness.get("HOST_IF"), vec![peer]);
    config.source = source;
    let stream = Stream::new(XdpTransport::new(&config).unwrap(), StreamConfig::default()).unwrap();
    let mut heap = Heap::new(Flavour::SPEAD_64_48);
    heap.add(Item::immediate(0x1600, 1)).unwrap();
    stream.send_heap(heap).unwrap();
    let mut buf = [0u8; 2048];
    receiver.recv_from(&mut buf).expect("a datagram over AF_XDP").1
}

#[test]
fn af_xdp_frames_carry_the_chosen_source_address() {
    if !privileged("af_xdp_frames_carry_the_chosen_source_address") {
        return;
    }
    let harness = VethHarness::up(&format!("sxsrc{}", std::process::id() % 100_000), 240, 1500, 1);
    let host_if = harness.get("HOST_IF");
    let primary: Ipv4Addr = harness.get("HOST_IP").parse().unwrap();
    // A second address of the harness's host end (gone with the harness).
    let second = Ipv4Addr::new(10, 200, 240, 11);
    run_ip(&["addr", "add", &format!("{second}/24"), "dev", host_if]);

    assert_eq!(received_from(&harness, None).ip(), primary);
    assert_eq!(received_from(&harness, Some(second)).ip(), second);

    let foreign = Ipv4Addr::new(10, 200, 240, 99);
    let mut config = XdpConfig::new(host_if, vec![harness.peer(7148)]);
    config.source = Some(foreign);
    let Err(error) = XdpTransport::new(&config) else {
        panic!("a source the interface lacks was accepted");
    };
    assert!(
        matches!(
            &error,
            TransportError::NotInterfaceAddress { address, interface, addresses }
                if *address == foreign && interface == host_if && addresses.contains(&second)
        ),
        "{error}"
    );
}
