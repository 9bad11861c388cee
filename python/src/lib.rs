//! `spead_xdp._spead_xdp`: the native half of the Python package, spead2's
//! send API over the spead-xdp library. The Python half (`pysrc/`) lays
//! it out as spead2's modules.

use std::sync::Arc;

use pyo3::exceptions::{PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PySlice};

use spead_xdp::protocol::ReceivedHeap;
use spead_xdp::protocol::{self, HeapError, PacketizeError};
use spead_xdp::receive::{
    Event, PcapSource, Receiver, ReceiverConfig, ReceiverHandle, ReceiverStats, Source, SourceError,
    UdpOptions,
};
use spead_xdp::stream::{self, HeapRef, Invalid, SendError, StreamError, WorkerConfig};
use spead_xdp::transport::{InprocQueue, InprocTransport};
use spead_xdp::transport::{
    MemoryTransport, MulticastInterface, PyBufferMemory, TcpTransport, TransportError, UdpConfig,
    UdpTransport, UmemArea, UmemBuffer, XdpCounters, XdpTransport,
};

/// A SPEAD flavour: version 4, 64-bit item pointers, `heap_address_bits`
/// of heap address (spead2's default, `Flavour()`, is 64-40).
#[pyclass(
    module = "spead_xdp._spead_xdp",
    name = "_Flavour",
    frozen,
    eq,
    subclass,
    from_py_object
)]
#[derive(Clone, Copy, PartialEq)]
struct Flavour {
    inner: protocol::Flavour,
}

#[pymethods]
impl Flavour {
    #[new]
    #[pyo3(signature = (version=None, item_pointer_bits=None, heap_address_bits=None, bug_compat=0))]
    fn new(
        version: Option<i64>,
        item_pointer_bits: Option<i64>,
        heap_address_bits: Option<i64>,
        bug_compat: i64,
    ) -> PyResult<Self> {
        let bits = match (version, item_pointer_bits, heap_address_bits) {
            (None, None, None) => 40,
            (Some(version), Some(pointer), Some(address)) => {
                if version != 4 {
                    return Err(PyValueError::new_err("Version is not supported"));
                }
                if pointer != 64 {
                    return Err(PyValueError::new_err("item_pointer_bits not supported"));
                }
                if address % 8 != 0 {
                    return Err(PyValueError::new_err("heap_address_bits not a multiple of 8"));
                }
                if !(8..64).contains(&address) {
                    return Err(PyValueError::new_err("heap_address_bits out of range"));
                }
                address
            }
            _ => {
                return Err(PyTypeError::new_err(
                    "Flavour() takes no arguments, or version, item_pointer_bits and heap_address_bits",
                ))
            }
        };
        if bug_compat != 0 {
            return Err(PyValueError::new_err(
                "bug_compat flags are not supported (only 0)",
            ));
        }
        let inner = protocol::Flavour::new(bits as u32).map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(Flavour { inner })
    }

    #[getter]
    fn version(&self) -> u32 {
        4
    }

    #[getter]
    fn item_pointer_bits(&self) -> u32 {
        64
    }

    #[getter]
    fn heap_address_bits(&self) -> u32 {
        self.inner.heap_address_bits()
    }

    #[getter]
    fn bug_compat(&self) -> u32 {
        0
    }

    fn __repr__(&self) -> String {
        format!("Flavour(4, 64, {}, 0)", self.inner.heap_address_bits())
    }
}

/// `flavour` as the Python package's subclassable `spead_xdp.Flavour`.
fn flavour_object(py: Python<'_>, flavour: protocol::Flavour) -> PyResult<Bound<'_, PyAny>> {
    py.import("spead_xdp._flavour")?
        .getattr("Flavour")?
        .call1((4, 64, flavour.heap_address_bits(), 0))
}

impl Flavour {
    fn default_64_40() -> Self {
        Flavour {
            inner: protocol::Flavour::SPEAD_64_40,
        }
    }
}

/// How a stream paces (spead2's `send.RateMethod`, an `enum.Enum` of
/// `spead_xdp._enums`): every method paces in software here.
#[derive(Clone, Copy, PartialEq, Debug)]
#[allow(clippy::upper_case_acronyms)]
enum RateMethod {
    SW = 0,
    HW = 1,
    AUTO = 2,
}

/// How the heaps of one `send_heaps` call are interleaved (spead2's
/// `send.GroupMode`, an `enum.Enum` of `spead_xdp._enums`).
#[derive(Clone, Copy, PartialEq, Debug)]
#[allow(clippy::upper_case_acronyms, non_camel_case_types)]
enum GroupMode {
    ROUND_ROBIN = 0,
    SERIAL = 1,
}

/// The value of `member`, which must be a member of the Python enum
/// `spead_xdp._enums.<class>`.
fn enum_value(member: &Bound<'_, PyAny>, class: &str) -> PyResult<i64> {
    let enum_class = member.py().import("spead_xdp._enums")?.getattr(class)?;
    if !member.is_instance(&enum_class)? {
        return Err(PyTypeError::new_err(format!(
            "expected a {class}, not {}",
            member.get_type().name()?
        )));
    }
    member.getattr("value")?.extract()
}

impl RateMethod {
    fn from_py(member: &Bound<'_, PyAny>) -> PyResult<Self> {
        match enum_value(member, "RateMethod")? {
            0 => Ok(RateMethod::SW),
            1 => Ok(RateMethod::HW),
            2 => Ok(RateMethod::AUTO),
            other => Err(PyValueError::new_err(format!("unknown RateMethod value {other}"))),
        }
    }

    fn to_py<'py>(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py.import("spead_xdp._enums")?
            .getattr("RateMethod")?
            .call1((self as i64,))
    }
}

impl GroupMode {
    fn from_py(member: &Bound<'_, PyAny>) -> PyResult<Self> {
        match enum_value(member, "GroupMode")? {
            0 => Ok(GroupMode::ROUND_ROBIN),
            1 => Ok(GroupMode::SERIAL),
            other => Err(PyValueError::new_err(format!("unknown GroupMode value {other}"))),
        }
    }
}

impl From<GroupMode> for stream::GroupMode {
    fn from(mode: GroupMode) -> Self {
        match mode {
            GroupMode::ROUND_ROBIN => stream::GroupMode::RoundRobin,
            GroupMode::SERIAL => stream::GroupMode::Serial,
        }
    }
}

/// A send stream's settings, spead2's `StreamConfig` (keyword-only).
#[pyclass(module = "spead_xdp._spead_xdp", from_py_object)]
#[derive(Clone)]
struct StreamConfig {
    max_packet_size: usize,
    rate: f64,
    burst_size: usize,
    max_heaps: usize,
    burst_rate_ratio: f64,
    rate_method: RateMethod,
}

/// A size argument: a non-negative int. Anything else is a `TypeError`,
/// as spead2's conversion to `size_t` makes it.
fn size_arg(value: &Bound<'_, PyAny>, name: &str) -> PyResult<usize> {
    int_arg(value, name, "a non-negative int")
}

/// An integer argument `name` of type `T`, described as `kind` in the
/// `TypeError` that names the value given otherwise.
fn int_arg<T: for<'a, 'py> FromPyObject<'a, 'py>>(
    value: &Bound<'_, PyAny>,
    name: &str,
    kind: &str,
) -> PyResult<T> {
    value.extract().map_err(|_| {
        PyTypeError::new_err(format!(
            "{name} must be {kind}, not {}",
            value.repr().map_or_else(|_| "?".to_owned(), |r| r.to_string())
        ))
    })
}

fn check_rate(rate: f64) -> PyResult<f64> {
    if rate.is_finite() && rate >= 0.0 {
        Ok(rate)
    } else {
        Err(PyValueError::new_err("rate must be non-negative"))
    }
}

fn check_max_heaps(max_heaps: usize) -> PyResult<usize> {
    if max_heaps > 0 {
        Ok(max_heaps)
    } else {
        Err(PyValueError::new_err("max_heaps must be positive"))
    }
}

fn check_burst_rate_ratio(ratio: f64) -> PyResult<f64> {
    if ratio.is_finite() && ratio >= 1.0 {
        Ok(ratio)
    } else {
        Err(PyValueError::new_err(
            "burst rate ratio must be at least 1.0 and finite",
        ))
    }
}

#[pymethods]
impl StreamConfig {
    #[classattr]
    const DEFAULT_MAX_PACKET_SIZE: usize = 1472;
    #[classattr]
    const DEFAULT_MAX_HEAPS: usize = 4;
    #[classattr]
    const DEFAULT_BURST_SIZE: usize = 65536;
    #[classattr]
    const DEFAULT_BURST_RATE_RATIO: f64 = 1.05;

    #[classattr]
    #[allow(non_snake_case)]
    fn DEFAULT_RATE_METHOD(py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(RateMethod::AUTO.to_py(py)?.unbind())
    }

    #[new]
    #[pyo3(signature = (*, max_packet_size=None, rate=0.0, burst_size=None, max_heaps=None,
                        burst_rate_ratio=1.05, rate_method=None))]
    fn new(
        max_packet_size: Option<&Bound<'_, PyAny>>,
        rate: f64,
        burst_size: Option<&Bound<'_, PyAny>>,
        max_heaps: Option<&Bound<'_, PyAny>>,
        burst_rate_ratio: f64,
        rate_method: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let mut config = StreamConfig::default();
        if let Some(size) = max_packet_size {
            config.max_packet_size = size_arg(size, "max_packet_size")?;
        }
        config.rate = check_rate(rate)?;
        if let Some(size) = burst_size {
            config.burst_size = size_arg(size, "burst_size")?;
        }
        if let Some(heaps) = max_heaps {
            config.max_heaps = check_max_heaps(size_arg(heaps, "max_heaps")?)?;
        }
        config.burst_rate_ratio = check_burst_rate_ratio(burst_rate_ratio)?;
        if let Some(method) = rate_method {
            config.rate_method = RateMethod::from_py(method)?;
        }
        Ok(config)
    }

    #[getter]
    fn max_packet_size(&self) -> usize {
        self.max_packet_size
    }

    #[setter]
    fn set_max_packet_size(&mut self, size: &Bound<'_, PyAny>) -> PyResult<()> {
        self.max_packet_size = size_arg(size, "max_packet_size")?;
        Ok(())
    }

    #[getter]
    fn burst_size(&self) -> usize {
        self.burst_size
    }

    #[setter]
    fn set_burst_size(&mut self, size: &Bound<'_, PyAny>) -> PyResult<()> {
        self.burst_size = size_arg(size, "burst_size")?;
        Ok(())
    }

    #[getter]
    fn rate_method<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.rate_method.to_py(py)
    }

    #[setter]
    fn set_rate_method(&mut self, method: &Bound<'_, PyAny>) -> PyResult<()> {
        self.rate_method = RateMethod::from_py(method)?;
        Ok(())
    }

    #[getter]
    fn rate(&self) -> f64 {
        self.rate
    }

    #[setter]
    fn set_rate(&mut self, rate: f64) -> PyResult<()> {
        self.rate = check_rate(rate)?;
        Ok(())
    }

    #[getter]
    fn max_heaps(&self) -> usize {
        self.max_heaps
    }

    #[setter]
    fn set_max_heaps(&mut self, max_heaps: &Bound<'_, PyAny>) -> PyResult<()> {
        self.max_heaps = check_max_heaps(size_arg(max_heaps, "max_heaps")?)?;
        Ok(())
    }

    #[getter]
    fn burst_rate_ratio(&self) -> f64 {
        self.burst_rate_ratio
    }

    #[setter]
    fn set_burst_rate_ratio(&mut self, ratio: f64) -> PyResult<()> {
        self.burst_rate_ratio = check_burst_rate_ratio(ratio)?;
        Ok(())
    }

    /// The rate of a catch-up burst, in bytes per second.
    #[getter]
    fn burst_rate(&self) -> f64 {
        self.rate * self.burst_rate_ratio
    }
}

impl StreamConfig {
    /// The library's settings: a burst holds at least one packet (spead2
    /// accepts smaller bursts and sends a packet a burst).
    fn to_rust(&self) -> stream::StreamConfig {
        stream::StreamConfig {
            max_packet_size: self.max_packet_size,
            rate: self.rate,
            burst_size: self.burst_size.max(self.max_packet_size),
            max_heaps: self.max_heaps,
            burst_rate_ratio: self.burst_rate_ratio,
        }
    }
}

impl Default for StreamConfig {
    /// The library's defaults (spead2's), pacing method automatic.
    fn default() -> Self {
        let defaults = stream::StreamConfig::default();
        StreamConfig {
            max_packet_size: defaults.max_packet_size,
            rate: defaults.rate,
            burst_size: defaults.burst_size,
            max_heaps: defaults.max_heaps,
            burst_rate_ratio: defaults.burst_rate_ratio,
            rate_method: RateMethod::AUTO,
        }
    }
}

/// A heap to send, spead2's `send.Heap`. Items are taken from objects with
/// `id`, `to_buffer()` and `allow_immediate()` (spead2's `Item`); their
/// buffers are referred to, not copied, kept alive by the heap, and read as
/// they are when each packet is made, so a value changed in place before a
/// send goes out changed, as in spead2.
#[pyclass(module = "spead_xdp._spead_xdp", weakref)]
struct Heap {
    /// The heap, checked as each part is added.
    inner: Arc<protocol::Heap<'static>>,
    flavour: Flavour,
}

fn heap_error(error: HeapError) -> PyErr {
    PyValueError::new_err(error.to_string())
}

#[pymethods]
impl Heap {
    #[new]
    #[pyo3(signature = (flavour=None))]
    fn new(flavour: Option<Flavour>) -> Self {
        let flavour = flavour.unwrap_or_else(Flavour::default_64_40);
        Heap {
            inner: Arc::new(protocol::Heap::new(flavour.inner)),
            flavour,
        }
    }

    /// The heap's flavour, a `spead_xdp.Flavour`.
    #[getter]
    fn flavour<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        flavour_object(py, self.flavour.inner)
    }

    #[getter]
    fn repeat_pointers(&self) -> bool {
        self.inner.repeat_pointers()
    }

    #[setter]
    fn set_repeat_pointers(&mut self, repeat: bool) {
        Arc::make_mut(&mut self.inner).set_repeat_pointers(repeat);
    }

    /// Adds an item: its `id`, its `to_buffer()` (read now to check it,
    /// and again at each send), and whether `allow_immediate()` lets a
    /// short value go inline.
    fn add_item(slf: &Bound<'_, Self>, item: &Bound<'_, PyAny>) -> PyResult<()> {
        let id: u64 = item.getattr("id")?.extract()?;
        let buffer = item.call_method0("to_buffer")?;
        let allow_immediate = item.call_method0("allow_immediate")?.is_truthy()?;
        let lent: Arc<dyn protocol::ForeignMemory> = Arc::new(PyBufferMemory::new(&buffer)?);
        let mut heap = slf.try_borrow_mut()?;
        let item = protocol::Item::new(id, lent).allow_immediate(allow_immediate);
        Arc::make_mut(&mut heap.inner).add(item).map_err(heap_error)?;
        Ok(())
    }

    /// Adds a descriptor, read from an object with spead2's `Descriptor`
    /// attributes: `id`, `name`, `description`, `shape` (ints; `None` or
    /// a negative one for the one variable dimension of a format item),
    /// `dtype` (a numpy dtype, or `None`), `order` ('C' or 'F') and
    /// `format` (a list of `(code, bits)`, or `None`). Encoded as spead2
    /// encodes it.
    fn add_descriptor(slf: &Bound<'_, Self>, descriptor: &Bound<'_, PyAny>) -> PyResult<()> {
        let descriptor = descriptor_of(descriptor)?;
        let mut heap = slf.try_borrow_mut()?;
        Arc::make_mut(&mut heap.inner)
            .add_descriptor(&descriptor)
            .map_err(heap_error)?;
        Ok(())
    }

    /// Adds the stream-control item that starts a stream.
    fn add_start(&mut self) -> PyResult<()> {
        Arc::make_mut(&mut self.inner).add_start().map_err(heap_error)?;
        Ok(())
    }

    /// Adds the stream-control item that ends a stream.
    fn add_end(&mut self) -> PyResult<()> {
        Arc::make_mut(&mut self.inner).add_end().map_err(heap_error)?;
        Ok(())
    }
}

/// The library's descriptor for a Python object with spead2's
/// `Descriptor` attributes.
fn descriptor_of(descriptor: &Bound<'_, PyAny>) -> PyResult<protocol::Descriptor> {
    let id: u64 = descriptor.getattr("id")?.extract()?;
    let name: String = descriptor.getattr("name")?.extract()?;
    let description: String = descriptor.getattr("description")?.extract()?;
    let shape: Vec<Option<i64>> = descriptor.getattr("shape")?.extract()?;
    let shape: Vec<Option<u64>> = shape
        .into_iter()
        .map(|d| d.and_then(|d| u64::try_from(d).ok()))
        .collect();
    let dtype = descriptor.getattr("dtype")?;
    let value_error = |e: protocol::DescriptorError| PyValueError::new_err(e.to_string());
    if dtype.is_none() {
        let format: Vec<(String, u64)> = descriptor.getattr("format")?.extract()?;
        let fields = format
            .into_iter()
            .map(|(code, bits)| match code.as_bytes() {
                [code] => Ok(protocol::FormatField::new(*code, bits)),
                _ => Err(PyValueError::new_err(format!(
                    "illegal format ({code:?}, {bits})"
                ))),
            })
            .collect::<PyResult<Vec<_>>>()?;
        return Ok(protocol::Descriptor::with_format(
            id,
            name,
            description,
            shape,
            fields,
        ));
    }
    let descr: String = descriptor
        .py()
        .import("numpy.lib.format")?
        .call_method1("dtype_to_descr", (dtype,))?
        .extract()
        .map_err(|_| PyValueError::new_err("only simple numpy dtypes are supported"))?;
    let shape = shape
        .into_iter()
        .map(|d| {
            d.ok_or_else(|| {
                PyValueError::new_err("Cannot have unknown dimensions when using numpy descriptor")
            })
        })
        .collect::<PyResult<Vec<_>>>()?;
    let order: String = descriptor.getattr("order")?.extract()?;
    protocol::Descriptor::with_dtype(id, name, description, shape, &descr, order == "F").map_err(value_error)
}

/// A heap with how to send it: spead2's `HeapReference`.
#[pyclass(module = "spead_xdp._spead_xdp")]
struct HeapReference {
    #[pyo3(get)]
    heap: Py<Heap>,
    #[pyo3(get, set)]
    cnt: i64,
    #[pyo3(get, set)]
    substream_index: usize,
    #[pyo3(get, set)]
    rate: f64,
}

#[pymethods]
impl HeapReference {
    #[new]
    #[pyo3(signature = (heap, *, cnt=-1, substream_index=0, rate=-1.0))]
    fn new(heap: Py<Heap>, cnt: i64, substream_index: usize, rate: f64) -> Self {
        HeapReference {
            heap,
            cnt,
            substream_index,
            rate,
        }
    }
}

/// What to send of one heap: the heap as it is now, cnt, substream, rate.
struct Entry {
    heap: Py<Heap>,
    cnt: i64,
    substream_index: usize,
    rate: f64,
}

impl Entry {
    fn clone_ref(&self, py: Python<'_>) -> Entry {
        Entry {
            heap: self.heap.clone_ref(py),
            cnt: self.cnt,
            substream_index: self.substream_index,
            rate: self.rate,
        }
    }

    fn heap_ref(&self, py: Python<'_>) -> PyResult<HeapRef> {
        let current = Arc::clone(&self.heap.bind(py).try_borrow()?.inner);
        let mut heap = HeapRef::new(current).substream(self.substream_index);
        if self.cnt >= 0 {
            heap = heap.cnt(self.cnt as u64);
        }
        // spead2: negative (or NaN) is the stream's rate, infinite unpaced.
        if self.rate.is_infinite() && self.rate > 0.0 {
            heap = heap.rate(0.0);
        } else if self.rate >= 0.0 {
            heap = heap.rate(self.rate);
        }
        Ok(heap)
    }
}

/// A fixed list of heap references (copied when made), spead2's
/// `HeapReferenceList`: its length, and slices of it.
#[pyclass(module = "spead_xdp._spead_xdp")]
struct HeapReferenceList {
    entries: Vec<Entry>,
}

#[pymethods]
impl HeapReferenceList {
    #[new]
    fn new(heaps: &Bound<'_, PyAny>) -> PyResult<Self> {
        let entries = heaps
            .try_iter()?
            .map(|h| entries_of(&h?))
            .collect::<PyResult<Vec<_>>>()?;
        Ok(HeapReferenceList { entries })
    }

    fn __len__(&self) -> usize {
        self.entries.len()
    }

    fn __getitem__(&self, slice: &Bound<'_, PySlice>) -> PyResult<Self> {
        let py = slice.py();
        let indices = slice.indices(self.entries.len() as isize)?;
        let mut entries = Vec::with_capacity(indices.slicelength);
        for k in 0..indices.slicelength as isize {
            entries.push(self.entries[(indices.start + k * indices.step) as usize].clone_ref(py));
        }
        Ok(HeapReferenceList { entries })
    }
}

fn entries_of(reference: &Bound<'_, PyAny>) -> PyResult<Entry> {
    let reference = reference.cast::<HeapReference>()?.try_borrow()?;
    Ok(Entry {
        heap: reference.heap.clone_ref(reference.py()),
        cnt: reference.cnt,
        substream_index: reference.substream_index,
        rate: reference.rate,
    })
}

/// The group of heaps `heaps` names: a `HeapReferenceList` or a sequence
/// of `HeapReference`s.
fn group_of(heaps: &Bound<'_, PyAny>) -> PyResult<Vec<HeapRef>> {
    let py = heaps.py();
    if let Ok(list) = heaps.cast::<HeapReferenceList>() {
        return list
            .try_borrow()?
            .entries
            .iter()
            .map(|e| e.heap_ref(py))
            .collect();
    }
    heaps.try_iter()?.map(|h| entries_of(&h?)?.heap_ref(py)).collect()
}

/// spead2's exception for what a send refused or failed with: OSError with
/// an errno where spead2 gives one (EAGAIN: BlockingIOError), ValueError
/// for a packet size that cannot carry the heap.
fn send_error(error: SendError) -> PyErr {
    let os = |errno: i32, error: &dyn std::fmt::Display| PyOSError::new_err((errno, error.to_string()));
    match &error {
        SendError::QueueFull { .. } => os(libc::EAGAIN, &error),
        SendError::Invalid {
            reason: Invalid::Packetize(PacketizeError::PacketSizeTooSmall { .. }),
            ..
        } => PyValueError::new_err("packet size is too small"),
        SendError::Invalid {
            reason: Invalid::Packetize(PacketizeError::RepeatPointersDoNotFit { .. }),
            ..
        } => PyValueError::new_err("packet size is too small to repeat item pointers"),
        SendError::Invalid { .. } => os(libc::EINVAL, &error),
        SendError::Transport(transport) | SendError::SharedBatch(transport) => transport_error(transport),
        SendError::Closed => os(libc::EPIPE, &error),
    }
}

fn transport_error(error: &TransportError) -> PyErr {
    // A bad setting (an address, an interface, a size) is a ValueError.
    if error.os_error().is_none() && error.kind() == std::io::ErrorKind::InvalidInput {
        return PyValueError::new_err(error.to_string());
    }
    let errno = match (error.os_error().and_then(|e| e.raw_os_error()), error.kind()) {
        (Some(errno), _) => errno,
        // A full in-process queue is spead2's EAGAIN; a stopped one EPIPE.
        (None, std::io::ErrorKind::WouldBlock) => libc::EAGAIN,
        (None, std::io::ErrorKind::BrokenPipe) => libc::EPIPE,
        (None, _) => libc::EIO,
    };
    let message = match error.os_error() {
        Some(os) => format!("{error}: {os}"),
        None => error.to_string(),
    };
    PyOSError::new_err((errno, message))
}

fn stream_error(error: StreamError) -> PyErr {
    match error {
        StreamError::Transport(transport) => transport_error(&transport),
        other => PyValueError::new_err(other.to_string()),
    }
}

/// A stream whose transport refused its packet size (spead2 finds out at
/// the first send): sends fail with `EMSGSIZE`; nothing is ever queued.
struct Refusal {
    message: String,
    substreams: usize,
}

/// What every send stream does (spead2's `send.Stream`).
#[pyclass(module = "spead_xdp._spead_xdp", subclass)]
struct Stream {
    /// `None` once dropped, or when the transport refused the packet size.
    inner: Option<stream::Stream>,
    /// Why the transport could not take the stream's packets: spead2 makes
    /// such a stream and fails each send with `EMSGSIZE`, and so does this.
    refusal: Option<Refusal>,
    /// Completions waited on in order, each then reported to its
    /// callback (the asyncio streams' futures): made with the first.
    completer: std::sync::OnceLock<crossbeam_channel::Sender<(stream::Completion, Py<PyAny>)>>,
}

impl Drop for Stream {
    /// Lets the stream finish what it holds (its worker's drop waits for
    /// it) without the GIL, which Python threads reading its packets may
    /// need meanwhile.
    fn drop(&mut self) {
        if let Some(stream) = self.inner.take() {
            Python::attach(|py| without_gil_unless_finalizing(py, move || drop(stream)));
        }
    }
}

/// Waits for each completion in the order queued and calls its callback
/// as `callback(None, bytes)` or `callback(exception, 0)`, with the GIL,
/// until the stream goes.
fn complete(queue: crossbeam_channel::Receiver<(stream::Completion, Py<PyAny>)>) {
    use std::sync::atomic::Ordering::SeqCst;
    for (completion, callback) in queue {
        let outcome = completion.wait();
        // Counted before looking, so that `_prepare_exit` either sees this
        // call coming and waits for it, or this thread sees the exit.
        CALLING.fetch_add(1, SeqCst);
        if !EXITING.load(SeqCst) {
            Python::attach(move |py| {
                let called = match outcome {
                    Ok(bytes) => callback.call1(py, (py.None(), bytes)),
                    Err(error) => callback.call1(py, (send_error(error), 0u64)),
                };
                if let Err(error) = called {
                    error.write_unraisable(py, Some(callback.bind(py)));
                }
                // Released here, with the GIL.
                drop(callback);
            });
        }
        CALLING.fetch_sub(1, SeqCst);
    }
}

/// Set when the interpreter is about to exit: completer threads call no
/// more Python (a thread taking the GIL while the interpreter finalizes is
/// a fatal error).
static EXITING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Completer threads calling into Python now.
static CALLING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Run at exit (atexit): stops completer threads calling Python and waits
/// (up to 5 s, without the GIL) for the calls under way to end.
#[pyfunction]
fn _prepare_exit(py: Python<'_>) {
    use std::sync::atomic::Ordering::SeqCst;
    EXITING.store(true, SeqCst);
    py.detach(|| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while CALLING.load(SeqCst) > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    });
}

#[pymethods]
impl Stream {
    /// Sends one heap and waits for it; returns the bytes sent.
    #[pyo3(signature = (heap, cnt=-1, substream_index=0, rate=-1.0))]
    fn send_heap(
        &self,
        py: Python<'_>,
        heap: Py<Heap>,
        cnt: i64,
        substream_index: usize,
        rate: f64,
    ) -> PyResult<u64> {
        let entry = Entry {
            heap,
            cnt,
            substream_index,
            rate,
        };
        let heap = entry.heap_ref(py)?;
        let stream = self.stream()?;
        py.detach(|| stream.send_heap(heap)).map_err(send_error)
    }

    /// Sends a group of heaps, all or none, interleaved as `mode` says;
    /// returns the bytes sent.
    fn send_heaps(&self, py: Python<'_>, heaps: &Bound<'_, PyAny>, mode: &Bound<'_, PyAny>) -> PyResult<u64> {
        let mode = GroupMode::from_py(mode)?;
        let group = group_of(heaps)?;
        let stream = self.stream()?;
        py.detach(|| stream.send_heaps(group, mode.into()))
            .map_err(send_error)
    }

    /// Queues one heap at once and reports its outcome to `callback`
    /// (`callback(exception, bytes)`, from another thread, in queue order):
    /// the asyncio streams' `async_send_heap`. A heap refused at once
    /// raises here.
    #[pyo3(signature = (heap, cnt, substream_index, rate, callback))]
    fn _submit_heap(
        &self,
        py: Python<'_>,
        heap: Py<Heap>,
        cnt: i64,
        substream_index: usize,
        rate: f64,
        callback: Py<PyAny>,
    ) -> PyResult<()> {
        let entry = Entry {
            heap,
            cnt,
            substream_index,
            rate,
        };
        let completion = self.stream()?.submit(entry.heap_ref(py)?).map_err(send_error)?;
        self.track(completion, callback)
    }

    /// As `_submit_heap`, for a group (`async_send_heaps`).
    fn _submit_heaps(
        &self,
        heaps: &Bound<'_, PyAny>,
        mode: &Bound<'_, PyAny>,
        callback: Py<PyAny>,
    ) -> PyResult<()> {
        let mode = GroupMode::from_py(mode)?;
        let group = group_of(heaps)?;
        let completion = self
            .stream()?
            .submit_group(group, mode.into())
            .map_err(send_error)?;
        self.track(completion, callback)
    }

    /// The next automatic heap cnt, and the step between them.
    fn set_cnt_sequence(&self, next: u64, step: u64) -> PyResult<()> {
        if step == 0 {
            return Err(PyValueError::new_err("step cannot be 0"));
        }
        self.stream()?
            .set_cnt_sequence(next, step)
            .map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// Waits until every heap queued has been sent.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        if self.refusal.is_some() {
            return Ok(()); // nothing was ever queued
        }
        let stream = self.stream()?;
        py.detach(|| stream.flush());
        Ok(())
    }

    #[getter]
    fn num_substreams(&self) -> PyResult<usize> {
        match &self.refusal {
            Some(refusal) => Ok(refusal.substreams),
            None => Ok(self.stream()?.substreams()),
        }
    }

    /// The stream's figures now: heaps, errors, queue-full refusals,
    /// packets, bytes, ring stalls, seconds since it started.
    #[getter]
    fn stats(&self) -> PyResult<StreamStats> {
        Ok(StreamStats {
            inner: self.stream()?.stats(),
        })
    }

    /// Serves the stream's figures over HTTP in Prometheus text format at
    /// `http://host:port/metrics` (port 0: any free one) until the
    /// returned server is closed or dropped.
    fn serve_metrics(&self, host: &str, port: u16) -> PyResult<MetricsServer> {
        let server = self
            .stream()?
            .serve_metrics((host, port))
            .map_err(|e| PyOSError::new_err((e.raw_os_error().unwrap_or(libc::EIO), e.to_string())))?;
        Ok(MetricsServer { server: Some(server) })
    }
}

/// Runs `work` with the GIL released, except while the interpreter is
/// finalizing (objects collected at exit), when releasing and taking the
/// GIL back is not allowed and no other Python thread runs anyway.
fn without_gil_unless_finalizing(py: Python<'_>, work: impl FnOnce() + Send) {
    let finalizing = py
        .import("sys")
        .and_then(|sys| sys.call_method0("is_finalizing"))
        .and_then(|answer| answer.is_truthy())
        .unwrap_or(true);
    if finalizing {
        work();
    } else {
        py.detach(work);
    }
}

/// A stream's figures at one moment (spead-xdp's sender statistics).
#[pyclass(module = "spead_xdp._spead_xdp", frozen)]
struct StreamStats {
    inner: stream::StreamStats,
}

#[pymethods]
impl StreamStats {
    /// Heaps completed without error.
    #[getter]
    fn heaps(&self) -> u64 {
        self.inner.heaps
    }

    /// Heaps completed with an error.
    #[getter]
    fn errors(&self) -> u64 {
        self.inner.errors
    }

    /// Submissions refused because the queue was full.
    #[getter]
    fn queue_full(&self) -> u64 {
        self.inner.queue_full
    }

    /// Packets handed to the transport.
    #[getter]
    fn packets(&self) -> u64 {
        self.inner.packets()
    }

    /// Bytes of those packets.
    #[getter]
    fn bytes(&self) -> u64 {
        self.inner.bytes()
    }

    /// Waits for transport ring space or frames.
    #[getter]
    fn ring_stalls(&self) -> u64 {
        self.inner.ring_stalls()
    }

    /// Seconds since the stream started.
    #[getter]
    fn elapsed(&self) -> f64 {
        self.inner.elapsed.as_secs_f64()
    }

    /// The figures in Prometheus text format.
    fn to_prometheus(&self) -> String {
        self.inner.to_prometheus()
    }

    fn __repr__(&self) -> String {
        format!(
            "StreamStats(heaps={}, errors={}, queue_full={}, packets={}, bytes={}, ring_stalls={})",
            self.inner.heaps,
            self.inner.errors,
            self.inner.queue_full,
            self.inner.packets(),
            self.inner.bytes(),
            self.inner.ring_stalls()
        )
    }
}

/// A stream's metrics endpoint, served until closed.
#[pyclass(module = "spead_xdp._spead_xdp")]
struct MetricsServer {
    server: Option<stream::MetricsServer>,
}

impl Drop for MetricsServer {
    /// Stops the server without the GIL (its thread may be answering).
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            Python::attach(|py| without_gil_unless_finalizing(py, move || drop(server)));
        }
    }
}

#[pymethods]
impl MetricsServer {
    /// `(host, port)` it listens on.
    #[getter]
    fn address(&self) -> PyResult<(String, u16)> {
        let server = self
            .server
            .as_ref()
            .ok_or_else(|| PyValueError::new_err("the metrics server is closed"))?;
        let address = server.local_addr();
        Ok((address.ip().to_string(), address.port()))
    }

    /// Stops serving.
    fn close(&mut self, py: Python<'_>) {
        let server = self.server.take();
        py.detach(|| drop(server));
    }
}

/// The worker settings a thread pool asks for: pinned to its first
/// affinity core, if it has one.
fn worker_of(thread_pool: &Bound<'_, PyAny>) -> PyResult<WorkerConfig> {
    let affinity: Vec<usize> = match thread_pool.getattr("affinity") {
        Ok(affinity) => affinity.extract()?,
        Err(_) => Vec::new(),
    };
    Ok(WorkerConfig {
        core: affinity.first().copied(),
        ..WorkerConfig::default()
    })
}

fn start<T: spead_xdp::transport::Transport>(
    transport: T,
    config: Option<StreamConfig>,
    thread_pool: &Bound<'_, PyAny>,
) -> PyResult<Stream> {
    let config = config.unwrap_or_default().to_rust();
    let substreams = transport.substreams();
    let (inner, refusal) = match stream::Stream::with_worker(transport, config, worker_of(thread_pool)?) {
        Ok(inner) => (Some(inner), None),
        Err(StreamError::Transport(too_large @ TransportError::PacketTooLarge { .. })) => {
            let message = too_large.to_string();
            (None, Some(Refusal { message, substreams }))
        }
        Err(error) => return Err(stream_error(error)),
    };
    Ok(Stream {
        inner,
        refusal,
        completer: std::sync::OnceLock::new(),
    })
}

impl Stream {
    /// The library's stream.
    fn stream(&self) -> PyResult<&stream::Stream> {
        self.inner.as_ref().ok_or_else(|| match &self.refusal {
            Some(refusal) => PyOSError::new_err((libc::EMSGSIZE, refusal.message.clone())),
            None => PyOSError::new_err((libc::EPIPE, "the stream is closed")),
        })
    }

    /// Hands a queued heap's completion to the completer thread (made
    /// with the first).
    fn track(&self, completion: stream::Completion, callback: Py<PyAny>) -> PyResult<()> {
        let completer = match self.completer.get() {
            Some(completer) => completer,
            None => {
                let (sender, queue) = crossbeam_channel::unbounded();
                std::thread::Builder::new()
                    .name("spead-xdp-completer".into())
                    .spawn(move || complete(queue))
                    .map_err(|e| PyOSError::new_err(e.to_string()))?;
                self.completer.get_or_init(|| sender)
            }
        };
        completer
            .send((completion, callback))
            .map_err(|_| PyOSError::new_err((libc::EPIPE, "the stream's completer has stopped")))
    }
}

/// A stream into memory: `getvalue()` gives every packet sent, back to
/// back (spead2's `send.BytesStream`).
#[pyclass(module = "spead_xdp._spead_xdp", extends = Stream, subclass)]
struct BytesStream {
    memory: MemoryTransport,
}

#[pymethods]
impl BytesStream {
    #[new]
    #[pyo3(signature = (thread_pool, config=None))]
    fn new(
        thread_pool: &Bound<'_, PyAny>,
        config: Option<StreamConfig>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let memory = MemoryTransport::new(1);
        let stream = start(memory.clone(), config, thread_pool)?;
        Ok(PyClassInitializer::from(stream).add_subclass(BytesStream { memory }))
    }

    /// The packets sent so far, back to back.
    fn getvalue<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.memory.bytes(0))
    }
}

/// Resolves spead2-style endpoints: `(host, port)` pairs, looked up with
/// the GIL released (a DNS query can take seconds).
fn endpoints_of(endpoints: &Bound<'_, PyAny>) -> PyResult<Vec<std::net::SocketAddr>> {
    use std::net::ToSocketAddrs;
    let pairs = endpoints
        .try_iter()?
        .map(|endpoint| endpoint?.extract::<(String, u16)>())
        .collect::<PyResult<Vec<_>>>()?;
    if pairs.is_empty() {
        return Err(PyValueError::new_err("Endpoint list must be non-empty"));
    }
    let resolve = |(host, port): &(String, u16)| -> Result<std::net::SocketAddr, String> {
        (host.as_str(), *port)
            .to_socket_addrs()
            .map_err(|e| format!("resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("resolve {host}: no address"))
    };
    endpoints
        .py()
        .detach(|| pairs.iter().map(resolve).collect::<Result<Vec<_>, _>>())
        .map_err(PyOSError::new_err)
}

/// A stream over a kernel UDP socket (spead2's `send.UdpStream`):
/// `interface_address` alone binds the socket to that address; with `ttl`
/// (multicast endpoints only) it names the interface multicast leaves by.
#[pyclass(module = "spead_xdp._spead_xdp", extends = Stream, subclass)]
struct UdpStream {}

#[pymethods]
impl UdpStream {
    #[classattr]
    const DEFAULT_BUFFER_SIZE: usize = UdpConfig::DEFAULT_BUFFER_SIZE;

    /// spead2's overloads: `(thread_pool, endpoints, config, buffer_size,
    /// interface_address)` (a bind address); `(..., buffer_size, ttl)`
    /// (multicast); `(..., buffer_size, ttl, interface_address)` (IPv4
    /// multicast out of that interface); `(..., buffer_size, ttl,
    /// interface_index)` (IPv6 multicast out of that interface);
    /// `(thread_pool, socket, endpoints, config)` (a caller's UDP socket).
    /// `ttl`, `interface_address` and `interface_index` may be keywords.
    #[new]
    #[pyo3(signature = (thread_pool, endpoints, config=None, buffer_size=None, *args,
                        interface_address=None, ttl=None, interface_index=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        thread_pool: &Bound<'_, PyAny>,
        endpoints: &Bound<'_, PyAny>,
        config: Option<&Bound<'_, PyAny>>,
        buffer_size: Option<&Bound<'_, PyAny>>,
        args: &Bound<'_, pyo3::types::PyTuple>,
        interface_address: Option<String>,
        ttl: Option<i64>,
        interface_index: Option<u32>,
    ) -> PyResult<PyClassInitializer<Self>> {
        // spead2's (thread_pool, socket, endpoints, config=StreamConfig()):
        // a caller's UDP socket, used as it is.
        if endpoints.hasattr("fileno")? {
            let socket = socket_of(endpoints, socket2::Type::DGRAM, "UDP")?;
            let endpoints = config.ok_or_else(|| {
                PyTypeError::new_err("UdpStream(thread_pool, socket, endpoints, config) needs the endpoints")
            })?;
            let destinations = endpoints_of(endpoints)?;
            let config = buffer_size.map(|c| c.extract::<StreamConfig>()).transpose()?;
            let transport = UdpTransport::from_socket(socket.into(), &destinations, true);
            return Ok(
                PyClassInitializer::from(start(transport, config, thread_pool)?).add_subclass(UdpStream {})
            );
        }
        let config = config.map(|c| c.extract::<StreamConfig>()).transpose()?;
        let buffer_size = buffer_size
            .map(|size| size_arg(size, "buffer_size"))
            .transpose()?;
        // Checked before the endpoints are looked up (DNS may take long).
        let egress = UdpEgress::of(args, interface_address, ttl, interface_index)?;
        let mut udp = UdpConfig::new(endpoints_of(endpoints)?);
        if let Some(size) = buffer_size {
            udp.buffer_size = size;
        }
        egress.apply(&mut udp)?;
        let transport = thread_pool
            .py()
            .detach(|| UdpTransport::new(&udp))
            .map_err(|e| transport_error(&e))?;
        Ok(PyClassInitializer::from(start(transport, config, thread_pool)?).add_subclass(UdpStream {}))
    }
}

/// Where a UDP stream's packets leave from, as spead2's overloads say it.
#[derive(Debug, PartialEq)]
enum UdpEgress {
    /// Unicast (or multicast by the routing table), bound to an address
    /// when given.
    Bind(Option<std::net::IpAddr>),
    /// Multicast with a TTL (hop limit), out of the routed interface.
    Multicast { ttl: u8 },
    /// IPv4 multicast out of the interface with this address.
    MulticastByAddress { ttl: u8, address: std::net::Ipv4Addr },
    /// IPv6 multicast out of the interface with this index.
    MulticastByIndex { ttl: u8, index: u32 },
}

impl UdpEgress {
    /// The overload the positional `args` after `buffer_size` and the
    /// keywords pick: `(interface_address)`, `(ttl)`, `(ttl,
    /// interface_address)` or `(ttl, interface_index)`.
    fn of(
        args: &Bound<'_, pyo3::types::PyTuple>,
        mut interface_address: Option<String>,
        mut ttl: Option<i64>,
        mut interface_index: Option<u32>,
    ) -> PyResult<Self> {
        fn set<T>(slot: &mut Option<T>, value: T, name: &str) -> PyResult<()> {
            match slot.replace(value) {
                Some(_) => Err(PyTypeError::new_err(format!(
                    "UdpStream() got {name} both by position and by keyword"
                ))),
                None => Ok(()),
            }
        }
        match args.len() {
            0 => {}
            1 => {
                let first = args.get_item(0)?;
                match first.extract::<String>() {
                    Ok(address) => set(&mut interface_address, address, "interface_address")?,
                    Err(_) => set(&mut ttl, int_arg(&first, "ttl", "an int")?, "ttl")?,
                }
            }
            2 => {
                set(&mut ttl, int_arg(&args.get_item(0)?, "ttl", "an int")?, "ttl")?;
                let second = args.get_item(1)?;
                match second.extract::<String>() {
                    Ok(address) => set(&mut interface_address, address, "interface_address")?,
                    Err(_) => set(
                        &mut interface_index,
                        int_arg(&second, "interface_index", "an int")?,
                        "interface_index",
                    )?,
                }
            }
            n => {
                return Err(PyTypeError::new_err(format!(
                    "UdpStream() takes at most 7 positional arguments ({} given)",
                    n + 4
                )))
            }
        }
        let address = match interface_address.as_deref() {
            None | Some("") => None,
            Some(text) => Some(text.parse::<std::net::IpAddr>().map_err(|_| {
                PyValueError::new_err(format!("interface_address {text:?} is not an IP address"))
            })?),
        };
        let Some(ttl) = ttl else {
            if interface_index.is_some() {
                return Err(PyTypeError::new_err("interface_index needs ttl (IPv6 multicast)"));
            }
            return Ok(UdpEgress::Bind(address));
        };
        let ttl = u8::try_from(ttl).map_err(|_| {
            pyo3::exceptions::PyIndexError::new_err(format!(
                "multicast hops value out of range: ttl {ttl} (0 to 255)"
            ))
        })?;
        match (address, interface_index) {
            (None, None) => Ok(UdpEgress::Multicast { ttl }),
            (Some(std::net::IpAddr::V4(address)), None) => Ok(UdpEgress::MulticastByAddress { ttl, address }),
            (Some(other), None) => Err(PyValueError::new_err(format!(
                "interface_address {other} is not IPv4 (IPv6 multicast takes interface_index)"
            ))),
            (None, Some(index)) => Ok(UdpEgress::MulticastByIndex { ttl, index }),
            (Some(_), Some(_)) => Err(PyTypeError::new_err(
                "give interface_address (IPv4) or interface_index (IPv6), not both",
            )),
        }
    }

    /// Sets `udp` to send this way, checking its endpoints as spead2 does.
    fn apply(self, udp: &mut UdpConfig) -> PyResult<()> {
        let all = |test: fn(&std::net::SocketAddr) -> bool| udp.destinations.iter().all(test);
        match self {
            UdpEgress::Bind(address) => udp.bind = address.map(|ip| std::net::SocketAddr::new(ip, 0)),
            UdpEgress::Multicast { ttl } => {
                if !all(|d| d.ip().is_multicast()) {
                    return Err(PyValueError::new_err("endpoint is not a multicast address"));
                }
                udp.ttl = Some(u32::from(ttl));
            }
            UdpEgress::MulticastByAddress { ttl, address } => {
                if !all(|d| d.is_ipv4() && d.ip().is_multicast()) {
                    return Err(PyValueError::new_err("endpoint is not an IPv4 multicast address"));
                }
                udp.ttl = Some(u32::from(ttl));
                udp.multicast_interface = Some(MulticastInterface::Address(address));
            }
            UdpEgress::MulticastByIndex { ttl, index } => {
                if !all(|d| d.is_ipv6() && d.ip().is_multicast()) {
                    return Err(PyValueError::new_err("endpoint is not an IPv6 multicast address"));
                }
                udp.ttl = Some(u32::from(ttl));
                udp.multicast_interface = Some(MulticastInterface::Index(index));
            }
        }
        Ok(())
    }
}

/// A caller's socket (a Python `socket.socket`) as our own duplicate, of
/// the kind `kind`; a TypeError for another kind.
fn socket_of(socket: &Bound<'_, PyAny>, kind: socket2::Type, what: &str) -> PyResult<socket2::Socket> {
    let fd: i32 = socket.call_method0("fileno")?.extract()?;
    let owned = spead_xdp::transport::duplicate_fd(fd)
        .map_err(|e| PyOSError::new_err((e.raw_os_error().unwrap_or(libc::EBADF), e.to_string())))?;
    let socket = socket2::Socket::from(owned);
    if socket.r#type().ok() != Some(kind) {
        return Err(PyTypeError::new_err(format!(
            "the socket must be a {what} socket"
        )));
    }
    // A Python socket with a timeout is non-blocking underneath, and the
    // duplicate shares that flag: the stream waits in the kernel instead
    // (which the caller's socket then does too).
    socket
        .set_nonblocking(false)
        .map_err(|e| PyOSError::new_err((e.raw_os_error().unwrap_or(libc::EIO), e.to_string())))?;
    Ok(socket)
}

/// A stream over one TCP connection (spead2's `send.TcpStream`): to the
/// one endpoint (connecting now, blocking), or over a caller's connected
/// socket.
#[pyclass(module = "spead_xdp._spead_xdp", extends = Stream, subclass)]
struct TcpStream {}

#[pymethods]
impl TcpStream {
    #[classattr]
    const DEFAULT_BUFFER_SIZE: usize = TcpTransport::DEFAULT_BUFFER_SIZE;

    #[new]
    #[pyo3(signature = (thread_pool, endpoints_or_socket, config=None, buffer_size=TcpTransport::DEFAULT_BUFFER_SIZE,
                        interface_address=String::new()))]
    fn new(
        py: Python<'_>,
        thread_pool: &Bound<'_, PyAny>,
        endpoints_or_socket: &Bound<'_, PyAny>,
        config: Option<StreamConfig>,
        buffer_size: usize,
        interface_address: String,
    ) -> PyResult<PyClassInitializer<Self>> {
        let transport = if endpoints_or_socket.hasattr("fileno")? {
            let socket = socket_of(endpoints_or_socket, socket2::Type::STREAM, "TCP")?;
            TcpTransport::from_stream(socket.into())
        } else {
            let endpoints = endpoints_of(endpoints_or_socket)?;
            let [destination] = endpoints[..] else {
                return Err(PyValueError::new_err(
                    "endpoints must contain exactly one element",
                ));
            };
            let bind = match interface_address.as_str() {
                "" => None,
                address => Some(std::net::SocketAddr::new(
                    address
                        .parse()
                        .map_err(|_| PyValueError::new_err(format!("bad interface address {address:?}")))?,
                    0,
                )),
            };
            py.detach(|| TcpTransport::connect(destination, bind, buffer_size))
                .map_err(|e| transport_error(&e))?
        };
        Ok(PyClassInitializer::from(start(transport, config, thread_pool)?).add_subclass(TcpStream {}))
    }
}

/// A heap's packets for one cnt and packet size, as bytes (spead2's
/// `send.PacketGenerator`): made when it is created.
#[pyclass(module = "spead_xdp._spead_xdp")]
struct PacketGenerator {
    packets: std::vec::IntoIter<Vec<u8>>,
}

#[pymethods]
impl PacketGenerator {
    #[new]
    fn new(py: Python<'_>, heap: Py<Heap>, cnt: u64, max_packet_size: usize) -> PyResult<Self> {
        let sizing = protocol::PacketSizing::new(max_packet_size)
            .map_err(|_| PyValueError::new_err("packet size is too small"))?;
        let heap = Arc::clone(&heap.bind(py).try_borrow()?.inner);
        let packets: Vec<Vec<u8>> = sizing
            .packets(&heap, cnt)
            .map_err(|e| PyValueError::new_err(e.to_string()))?
            .collect();
        Ok(PacketGenerator {
            packets: packets.into_iter(),
        })
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.packets.next().map(|p| PyBytes::new(py, &p))
    }
}

/// How to open an AF_XDP stream: the counterpart of spead2's
/// `UdpIbvConfig`, on any Linux NIC, unicast or multicast. The interface
/// is `interface`, or the one the route to the first endpoint leaves by;
/// `interface_address` (one of its IPv4 addresses) is the packets' source.
#[pyclass(module = "spead_xdp._spead_xdp")]
struct XdpConfig {
    #[pyo3(get, set)]
    endpoints: Vec<(String, u16)>,
    #[pyo3(get, set)]
    interface_address: String,
    #[pyo3(get, set)]
    interface: String,
    #[pyo3(get, set)]
    buffer_size: usize,
    #[pyo3(get, set)]
    ttl: u8,
    #[pyo3(get, set)]
    queue: u32,
    #[pyo3(get, set)]
    huge_pages: String,
    #[pyo3(get, set)]
    mode: String,
    /// Bytes of the UMEM kept for arrays from `XdpStream.allocate`, which
    /// go out by reference.
    #[pyo3(get, set)]
    user_buffer_size: usize,
    /// spead2's memory regions: AF_XDP registers one UMEM per socket, which
    /// holds the stream's own frames, so these are accepted and their
    /// bytes copied into frames (arrays from `allocate` are not).
    #[pyo3(get, set)]
    memory_regions: Vec<Py<PyAny>>,
    /// Accepted for spead2's `UdpIbvConfig`; AF_XDP has no use for them.
    #[pyo3(get, set)]
    comp_vector: i32,
    #[pyo3(get, set)]
    max_poll: i32,
}

#[pymethods]
impl XdpConfig {
    #[classattr]
    const DEFAULT_BUFFER_SIZE: usize = 16 << 20;
    #[classattr]
    const DEFAULT_TTL: u8 = 1;

    #[new]
    #[pyo3(signature = (*, endpoints=Vec::new(), interface_address=String::new(), interface=String::new(),
                        buffer_size=16 << 20, ttl=1, queue=0, huge_pages="auto".to_string(),
                        mode="auto".to_string(), user_buffer_size=0, memory_regions=Vec::new(),
                        comp_vector=0, max_poll=10))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        endpoints: Vec<(String, u16)>,
        interface_address: String,
        interface: String,
        buffer_size: usize,
        ttl: u8,
        queue: u32,
        huge_pages: String,
        mode: String,
        user_buffer_size: usize,
        memory_regions: Vec<Py<PyAny>>,
        comp_vector: i32,
        max_poll: i32,
    ) -> Self {
        XdpConfig {
            endpoints,
            interface_address,
            interface,
            buffer_size,
            ttl,
            queue,
            huge_pages,
            mode,
            user_buffer_size,
            memory_regions,
            comp_vector,
            max_poll,
        }
    }
}

impl XdpConfig {
    /// The library's AF_XDP settings.
    fn to_rust(&self, py: Python<'_>) -> PyResult<spead_xdp::transport::XdpConfig> {
        use spead_xdp::transport::{HugePages, XdpMode};
        let endpoints = pyo3::types::PyList::new(py, &self.endpoints)?;
        let destinations = endpoints_of(endpoints.as_any())?
            .into_iter()
            .map(|d| match d {
                std::net::SocketAddr::V4(v4) => Ok(v4),
                other => Err(PyValueError::new_err(format!(
                    "AF_XDP frames are IPv4; {other} is not"
                ))),
            })
            .collect::<PyResult<Vec<_>>>()?;
        let source: Option<std::net::Ipv4Addr> = match self.interface_address.as_str() {
            "" => None,
            address => Some(address.parse().map_err(|_| {
                PyValueError::new_err(format!("interface_address {address:?} is not an IPv4 address"))
            })?),
        };
        // The NIC: named, or the one holding interface_address (as spead2
        // takes it), or the one the route to the first endpoint leaves by.
        let interface = match (self.interface.as_str(), source) {
            ("", Some(address)) => spead_xdp::transport::interface_with_address(address),
            ("", None) => spead_xdp::transport::interface_towards(*destinations[0].ip()),
            (name, _) => Ok(name.to_owned()),
        }
        .map_err(|e| transport_error(&e))?;
        let mut config = spead_xdp::transport::XdpConfig::new(interface, destinations);
        config.source = source;
        config.buffer_size = self.buffer_size;
        config.ttl = self.ttl;
        config.queue = self.queue;
        config.huge_pages = match self.huge_pages.as_str() {
            "auto" => HugePages::Auto,
            "require" => HugePages::Require,
            "never" => HugePages::Never,
            other => {
                return Err(PyValueError::new_err(format!(
                    "huge_pages must be 'auto', 'require' or 'never', not {other:?}"
                )))
            }
        };
        config.mode = match self.mode.as_str() {
            "auto" => XdpMode::Auto,
            "copy" => XdpMode::Copy,
            "zero-copy" => XdpMode::ZeroCopy,
            other => {
                return Err(PyValueError::new_err(format!(
                    "mode must be 'auto', 'copy' or 'zero-copy', not {other:?}"
                )))
            }
        };
        Ok(config)
    }
}

/// A stream over AF_XDP (needs root or CAP_NET_RAW): spead2's
/// `UdpIbvStream` counterpart, on any Linux NIC.
#[pyclass(module = "spead_xdp._spead_xdp", extends = Stream, subclass)]
struct XdpStream {
    area: Arc<UmemArea>,
    counters: Arc<XdpCounters>,
}

#[pymethods]
impl XdpStream {
    #[new]
    fn new(
        py: Python<'_>,
        thread_pool: &Bound<'_, PyAny>,
        config: StreamConfig,
        xdp_config: PyRef<'_, XdpConfig>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let xdp = xdp_config.to_rust(py)?;
        let user_bytes = xdp_config.user_buffer_size;
        let transport = py
            .detach(|| {
                let area = UmemArea::with_pages(xdp.buffer_size, user_bytes, xdp.huge_pages)?;
                XdpTransport::with_area(&xdp, Arc::clone(&area)).map(|transport| (transport, area))
            })
            .map_err(|e| transport_error(&e));
        let (transport, area) = transport?;
        let counters = transport.counters();
        Ok(
            PyClassInitializer::from(start(transport, Some(config), thread_pool)?)
                .add_subclass(XdpStream { area, counters }),
        )
    }

    /// `nbytes` of the stream's UMEM for an array (`allocate` builds it):
    /// the memory's address and the object that keeps it mapped.
    fn _allocate(&self, nbytes: usize) -> PyResult<(usize, UmemAllocation)> {
        let buffer = self.area.alloc(nbytes).map_err(|e| {
            pyo3::exceptions::PyMemoryError::new_err(format!(
                "{e} (XdpConfig.user_buffer_size sets the bytes kept for allocate)"
            ))
        })?;
        Ok((buffer.address(), UmemAllocation { _buffer: buffer }))
    }

    /// Packets handed to the kernel so far, and of them those whose payload
    /// went by reference from arrays in the UMEM (not copied).
    #[getter]
    fn xdp_packets(&self) -> (u64, u64) {
        (self.counters.packets(), self.counters.by_reference())
    }
}

/// Keeps an `XdpStream.allocate` array's UMEM memory mapped (the array
/// holds it).
#[pyclass(module = "spead_xdp._spead_xdp", frozen)]
struct UmemAllocation {
    _buffer: UmemBuffer,
}

/// spead2's `InprocQueue`: packets between a stream and a receiver in
/// this process (`capacity` packets at most; a full queue fails the send).
#[pyclass(module = "spead_xdp._spead_xdp", name = "InprocQueue", frozen)]
struct PyInprocQueue {
    queue: InprocQueue,
}

#[pymethods]
impl PyInprocQueue {
    #[classattr]
    const DEFAULT_CAPACITY: usize = InprocQueue::DEFAULT_CAPACITY;

    #[new]
    #[pyo3(signature = (capacity=InprocQueue::DEFAULT_CAPACITY))]
    fn new(capacity: usize) -> Self {
        PyInprocQueue {
            queue: InprocQueue::new(capacity),
        }
    }

    /// Queues a packet (any bytes-like object, copied).
    fn add_packet(&self, packet: &Bound<'_, PyAny>) -> PyResult<()> {
        let bytes = match packet.cast::<PyBytes>() {
            Ok(bytes) => bytes.clone(),
            Err(_) => packet
                .py()
                .import("builtins")?
                .getattr("bytes")?
                .call1((packet,))?
                .cast_into::<PyBytes>()?,
        };
        self.queue
            .add_packet(bytes.as_bytes())
            .map_err(|e| transport_error(&e))
    }

    /// Stops the queue: its receiver ends after what is queued.
    fn stop(&self) {
        self.queue.stop();
    }
}

/// spead2's `send.InprocStream`: a stream into in-process queues, one
/// substream each.
#[pyclass(module = "spead_xdp._spead_xdp", extends = Stream, subclass)]
struct InprocStream {
    queues: Vec<Py<PyInprocQueue>>,
}

#[pymethods]
impl InprocStream {
    #[new]
    #[pyo3(signature = (thread_pool, queues, config=None))]
    fn new(
        thread_pool: &Bound<'_, PyAny>,
        queues: Vec<Py<PyInprocQueue>>,
        config: Option<StreamConfig>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let inner: Vec<InprocQueue> = queues.iter().map(|q| q.get().queue.clone()).collect();
        let transport = InprocTransport::new(inner).map_err(|e| transport_error(&e))?;
        Ok(PyClassInitializer::from(start(transport, config, thread_pool)?)
            .add_subclass(InprocStream { queues }))
    }

    /// The queues, one per substream.
    #[getter]
    fn queues(&self, py: Python<'_>) -> Vec<Py<PyInprocQueue>> {
        self.queues.iter().map(|q| q.clone_ref(py)).collect()
    }
}

pyo3::create_exception!(
    _spead_xdp,
    Stopped,
    pyo3::exceptions::PyException,
    "The receiving stream has ended."
);
pyo3::create_exception!(
    _spead_xdp,
    Empty,
    pyo3::exceptions::PyException,
    "No heap is ready yet."
);

/// The native receiving stream under `spead_xdp.recv.Stream`: sources are
/// opened as they are added and read from `start()` (or the first `get`).
/// Another thread may call `stop()` or read `stats` while one waits in
/// `_get`.
#[pyclass(module = "spead_xdp._spead_xdp", name = "_RecvStream", frozen)]
struct RecvStream {
    config: ReceiverConfig,
    pending: std::sync::Mutex<Vec<Source>>,
    /// The receiver once started, held by the thread waiting for a heap.
    receiver: std::sync::Mutex<Option<Receiver>>,
    /// Its counters and stop, for any thread.
    handle: std::sync::OnceLock<ReceiverHandle>,
    stopped: std::sync::atomic::AtomicBool,
}

fn source_error(error: SourceError) -> PyErr {
    let errno = match &error {
        SourceError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
        _ => libc::EINVAL,
    };
    let mut message = error.to_string();
    if let Some(source) = std::error::Error::source(&error) {
        message = format!("{message}: {source}");
    }
    PyOSError::new_err((errno, message))
}

fn locked<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[pymethods]
impl RecvStream {
    #[new]
    #[pyo3(signature = (max_heaps, ring_heaps, contiguous_only))]
    fn new(max_heaps: usize, ring_heaps: usize, contiguous_only: bool) -> PyResult<Self> {
        if max_heaps == 0 {
            return Err(PyValueError::new_err("max_heaps must be positive"));
        }
        let mut config = ReceiverConfig::default();
        config.reassembly.max_heaps = max_heaps;
        config.ring_heaps = ring_heaps.max(1);
        config.deliver_incomplete = !contiguous_only;
        Ok(RecvStream {
            config,
            pending: std::sync::Mutex::new(Vec::new()),
            receiver: std::sync::Mutex::new(None),
            handle: std::sync::OnceLock::new(),
            stopped: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// A UDP source: `address` (unicast, bound; or a multicast group,
    /// joined on `interface_address`) and `port`.
    fn _add_udp(
        &self,
        py: Python<'_>,
        address: String,
        port: u16,
        buffer_size: usize,
        interface_address: String,
    ) -> PyResult<()> {
        let interface = match interface_address.as_str() {
            "" | "0.0.0.0" => None,
            text => Some(text.parse::<std::net::Ipv4Addr>().map_err(|_| {
                PyValueError::new_err(format!("interface_address {text:?} is not an IPv4 address"))
            })?),
        };
        let ip: std::net::IpAddr = match address.as_str() {
            "" => std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            host => match host.parse() {
                Ok(ip) => ip,
                Err(_) => endpoints_of(pyo3::types::PyList::new(py, [(host, port)])?.as_any())?[0].ip(),
            },
        };
        let options = UdpOptions {
            bind: None,
            interface,
            buffer: buffer_size,
        };
        let source = Source::udp(std::net::SocketAddr::new(ip, port), &options).map_err(source_error)?;
        self.add(source)
    }

    /// A caller's UDP socket (duplicated; the caller keeps theirs).
    fn _add_socket(&self, socket: &Bound<'_, PyAny>) -> PyResult<()> {
        let socket = socket_of(socket, socket2::Type::DGRAM, "UDP")?;
        self.add(Source::Udp(socket.into()))
    }

    /// A pcap file of Ethernet/IPv4/UDP frames, read to its end.
    fn _add_pcap(&self, path: std::path::PathBuf) -> PyResult<()> {
        let source = PcapSource::open(&path).map_err(source_error)?;
        self.add(Source::Pcap(source))
    }

    /// An in-process queue.
    fn _add_inproc(&self, queue: PyRef<'_, PyInprocQueue>) -> PyResult<()> {
        self.add(Source::Inproc(queue.queue.clone()))
    }

    /// Starts reading the sources added.
    fn start(&self, py: Python<'_>) -> PyResult<()> {
        if self.stopped.load(std::sync::atomic::Ordering::SeqCst) || self.handle.get().is_some() {
            return Ok(());
        }
        py.detach(|| {
            let mut receiver = locked(&self.receiver);
            if receiver.is_none() {
                let sources = std::mem::take(&mut *locked(&self.pending));
                let started = Receiver::new(sources, self.config.clone()).map_err(source_error)?;
                let _ = self.handle.set(started.handle());
                *receiver = Some(started);
            }
            Ok(())
        })
    }

    /// The next heap: waits up to `timeout` seconds (`None`: until one
    /// comes); `Empty` when none came, `Stopped` once the stream ended.
    #[pyo3(signature = (timeout=None))]
    fn _get(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<RecvHeap> {
        use std::time::{Duration, Instant};
        self.start(py)?;
        let slice_most = Duration::from_millis(100);
        let deadline = timeout
            .and_then(|t| Duration::try_from_secs_f64(t.max(0.0)).ok())
            .and_then(|t| Instant::now().checked_add(t));
        loop {
            if self.stopped.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(Stopped::new_err("the stream has been stopped"));
            }
            // In slices, so that Ctrl-C and a stop from another thread are
            // seen while waiting.
            let slice = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()).min(slice_most),
                None if timeout.is_some() => Duration::ZERO,
                None => slice_most,
            };
            let event = py.detach(|| match locked(&self.receiver).as_mut() {
                Some(receiver) => receiver.next_event(slice).map(Some),
                None => Ok(None),
            });
            match event.map_err(source_error)? {
                Some(Event::Heap(heap)) => return Ok(RecvHeap { heap }),
                Some(Event::End) | None => return Err(Stopped::new_err("the stream has ended")),
                Some(Event::Timeout) => {
                    py.check_signals()?;
                    if timeout.is_some() && deadline.is_none_or(|d| Instant::now() >= d) {
                        return Err(Empty::new_err("no heap is ready"));
                    }
                }
            }
        }
    }

    /// Stops the stream: its readers stop, sockets close (multicast groups
    /// are left), and `get` raises `Stopped`, in this thread or one
    /// waiting. The figures stay readable.
    fn stop(&self, py: Python<'_>) {
        self.stopped.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(handle) = self.handle.get() {
            handle.stop();
        }
        locked(&self.pending).clear();
        py.detach(|| drop(locked(&self.receiver).take()));
    }

    /// The stream's figures: packets, bytes, heaps complete and
    /// incomplete, malformed packets, duplicates, cnt gaps, kernel and
    /// ring drops.
    #[getter]
    fn stats(&self) -> RecvStats {
        RecvStats {
            inner: self.handle.get().map(ReceiverHandle::stats).unwrap_or_default(),
        }
    }
}

impl RecvStream {
    fn add(&self, source: Source) -> PyResult<()> {
        if self.stopped.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Stopped::new_err("the stream has been stopped"));
        }
        if self.handle.get().is_some() {
            return Err(PyValueError::new_err(
                "readers are added before the stream starts (its first get, or start())",
            ));
        }
        locked(&self.pending).push(source);
        Ok(())
    }
}

/// A receiving stream's figures at one moment.
#[pyclass(module = "spead_xdp._spead_xdp", frozen)]
struct RecvStats {
    inner: ReceiverStats,
}

#[pymethods]
impl RecvStats {
    /// Packets taken from the sources.
    #[getter]
    fn packets(&self) -> u64 {
        self.inner.packets
    }
    /// Bytes of those packets.
    #[getter]
    fn bytes(&self) -> u64 {
        self.inner.bytes
    }
    /// Heaps completed (spead2's `heaps` counts incomplete ones too).
    #[getter]
    fn heaps(&self) -> u64 {
        self.inner.heaps_complete
    }
    /// Heaps evicted or flushed incomplete.
    #[getter]
    fn incomplete_heaps(&self) -> u64 {
        self.inner.heaps_incomplete
    }
    /// Packets that were not SPEAD or broke a heap's layout.
    #[getter]
    fn malformed(&self) -> u64 {
        self.inner.malformed
    }
    /// Packets seen twice.
    #[getter]
    fn duplicates(&self) -> u64 {
        self.inner.duplicates
    }
    /// Heap cnts missing from the sequence seen.
    #[getter]
    fn cnt_gaps(&self) -> u64 {
        self.inner.cnt_gaps
    }
    /// Datagrams the kernel dropped (socket buffers full).
    #[getter]
    fn kernel_drops(&self) -> u64 {
        self.inner.kernel_drops
    }
    /// Heaps dropped because the consumer did not keep up.
    #[getter]
    fn ring_drops(&self) -> u64 {
        self.inner.ring_drops
    }

    fn __repr__(&self) -> String {
        let s = &self.inner;
        format!(
            "RecvStats(packets={}, bytes={}, heaps={}, incomplete_heaps={}, malformed={}, duplicates={}, cnt_gaps={}, kernel_drops={}, ring_drops={})",
            s.packets, s.bytes, s.heaps_complete, s.heaps_incomplete, s.malformed, s.duplicates, s.cnt_gaps, s.kernel_drops, s.ring_drops
        )
    }
}

/// A received heap (spead2's `recv.Heap`).
#[pyclass(module = "spead_xdp._spead_xdp", name = "RecvHeap", frozen)]
struct RecvHeap {
    heap: ReceivedHeap,
}

#[pymethods]
impl RecvHeap {
    /// The heap's cnt.
    #[getter]
    fn cnt(&self) -> u64 {
        self.heap.cnt()
    }

    /// Its flavour, a `spead_xdp.Flavour`.
    #[getter]
    fn flavour<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        flavour_object(py, self.heap.flavour())
    }

    /// Whether every byte of it arrived.
    fn is_complete(&self) -> bool {
        self.heap.is_complete()
    }

    /// Its items (not descriptors or stream control), in the sender's
    /// order.
    fn get_items(&self, py: Python<'_>) -> PyResult<Vec<RawItem>> {
        Ok(self
            .heap
            .items()
            .map(|item| RawItem {
                id: item.id(),
                is_immediate: item.is_immediate(),
                immediate_value: item.is_immediate().then(|| item.as_u64()).flatten(),
                value: PyBytes::new(py, item.value()).unbind(),
            })
            .collect())
    }

    /// The descriptors it carries.
    fn get_descriptors(&self) -> PyResult<Vec<RawDescriptor>> {
        let descriptors = self
            .heap
            .descriptors()
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(descriptors.into_iter().map(RawDescriptor::from).collect())
    }

    /// Whether it starts a stream (a stream-control start).
    fn is_start_of_stream(&self) -> bool {
        self.heap.stream_control() == Some(protocol::StreamControl::Start)
    }

    /// Whether it ends a stream (a stream-control stop).
    fn is_end_of_stream(&self) -> bool {
        self.heap.stream_control() == Some(protocol::StreamControl::Stop)
    }
}

/// An item of a received heap: its id, its bytes (an immediate's are its
/// `heap_address_bits / 8` big-endian bytes) and, for an immediate, its
/// value.
#[pyclass(module = "spead_xdp._spead_xdp", frozen, get_all)]
struct RawItem {
    id: u64,
    is_immediate: bool,
    immediate_value: Option<u64>,
    value: Py<PyBytes>,
}

/// A descriptor as received (spead2's `recv.RawDescriptor`): `shape` has
/// -1 for a variable dimension; `format` is a list of `(code, bits)` or
/// empty; `numpy_header` the numpy header text or empty.
#[pyclass(module = "spead_xdp._spead_xdp", frozen, get_all)]
struct RawDescriptor {
    id: u64,
    name: String,
    description: String,
    shape: Vec<i64>,
    format: Vec<(String, u64)>,
    numpy_header: String,
}

impl From<protocol::Descriptor> for RawDescriptor {
    fn from(d: protocol::Descriptor) -> Self {
        let numpy_header = d.numpy_header().unwrap_or_default();
        let format = match &d.data_type {
            protocol::DataType::Format(fields) => fields
                .iter()
                .map(|f| ((f.code as char).to_string(), f.bits))
                .collect(),
            protocol::DataType::Numpy { .. } => Vec::new(),
        };
        RawDescriptor {
            id: d.id,
            shape: d.shape.iter().map(|dim| dim.map_or(-1, |n| n as i64)).collect(),
            name: d.name,
            description: d.description,
            format,
            numpy_header,
        }
    }
}

/// The native module.
#[pymodule]
fn _spead_xdp(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(_prepare_exit, m)?)?;
    m.add_class::<Flavour>()?;
    m.add_class::<StreamConfig>()?;
    m.add_class::<Heap>()?;
    m.add_class::<HeapReference>()?;
    m.add_class::<HeapReferenceList>()?;
    m.add_class::<Stream>()?;
    m.add_class::<StreamStats>()?;
    m.add_class::<MetricsServer>()?;
    m.add_class::<BytesStream>()?;
    m.add_class::<UdpStream>()?;
    m.add_class::<TcpStream>()?;
    m.add_class::<PacketGenerator>()?;
    m.add_class::<XdpConfig>()?;
    m.add_class::<XdpStream>()?;
    m.add_class::<UmemAllocation>()?;
    m.add_class::<PyInprocQueue>()?;
    m.add_class::<InprocStream>()?;
    m.add_class::<RecvStream>()?;
    m.add_class::<RecvStats>()?;
    m.add_class::<RecvHeap>()?;
    m.add_class::<RawItem>()?;
    m.add_class::<RawDescriptor>()?;
    m.add("Stopped", m.py().get_type::<Stopped>())?;
    m.add("Empty", m.py().get_type::<Empty>())?;
    Ok(())
}
