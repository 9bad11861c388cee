//! Network namespaces for privileged tests: each test makes its own (named
//! after the test and the process), and removes it on drop, even when the
//! test fails.

use std::os::fd::AsRawFd;
use std::process::Command;

/// Whether to run a test that needs root: root runs; otherwise
/// SPEAD_SKIP_PRIVILEGED=1 skips it and anything else fails saying so.
pub fn privileged(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("SPEAD_SKIP_PRIVILEGED").as_deref() == Ok("1") {
        println!("{test}: skipped (needs root; SPEAD_SKIP_PRIVILEGED=1)");
        return false;
    }
    panic!("{test} needs root for network namespaces: run as root, or set SPEAD_SKIP_PRIVILEGED=1 to skip");
}

/// A network namespace of the test's own, with `lo` up.
pub struct Netns(String);

impl Netns {
    /// Creates `spx-<tag>-<pid>` (replacing a stale one).
    pub fn new(tag: &str) -> Self {
        let name = format!("spx-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run_ip(&["netns", "add", &name]);
        let ns = Netns(name);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// A namespace with a veth pair inside it at `mtu`: veth0 10.9.0.1 and
    /// veth1 10.9.0.2, multicast routed out of veth0. Members joined on
    /// veth0 hear only the kernel's multicast loopback copy (what veth0
    /// sends arrives on veth1, in no group).
    pub fn with_veth_pair(tag: &str, mtu: &str) -> Self {
        let ns = Netns::new(tag);
        ns.ip(&[
            "link", "add", "veth0", "mtu", mtu, "type", "veth", "peer", "name", "veth1", "mtu", mtu,
        ]);
        ns.ip(&["addr", "add", "10.9.0.1/24", "dev", "veth0"]);
        ns.ip(&["addr", "add", "10.9.0.2/24", "dev", "veth1"]);
        ns.ip(&["link", "set", "veth0", "up", "multicast", "on"]);
        ns.ip(&["link", "set", "veth1", "up"]);
        ns.ip(&["route", "add", "224.0.0.0/4", "dev", "veth0"]);
        ns
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.0
    }

    /// Runs `ip -n <namespace> ARGS`, failing the test if it fails.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.0.as_str()];
        all.extend_from_slice(args);
        run_ip(&all);
    }

    /// Runs `body` on a thread inside the namespace and returns its result,
    /// passing its panic on.
    pub fn run<T: Send>(&self, body: impl FnOnce() -> T + Send) -> T {
        run_in(&self.0, body)
    }
}

/// Moves the calling thread (and threads it starts) into namespace `name`.
pub fn enter(name: &str) {
    let file = std::fs::File::open(format!("/run/netns/{name}")).expect("open the namespace");
    // SAFETY: a valid namespace file descriptor; affects this thread only.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

/// Runs `body` on a thread inside namespace `name` and returns its result,
/// passing its panic on.
pub fn run_in<T: Send>(name: &str, body: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                enter(name);
                body()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// Runs `ip ARGS`, failing the test if it fails.
pub fn run_ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
