//! Receiving: the reassembler over sockets or pcap files, for monitors and
//! tests, with descriptors applied to name and decode items.

mod reader;
mod receiver;
mod source;
mod values;

pub use receiver::{Event, Receiver, ReceiverConfig, ReceiverHandle, ReceiverStats};
pub use source::{PcapSource, Received, Source, SourceError, UdpOptions};
pub use values::{decode, Scalar, Value};
