//! The pcap transport: each packet written to a pcap file as an
//! Ethernet/IPv4/UDP frame (the headers an AF_XDP sender would put on the
//! wire), timestamped when written, so Wireshark, tcpdump and spead2's pcap
//! reader open it. The file is complete once the stream is dropped.

use std::fs::File;
use std::io::BufWriter;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use pcap_file::pcap::{PcapPacket, PcapWriter};

use super::frame::{MacAddress, UdpFrameTemplate, HEADERS_LEN};
use super::{check_udp_payload, Limits, PacketSource, Transport, TransportError};

const MAX_BATCH: usize = 64;

/// What to write and how to frame it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcapConfig {
    /// The file to create.
    pub path: PathBuf,
    /// One destination per substream (IPv4).
    pub destinations: Vec<SocketAddrV4>,
    /// Source address and port in the frames.
    pub source: SocketAddrV4,
    /// Source MAC in the frames.
    pub source_mac: MacAddress,
    /// Destination MAC for unicast destinations (multicast ones map from
    /// the group).
    pub unicast_mac: MacAddress,
    /// IPv4 TTL in the frames.
    pub ttl: u8,
}

impl PcapConfig {
    /// Frames from 127.0.0.1:49152 with locally administered MACs, TTL 64.
    pub fn new(path: impl Into<PathBuf>, destinations: Vec<SocketAddrV4>) -> Self {
        PcapConfig {
            path: path.into(),
            destinations,
            source: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 49152),
            source_mac: MacAddress([0x02, 0, 0, 0, 0, 0x01]),
            unicast_mac: MacAddress([0x02, 0, 0, 0, 0, 0x02]),
            ttl: 64,
        }
    }
}

/// Writes packets to a pcap file.
pub struct PcapTransport {
    writer: PcapWriter<BufWriter<File>>,
    path: PathBuf,
    templates: Vec<UdpFrameTemplate>,
    frame: Vec<u8>,
    ip_id: u16,
    limits: Limits,
}

impl std::fmt::Debug for PcapTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapTransport").field("path", &self.path).finish()
    }
}

impl PcapTransport {
    /// Creates the file and writes the pcap header.
    pub fn create(config: &PcapConfig) -> Result<Self, TransportError> {
        if config.destinations.is_empty() {
            return Err(TransportError::NoDestinations { transport: "pcap" });
        }
        let file = File::create(&config.path).map_err(TransportError::doing(format!(
            "creating {}",
            config.path.display()
        )))?;
        let writer = PcapWriter::new(BufWriter::new(file)).map_err(|e| {
            TransportError::io(
                format!("writing the pcap header to {}", config.path.display()),
                pcap_io_error(e),
            )
        })?;
        let templates = config
            .destinations
            .iter()
            .map(|d| {
                let mac = if d.ip().is_multicast() {
                    MacAddress::for_multicast(*d.ip())
                } else {
                    config.unicast_mac
                };
                UdpFrameTemplate::new(config.source_mac, mac, config.source, *d, config.ttl)
            })
            .collect();
        Ok(PcapTransport {
            writer,
            path: config.path.clone(),
            templates,
            frame: Vec::new(),
            ip_id: 0,
            limits: Limits {
                max_len: 0,
                substreams: config.destinations.len(),
            },
        })
    }
}

impl Transport for PcapTransport {
    fn substreams(&self) -> usize {
        self.templates.len()
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    fn prepare(&mut self, max_packet_size: usize) -> Result<(), TransportError> {
        check_udp_payload(max_packet_size)?;
        self.frame = vec![0; HEADERS_LEN + max_packet_size];
        self.limits.max_len = max_packet_size;
        Ok(())
    }

    fn send(&mut self, packets: &mut dyn PacketSource<'_>) -> Result<usize, TransportError> {
        let limits = self.limits;
        limits.fill(packets, MAX_BATCH, |packets, spec| {
            let len = HEADERS_LEN + spec.len;
            packets.write(&mut self.frame[HEADERS_LEN..len]);
            self.templates[spec.substream].write(&mut self.frame, spec.len, self.ip_id);
            self.ip_id = self.ip_id.wrapping_add(1);
            let time = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            self.writer
                .write_packet(&PcapPacket::new(time, len as u32, &self.frame[..len]))
                .map_err(|e| {
                    TransportError::io(
                        format!("writing a packet to {}", self.path.display()),
                        pcap_io_error(e),
                    )
                })?;
            Ok(true)
        })
    }
}

/// The I/O error under a pcap writer's error, or the pcap error itself
/// as the source of one.
fn pcap_io_error(error: pcap_file::PcapError) -> std::io::Error {
    match error {
        pcap_file::PcapError::IoError(e) => e,
        other => std::io::Error::other(other),
    }
}
