//! Receiving: the reassembler over sockets or pcap files, for monitors and
//! tests, with descriptors applied to name and decode items.

pub mod values;

pub use values::{decode, Scalar, Value};
