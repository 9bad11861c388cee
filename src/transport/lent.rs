//! Python buffers lent to heaps (feature `python`, for the Python
//! package): a numpy array's bytes referred to, not copied, kept alive by
//! the heap, and read as they are when each packet is made, so an array
//! changed in place before a send goes out changed, as in spead2. Where the
//! array lies in an AF_XDP stream's UMEM, the transport sends it by
//! reference and nothing reads it at all.

use pyo3::prelude::*;
use pyo3::types::PyMemoryView;

use crate::protocol::ForeignMemory;

use super::racy::copy_racy;

/// The bytes of a C-contiguous Python buffer (a numpy array, `bytes`, ...),
/// lent for as long as this lives.
pub struct PyBufferMemory {
    /// A numpy array over a byte view of the buffer: it holds the view,
    /// and the view holds the buffer's export, so the memory stays put.
    keep: Py<PyAny>,
    address: usize,
    len: usize,
}

impl std::fmt::Debug for PyBufferMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PyBufferMemory")
            .field("address", &format_args!("{:#x}", self.address))
            .field("len", &self.len)
            .finish()
    }
}

impl PyBufferMemory {
    /// Lends the bytes of `buffer`, which must be C-contiguous.
    pub fn new(buffer: &Bound<'_, PyAny>) -> PyResult<Self> {
        let py = buffer.py();
        let view = PyMemoryView::from(buffer)?;
        if !view.getattr("c_contiguous")?.is_truthy()? {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "ndarray is not C-contiguous",
            ));
        }
        let bytes = view.call_method1("cast", ("B",))?;
        let array = py.import("numpy")?.call_method1("frombuffer", (bytes, "u1"))?;
        let (address, _read_only): (usize, bool) = array
            .getattr("__array_interface__")?
            .get_item("data")?
            .extract()?;
        let len: usize = array.getattr("nbytes")?.extract()?;
        Ok(PyBufferMemory {
            keep: array.unbind(),
            address,
            len,
        })
    }

    /// The object that keeps the memory alive (a numpy byte array).
    pub fn owner(&self) -> &Py<PyAny> {
        &self.keep
    }
}

impl ForeignMemory for PyBufferMemory {
    fn len(&self) -> usize {
        self.len
    }

    fn copy_to(&self, offset: usize, dst: &mut [u8]) {
        let in_range = offset.checked_add(dst.len()).is_some_and(|end| end <= self.len);
        if !in_range {
            return;
        }
        // SAFETY: `address..address + len` is the buffer numpy reports for
        // an array over a byte view of an exported Python buffer; `keep`
        // holds that array, hence the view and its export, for as long as
        // `self` lives, and an exporter keeps exported memory in place
        // (PEP 3118). The range copied lies within it (checked above).
        unsafe { copy_racy((self.address as *const u8).wrapping_add(offset), dst) };
    }

    fn address(&self) -> usize {
        self.address
    }
}
