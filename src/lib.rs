//! spead-xdp: a SPEAD sender for radio-astronomy signal chains, byte-compatible
//! with spead2.
//!
//! Layers, each usable alone, data flowing one way (heap -> packetizer ->
//! frame -> ring -> wire):
//! - [`protocol`]: flavours, items, descriptors, heaps, the packetizer, the
//!   decoder and the heap reassembler.
//! - [`pacing`]: the clock and spead2's rate limiter.
//! - [`transport`]: where packets go, behind one trait.
//! - [`stream`]: the user's API, spead2's send stream, and its worker.
//! - [`receive`]: receiving and decoding heaps, for monitors.
//! - `sink` (feature `sink`): the XDP sink of the veth harness.
#![deny(missing_docs)]
// `unsafe` lives only in the transport, each block with a SAFETY line.
#![deny(unsafe_code)]

pub mod pacing;
pub mod protocol;
pub mod receive;
#[cfg(feature = "sink")]
pub mod sink;
pub mod stream;
pub mod transport;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
