//! The AF_XDP transport: packets built straight in UMEM frames and handed
//! to the kernel through a TX ring, no socket buffer or copy in between
//! (the driver copies once in copy mode; zero-copy drivers read the UMEM).
//!
//! Each packet gets a slot of consecutive 4 KiB chunks: the Ethernet/IPv4/UDP
//! headers (a per-destination template, `transport::frame`) at the start,
//! the SPEAD packet behind them, written by the packetizer in place. A
//! packet longer than a chunk (jumbo frames) goes as several descriptors,
//! all but the last flagged XDP_PKT_CONTD, on a socket bound with
//! XDP_USE_SG. Descriptors are fed as a flat stream in batches, the kernel
//! is woken when it asks (XDP_USE_NEED_WAKEUP; in copy mode, after every
//! batch until the ring is drained, since nothing leaves otherwise), the skb budget per
//! wakeup is raised (XDP_MAX_TX_SKB_BUDGET) where the kernel has it, and
//! completions are reaped in batches, recycling slots in order without
//! allocating. No XDP program is loaded: a TX-only socket needs none.

use std::collections::VecDeque;
use std::ffi::c_void;
use std::mem;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::num::NonZeroU32;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrayvec::ArrayVec;
use xdpilone::xdp::XdpDesc;
use xdpilone::{DeviceQueue, IfInfo, RingTx, Socket, SocketConfig, Umem, UmemConfig, User};

use super::frame::{MacAddress, UdpFrameTemplate, HEADERS_LEN};
use super::iface::{Interface, LinkWatch, LINK_CHECK_EVERY};
use super::umem::{HugePages, UmemArea, CHUNK};
use super::{
    check_pieces, check_udp_payload, Limits, PacketPieces, PacketSource, PacketSpec, Transport,
    TransportError,
};

/// Fragments (descriptors) the kernel takes for one packet (MAX_SKB_FRAGS).
const MAX_FRAGS: usize = 17;
/// Packets per batch.
const MAX_BATCH: usize = 256;
/// Bind flag for multi-buffer packets (linux/if_xdp.h).
const XDP_USE_SG: u16 = 1 << 4;
/// Descriptor option: more fragments of this packet follow.
const XDP_PKT_CONTD: u32 = 1;
/// SOL_XDP, and its options used here (linux/if_xdp.h).
const SOL_XDP: libc::c_int = 283;
const XDP_OPTIONS: libc::c_int = 8;
const XDP_OPTIONS_ZEROCOPY: u32 = 1;
const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;
/// How long to wait for the kernel to take or complete descriptors before
/// failing the batch.
const STALL_TIMEOUT: Duration = Duration::from_secs(1);

/// Copy or zero-copy binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XdpMode {
    /// Zero-copy when the driver supports it, copy mode otherwise.
    #[default]
    Auto,
    /// Copy mode only.
    Copy,
    /// Zero-copy only (fails where the driver cannot).
    ZeroCopy,
}

/// How to open an AF_XDP transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdpConfig {
    /// Interface to send on.
    pub interface: String,
    /// Its TX queue to bind.
    pub queue: u32,
    /// One destination per substream (IPv4).
    pub destinations: Vec<SocketAddrV4>,
    /// IPv4 source address in the frames: one of the interface's (`None`:
    /// its primary address).
    pub source: Option<Ipv4Addr>,
    /// UDP source port in the frames.
    pub source_port: u16,
    /// IPv4 TTL in the frames.
    pub ttl: u8,
    /// Bytes of UMEM for packet frames (rounded up to 4 KiB chunks; a
    /// packet takes one chunk, or several for jumbo packets), as spead2's
    /// `buffer_size` sizes its ibverbs memory region.
    pub buffer_size: usize,
    /// TX and completion ring entries (a power of two).
    pub ring_size: u32,
    /// Copy or zero-copy.
    pub mode: XdpMode,
    /// Huge pages for the UMEM: when reserved, required, or never.
    pub huge_pages: HugePages,
}

impl XdpConfig {
    /// Queue 0, 16 MiB of UMEM, 2048-entry rings, TTL 64, automatic mode.
    pub fn new(interface: impl Into<String>, destinations: Vec<SocketAddrV4>) -> Self {
        XdpConfig {
            interface: interface.into(),
            queue: 0,
            destinations,
            source: None,
            source_port: 49152,
            ttl: 64,
            buffer_size: 16 << 20,
            ring_size: 2048,
            mode: XdpMode::Auto,
            huge_pages: HugePages::Auto,
        }
    }
}

/// Counters of an AF_XDP transport, readable from any thread while it runs
/// (updated once a batch).
#[derive(Debug, Default)]
pub struct XdpCounters {
    packets: AtomicU64,
    by_reference: AtomicU64,
}

impl XdpCounters {
    /// Packets handed to the kernel so far.
    pub fn packets(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }

    /// Of them, packets whose payload went by reference to user buffers.
    pub fn by_reference(&self) -> u64 {
        self.by_reference.load(Ordering::Relaxed)
    }
}

/// The bound socket and its rings, made when the packet size is known.
struct Rings {
    tx: RingTx,
    device: DeviceQueue,
    /// Kept alive: the socket's receive/transmit half.
    _user: User,
    zero_copy: bool,
}

/// Sends packets through an AF_XDP socket.
pub struct XdpTransport {
    config: XdpConfig,
    interface: Interface,
    templates: Vec<UdpFrameTemplate>,
    /// Declared before the area so they are dropped first.
    rings: Option<Rings>,
    umem: Umem,
    area: Arc<UmemArea>,
    /// Chunks per packet slot.
    slot_chunks: usize,
    free: Vec<u32>,
    /// Slots in the TX ring, oldest first, with their descriptors still to
    /// complete.
    in_flight: VecDeque<(u32, u32)>,
    /// Waits for a free slot or TX ring space so far.
    stalls: u64,
    descriptors: Vec<XdpDesc>,
    /// The descriptors of a packet a stalled ring cut off part-way, still
    /// to go (the kernel holds its first fragments).
    cut_off: Vec<XdpDesc>,
    ip_id: u16,
    counters: Arc<XdpCounters>,
    link: LinkWatch,
    limits: Limits,
}

impl std::fmt::Debug for XdpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpTransport")
            .field("interface", &self.config.interface)
            .field("queue", &self.config.queue)
            .field("huge_pages", &self.area.huge_pages())
            .finish_non_exhaustive()
    }
}

// SAFETY: the UMEM and rings point into `area`, which this transport holds
// (and whose slots it alone uses); one thread uses the transport at a time.
unsafe impl Send for XdpTransport {}

fn os_error(what: impl Into<String>) -> impl FnOnce(xdpilone::Errno) -> TransportError {
    let what = what.into();
    move |errno| {
        let raw = errno.get_raw();
        let source = std::io::Error::from_raw_os_error(raw);
        if raw == libc::EPERM || raw == libc::EACCES {
            TransportError::Permission {
                what,
                source: Arc::new(source),
            }
        } else {
            TransportError::io(what, source)
        }
    }
}

impl XdpTransport {
    /// Looks up the interface and destinations (source MAC and IPv4 from
    /// the interface; next-hop MACs from the neighbour table) and maps the
    /// UMEM. The socket is bound when the stream starts (`prepare`).
    pub fn new(config: &XdpConfig) -> Result<Self, TransportError> {
        let area = UmemArea::with_pages(config.buffer_size, 0, config.huge_pages)?;
        Self::with_area(config, area)
    }

    /// As [`new`](Self::new), with a UMEM area made beforehand: heap items
    /// whose bytes are [`UmemBuffer`](super::umem::UmemBuffer)s of this
    /// area are sent by reference, without copying. Its slot part replaces
    /// `config.buffer_size`.
    pub fn with_area(config: &XdpConfig, area: Arc<UmemArea>) -> Result<Self, TransportError> {
        if config.destinations.is_empty() {
            return Err(TransportError::NoDestinations { transport: "AF_XDP" });
        }
        area.claim_slots()?;
        let interface = Interface::lookup(&config.interface)?;
        if interface.mac == MacAddress([0; 6]) {
            return Err(TransportError::NoEthernet {
                interface: config.interface.clone(),
            });
        }
        let source = SocketAddrV4::new(interface.source_address(config.source)?, config.source_port);
        let templates = config
            .destinations
            .iter()
            .map(|d| {
                let mac = interface.next_hop_mac(*d.ip(), *source.ip(), Duration::from_secs(1))?;
                Ok(UdpFrameTemplate::new(interface.mac, mac, source, *d, config.ttl))
            })
            .collect::<Result<Vec<_>, TransportError>>()?;
        tracing::info!(
            "AF_XDP UMEM on {}: {} MiB in {} pages",
            config.interface,
            area.len() >> 20,
            if area.huge_pages() {
                "huge"
            } else {
                "normal (no hugepages reserved)"
            }
        );
        let bytes = NonNull::new(std::ptr::slice_from_raw_parts_mut(area.base(), area.len()))
            .expect("a mapping is never null");
        let umem_config = UmemConfig {
            fill_size: config.ring_size,
            complete_size: config.ring_size,
            frame_size: CHUNK as u32,
            headroom: 0,
            flags: 0,
        };
        // SAFETY: `bytes` is the page-aligned mapping of `area`, which the
        // transport holds for longer than the UMEM and its rings.
        let umem = unsafe { Umem::new(umem_config, bytes) }.map_err(os_error("registering the UMEM"))?;
        Ok(XdpTransport {
            config: config.clone(),
            interface,
            rings: None,
            umem,
            area,
            slot_chunks: 1,
            free: Vec::new(),
            in_flight: VecDeque::new(),
            stalls: 0,
            descriptors: Vec::new(),
            cut_off: Vec::new(),
            ip_id: 0,
            counters: Arc::default(),
            link: LinkWatch::new(&config.interface, LINK_CHECK_EVERY)?,
            limits: Limits {
                max_len: 0,
                substreams: templates.len(),
            },
            templates,
        })
    }

    /// The transport's counters (shared; keep a clone before handing the
    /// transport to a stream).
    pub fn counters(&self) -> Arc<XdpCounters> {
        Arc::clone(&self.counters)
    }

    /// Whether the UMEM is backed by huge pages.
    pub fn huge_pages(&self) -> bool {
        self.area.huge_pages()
    }

    /// Whether the socket is bound in zero-copy mode (after `prepare`).
    pub fn zero_copy(&self) -> Option<bool> {
        self.rings.as_ref().map(|r| r.zero_copy)
    }

    fn bind(&mut self, multi_buffer: bool) -> Result<Rings, TransportError> {
        let name = &self.config.interface;
        let mut info = IfInfo::invalid();
        info.from_ifindex(self.interface.index)
            .map_err(os_error(format!("reading interface {name}")))?;
        info.set_queue(self.config.queue);
        let socket = Socket::with_shared(&info, &self.umem).map_err(os_error("creating an AF_XDP socket"))?;
        let device = self
            .umem
            .fq_cq(&socket)
            .map_err(os_error("mapping the completion ring"))?;
        let mode = match self.config.mode {
            XdpMode::Auto => 0,
            XdpMode::Copy => SocketConfig::XDP_BIND_COPY,
            XdpMode::ZeroCopy => SocketConfig::XDP_BIND_ZEROCOPY,
        };
        let flags = SocketConfig::XDP_BIND_NEED_WAKEUP | mode | if multi_buffer { XDP_USE_SG } else { 0 };
        let user = self
            .umem
            .rx_tx(
                &socket,
                &SocketConfig {
                    rx_size: None,
                    tx_size: NonZeroU32::new(self.config.ring_size),
                    bind_flags: flags,
                },
            )
            .map_err(os_error("creating the TX ring"))?;
        let tx = user.map_tx().map_err(os_error("mapping the TX ring"))?;
        // Rebinding a queue right after its last user closed can fail with
        // EBUSY for a moment: retry briefly.
        let mut attempt = 0;
        loop {
            match self.umem.bind(&user) {
                Ok(()) => break,
                Err(e) if e.get_raw() == libc::EBUSY && attempt < 20 => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(25));
                }
                Err(e) => {
                    return Err(os_error(format!(
                        "binding an AF_XDP socket to {name} queue {} (root or CAP_NET_RAW needed; \
                         the driver must support AF_XDP{})",
                        self.config.queue,
                        if mode == SocketConfig::XDP_BIND_ZEROCOPY {
                            " zero-copy"
                        } else {
                            ""
                        }
                    ))(e))
                }
            }
        }
        let fd = user.as_raw_fd();
        let zero_copy = xdp_options(fd).is_some_and(|o| o & XDP_OPTIONS_ZEROCOPY != 0);
        let budget = set_tx_budget(fd, 512);
        tracing::info!(
            "AF_XDP socket on {name} queue {}: {} mode{}, TX skb budget {}",
            self.config.queue,
            if zero_copy { "zero-copy" } else { "copy" },
            if multi_buffer { ", multi-buffer" } else { "" },
            if budget { "512" } else { "the kernel's default" }
        );
        Ok(Rings {
            tx,
            device,
            _user: user,
            zero_copy,
        })
    }

    /// Returns completed slots to the free list.
    fn reap(&mut self) {
        let Some(rings) = &mut self.rings else { return };
        let mut reader = rings.device.complete(u32::MAX);
        while reader.read().is_some() {
            let Some(front) = self.in_flight.front_mut() else {
                break;
            };
            front.1 -= 1;
            if front.1 == 0 {
                let (slot, _) = self.in_flight.pop_front().expect("front exists");
                self.free.push(slot);
            }
        }
        reader.release();
    }

    /// Wakes the kernel: in zero-copy mode when it asks to be woken; in
    /// copy mode, where nothing leaves until a wakeup and each wakeup takes
    /// at most the skb budget, until the ring is drained, so a batch is on
    /// the wire (or has failed) when `send` returns. Fails on an error that
    /// retrying cannot mend (the interface went away, say), and in copy
    /// mode when the kernel takes nothing from the ring for the stall
    /// timeout (a queue it no longer transmits on, say).
    fn kick(&mut self) -> Result<(), TransportError> {
        let Some(rings) = &self.rings else { return Ok(()) };
        let fd = rings.tx.as_raw_fd();
        if rings.zero_copy {
            if rings.tx.needs_wakeup() {
                wake(fd).map_err(|e| self.wake_failed(e))?;
            }
            return Ok(());
        }
        let mut attempts = 0;
        self.retry_until("the kernel took no descriptors from the TX ring", |t| {
            wake(fd).map_err(|e| t.wake_failed(e))?;
            if t.rings.as_ref().map_or(0, |r| r.tx.pending()) == 0 {
                return Ok(true);
            }
            attempts += 1;
            if attempts == 16 {
                // Not a budget's worth left over: the kernel is not taking.
                t.stalls += 1;
            }
            if attempts >= 16 {
                std::thread::sleep(Duration::from_micros(50));
            }
            Ok(false)
        })
    }

    fn wake_failed(&self, source: std::io::Error) -> TransportError {
        TransportError::io(
            format!(
                "waking AF_XDP TX on {} queue {} ({} packets in flight)",
                self.config.interface,
                self.config.queue,
                self.in_flight.len()
            ),
            source,
        )
    }

    /// Waits (bounded) until a slot is free.
    fn wait_for_slot(&mut self) -> Result<(), TransportError> {
        self.stalls += 1;
        self.kick_until("no UMEM frame completed", |t| !t.free.is_empty())
    }

    /// Wakes the kernel and reaps completions until `ready` holds, for at
    /// most [`STALL_TIMEOUT`]; then fails, saying what did not happen.
    fn kick_until(
        &mut self,
        what: &'static str,
        mut ready: impl FnMut(&mut Self) -> bool,
    ) -> Result<(), TransportError> {
        if ready(self) {
            return Ok(());
        }
        self.retry_until(what, |t| {
            t.kick()?;
            t.reap();
            std::hint::spin_loop();
            Ok(ready(t))
        })
    }

    /// The one bounded wait: makes `attempt` until it reports done, for at
    /// most [`STALL_TIMEOUT`] from the first attempt that was not (the
    /// clock is read only then); then fails, saying what did not happen.
    /// An attempt's error ends the wait at once.
    fn retry_until(
        &mut self,
        what: &'static str,
        mut attempt: impl FnMut(&mut Self) -> Result<bool, TransportError>,
    ) -> Result<(), TransportError> {
        let mut deadline = None;
        while !attempt(self)? {
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + STALL_TIMEOUT);
            if Instant::now() > deadline {
                return Err(self.stalled(what));
            }
        }
        Ok(())
    }

    fn stalled(&self, what: &'static str) -> TransportError {
        TransportError::RingStalled {
            interface: self.config.interface.clone(),
            queue: self.config.queue,
            waited: STALL_TIMEOUT,
            what,
            in_flight: self.in_flight.len(),
        }
    }

    /// Waits (bounded) until every packet in flight has completed.
    fn drain(&mut self) -> Result<(), TransportError> {
        self.kick_until("packets did not complete", |t| t.in_flight.is_empty())
    }

    /// Puts the descriptors queued (those of a packet cut off by an
    /// earlier stall, `carried` of them, then those of the batch's `batch`
    /// packets, the newest in flight) in the TX ring as a flat stream. If
    /// the ring stays full (or waking the kernel fails), the batch is cut
    /// where the ring stopped ([`cut_batch`](Self::cut_batch)) and fails.
    fn submit(&mut self, batch: usize, carried: usize) -> Result<(), TransportError> {
        let mut done = 0;
        let mut waited = false;
        let filled = self.kick_until("the TX ring stayed full", |t| {
            done += t.insert(done);
            if done < t.descriptors.len() && !waited {
                waited = true;
                t.stalls += 1;
            }
            done == t.descriptors.len()
        });
        if let Err(stalled) = filled {
            self.cut_batch(batch, carried, done);
            return Err(stalled);
        }
        self.kick()
    }

    /// Puts as many of the queued descriptors from `from` on in the TX ring
    /// as it has room for, and returns how many.
    fn insert(&mut self, from: usize) -> usize {
        let rings = self.rings.as_mut().expect("bound before sending");
        let remaining = &self.descriptors[from..];
        let mut writer = rings.tx.transmit(remaining.len() as u32);
        let inserted = writer.insert(remaining.iter().copied()) as usize;
        writer.commit();
        inserted
    }

    /// After a stall with the first `inserted` of the queued descriptors
    /// in the ring: the batch's packets none of whose descriptors got there
    /// leave it (their slots are free again); a packet cut off part-way
    /// stays in flight, the rest of its descriptors kept to go first next
    /// time, so that the kernel, which holds its first fragments, never
    /// joins the next packet onto it.
    fn cut_batch(&mut self, batch: usize, carried: usize, inserted: usize) {
        self.cut_off.clear();
        let first = self.in_flight.len() - batch;
        let mut kept = 0;
        if inserted < carried {
            self.cut_off
                .extend_from_slice(&self.descriptors[inserted..carried]);
        } else {
            let mut at = carried;
            for &(_, fragments) in self.in_flight.range(first..) {
                let end = at + fragments as usize;
                if at >= inserted {
                    break;
                }
                kept += 1;
                if end > inserted {
                    self.cut_off.extend_from_slice(&self.descriptors[inserted..end]);
                    break;
                }
                at = end;
            }
        }
        for _ in kept..batch {
            let (slot, _) = self.in_flight.pop_back().expect("in the batch");
            self.free.push(slot);
        }
    }
}

/// Wakes the TX ring of an AF_XDP socket (a zero-length send). Transient
/// refusals (the kernel's queue is busy or out of buffers) are not errors:
/// the descriptors stay in the ring for the next wakeup.
fn wake(fd: libc::c_int) -> std::io::Result<()> {
    // SAFETY: a zero-length send with no buffer or address on a valid
    // socket.
    let rc = unsafe { libc::sendto(fd, std::ptr::null(), 0, libc::MSG_DONTWAIT, std::ptr::null(), 0) };
    if rc >= 0 {
        return Ok(());
    }
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::EINTR) => Ok(()),
        _ => Err(error),
    }
}

/// XDP_OPTIONS of a bound socket.
fn xdp_options(fd: libc::c_int) -> Option<u32> {
    let mut flags: u32 = 0;
    let mut len = mem::size_of::<u32>() as libc::socklen_t;
    // SAFETY: a valid socket and a buffer of the length given.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            SOL_XDP,
            XDP_OPTIONS,
            (&mut flags as *mut u32).cast::<c_void>(),
            &mut len,
        )
    };
    (rc == 0).then_some(flags)
}

/// Raises the skbs one wakeup may transmit (copy mode); false where the
/// kernel has no such option.
fn set_tx_budget(fd: libc::c_int, budget: u32) -> bool {
    // SAFETY: a valid socket and an option value of the size given.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            SOL_XDP,
            XDP_MAX_TX_SKB_BUDGET,
            (&budget as *const u32).cast::<c_void>(),
            mem::size_of::<u32>() as libc::socklen_t,
        )
    };
    rc == 0
}

impl Transport for XdpTransport {
    fn substreams(&self) -> usize {
        self.templates.len()
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    fn prepare(&mut self, max_packet_size: usize) -> Result<(), TransportError> {
        check_udp_payload(max_packet_size)?;
        let ip_packet = max_packet_size + HEADERS_LEN - 14;
        if ip_packet > self.interface.mtu {
            return Err(TransportError::AboveMtu {
                interface: self.config.interface.clone(),
                packet: max_packet_size,
                ip_packet,
                mtu: self.interface.mtu,
            });
        }
        let slot_chunks = (HEADERS_LEN + max_packet_size).div_ceil(CHUNK);
        let slots = self.area.slot_bytes() / CHUNK / slot_chunks;
        if slots == 0 {
            return Err(TransportError::UmemTooSmall {
                slot_bytes: self.area.slot_bytes(),
                packet: max_packet_size,
                frame_bytes: slot_chunks * CHUNK,
            });
        }
        // Prepared before: let what is in flight finish and take no packet
        // until the new socket is bound.
        self.limits.max_len = 0;
        self.drain()?;
        self.rings = None;
        self.slot_chunks = slot_chunks;
        self.free = (0..slots as u32).rev().collect();
        self.in_flight = VecDeque::with_capacity(slots);
        self.descriptors = Vec::with_capacity(MAX_BATCH * slot_chunks + MAX_FRAGS);
        self.cut_off = Vec::with_capacity(MAX_FRAGS);
        let by_reference = self.area.has_user_part();
        self.rings = Some(self.bind(slot_chunks > 1 || by_reference)?);
        self.limits.max_len = max_packet_size;
        Ok(())
    }

    fn ring_stalls(&self) -> u64 {
        self.stalls
    }

    fn send(&mut self, source: &mut dyn PacketSource<'_>) -> Result<usize, TransportError> {
        self.link.check()?;
        self.reap();
        self.descriptors.clear();
        // The rest of a packet an earlier stall cut off goes first.
        self.descriptors.append(&mut self.cut_off);
        let carried = self.descriptors.len();
        // The batch's packets are the newest `batch` entries in flight
        // (reaping takes only the oldest, which completed).
        let taken = if self.area.has_user_part() {
            self.take_pieces(source)
        } else {
            self.take_whole(source).map(|batch| (batch, 0))
        };
        let (batch, referenced) = match taken {
            Ok(taken) => taken,
            Err((e, batch)) => {
                // Nothing of the batch was submitted: its slots are free
                // (and a cut-off packet's rest waits for the next batch).
                self.cut_batch(batch, carried, 0);
                return Err(e);
            }
        };
        if batch > 0 || carried > 0 {
            self.submit(batch, carried)?;
        }
        self.counters.packets.fetch_add(batch as u64, Ordering::Relaxed);
        self.counters
            .by_reference
            .fetch_add(referenced, Ordering::Relaxed);
        if referenced > 0 {
            // The heap completes when this returns: let the kernel finish
            // reading the user's buffers first.
            self.drain()?;
        }
        Ok(batch)
    }
}

/// A batch's failure, with how many of its packets were queued before it.
type Failed = (TransportError, usize);

impl XdpTransport {
    /// Takes a batch packet by packet, each written as pieces to reference
    /// where they lie in the area's user buffers; returns the packets
    /// queued and how many of them went by reference.
    fn take_pieces(&mut self, source: &mut dyn PacketSource<'_>) -> Result<(usize, u64), Failed> {
        let (mut batch, mut referenced) = (0, 0u64);
        let limits = self.limits;
        let filled = limits.fill(source, MAX_BATCH, |source, spec| {
            referenced += u64::from(self.take_packet(source, spec)?);
            batch += 1;
            // The slots this batch holds come back only once it is sent.
            Ok(!self.free.is_empty())
        });
        match filled {
            Ok(_) => Ok((batch, referenced)),
            Err(e) => Err((e, batch)),
        }
    }

    /// Builds the packet `spec` describes in a free slot (waiting for one
    /// if the batch has none yet), queues its descriptors and returns
    /// whether its payload went by reference.
    fn take_packet(
        &mut self,
        source: &mut dyn PacketSource<'_>,
        spec: PacketSpec,
    ) -> Result<bool, TransportError> {
        if self.free.is_empty() {
            self.wait_for_slot()?;
        }
        let Some(slot) = self.free.pop() else {
            return Err(self.stalled("no UMEM frame completed"));
        };
        let (base, slot_bytes) = self.slot_range(slot);
        // SAFETY: the slot is this transport's (it claimed the area's slot
        // part) and was on the free list, so the kernel is not reading it
        // and no other reference to it exists.
        let frame = unsafe { self.area.slot_mut(base, slot_bytes) };
        let pieces = source.write_pieces(&mut frame[HEADERS_LEN..HEADERS_LEN + spec.len]);
        if let Err(e) = check_pieces(spec, &pieces) {
            self.free.push(slot);
            return Err(e);
        }
        self.templates[spec.substream].write(frame, spec.len, self.ip_id);
        self.ip_id = self.ip_id.wrapping_add(1);
        Ok(queue_packet(
            &mut self.descriptors,
            &mut self.in_flight,
            &self.area,
            (slot, base as u64),
            frame,
            &pieces,
        ))
    }

    /// Takes a batch the source writes whole in one call, into as many
    /// free frames as there are (waiting for one if there is none). Every
    /// packet is checked before any is queued: on a failure none is.
    fn take_whole(&mut self, source: &mut dyn PacketSource<'_>) -> Result<usize, Failed> {
        if self.free.is_empty() {
            // Asked first, as one at a time: a source with nothing to send
            // (or paced to wait) waits for no frame, and a packet this
            // transport cannot take (say, before `prepare`) is refused at
            // once. Asking again describes the same packet.
            let Some(spec) = source.next_packet() else {
                return Ok(0);
            };
            self.limits.check(spec).map_err(|e| (e, 0))?;
            self.wait_for_slot().map_err(|e| (e, 0))?;
        }
        let count = self.free.len().min(MAX_BATCH);
        // Newest freed first, as one at a time: the few frames in use stay
        // in cache.
        let slots: ArrayVec<u32, MAX_BATCH> = self.free.drain(self.free.len() - count..).rev().collect();
        let mut bufs: ArrayVec<&mut [u8], MAX_BATCH> = slots
            .iter()
            .map(|&slot| {
                let (base, slot_bytes) = self.slot_range(slot);
                // SAFETY: the slot is this transport's and was on the free
                // list (so the kernel is not reading it), and each of
                // `slots` is a different slot, so no two frames overlap.
                let frame = unsafe { self.area.slot_mut(base, slot_bytes) };
                frame.get_mut(HEADERS_LEN..).unwrap_or_default()
            })
            .collect();
        let mut specs = [PacketSpec::default(); MAX_BATCH];
        let written = source.write_batch(&mut bufs, &mut specs).min(count);
        drop(bufs);
        let specs = &specs[..written];
        // The frames the source did not fill are free again, as they were.
        self.free.extend(slots[written..].iter().rev());
        if let Err(e) = specs
            .iter()
            .try_for_each(|&spec| self.limits.check(spec).map(drop))
        {
            self.free.extend(slots[..written].iter().rev());
            return Err((e, 0));
        }
        for (&slot, &spec) in slots.iter().zip(specs) {
            let (base, slot_bytes) = self.slot_range(slot);
            // SAFETY: as above; the frames lent to the source are gone.
            let frame = unsafe { self.area.slot_mut(base, slot_bytes) };
            self.templates[spec.substream].write(frame, spec.len, self.ip_id);
            self.ip_id = self.ip_id.wrapping_add(1);
            queue_packet(
                &mut self.descriptors,
                &mut self.in_flight,
                &self.area,
                (slot, base as u64),
                frame,
                &PacketPieces::new(spec.len),
            );
        }
        Ok(written)
    }

    /// Slot `slot`'s offset in the area and its size in bytes.
    fn slot_range(&self, slot: u32) -> (usize, usize) {
        let slot_bytes = self.slot_chunks * CHUNK;
        (slot as usize * slot_bytes, slot_bytes)
    }
}

/// Queues the descriptors of a packet built in slot `slot`'s `frame` (at
/// UMEM offset `base`), and holds the slot in flight until they complete:
/// returns whether its payload went by reference.
fn queue_packet(
    descriptors: &mut Vec<XdpDesc>,
    in_flight: &mut VecDeque<(u32, u32)>,
    area: &UmemArea,
    (slot, base): (u32, u64),
    frame: &mut [u8],
    pieces: &PacketPieces<'_>,
) -> bool {
    let first = descriptors.len();
    let by_reference = queue_descriptors(descriptors, area, frame, base, pieces);
    let last = descriptors.len() - 1;
    for d in &mut descriptors[first..last] {
        d.options = XDP_PKT_CONTD;
    }
    in_flight.push_back((slot, (descriptors.len() - first) as u32));
    by_reference
}

/// Queues the descriptors of a packet built in `frame` (at UMEM offset
/// `base`): the bytes written, then each piece by reference where it lies
/// in the area's user buffers. Where a piece lies elsewhere, or the packet
/// would need more fragments than the kernel takes, the pieces are copied
/// into the frame and the packet goes from there. Returns whether it went
/// by reference.
fn queue_descriptors(
    descriptors: &mut Vec<XdpDesc>,
    area: &UmemArea,
    frame: &mut [u8],
    base: u64,
    pieces: &PacketPieces<'_>,
) -> bool {
    let first = descriptors.len();
    let written = HEADERS_LEN + pieces.written();
    push_chunks(descriptors, base, written);
    if pieces.pieces().is_empty() {
        return false;
    }
    let referenced =
        pieces
            .pieces()
            .iter()
            .all(|piece| match area.user_offset(piece.address(), piece.len()) {
                Some(offset) => {
                    push_chunks(descriptors, offset, piece.len());
                    descriptors.len() - first <= MAX_FRAGS
                }
                None => false,
            });
    if referenced {
        return true;
    }
    descriptors.truncate(first);
    let mut at = written;
    for piece in pieces.pieces() {
        piece.copy_to(&mut frame[at..]);
        at += piece.len();
    }
    push_chunks(descriptors, base, at);
    false
}

/// Descriptors for `len` bytes at UMEM `offset`, split at chunk boundaries
/// (the caller sets the continuation flags).
fn push_chunks(descriptors: &mut Vec<XdpDesc>, mut offset: u64, mut len: usize) {
    while len > 0 {
        let room = CHUNK - (offset as usize % CHUNK);
        let n = len.min(room);
        descriptors.push(XdpDesc {
            addr: offset,
            len: n as u32,
            options: 0,
        });
        offset += n as u64;
        len -= n;
    }
}

impl Drop for XdpTransport {
    /// Lets the kernel finish what is in the ring (bounded) before the
    /// socket and UMEM go.
    fn drop(&mut self) {
        let _ = self.drain();
    }
}
