//! The SPEAD protocol, apart from any I/O: flavours and item pointers, the
//! packet wire view, heaps and descriptors as the sender builds them, the
//! packetizer that writes spead2's exact packets into frames, and the
//! decoder and reassembler that read them back.

mod decoder;
mod descriptor;
mod flavour;
mod heap;
pub(crate) mod packetizer;
mod reassembler;
mod wire;

pub use decoder::{DecodeError, PacketInfo};
pub use descriptor::{DataType, Descriptor, DescriptorError, FormatField, NumpyDtype};
pub use flavour::{Flavour, FlavourError, ItemPointer, StreamControl};
pub use heap::{ForeignBytes, ForeignMemory, Heap, HeapError, Item, ItemHandle, ItemValue, Piece};
pub use packetizer::{HeapPackets, PacketPieces, PacketSizing, PacketizeError, MAX_PARTS};
pub use reassembler::{
    Reassembler, ReassemblerConfig, ReassemblyError, ReassemblyStats, ReceivedHeap, ReceivedItem,
};
