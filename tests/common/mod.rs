//! Helpers shared by the integration tests: spead2 from PyPI, and network
//! namespaces for privileged tests. Not every test file uses every helper.
#![allow(dead_code)]

#[cfg(feature = "sink")]
pub mod harness;
pub mod netns;
pub mod veth;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// One HTTP/1.0 GET of `path` from `address`: the status line and the
/// body.
pub fn http_get(address: impl std::net::ToSocketAddrs + std::fmt::Display, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut connection = std::net::TcpStream::connect(&address).expect("connect to the HTTP server");
    write!(connection, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").unwrap();
    let mut response = String::new();
    connection.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

/// Waits (at most 10 s) until `done`, checking every 10 ms, or fails
/// saying what did not happen.
pub fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what} did not happen within 10 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The Python with spead2: `SPEAD2_PYTHON`, or the venv that
/// `scripts/test.sh` creates at `.venv/`. Fails with what to do if absent.
pub fn python() -> PathBuf {
    let path = std::env::var_os("SPEAD2_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    assert!(
        path.exists(),
        "interop tests need a Python with spead2 from PyPI at {}: run scripts/test.sh \
         (it creates .venv) or set SPEAD2_PYTHON",
        path.display()
    );
    path
}

/// A helper script in `tests/interop/`.
pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}

/// Collects datagrams on a new loopback port, waiting up to 30 s for the
/// first and then until a quiet half second. Returns the port and the
/// collector.
pub fn capture_udp() -> (u16, std::thread::JoinHandle<Vec<Vec<u8>>>) {
    use std::time::Duration;
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket2::SockRef::from(&socket)
        .set_recv_buffer_size(8 << 20)
        .unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let port = socket.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        let mut got = Vec::new();
        for _ in 0..60 {
            if let Ok(len) = socket.recv(&mut buf) {
                got.push(buf[..len].to_vec());
                break;
            }
        }
        while let Ok(len) = socket.recv(&mut buf) {
            got.push(buf[..len].to_vec());
        }
        got
    });
    (port, handle)
}
