//! Copying memory that someone else may be writing: the bytes of a buffer
//! another runtime owns (a numpy array), read while its owner is free to
//! change them, as spead2 reads such arrays. A plain `memcpy` from memory
//! that is being written is a data race, undefined behaviour in Rust;
//! these copies are made by one inline-assembly block (x86-64) or by
//! relaxed atomic loads, which may see torn values but nothing worse.

#[cfg(any(test, not(target_arch = "x86_64")))]
use std::sync::atomic::{AtomicU8, Ordering};

/// Copies `dst.len()` bytes from `src` into `dst`, as they are at the time.
///
/// # Safety
/// `src..src + dst.len()` must stay mapped and readable for the call, must
/// not overlap `dst`, and must not be covered by a live Rust `&mut`. Its
/// bytes may be written meanwhile, by another thread or runtime.
pub(super) unsafe fn copy_racy(src: *const u8, dst: &mut [u8]) {
    if dst.is_empty() {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `rep movsb` reads `len` bytes from `src`, which the caller
    // keeps mapped, and writes them to `dst`, which we hold exclusively
    // and which does not overlap it; the direction flag is clear on entry
    // to an asm block (Rust's inline-assembly rules). Being one asm block,
    // the reads are not Rust accesses and so cannot race in Rust's sense.
    unsafe {
        std::arch::asm!(
            "rep movsb",
            inout("rcx") dst.len() => _,
            inout("rsi") src => _,
            inout("rdi") dst.as_mut_ptr() => _,
            options(nostack, preserves_flags),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    for (k, out) in dst.iter_mut().enumerate() {
        // SAFETY: the byte lies in the range the caller keeps mapped; an
        // atomic load may race with writes without undefined behaviour, and
        // a relaxed load of read-only memory is allowed (std's "atomic
        // accesses to read-only memory").
        *out = unsafe { AtomicU8::from_ptr(src.add(k).cast_mut()) }.load(Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_exactly_the_bytes_asked_for() {
        let src: Vec<u8> = (0..=255).cycle().take(10_000).collect();
        for (offset, len) in [(0, 0), (0, 1), (3, 4096), (17, 9983)] {
            let mut dst = vec![0xEEu8; len + 2];
            // SAFETY: the range lies in `src`, alive for the call.
            unsafe { copy_racy(src[offset..].as_ptr(), &mut dst[1..=len]) };
            assert_eq!(&dst[1..=len], &src[offset..offset + len]);
            assert_eq!((dst[0], dst[len + 1]), (0xEE, 0xEE), "no byte outside the range");
        }
    }

    #[test]
    fn a_copy_while_another_thread_writes_sees_only_written_values() {
        let cells: Vec<AtomicU8> = (0..4096).map(|_| AtomicU8::new(1)).collect();
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let mut value = 1u8;
                while !done.load(Ordering::Relaxed) {
                    value = if value == 1 { 2 } else { 1 };
                    cells.iter().for_each(|c| c.store(value, Ordering::Relaxed));
                }
            });
            let mut dst = vec![0u8; cells.len()];
            for _ in 0..200 {
                // SAFETY: `cells` is alive for the whole scope.
                unsafe { copy_racy(cells.as_ptr().cast(), &mut dst) };
                assert!(dst.iter().all(|&b| b == 1 || b == 2));
            }
            done.store(true, Ordering::Relaxed);
        });
    }
}
