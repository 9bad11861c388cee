//! UMEM memory for AF_XDP: one anonymous mapping (huge pages when reserved)
//! that a transport registers with the kernel. The front holds the
//! transport's packet slots; behind it, users allocate payload buffers
//! ([`UmemBuffer`]) that packets then reference instead of copying, as
//! spead2's ibverbs memory regions do. Buffers come from a bump allocator:
//! allocate them once, fill them, and resend them as often as needed.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use memmap2::{MmapMut, MmapOptions};

use super::TransportError;

/// UMEM chunk size: larger chunks are refused by the kernel.
pub const CHUNK: usize = 4096;
const HUGE_PAGE: usize = 2 << 20;
const ALIGN: usize = 64;

/// Which pages a UMEM mapping uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HugePages {
    /// Huge pages when reserved, normal pages otherwise (logged).
    #[default]
    Auto,
    /// Huge pages or an error saying what is missing.
    Require,
    /// Normal pages.
    Never,
}

/// Free and reserved huge pages (`HugePages_Free`, `HugePages_Total`), as
/// /proc/meminfo says, where it does.
fn huge_pages_counts() -> (Option<u64>, Option<u64>) {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| {
        meminfo.lines().find_map(|l| {
            l.strip_prefix(name)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
    };
    (field("HugePages_Free:"), field("HugePages_Total:"))
}

/// A mapping for one AF_XDP transport's UMEM: packet slots, then user
/// buffers.
pub struct UmemArea {
    map: MmapMut,
    base: *mut u8,
    slot_bytes: usize,
    next: AtomicUsize,
    huge_pages: bool,
    claimed: AtomicBool,
}

// SAFETY: the slot part is used by the one transport that claims it, and
// each user buffer by its one owner: the parts are disjoint byte ranges of
// a mapping that lives as long as the area.
unsafe impl Send for UmemArea {}
// SAFETY: as above; shared access only hands out disjoint ranges.
unsafe impl Sync for UmemArea {}

impl std::fmt::Debug for UmemArea {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UmemArea")
            .field("len", &self.map.len())
            .field("slot_bytes", &self.slot_bytes)
            .field("used", &self.next.load(Ordering::Relaxed))
            .field("huge_pages", &self.huge_pages)
            .finish()
    }
}

impl UmemArea {
    /// Maps `slot_bytes` for packet slots and `user_bytes` for user
    /// buffers (each rounded up to whole chunks), in huge pages when the
    /// system has them reserved.
    pub fn new(slot_bytes: usize, user_bytes: usize) -> Result<Arc<Self>, TransportError> {
        Self::with_pages(slot_bytes, user_bytes, HugePages::Auto)
    }

    /// As [`new`](Self::new), with the choice of pages: `Require` fails,
    /// saying how many huge pages are free and how to reserve more, where
    /// the mapping cannot be in huge pages.
    pub fn with_pages(
        slot_bytes: usize,
        user_bytes: usize,
        pages: HugePages,
    ) -> Result<Arc<Self>, TransportError> {
        let too_large = || TransportError::UmemTooLarge {
            slot_bytes,
            user_bytes,
        };
        let slot_bytes = slot_bytes.checked_next_multiple_of(CHUNK).ok_or_else(too_large)?;
        let len = user_bytes
            .checked_next_multiple_of(CHUNK)
            .and_then(|user| user.checked_add(slot_bytes))
            .filter(|len| len.checked_next_multiple_of(HUGE_PAGE).is_some())
            .ok_or_else(too_large)?;
        let huge = match pages {
            HugePages::Never => None,
            _ => MmapOptions::new()
                .len(len.next_multiple_of(HUGE_PAGE))
                .huge(None)
                .map_anon()
                .map_err(|e| {
                    tracing::debug!("no huge pages for {len} bytes of UMEM: {e}");
                    e
                })
                .ok(),
        };
        let (mut map, huge_pages) = match huge {
            Some(map) => (map, true),
            None if pages == HugePages::Require => {
                let (free, reserved) = huge_pages_counts();
                return Err(TransportError::HugePagesUnavailable {
                    bytes: len.next_multiple_of(HUGE_PAGE),
                    free,
                    reserved,
                });
            }
            None => (
                MmapOptions::new()
                    .len(len)
                    .map_anon()
                    .map_err(TransportError::doing(format!("mapping {len} bytes of UMEM")))?,
                false,
            ),
        };
        let base = map.as_mut_ptr();
        Ok(Arc::new(UmemArea {
            map,
            base,
            slot_bytes,
            next: AtomicUsize::new(slot_bytes),
            huge_pages,
            claimed: AtomicBool::new(false),
        }))
    }

    /// Whether the mapping is in huge pages.
    pub fn huge_pages(&self) -> bool {
        self.huge_pages
    }

    /// Bytes of the mapping (what the kernel registers).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the mapping is empty (never).
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Bytes reserved for packet slots at the front.
    pub fn slot_bytes(&self) -> usize {
        self.slot_bytes
    }

    /// Allocates a zeroed user buffer of `len` bytes, or says the area is
    /// full.
    pub fn alloc(self: &Arc<Self>, len: usize) -> Result<UmemBuffer, TransportError> {
        let full = |free: usize| TransportError::UmemFull {
            asked: len,
            free,
            user_bytes: self.map.len() - self.slot_bytes,
        };
        // Sizes past the mapping are refused before any arithmetic on them.
        let size = match len.checked_next_multiple_of(ALIGN) {
            Some(size) if size <= self.map.len() => size.max(ALIGN),
            _ => {
                return Err(full(
                    self.map.len().saturating_sub(self.next.load(Ordering::Relaxed)),
                ))
            }
        };
        let reserved = self
            .next
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |offset| {
                (offset + size <= self.map.len()).then_some(offset + size)
            });
        let offset = match reserved {
            Ok(offset) => offset,
            Err(offset) => return Err(full(self.map.len().saturating_sub(offset))),
        };
        Ok(UmemBuffer {
            area: Arc::clone(self),
            offset,
            len,
        })
    }

    /// Claims the slot part for one transport (once).
    pub(super) fn claim_slots(&self) -> Result<(), TransportError> {
        if self.claimed.swap(true, Ordering::AcqRel) {
            return Err(TransportError::UmemTaken);
        }
        Ok(())
    }

    /// The mapping's first byte.
    pub(super) fn base(&self) -> *mut u8 {
        self.base
    }

    /// Whether users can allocate buffers here (the area is larger than
    /// its slot part).
    pub(super) fn has_user_part(&self) -> bool {
        self.map.len() > self.slot_bytes
    }

    /// Where `len` bytes at `address` lie in the user part, as an offset
    /// from the start of the mapping; `None` if any of them lie outside.
    pub(super) fn user_offset(&self, address: usize, len: usize) -> Option<u64> {
        let start = address.checked_sub(self.base as usize)?;
        let end = start.checked_add(len)?;
        (start >= self.slot_bytes && end <= self.map.len()).then_some(start as u64)
    }

    /// `len` bytes of the slot part from `offset`, for the transport that
    /// claimed it. Out-of-range requests are cut to the slot part.
    ///
    /// # Safety
    /// Only the claiming transport calls this, for bytes no other live
    /// reference covers and the kernel is not reading (a free slot).
    #[allow(clippy::mut_from_ref)]
    pub(super) unsafe fn slot_mut(&self, offset: usize, len: usize) -> &mut [u8] {
        let slots_end = self.slot_bytes.min(self.map.len());
        let offset = offset.min(slots_end);
        let len = len.min(slots_end - offset);
        // SAFETY: the range lies in the slot part of the live mapping, and
        // the caller guarantees it is used by no one else.
        unsafe { std::slice::from_raw_parts_mut(self.base.add(offset), len) }
    }
}

/// A payload buffer inside a UMEM area: write it through `as_mut`, then
/// hand it to heaps as `bytes::Bytes::from_owner(buffer)`; packets
/// referencing it are sent straight from it.
pub struct UmemBuffer {
    area: Arc<UmemArea>,
    offset: usize,
    len: usize,
}

impl std::fmt::Debug for UmemBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UmemBuffer")
            .field("offset", &self.offset)
            .field("len", &self.len)
            .finish()
    }
}

impl UmemBuffer {
    /// The address of its first byte: for a runtime that writes the buffer
    /// itself (the Python package's `XdpStream.allocate` arrays), which
    /// heaps then lend as foreign memory, sent by reference. It stays valid
    /// while this buffer lives (the buffer keeps the mapping); whoever
    /// writes through it must not also borrow the buffer with `as_ref` or
    /// `as_mut` meanwhile.
    pub fn address(&self) -> usize {
        self.area.base as usize + self.offset
    }
}

impl AsRef<[u8]> for UmemBuffer {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: this buffer alone owns this range of the live mapping.
        unsafe { std::slice::from_raw_parts(self.area.base.add(self.offset), self.len) }
    }
}

impl AsMut<[u8]> for UmemBuffer {
    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.area.base.add(self.offset), self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_disjoint_inside_the_user_part() {
        let area = UmemArea::new(8 * CHUNK, 3 * CHUNK).unwrap();
        let mut a = area.alloc(100).unwrap();
        let mut b = area.alloc(5000).unwrap();
        a.as_mut().fill(1);
        b.as_mut().fill(2);
        assert!(a.as_ref().iter().all(|x| *x == 1) && b.as_ref().iter().all(|x| *x == 2));
        let offset = |buf: &UmemBuffer| buf.as_ref().as_ptr() as usize - area.base() as usize;
        assert_eq!((offset(&a), offset(&b)), (8 * CHUNK, 8 * CHUNK + 128));
        let err = area.alloc(20_000).unwrap_err();
        assert!(
            matches!(err, TransportError::UmemFull { asked: 20_000, .. }),
            "{err}"
        );
        area.claim_slots().unwrap();
        assert!(area.claim_slots().is_err());
    }

    #[test]
    fn sizes_that_overflow_are_refused_not_wrapped() {
        let area = UmemArea::new(CHUNK, CHUNK).unwrap();
        for len in [usize::MAX, usize::MAX - 10, 2 * CHUNK + 1] {
            let err = area.alloc(len).unwrap_err();
            assert!(
                matches!(err, TransportError::UmemFull { asked, user_bytes: CHUNK, .. } if asked == len),
                "{err}"
            );
        }
        let err = UmemArea::new(usize::MAX - 100, CHUNK).unwrap_err();
        assert!(matches!(err, TransportError::UmemTooLarge { .. }), "{err}");
        let err = UmemArea::new(CHUNK, usize::MAX).unwrap_err();
        assert!(matches!(err, TransportError::UmemTooLarge { .. }), "{err}");
        assert_eq!(area.alloc(CHUNK).unwrap().as_ref().len(), CHUNK);
    }
}
