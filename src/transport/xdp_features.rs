//! What an interface's driver offers for XDP, as the kernel reports it in
//! the netdev generic-netlink family's `xdp-features` (Linux 6.3 and
//! later), and the choice it makes between the AF_XDP and UDP transports:
//! AF_XDP pays only where the driver sends from the UMEM itself
//! (zero-copy); in copy mode the kernel builds an skb a packet, and our UDP
//! transport with GSO is the faster path.

use std::fmt;
use std::io;

use netlink_packet_core::{
    DecodeError, Emitable, ErrorContext, Nla, NlaBuffer, NlasIterator, Parseable, ParseableParametrized,
    NLM_F_REQUEST,
};
use netlink_packet_generic::{GenlFamily, GenlHeader, GenlMessage};
use netlink_sys::protocols::NETLINK_GENERIC;

use super::netlink::exchange_on;

/// The generic-netlink controller (include/uapi/linux/genetlink.h): its
/// static ID, `CTRL_CMD_GETFAMILY`, version, and the attributes
/// `CTRL_ATTR_FAMILY_ID` (u16) and `CTRL_ATTR_FAMILY_NAME` (string).
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_VERSION: u8 = 2;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
/// The netdev family's name and version (include/uapi/linux/netdev.h).
const NETDEV_FAMILY: &str = "netdev";
const NETDEV_FAMILY_VERSION: u8 = 1;
/// `NETDEV_CMD_DEV_GET`.
const NETDEV_CMD_DEV_GET: u8 = 1;
/// `NETDEV_A_DEV_IFINDEX` (u32) and `NETDEV_A_DEV_XDP_FEATURES` (u64).
const NETDEV_A_DEV_IFINDEX: u16 = 1;
const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;

/// The bits of `enum netdev_xdp_act`, with the names `ynl` gives them.
const FEATURE_NAMES: [(u64, &str); 7] = [
    (1, "basic"),
    (2, "redirect"),
    (4, "ndo-xmit"),
    (8, "xsk-zerocopy"),
    (16, "hw-offload"),
    (32, "rx-sg"),
    (64, "ndo-xmit-sg"),
];
const XSK_ZEROCOPY: u64 = 8;

/// An interface's XDP features (`NETDEV_XDP_ACT_*` bits) as its driver
/// reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct XdpFeatures(u64);

impl XdpFeatures {
    /// Features from the kernel's bits.
    pub fn from_bits(bits: u64) -> Self {
        XdpFeatures(bits)
    }

    /// The kernel's bits.
    pub fn bits(self) -> u64 {
        self.0
    }

    /// Whether the driver sends AF_XDP frames from the UMEM itself.
    pub fn zero_copy(self) -> bool {
        self.0 & XSK_ZEROCOPY != 0
    }

    /// Asks the kernel for interface `index`'s features. Fails where the
    /// kernel has no netdev family (before Linux 6.3) or no such interface.
    pub fn query(index: u32) -> io::Result<Self> {
        let family = netdev_family_id()?;
        // Netlink attributes are in host byte order.
        let request = GenlRaw::request(
            family,
            NETDEV_CMD_DEV_GET,
            NETDEV_FAMILY_VERSION,
            vec![RawAttribute::new(
                NETDEV_A_DEV_IFINDEX,
                index.to_ne_bytes().to_vec(),
            )],
        );
        exchange_on(NETLINK_GENERIC, request, NLM_F_REQUEST)?
            .iter()
            .find_map(|answer| answer.payload.attribute(NETDEV_A_DEV_XDP_FEATURES))
            .and_then(|bits| Some(XdpFeatures(u64::from_ne_bytes(bits.get(..8)?.try_into().ok()?))))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "no xdp-features in the kernel's answer",
                )
            })
    }
}

impl fmt::Display for XdpFeatures {
    /// The features' names, as `ynl --family netdev` shows them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names = FEATURE_NAMES.iter().filter(|(bit, _)| self.0 & bit != 0);
        match names.next() {
            None => f.write_str("none"),
            Some((_, first)) => {
                f.write_str(first)?;
                names.try_for_each(|(_, name)| write!(f, ", {name}"))
            }
        }
    }
}

/// The transport `--transport auto` takes, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportChoice {
    /// AF_XDP: the driver sends from the UMEM itself.
    Xdp {
        /// Why, for the log.
        reason: String,
    },
    /// The UDP transport: faster than copy-mode AF_XDP, or AF_XDP cannot
    /// serve.
    Udp {
        /// Why, for the log.
        reason: String,
    },
}

impl TransportChoice {
    /// The choice for an interface with these reported features (the
    /// query's error where the kernel would not say).
    pub fn for_features(interface: &str, features: io::Result<XdpFeatures>) -> Self {
        match features {
            Ok(features) if features.zero_copy() => TransportChoice::Xdp {
                reason: format!("{interface}'s driver offers AF_XDP zero-copy (xdp-features: {features})"),
            },
            Ok(features) => TransportChoice::Udp {
                reason: format!(
                    "{interface}'s driver offers no AF_XDP zero-copy (xdp-features: {features}), \
                     and copy-mode AF_XDP is slower than UDP with GSO"
                ),
            },
            Err(e) => TransportChoice::Udp {
                reason: format!("the kernel does not report {interface}'s xdp-features ({e})"),
            },
        }
    }

    /// The choice for interface `name`, asking the kernel for its
    /// features.
    pub fn for_interface(name: &str) -> Self {
        let features = nix::net::if_::if_nametoindex(name)
            .map_err(io::Error::from)
            .and_then(XdpFeatures::query);
        Self::for_features(name, features)
    }
}

/// The netdev family's ID, which the kernel assigns when it registers it
/// (asked of the generic-netlink controller).
fn netdev_family_id() -> io::Result<u16> {
    let name = [NETDEV_FAMILY.as_bytes(), &[0]].concat();
    let request = GenlRaw::request(
        GENL_ID_CTRL,
        CTRL_CMD_GETFAMILY,
        CTRL_VERSION,
        vec![RawAttribute::new(CTRL_ATTR_FAMILY_NAME, name)],
    );
    let answers =
        exchange_on(NETLINK_GENERIC, request, NLM_F_REQUEST).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) => io::Error::new(
                io::ErrorKind::NotFound,
                "the kernel has no netdev generic-netlink family (Linux 6.3 or later has)",
            ),
            _ => e,
        })?;
    answers
        .iter()
        .find_map(|answer| answer.payload.attribute(CTRL_ATTR_FAMILY_ID))
        .and_then(|id| Some(u16::from_ne_bytes(id.get(..2)?.try_into().ok()?)))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "no family ID in the controller's answer",
            )
        })
}

/// A generic-netlink message of any family, its attributes kept raw: what
/// this crate asks is read by kind, and whatever else a kernel adds is
/// passed over.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GenlRaw {
    family: u16,
    command: u8,
    version: u8,
    attributes: Vec<RawAttribute>,
}

impl GenlRaw {
    /// A request to `family` (its ID), ready to send.
    fn request(family: u16, command: u8, version: u8, attributes: Vec<RawAttribute>) -> GenlMessage<Self> {
        let mut message = GenlMessage::from_payload(GenlRaw {
            family,
            command,
            version,
            attributes,
        });
        message.finalize();
        message
    }

    /// The value of the first attribute of `kind`.
    fn attribute(&self, kind: u16) -> Option<&[u8]> {
        self.attributes
            .iter()
            .find(|a| a.kind == kind)
            .map(|a| a.value.as_slice())
    }
}

/// One netlink attribute, its value as the kernel sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RawAttribute {
    kind: u16,
    value: Vec<u8>,
}

impl RawAttribute {
    fn new(kind: u16, value: Vec<u8>) -> Self {
        RawAttribute { kind, value }
    }
}

impl Nla for RawAttribute {
    fn value_len(&self) -> usize {
        self.value.len()
    }

    fn kind(&self) -> u16 {
        self.kind
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        buffer[..self.value.len()].copy_from_slice(&self.value);
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for RawAttribute {
    fn parse(buffer: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        Ok(RawAttribute::new(buffer.kind(), buffer.value().to_vec()))
    }
}

impl GenlFamily for GenlRaw {
    fn family_name() -> &'static str {
        // Unused: the ID is resolved (or static) before sending.
        NETDEV_FAMILY
    }

    fn family_id(&self) -> u16 {
        self.family
    }

    fn command(&self) -> u8 {
        self.command
    }

    fn version(&self) -> u8 {
        self.version
    }
}

impl Emitable for GenlRaw {
    fn buffer_len(&self) -> usize {
        self.attributes.as_slice().buffer_len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        self.attributes.as_slice().emit(buffer)
    }
}

impl ParseableParametrized<[u8], GenlHeader> for GenlRaw {
    fn parse_with_param(buffer: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        let attributes = NlasIterator::new(buffer)
            .map(|nla| nla.and_then(|nla| RawAttribute::parse(&nla)))
            .collect::<Result<Vec<_>, _>>()
            .context("generic netlink attributes")?;
        Ok(GenlRaw {
            family: 0,
            command: header.cmd,
            version: header.version,
            attributes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_name_their_bits() {
        assert_eq!(XdpFeatures::from_bits(0).to_string(), "none");
        assert_eq!(
            XdpFeatures::from_bits(1 | 2 | 4 | 32 | 64).to_string(),
            "basic, redirect, ndo-xmit, rx-sg, ndo-xmit-sg"
        );
        assert!(XdpFeatures::from_bits(1 | 2 | 8).zero_copy());
        assert!(!XdpFeatures::from_bits(127 & !8).zero_copy());
    }

    #[test]
    fn auto_takes_af_xdp_only_with_zero_copy() {
        // As mlx5 / ice / i40e report: basic, redirect, ndo-xmit, xsk-zerocopy, rx-sg.
        let zero_copy =
            TransportChoice::for_features("ens1f0", Ok(XdpFeatures::from_bits(1 | 2 | 4 | 8 | 32)));
        match zero_copy {
            TransportChoice::Xdp { reason } => {
                assert!(
                    reason.contains("ens1f0") && reason.contains("xsk-zerocopy"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
        // As veth reports: everything but zero-copy.
        let veth = TransportChoice::for_features("veth0", Ok(XdpFeatures::from_bits(1 | 2 | 4 | 32 | 64)));
        match veth {
            TransportChoice::Udp { reason } => {
                assert!(reason.contains("no AF_XDP zero-copy"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        let old_kernel = TransportChoice::for_features(
            "eth0",
            Err(io::Error::new(io::ErrorKind::NotFound, "no netdev family")),
        );
        assert!(
            matches!(old_kernel, TransportChoice::Udp { .. }),
            "{old_kernel:?}"
        );
    }

    #[test]
    fn the_kernel_reports_loopback_without_zero_copy() {
        let index = nix::net::if_::if_nametoindex("lo").expect("lo exists");
        let features = match XdpFeatures::query(index) {
            Ok(features) => features,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Before Linux 6.3: nothing to ask; auto then takes UDP.
                eprintln!("skipped: {e}");
                return;
            }
            Err(e) => panic!("asking for lo's xdp-features: {e}"),
        };
        // Loopback has no XDP driver features at all.
        assert_eq!(features, XdpFeatures::from_bits(0), "{features}");
        assert!(XdpFeatures::query(u32::MAX).is_err());
    }
}
