//! Ethernet/IPv4/UDP headers for SPEAD packets, precomputed once per
//! destination: per packet only the lengths, the IP identification and the
//! IPv4 checksum change, and the checksum is patched from a precomputed
//! partial sum. The UDP checksum is 0 (allowed for IPv4, as spead2's
//! ibverbs path sends it).

use std::net::{Ipv4Addr, SocketAddrV4};

/// Bytes of Ethernet (14), IPv4 (20) and UDP (8) headers.
pub const HEADERS_LEN: usize = 42;

/// Byte ranges of every header field, Ethernet from the frame's start.
mod field {
    use core::ops::Range;
    pub const ETH_DST: Range<usize> = 0..6;
    pub const ETH_SRC: Range<usize> = 6..12;
    pub const ETH_TYPE: Range<usize> = 12..14;
    /// Start of the IPv4 header.
    pub const IP: usize = 14;
    pub const IP_VERSION_IHL: usize = 14;
    pub const IP_TOTAL_LEN: Range<usize> = 16..18;
    pub const IP_ID: Range<usize> = 18..20;
    pub const IP_FLAGS_FRAGMENT: Range<usize> = 20..22;
    pub const IP_TTL: usize = 22;
    pub const IP_PROTOCOL: usize = 23;
    pub const IP_CHECKSUM: Range<usize> = 24..26;
    pub const IP_SRC: Range<usize> = 26..30;
    pub const IP_DST: Range<usize> = 30..34;
    /// Start of the UDP header.
    pub const UDP: usize = 34;
    pub const UDP_SRC_PORT: Range<usize> = 34..36;
    pub const UDP_DST_PORT: Range<usize> = 36..38;
    pub const UDP_LEN: Range<usize> = 38..40;
}

const ETHERTYPE_IPV4: u16 = 0x0800;
/// IPv4, five 32-bit words of header (no options).
const IPV4_VERSION_IHL: u8 = 0x45;
/// The IPv4 "don't fragment" flag, fragment offset 0.
const IPV4_DONT_FRAGMENT: u16 = 0x4000;
const IP_PROTOCOL_UDP: u8 = 17;
/// Bytes of UDP header.
const UDP_HEADER_LEN: usize = HEADERS_LEN - field::UDP;

/// A writable view of a frame's Ethernet, IPv4 and UDP headers, one
/// setter a field.
struct HeadersMut<'a>(&'a mut [u8; HEADERS_LEN]);

impl HeadersMut<'_> {
    fn set_macs(&mut self, destination: MacAddress, source: MacAddress) {
        self.0[field::ETH_DST].copy_from_slice(&destination.0);
        self.0[field::ETH_SRC].copy_from_slice(&source.0);
    }

    fn set_ethertype(&mut self, ethertype: u16) {
        self.0[field::ETH_TYPE].copy_from_slice(&ethertype.to_be_bytes());
    }

    fn set_ip_version_ihl(&mut self, value: u8) {
        self.0[field::IP_VERSION_IHL] = value;
    }

    fn set_ip_flags_fragment(&mut self, value: u16) {
        self.0[field::IP_FLAGS_FRAGMENT].copy_from_slice(&value.to_be_bytes());
    }

    fn set_ip_ttl(&mut self, ttl: u8) {
        self.0[field::IP_TTL] = ttl;
    }

    fn set_ip_protocol(&mut self, protocol: u8) {
        self.0[field::IP_PROTOCOL] = protocol;
    }

    fn set_ip_addresses(&mut self, source: Ipv4Addr, destination: Ipv4Addr) {
        self.0[field::IP_SRC].copy_from_slice(&source.octets());
        self.0[field::IP_DST].copy_from_slice(&destination.octets());
    }

    #[inline]
    fn set_ip_total_len(&mut self, len: u16) {
        self.0[field::IP_TOTAL_LEN].copy_from_slice(&len.to_be_bytes());
    }

    #[inline]
    fn set_ip_id(&mut self, id: u16) {
        self.0[field::IP_ID].copy_from_slice(&id.to_be_bytes());
    }

    #[inline]
    fn set_ip_checksum(&mut self, checksum: u16) {
        self.0[field::IP_CHECKSUM].copy_from_slice(&checksum.to_be_bytes());
    }

    fn set_udp_ports(&mut self, source: u16, destination: u16) {
        self.0[field::UDP_SRC_PORT].copy_from_slice(&source.to_be_bytes());
        self.0[field::UDP_DST_PORT].copy_from_slice(&destination.to_be_bytes());
    }

    #[inline]
    fn set_udp_len(&mut self, len: u16) {
        self.0[field::UDP_LEN].copy_from_slice(&len.to_be_bytes());
    }
}

/// A MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddress(pub [u8; 6]);

impl MacAddress {
    /// The Ethernet address an IPv4 multicast group maps to (RFC 1112).
    pub fn for_multicast(group: Ipv4Addr) -> Self {
        let o = group.octets();
        MacAddress([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]])
    }
}

impl std::fmt::Display for MacAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// The headers for one source and destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpFrameTemplate {
    headers: [u8; HEADERS_LEN],
    /// One's-complement sum of the IPv4 header without length, ID and
    /// checksum.
    partial_sum: u32,
}

fn ones_complement_sum(bytes: &[u8]) -> u32 {
    bytes
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum()
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

impl UdpFrameTemplate {
    /// Headers from `source` to `destination` with these MACs and TTL; the
    /// IPv4 "don't fragment" flag is set.
    pub fn new(
        source_mac: MacAddress,
        destination_mac: MacAddress,
        source: SocketAddrV4,
        destination: SocketAddrV4,
        ttl: u8,
    ) -> Self {
        let mut h = [0u8; HEADERS_LEN];
        let mut view = HeadersMut(&mut h);
        view.set_macs(destination_mac, source_mac);
        view.set_ethertype(ETHERTYPE_IPV4);
        view.set_ip_version_ihl(IPV4_VERSION_IHL);
        view.set_ip_flags_fragment(IPV4_DONT_FRAGMENT);
        view.set_ip_ttl(ttl);
        view.set_ip_protocol(IP_PROTOCOL_UDP);
        view.set_ip_addresses(*source.ip(), *destination.ip());
        view.set_udp_ports(source.port(), destination.port());
        let partial_sum = ones_complement_sum(&h[field::IP..field::UDP]);
        UdpFrameTemplate {
            headers: h,
            partial_sum,
        }
    }

    /// Writes the headers for a UDP payload of `payload_len` bytes with IP
    /// identification `ip_id` into the first 42 bytes of `frame`.
    #[inline]
    pub fn write(&self, frame: &mut [u8], payload_len: usize, ip_id: u16) {
        let frame: &mut [u8; HEADERS_LEN] = (&mut frame[..HEADERS_LEN]).try_into().expect("42 bytes");
        *frame = self.headers;
        let mut view = HeadersMut(frame);
        let total = (payload_len + HEADERS_LEN - field::IP) as u16;
        view.set_ip_total_len(total);
        view.set_ip_id(ip_id);
        view.set_ip_checksum(!fold(self.partial_sum + u32::from(total) + u32::from(ip_id)));
        view.set_udp_len((payload_len + UDP_HEADER_LEN) as u16);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_checksum_are_right() {
        let t = UdpFrameTemplate::new(
            MacAddress([2, 0, 0, 0, 0, 1]),
            MacAddress::for_multicast(Ipv4Addr::new(239, 129, 2, 3)),
            SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 40000),
            SocketAddrV4::new(Ipv4Addr::new(239, 129, 2, 3), 7148),
            4,
        );
        let mut frame = [0u8; HEADERS_LEN];
        t.write(&mut frame, 1472, 0x1234);
        assert_eq!(&frame[..6], &[0x01, 0x00, 0x5e, 0x01, 0x02, 0x03]);
        assert_eq!(&frame[16..18], &(1500u16).to_be_bytes());
        assert_eq!(&frame[38..40], &(1480u16).to_be_bytes());
        // A correct header sums to 0xffff.
        assert_eq!(fold(ones_complement_sum(&frame[14..34])), 0xffff);
        for (len, id) in [(0, 0), (8972, 0xffff), (65507, 0xfffe)] {
            t.write(&mut frame, len, id);
            assert_eq!(fold(ones_complement_sum(&frame[14..34])), 0xffff, "{len} {id}");
        }
    }

    #[test]
    fn multicast_macs_keep_23_bits() {
        assert_eq!(
            MacAddress::for_multicast(Ipv4Addr::new(239, 255, 254, 253)).to_string(),
            "01:00:5e:7f:fe:fd"
        );
    }
}
