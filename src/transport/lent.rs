//! Python buffers lent to heaps (feature `python`, for the Python
//! package): a numpy array's bytes referred to, not copied, kept alive by
//! the heap, and read as they are when each packet is made, so an array
//! changed in place before a send goes out changed, as in spead2. Where the
//! array lies in an AF_XDP stream's UMEM, the transport sends it by
//! reference and nothing here reads it at all.
//!
//! The buffer is held by an export of our own (`PyObject_GetBuffer`), which
//! no Python code can release: the exporter must keep the memory in place
//! until we release it (PEP 3118), and we release it only when the last
//! heap lets go. The export lives in a capsule, so that the release, which
//! needs the interpreter, happens when the capsule is freed with it held
//! (pyo3 defers a decref made on the worker thread until then).

use std::ffi::{c_char, c_int, c_void};

use pyo3::prelude::*;
use pyo3::types::PyCapsule;

use crate::protocol::ForeignMemory;

use super::racy::copy_racy;

/// CPython's `Py_buffer` (Include/pybuffer.h), whose layout has not
/// changed since Python 3.3. Declared here because the stable ABI of
/// Python 3.10, which the package targets, does not list it, though every
/// CPython 3 exports the functions below.
#[repr(C)]
struct RawBuffer {
    buf: *mut c_void,
    obj: *mut pyo3::ffi::PyObject,
    len: isize,
    itemsize: isize,
    readonly: c_int,
    ndim: c_int,
    format: *mut c_char,
    shape: *mut isize,
    strides: *mut isize,
    suboffsets: *mut isize,
    internal: *mut c_void,
}

/// `PyBUF_SIMPLE`: one contiguous run of bytes, no format or strides.
const PYBUF_SIMPLE: c_int = 0;

extern "C" {
    fn PyObject_GetBuffer(obj: *mut pyo3::ffi::PyObject, view: *mut RawBuffer, flags: c_int) -> c_int;
    fn PyBuffer_Release(view: *mut RawBuffer);
}

/// Our export of a buffer, at a fixed address (boxed: an exporter may
/// know its views by address), released when dropped.
struct Export(Box<RawBuffer>);

// SAFETY: the export is only a claim on the exporter; it is released (the
// one thing done with it after it is made) in `Drop`, which runs where the
// capsule is freed, with the interpreter held, whichever thread that is.
unsafe impl Send for Export {}

impl Drop for Export {
    fn drop(&mut self) {
        // SAFETY: the view was filled by a successful PyObject_GetBuffer
        // and is released once, here; this runs in the capsule's
        // destructor, with the interpreter held.
        unsafe { PyBuffer_Release(&mut *self.0) };
    }
}

/// The bytes of a C-contiguous Python buffer (a numpy array, `bytes`, a
/// `bytearray`, ...), lent for as long as this lives.
pub struct PyBufferMemory {
    /// A capsule holding our export of the buffer. Dropped on the worker
    /// thread, its decref waits for the next thread to take the
    /// interpreter (pyo3's reference pool, on by default; a build with
    /// `pyo3_disable_reference_pool` would abort there instead).
    _export: Py<PyCapsule>,
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
    /// Lends the bytes of `buffer`, which must be C-contiguous (a
    /// `BufferError` says when it is not).
    pub fn new(buffer: &Bound<'_, PyAny>) -> PyResult<Self> {
        let py = buffer.py();
        let mut view = Box::new(RawBuffer {
            buf: std::ptr::null_mut(),
            obj: std::ptr::null_mut(),
            len: 0,
            itemsize: 0,
            readonly: 0,
            ndim: 0,
            format: std::ptr::null_mut(),
            shape: std::ptr::null_mut(),
            strides: std::ptr::null_mut(),
            suboffsets: std::ptr::null_mut(),
            internal: std::ptr::null_mut(),
        });
        // SAFETY: `buffer` is a live object (we hold the interpreter
        // through `py`), and `view` is writable storage of the right
        // layout, which the call fills or leaves alone on failure.
        if unsafe { PyObject_GetBuffer(buffer.as_ptr(), &mut *view, PYBUF_SIMPLE) } != 0 {
            return Err(PyErr::fetch(py));
        }
        let (address, len) = (view.buf as usize, usize::try_from(view.len).unwrap_or(0));
        // From here `Export` releases the export when the capsule is freed
        // (should making the capsule fail, out of memory, it leaks: never a
        // release too early).
        let capsule = PyCapsule::new_with_value_and_destructor(
            py,
            Export(view),
            c"spead_xdp.buffer_export",
            |export, _| drop(export),
        )?;
        Ok(PyBufferMemory {
            _export: capsule.unbind(),
            address,
            len,
        })
    }
}

impl ForeignMemory for PyBufferMemory {
    fn len(&self) -> usize {
        self.len
    }

    fn copy_to(&self, offset: usize, dst: &mut [u8]) {
        let in_range = offset.checked_add(dst.len()).is_some_and(|end| end <= self.len);
        if !in_range {
            dst.fill(0);
            return;
        }
        // SAFETY: `address..address + len` is the buffer of our export,
        // held by `_export` for as long as `self` lives; an exporter keeps
        // exported memory in place until the export is released (PEP
        // 3118), and no one but us can release it. The range copied lies
        // within it (checked above), and `dst` is our own memory.
        unsafe { copy_racy((self.address as *const u8).wrapping_add(offset), dst) };
    }

    fn address(&self) -> usize {
        self.address
    }
}
