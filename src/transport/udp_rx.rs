//! UDP read in batches, for receivers that must keep up: one `recvmmsg`
//! call fills up to [`MESSAGES`] slots of one buffer allocated once; with
//! UDP GRO (where the kernel offers it) a slot may hold several datagrams
//! of one size, coalesced by the kernel, which [`UdpBatch::datagrams`]
//! splits back apart; and every batch carries the socket's drop counter
//! (`SO_RXQ_OVFL`), so datagrams the kernel dropped for want of buffer
//! space are counted, never silent. Nothing is allocated or zeroed per
//! datagram.

use std::io;
use std::mem;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;

use nix::sys::socket::{setsockopt, sockopt};

/// Slots filled by one `recvmmsg`.
pub(crate) const MESSAGES: usize = 64;
/// Bytes a slot holds: the largest UDP payload, or a GRO message of
/// coalesced datagrams (at most 64 KiB).
const SLOT: usize = 1 << 16;
/// Control bytes a slot holds: room for `SO_RXQ_OVFL` (u32) and `UDP_GRO`
/// (int) with their headers (24 bytes each), and for options a caller's
/// socket may have on besides.
const CONTROL: usize = 128;
/// `UDP_GRO` from the kernel's `linux/udp.h` (libc lacks it for glibc).
const UDP_GRO: libc::c_int = 104;
/// `SO_MEMINFO` (`asm-generic/socket.h`; sparc numbers it apart), its
/// array's length (`SK_MEMINFO_VARS`) and the drop counter's place.
#[cfg(any(target_arch = "sparc", target_arch = "sparc64"))]
const SO_MEMINFO: libc::c_int = 0x39;
#[cfg(not(any(target_arch = "sparc", target_arch = "sparc64")))]
const SO_MEMINFO: libc::c_int = 55;
const SK_MEMINFO_VARS: usize = 9;
const SK_MEMINFO_DROPS: usize = 8;

/// One slot's control bytes, aligned as `cmsghdr` needs.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct ControlSlot([u8; CONTROL]);

/// What one slot of the last batch held.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Bytes received.
    len: usize,
    /// The GRO segment size (0: one datagram).
    segment: usize,
    /// Cut short: longer than the slot (never for UDP).
    truncated: bool,
}

/// A UDP socket read in batches.
pub(crate) struct UdpBatchReceiver {
    socket: UdpSocket,
    buffer: Box<[u8]>,
    control: Box<[ControlSlot]>,
    headers: Box<[libc::mmsghdr]>,
    iovecs: Box<[libc::iovec]>,
    received: [Slot; MESSAGES],
    count: usize,
    /// Datagrams the socket dropped, accumulated from its 32-bit counter.
    drops: u64,
    /// The counter's last reading.
    counter: u32,
    /// Messages cut short so far.
    truncated: u64,
    gro: bool,
}

// SAFETY: the raw pointers in `headers` and `iovecs` only ever point into
// this value's own heap buffers (`buffer`, `control`, `iovecs`), and are
// rebuilt from them under `&mut self` before every use; the type is not
// `Sync`, so no other thread can reach them while one uses them.
unsafe impl Send for UdpBatchReceiver {}

impl std::fmt::Debug for UdpBatchReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpBatchReceiver")
            .field("socket", &self.socket)
            .field("gro", &self.gro)
            .finish()
    }
}

impl UdpBatchReceiver {
    /// Reads `socket` in batches, asking the kernel for its drop counter
    /// and for GRO (kept off where the kernel refuses it). A read waits
    /// as long as the socket's read timeout.
    pub fn new(socket: UdpSocket) -> io::Result<Self> {
        setsockopt(&socket, sockopt::RxqOvfl, &1)?;
        let gro = setsockopt(&socket, sockopt::UdpGroSegment, &true).is_ok();
        // SAFETY: mmsghdr and iovec are plain old data; all zeros is valid
        // (null pointers, zero lengths), and every field is set before use.
        let headers = (0..MESSAGES).map(|_| unsafe { mem::zeroed() }).collect();
        // SAFETY: as above.
        let iovecs = (0..MESSAGES).map(|_| unsafe { mem::zeroed() }).collect();
        Ok(UdpBatchReceiver {
            socket,
            buffer: vec![0; MESSAGES * SLOT].into_boxed_slice(),
            control: vec![ControlSlot([0; CONTROL]); MESSAGES].into_boxed_slice(),
            headers,
            iovecs,
            received: [Slot::default(); MESSAGES],
            count: 0,
            drops: 0,
            counter: 0,
            truncated: 0,
            gro,
        })
    }

    /// Whether the kernel coalesces datagrams for this socket (UDP GRO).
    pub fn gro(&self) -> bool {
        self.gro
    }

    /// The socket.
    pub fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// Datagrams the kernel dropped at this socket since it was opened
    /// (for want of receive-buffer space), as of the last datagram that
    /// brought news of it (the kernel stamps the count on each datagram
    /// it queues) or the last [`refresh_drops`](Self::refresh_drops).
    pub fn kernel_drops(&self) -> u64 {
        self.drops
    }

    /// Takes a reading of the kernel's 32-bit drop counter. It only grows
    /// (modulo 2^32): a reading older than the last (a datagram queued
    /// before an SO_MEMINFO refresh carries an older stamp) is passed over.
    fn note_counter(&mut self, counter: u32) {
        let grown = counter.wrapping_sub(self.counter);
        if grown < u32::MAX / 2 {
            self.drops += u64::from(grown);
            self.counter = counter;
        }
    }

    /// Asks the kernel for the socket's drop counter now (`SO_MEMINFO`):
    /// one system call, for when no datagram brings it (idle, or at the
    /// end).
    pub fn refresh_drops(&mut self) -> io::Result<u64> {
        let mut meminfo = [0u32; SK_MEMINFO_VARS];
        let mut len = mem::size_of_val(&meminfo) as libc::socklen_t;
        let needed = ((SK_MEMINFO_DROPS + 1) * mem::size_of::<u32>()) as libc::socklen_t;
        // SAFETY: a valid socket, and a buffer of `len` bytes the kernel
        // fills (at most `len`).
        let rc = unsafe {
            libc::getsockopt(
                self.socket.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_MEMINFO,
                meminfo.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        if len < needed {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("SO_MEMINFO gave {len} bytes, without the drop counter"),
            ));
        }
        self.note_counter(meminfo[SK_MEMINFO_DROPS]);
        Ok(self.kernel_drops())
    }

    /// Messages cut short so far (longer than a slot).
    pub fn truncated(&self) -> u64 {
        self.truncated
    }

    /// Waits (up to the socket's read timeout) for at least one datagram,
    /// then takes every message already queued, up to [`MESSAGES`].
    /// `Ok` with an empty batch when the wait timed out.
    pub fn receive(&mut self) -> io::Result<UdpBatch<'_>> {
        self.count = 0;
        self.prepare_headers();
        // SAFETY: `headers` holds MESSAGES entries, each pointing at its own
        // iovec (of SLOT bytes inside `buffer`) and CONTROL bytes inside
        // `control`, all owned by `self` and alive for the call; no name
        // buffer is given (msg_name null, msg_namelen 0).
        let rc = unsafe {
            libc::recvmmsg(
                self.socket.as_raw_fd(),
                self.headers.as_mut_ptr(),
                MESSAGES as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            let error = io::Error::last_os_error();
            return match error.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted => {
                    Ok(UdpBatch { receiver: self })
                }
                _ => Err(error),
            };
        }
        self.count = rc as usize;
        for k in 0..self.count {
            self.received[k] = self.read_header(k);
            self.truncated += u64::from(self.received[k].truncated);
        }
        Ok(UdpBatch { receiver: self })
    }

    /// Points every header at its slot, its iovec and its control bytes,
    /// with their full capacities (the kernel overwrites the lengths).
    fn prepare_headers(&mut self) {
        let buffer = self.buffer.as_mut_ptr();
        let control = self.control.as_mut_ptr();
        let iovecs = self.iovecs.as_mut_ptr();
        for k in 0..MESSAGES {
            self.iovecs[k] = libc::iovec {
                // In bounds: k < MESSAGES, and the buffer has MESSAGES slots.
                iov_base: buffer.wrapping_add(k * SLOT).cast(),
                iov_len: SLOT,
            };
            let header = &mut self.headers[k].msg_hdr;
            header.msg_name = std::ptr::null_mut();
            header.msg_namelen = 0;
            header.msg_iov = iovecs.wrapping_add(k);
            header.msg_iovlen = 1;
            header.msg_control = control.wrapping_add(k).cast();
            header.msg_controllen = CONTROL as _;
            header.msg_flags = 0;
            self.headers[k].msg_len = 0;
        }
    }

    /// What slot `k` holds, taking the drop counter from its control
    /// messages.
    fn read_header(&mut self, k: usize) -> Slot {
        let mmsg = self.headers[k];
        let flags = mmsg.msg_hdr.msg_flags;
        let mut slot = Slot {
            len: (mmsg.msg_len as usize).min(SLOT),
            segment: 0,
            truncated: flags & libc::MSG_TRUNC != 0,
        };
        let header: *const libc::msghdr = &mmsg.msg_hdr;
        let control = self.control[k].0.as_ptr();
        // The kernel wrote msg_controllen bytes at most (never more than
        // the CONTROL it was given).
        #[allow(clippy::unnecessary_cast)] // socklen_t, not usize, on musl
        let control_len = (mmsg.msg_hdr.msg_controllen as usize).min(CONTROL);
        // SAFETY: msg_control points at slot k's CONTROL bytes, aligned for
        // cmsghdr (ControlSlot), and msg_controllen is what the kernel
        // wrote there; CMSG_FIRSTHDR/CMSG_NXTHDR return a header that lies
        // within msg_controllen, or null.
        let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(header) };
        while !cmsg.is_null() {
            // SAFETY: a non-null cmsg from CMSG_FIRSTHDR/NXTHDR is a whole,
            // aligned header inside the control bytes.
            let (level, kind, len) =
                unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type, (*cmsg).cmsg_len as usize) };
            // SAFETY: CMSG_DATA only offsets the pointer past the header.
            let data = unsafe { libc::CMSG_DATA(cmsg) };
            // Its data as far as the cmsg's own length and the bytes the
            // kernel wrote both reach (a truncated one can claim more).
            let data_len = (len.saturating_sub(data as usize - cmsg as usize))
                .min((control as usize + control_len).saturating_sub(data as usize));
            if level == libc::SOL_SOCKET && kind == libc::SO_RXQ_OVFL && data_len >= 4 {
                // SAFETY: 4 bytes of data lie within what the kernel wrote
                // (checked just above); read unaligned, as cmsg data need
                // not be aligned for a u32.
                self.note_counter(unsafe { data.cast::<u32>().read_unaligned() });
            } else if level == libc::SOL_UDP && kind == UDP_GRO && data_len >= 4 {
                // SAFETY: as above, for UDP_GRO's int (the segment size).
                let size = unsafe { data.cast::<libc::c_int>().read_unaligned() };
                slot.segment = usize::try_from(size).unwrap_or(0);
            }
            // SAFETY: as for CMSG_FIRSTHDR.
            cmsg = unsafe { libc::CMSG_NXTHDR(header, cmsg) };
        }
        slot
    }
}

/// The datagrams of one [`UdpBatchReceiver::receive`].
#[derive(Debug)]
pub(crate) struct UdpBatch<'a> {
    receiver: &'a UdpBatchReceiver,
}

impl UdpBatch<'_> {
    /// Messages received (each one datagram, or several coalesced).
    pub fn messages(&self) -> usize {
        self.receiver.count
    }

    /// The datagrams, GRO messages split back into theirs (messages cut
    /// short are passed over: counted in `truncated`).
    pub fn datagrams(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let r = self.receiver;
        r.received[..r.count]
            .iter()
            .enumerate()
            .filter(|(_, slot)| !slot.truncated)
            .flat_map(move |(k, slot)| {
                let message = &r.buffer[k * SLOT..k * SLOT + slot.len];
                // A segment size of 0 (no GRO) takes the message whole.
                message.chunks(if slot.segment == 0 {
                    slot.len.max(1)
                } else {
                    slot.segment
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pair() -> (UdpSocket, UdpBatchReceiver) {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.connect(socket.local_addr().unwrap()).unwrap();
        (sender, UdpBatchReceiver::new(socket).unwrap())
    }

    #[test]
    fn a_batch_takes_every_queued_datagram_in_order() {
        let (sender, mut receiver) = pair();
        for i in 0..10u8 {
            sender.send(&vec![i; 100 + usize::from(i)]).unwrap();
        }
        let mut got = Vec::new();
        while got.len() < 10 {
            let batch = receiver.receive().unwrap();
            assert!(batch.messages() > 0, "timed out after {}", got.len());
            got.extend(batch.datagrams().map(<[u8]>::to_vec));
        }
        for (i, d) in got.iter().enumerate() {
            assert_eq!(d, &vec![i as u8; 100 + i]);
        }
        assert_eq!(
            receiver.receive().unwrap().messages(),
            0,
            "a timeout is an empty batch"
        );
    }

    #[test]
    fn a_full_socket_buffer_reports_its_drops() {
        let (sender, mut receiver) = pair();
        nix::sys::socket::setsockopt(receiver.socket(), sockopt::RcvBuf, &4096).unwrap();
        // Far more than a small receive buffer holds, none read meanwhile.
        for _ in 0..2000 {
            sender.send(&[7u8; 1000]).unwrap();
        }
        let batch = receiver.receive().unwrap();
        let arrived = batch.datagrams().count() as u64;
        assert!(arrived > 0);
        let mut arrived_total = arrived;
        loop {
            let batch = receiver.receive().unwrap();
            if batch.messages() == 0 {
                break;
            }
            arrived_total += batch.datagrams().count() as u64;
        }
        // The count as of now, and as the next datagram queued carries it.
        let drops = receiver.refresh_drops().unwrap();
        assert!(drops > 0, "no drops reported");
        assert_eq!(arrived_total + drops, 2000);
        sender.send(b"after").unwrap();
        let batch = receiver.receive().unwrap();
        assert_eq!(batch.datagrams().collect::<Vec<_>>(), [b"after"]);
        assert_eq!(receiver.kernel_drops(), drops);
    }

    #[test]
    fn gro_messages_are_split_back_into_their_datagrams() {
        let (sender, mut receiver) = pair();
        assert!(receiver.gro(), "this kernel offers UDP GRO");
        // One GSO send of ten 1000-byte segments and a 500-byte tail; the
        // kernel keeps them coalesced for a GRO socket on loopback.
        setsockopt(&sender, sockopt::UdpGsoSegment, &1000).unwrap();
        let mut message = Vec::new();
        for i in 0..10u8 {
            message.extend_from_slice(&[i; 1000]);
        }
        message.extend_from_slice(&[10; 500]);
        sender.send(&message).unwrap();
        let batch = receiver.receive().unwrap();
        let datagrams: Vec<&[u8]> = batch.datagrams().collect();
        assert_eq!(batch.messages(), 1, "coalesced into one message");
        assert_eq!(datagrams.len(), 11);
        for (i, d) in datagrams.iter().enumerate() {
            let len = if i == 10 { 500 } else { 1000 };
            assert_eq!(*d, &vec![i as u8; len][..]);
        }
    }
}
