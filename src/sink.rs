//! The XDP sink (feature `sink`): loads `bpf/spead_sink.bpf.c` through its
//! libbpf-rs skeleton, attaches it to an interface (inside a network
//! namespace if asked) with a BPF link, and reads its per-CPU counters.
//! The link is a file descriptor: the kernel detaches the program when the
//! sink is dropped or the process exits, however it exits. No bpffs pin is
//! needed, so it works under `ip netns exec` too.

use std::fs::File;
use std::mem::MaybeUninit;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags};
use nix::sched::{setns, CloneFlags};
use thiserror::Error;

#[allow(missing_docs, unsafe_code, clippy::all, clippy::pedantic)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/spead_sink.skel.rs"));
}
use skel::{SpeadSinkSkel, SpeadSinkSkelBuilder};

/// Where and how to attach the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkConfig {
    /// Interface to attach to.
    pub interface: String,
    /// Network namespace of the interface (a name under /run/netns).
    pub netns: Option<String>,
    /// UDP port counted as SPEAD.
    pub port: u16,
    /// Pass counted packets on (to a socket or tcpdump) instead of dropping.
    pub pass: bool,
}

impl SinkConfig {
    /// Counting UDP port 7148 on `interface`, dropping what it counts.
    pub fn new(interface: impl Into<String>) -> Self {
        SinkConfig {
            interface: interface.into(),
            netns: None,
            port: 7148,
            pass: false,
        }
    }
}

/// Why the sink could not start or be read.
#[derive(Debug, Error)]
pub enum SinkError {
    /// The namespace could not be entered (or left).
    #[error("network namespace {name}: {source}")]
    Namespace {
        /// Namespace name.
        name: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// No such interface.
    #[error("interface {name}: {source}")]
    Interface {
        /// Interface name.
        name: String,
        /// The OS error.
        source: nix::Error,
    },
    /// A libbpf step failed.
    #[error("{what}: {source}")]
    Bpf {
        /// What was being done.
        what: &'static str,
        /// libbpf's error.
        source: libbpf_rs::Error,
    },
}

/// The sink's counters, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// UDP packets to the SPEAD port.
    pub packets: u64,
    /// Their whole frame lengths, fragments included.
    pub bytes: u64,
    /// Of them, valid SPEAD packets.
    pub spead_packets: u64,
    /// Of them, not valid SPEAD.
    pub malformed: u64,
    /// Heaps whose payload fully arrived.
    pub heaps: u64,
    /// Kernel time (ns) of the first packet, 0 if none.
    pub first_ns: u64,
    /// Kernel time (ns) of the last packet.
    pub last_ns: u64,
}

impl SinkStats {
    /// UDP payload (SPEAD) bytes: frame bytes less the 42 bytes of
    /// Ethernet, IPv4 and UDP headers of each counted packet.
    pub fn udp_payload_bytes(&self) -> u64 {
        self.bytes.saturating_sub(42 * self.packets)
    }

    /// Seconds from the first packet to the last.
    pub fn span_seconds(&self) -> f64 {
        self.last_ns.saturating_sub(self.first_ns) as f64 / 1e9
    }

    fn from_cpu(bytes: &[u8]) -> Self {
        let field = |i: usize| u64::from_ne_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        SinkStats {
            packets: field(0),
            bytes: field(1),
            spead_packets: field(2),
            malformed: field(3),
            heaps: field(4),
            first_ns: field(5),
            last_ns: field(6),
        }
    }

    fn merge(self, cpu: SinkStats) -> Self {
        let first = match (self.first_ns, cpu.first_ns) {
            (0, b) => b,
            (a, 0) => a,
            (a, b) => a.min(b),
        };
        SinkStats {
            packets: self.packets + cpu.packets,
            bytes: self.bytes + cpu.bytes,
            spead_packets: self.spead_packets + cpu.spead_packets,
            malformed: self.malformed + cpu.malformed,
            heaps: self.heaps + cpu.heaps,
            first_ns: first,
            last_ns: self.last_ns.max(cpu.last_ns),
        }
    }
}

/// An attached sink; dropping it detaches the program.
pub struct Sink {
    skel: SpeadSinkSkel<'static>,
    _link: Link,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink").finish_non_exhaustive()
    }
}

/// Runs `body` with the calling thread in namespace `name`, then returns it
/// to the namespace it was in.
fn in_netns<T>(name: &str, body: impl FnOnce() -> T) -> Result<T, SinkError> {
    let fail = |source| SinkError::Namespace {
        name: name.to_owned(),
        source,
    };
    let home = File::open("/proc/thread-self/ns/net").map_err(fail)?;
    let target = File::open(format!("/run/netns/{name}")).map_err(fail)?;
    setns(&target, CloneFlags::CLONE_NEWNET).map_err(|e| fail(e.into()))?;
    let result = body();
    setns(&home, CloneFlags::CLONE_NEWNET).map_err(|e| fail(e.into()))?;
    Ok(result)
}

impl Sink {
    /// Loads the program and attaches it as `config` says.
    pub fn attach(config: &SinkConfig) -> Result<Self, SinkError> {
        let bpf = |what| move |source| SinkError::Bpf { what, source };
        // The skeleton borrows its object for as long as it lives; a sink
        // lives about as long as the process, so the object is leaked.
        let object = Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = SpeadSinkSkelBuilder::default()
            .open(object)
            .map_err(bpf("opening the sink program"))?;
        let rodata = open
            .maps
            .rodata_data
            .as_deref_mut()
            .expect("the sink's settings are in mapped rodata");
        rodata.spead_port = config.port;
        rodata.pass_packets = u8::from(config.pass);
        let skel = open.load().map_err(bpf("loading the sink program"))?;
        let attach = || -> Result<Link, SinkError> {
            let index = nix::net::if_::if_nametoindex(config.interface.as_str()).map_err(|source| {
                SinkError::Interface {
                    name: config.interface.clone(),
                    source,
                }
            })?;
            skel.progs
                .spead_sink
                .attach_xdp(index as i32)
                .map_err(bpf("attaching the sink to the interface"))
        };
        let link = match &config.netns {
            Some(name) => in_netns(name, attach)??,
            None => attach()?,
        };
        Ok(Sink { skel, _link: link })
    }

    /// The counters so far, summed over CPUs.
    pub fn stats(&self) -> Result<SinkStats, SinkError> {
        let per_cpu = self
            .skel
            .maps
            .counters
            .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
            .map_err(|source| SinkError::Bpf {
                what: "reading the sink's counters",
                source,
            })?
            .unwrap_or_default();
        Ok(per_cpu
            .iter()
            .map(|cpu| SinkStats::from_cpu(cpu))
            .fold(SinkStats::default(), SinkStats::merge))
    }
}
