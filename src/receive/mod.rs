//! Receiving: the reassembler over sockets or pcap files, for monitors and
//! tests, with descriptors applied to name and decode items.

pub mod receiver;
pub mod source;
pub mod values;

pub use receiver::{Event, Receiver, ReceiverStats};
pub use source::{Received, Source, SourceError, UdpOptions};
pub use values::{decode, Scalar, Value};
