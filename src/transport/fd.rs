//! File descriptors handed over by other code (a Python caller's socket,
//! say), taken as a duplicate of our own: whatever the number names, the
//! duplicate is a new descriptor only we hold.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// A new descriptor for the open file `fd` names, owned by the caller of
/// this function (closing it leaves `fd` open). Fails with EBADF where
/// `fd` names nothing.
pub fn duplicate_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC reads only the integer; with any value it
    // either fails or returns a new descriptor.
    let duplicate = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if duplicate < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `duplicate` was just made by fcntl for this process and is
    // held by nothing else, so owning (and in time closing) it is ours.
    Ok(unsafe { OwnedFd::from_raw_fd(duplicate) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_duplicate_outlives_its_original_and_nothing_is_not_duplicated() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let address = socket.local_addr().unwrap();
        let duplicate = std::net::UdpSocket::from(duplicate_fd(socket.as_raw_fd()).unwrap());
        drop(socket);
        assert_eq!(duplicate.local_addr().unwrap(), address);
        assert_eq!(duplicate_fd(-1).unwrap_err().raw_os_error(), Some(libc::EBADF));
    }
}
