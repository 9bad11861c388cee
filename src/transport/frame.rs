//! Ethernet/IPv4/UDP headers for SPEAD packets, precomputed once per
//! destination: per packet only the lengths, the IP identification and the
//! IPv4 checksum change, and the checksum is patched from a precomputed
//! partial sum. The UDP checksum is 0 (allowed for IPv4, as spead2's
//! ibverbs path sends it).

use std::net::{Ipv4Addr, SocketAddrV4};

/// Bytes of Ethernet (14), IPv4 (20) and UDP (8) headers.
pub const HEADERS_LEN: usize = 42;

mod field {
    use core::ops::Range;
    pub const ETH_DST: Range<usize> = 0..6;
    pub const ETH_SRC: Range<usize> = 6..12;
    pub const ETH_TYPE: Range<usize> = 12..14;
    pub const IP: usize = 14;
    pub const IP_TOTAL_LEN: Range<usize> = 16..18;
    pub const IP_ID: Range<usize> = 18..20;
    pub const IP_CHECKSUM: Range<usize> = 24..26;
    pub const UDP: usize = 34;
    pub const UDP_LEN: Range<usize> = 38..40;
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
        h[field::ETH_DST].copy_from_slice(&destination_mac.0);
        h[field::ETH_SRC].copy_from_slice(&source_mac.0);
        h[field::ETH_TYPE].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip = field::IP;
        h[ip] = 0x45; // version 4, 5 words of header
        h[ip + 6] = 0x40; // don't fragment
        h[ip + 8] = ttl;
        h[ip + 9] = 17; // UDP
        h[ip + 12..ip + 16].copy_from_slice(&source.ip().octets());
        h[ip + 16..ip + 20].copy_from_slice(&destination.ip().octets());
        let udp = field::UDP;
        h[udp..udp + 2].copy_from_slice(&source.port().to_be_bytes());
        h[udp + 2..udp + 4].copy_from_slice(&destination.port().to_be_bytes());
        let partial_sum = ones_complement_sum(&h[ip..udp]);
        UdpFrameTemplate {
            headers: h,
            partial_sum,
        }
    }

    /// Writes the headers for a UDP payload of `payload_len` bytes with IP
    /// identification `ip_id` into the first 42 bytes of `frame`.
    pub fn write(&self, frame: &mut [u8], payload_len: usize, ip_id: u16) {
        let frame = &mut frame[..HEADERS_LEN];
        frame.copy_from_slice(&self.headers);
        let total = (payload_len + HEADERS_LEN - field::IP) as u16;
        frame[field::IP_TOTAL_LEN].copy_from_slice(&total.to_be_bytes());
        frame[field::IP_ID].copy_from_slice(&ip_id.to_be_bytes());
        let checksum = !fold(self.partial_sum + u32::from(total) + u32::from(ip_id));
        frame[field::IP_CHECKSUM].copy_from_slice(&checksum.to_be_bytes());
        frame[field::UDP_LEN].copy_from_slice(&((payload_len + 8) as u16).to_be_bytes());
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
