//! The stream: the same heaps through our Stream (memory transport) and
//! through spead2's BytesStream give identical bytes, for SERIAL and
//! ROUND_ROBIN groups and cnt sequences; and the queue, error and flush
//! semantics.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use spead_xdp::protocol::{Flavour, Heap, Item};
use spead_xdp::stream::{
    Completion, GroupMode, HeapRef, Invalid, SendError, Stream, StreamConfig, StreamError, Unsent,
    WorkerConfig,
};
use spead_xdp::transport::{MemoryTransport, PacketSource, Transport, TransportError};

/// Items of test heap `seed`: immediates, small and large address items.
fn items(seed: u64) -> Vec<(u64, bool, Vec<u8>)> {
    let big = (seed as usize % 3 + 1) * 1500;
    vec![
        (0x1000, true, (seed * 1000 + 1).to_be_bytes()[2..].to_vec()),
        (
            0x1001,
            false,
            (0..big).map(|i| (i as u64 * 31 + seed) as u8).collect(),
        ),
        (0x1002, true, vec![seed as u8, 1, 2]),
        (0x1003, false, vec![9u8; 10 + seed as usize]),
    ]
}

/// The items of test heap `seed` as stream_bytes.py takes them.
fn items_json(seed: u64) -> Vec<Value> {
    items(seed)
        .iter()
        .map(|(id, allow, v)| json!([id, allow, hex::encode(v)]))
        .collect()
}

fn heap(seed: u64) -> Heap<'static> {
    let mut heap = Heap::new(Flavour::SPEAD_64_48);
    for (id, allow, value) in items(seed) {
        heap.add(Item::new(id, value).allow_immediate(allow)).unwrap();
    }
    heap
}

struct Send {
    mode: GroupMode,
    heaps: Vec<(u64, Option<u64>)>, // (seed, explicit cnt)
}

fn mode_name(mode: GroupMode) -> &'static str {
    match mode {
        GroupMode::Serial => "serial",
        GroupMode::RoundRobin => "round_robin",
    }
}

/// Runs stream_bytes.py (spead2's sender) on `spec`; returns its stdout.
fn run_spead2_stream(spec: &Value) -> String {
    let mut child = Command::new(common::python())
        .arg(common::script("stream_bytes.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start python");
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(spec.to_string().as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "spead2 stream script failed");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn spead2_bytes(max_packet_size: usize, cnt_sequence: Option<(u64, u64)>, sends: &[Send]) -> String {
    let spec = json!({
        "max_packet_size": max_packet_size,
        "cnt_sequence": cnt_sequence.map(|(n, s)| json!([n, s])),
        "sends": sends.iter().map(|s| json!({
            "mode": mode_name(s.mode),
            "heaps": s.heaps.iter().map(|(seed, cnt)| json!({
                "cnt": cnt,
                "items": items_json(*seed),
            })).collect::<Vec<Value>>(),
        })).collect::<Vec<Value>>(),
    });
    run_spead2_stream(&spec)
}

fn our_bytes(max_packet_size: usize, cnt_sequence: Option<(u64, u64)>, sends: &[Send]) -> String {
    let transport = MemoryTransport::new(1);
    let config = StreamConfig {
        max_packet_size,
        max_heaps: 64,
        ..Default::default()
    };
    let stream = Stream::new(transport.clone(), config).unwrap();
    if let Some((next, step)) = cnt_sequence {
        stream.set_cnt_sequence(next, step).unwrap();
    }
    for send in sends {
        let heaps = send
            .heaps
            .iter()
            .map(|(seed, cnt)| {
                let r = HeapRef::new(heap(*seed));
                match cnt {
                    Some(cnt) => r.cnt(*cnt),
                    None => r,
                }
            })
            .collect();
        stream.send_heaps(heaps, send.mode).unwrap();
    }
    hex::encode(transport.bytes(0))
}

#[test]
fn groups_and_cnt_sequences_match_spead2_bytes_stream() {
    /// (max packet size, cnt sequence, sends)
    type Case = (usize, Option<(u64, u64)>, Vec<Send>);
    let cases: Vec<Case> = vec![
        (
            1472,
            None,
            vec![
                Send {
                    mode: GroupMode::Serial,
                    heaps: vec![(1, None)],
                },
                Send {
                    mode: GroupMode::Serial,
                    heaps: vec![(2, None), (3, None), (4, None)],
                },
                Send {
                    mode: GroupMode::RoundRobin,
                    heaps: vec![(5, None), (6, None), (7, None)],
                },
            ],
        ),
        (
            1000,
            Some((1000, 7)),
            vec![
                Send {
                    mode: GroupMode::RoundRobin,
                    heaps: vec![(1, None), (2, Some(5)), (3, None)],
                },
                Send {
                    mode: GroupMode::Serial,
                    heaps: vec![(4, Some(0xffff_ffff_ffff)), (5, None)],
                },
            ],
        ),
        (
            // The sequence wraps to 48 bits.
            9000,
            Some(((1 << 48) - 2, 1)),
            vec![Send {
                mode: GroupMode::RoundRobin,
                heaps: vec![(1, None), (2, None), (3, None), (4, None)],
            }],
        ),
    ];
    for (i, (size, seq, sends)) in cases.iter().enumerate() {
        let theirs = spead2_bytes(*size, *seq, sends);
        let ours = our_bytes(*size, *seq, sends);
        assert!(!theirs.is_empty());
        assert_eq!(ours.len(), theirs.len(), "case {i}: byte count");
        assert!(ours == theirs, "case {i}: bytes differ");
        println!(
            "case {i}: {} bytes identical to spead2's BytesStream",
            ours.len() / 2
        );
    }
}

/// A transport whose first batch meets the test at a barrier twice (once
/// entered, once to go on), which records the packets of each batch, and
/// fails the batches it is told to.
struct GatedTransport {
    gate: Option<Arc<Barrier>>,
    fail_batches: Arc<AtomicUsize>,
    sent: Arc<AtomicUsize>,
    batches: Arc<Mutex<Vec<usize>>>,
    scratch: Vec<u8>,
}

impl Transport for GatedTransport {
    fn substreams(&self) -> usize {
        2
    }

    fn max_batch(&self) -> usize {
        8
    }

    fn prepare(&mut self, max_packet_size: usize) -> Result<(), TransportError> {
        self.scratch = vec![0; max_packet_size];
        Ok(())
    }

    fn send(&mut self, packets: &mut dyn PacketSource<'_>) -> Result<usize, TransportError> {
        if let Some(gate) = self.gate.take() {
            gate.wait();
            gate.wait();
        }
        let mut n = 0;
        while n < self.max_batch() {
            let Some(spec) = packets.next_packet() else {
                break;
            };
            assert!(spec.substream < 2 && spec.len <= self.scratch.len());
            packets.write(&mut self.scratch[..spec.len]);
            n += 1;
        }
        self.batches.lock().unwrap().push(n);
        if self.fail_batches.load(Ordering::SeqCst) > 0 {
            self.fail_batches.fetch_sub(1, Ordering::SeqCst);
            return Err(TransportError::io(
                "sending a batch",
                std::io::Error::from_raw_os_error(EMSGSIZE),
            ));
        }
        self.sent.fetch_add(n, Ordering::SeqCst);
        Ok(n)
    }
}

/// EMSGSIZE on Linux.
const EMSGSIZE: i32 = 90;

fn gated(gate: Option<Arc<Barrier>>, fail: usize) -> (GatedTransport, Arc<AtomicUsize>) {
    let sent = Arc::new(AtomicUsize::new(0));
    let transport = GatedTransport {
        gate,
        fail_batches: Arc::new(AtomicUsize::new(fail)),
        sent: Arc::clone(&sent),
        batches: Arc::default(),
        scratch: Vec::new(),
    };
    (transport, sent)
}

fn small_heap() -> Heap<'static> {
    let mut heap = Heap::new(Flavour::SPEAD_64_48);
    heap.add(Item::immediate(0x1000, 1)).unwrap();
    heap
}

#[test]
fn a_full_queue_fails_at_once_and_hands_the_heaps_back() {
    let gate = Arc::new(Barrier::new(2));
    let (transport, _) = gated(Some(Arc::clone(&gate)), 0);
    let config = StreamConfig {
        max_heaps: 2,
        ..Default::default()
    };
    let stream = Stream::new(transport, config).unwrap();
    let first = stream.submit(small_heap()).unwrap();
    gate.wait(); // the worker holds it at the gate
    let second = stream.submit(small_heap()).unwrap();
    let started = Instant::now();
    match stream.submit_group(vec![small_heap().into(), small_heap().into()], GroupMode::Serial) {
        Err(SendError::QueueFull {
            unsent: Unsent::Heaps(heaps),
            max_heaps,
        }) => {
            assert_eq!((heaps.len(), max_heaps), (2, 2));
            assert_eq!(*heaps[0].heap, small_heap());
        }
        other => panic!("expected QueueFull, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "a full queue must not block"
    );
    gate.wait();
    assert!(first.wait().unwrap() > 0);
    assert!(second.wait().unwrap() > 0);
    let stats = stream.stats();
    assert_eq!(
        (stats.heaps, stats.errors, stats.queue_full),
        (2, 0, 1),
        "{stats:?}"
    );
}

#[test]
fn a_failed_send_completes_with_an_error_and_the_stream_goes_on() {
    let (transport, sent) = gated(None, 1);
    let stream = Stream::new(transport, StreamConfig::default()).unwrap();
    let err = stream.send_heap(small_heap()).unwrap_err();
    match &err {
        SendError::Transport(TransportError::Io { what, source }) => {
            assert_eq!(what, "sending a batch");
            assert_eq!(source.raw_os_error(), Some(EMSGSIZE));
        }
        other => panic!("{other}"),
    }
    let bytes = stream.send_heap(HeapRef::new(small_heap()).substream(1)).unwrap();
    assert_eq!(bytes, 57);
    assert_eq!(sent.load(Ordering::SeqCst), 1);
    let stats = stream.stats();
    assert_eq!((stats.heaps, stats.errors), (1, 1), "{stats:?}");
    assert_eq!((stats.packets(), stats.bytes()), (1, 57), "{stats:?}");
}

#[test]
fn invalid_heaps_are_refused_and_handed_back() {
    let (transport, _) = gated(None, 0);
    let stream = Stream::new(transport, StreamConfig::default()).unwrap();
    let bad = [
        HeapRef::new(small_heap()).substream(2),
        HeapRef::new(small_heap()).cnt(1 << 48),
        HeapRef::new(small_heap()).rate(-1.0),
    ];
    for heap in bad {
        match stream.submit(heap) {
            Err(SendError::Invalid {
                index: 0,
                unsent: Unsent::Heaps(heaps),
                reason,
            }) => {
                assert_eq!(heaps.len(), 1, "{reason}");
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
    }
    assert!(stream.set_cnt_sequence(1, 0).is_err());
}

#[test]
fn flush_waits_for_every_queued_heap() {
    let (transport, sent) = gated(None, 0);
    let config = StreamConfig {
        max_heaps: 8,
        rate: 1e6, // 1 MB/s: 8 heaps of 57 bytes take measurable time
        max_packet_size: 64,
        burst_size: 64,
        ..Default::default()
    };
    let stream = Stream::new(transport, config).unwrap();
    let completions: Vec<_> = (0..8).map(|_| stream.submit(small_heap()).unwrap()).collect();
    stream.flush();
    assert_eq!(sent.load(Ordering::SeqCst), 8);
    for c in completions {
        assert_eq!(c.wait().unwrap(), 57);
    }
}

/// CPU time this thread has used.
fn thread_cpu_time() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Waits on `completion` with `wait`, returning its bytes, the wall time
/// and this thread's CPU time spent.
fn timed_wait(wait: impl FnOnce() -> Result<u64, SendError>) -> (u64, Duration, Duration) {
    let (wall, cpu) = (Instant::now(), thread_cpu_time());
    let bytes = wait().unwrap();
    (bytes, wall.elapsed(), thread_cpu_time() - cpu)
}

#[test]
fn a_spinning_wait_spins_then_sleeps_and_gives_the_outcome() {
    let (transport, _) = gated(None, 1);
    let config = StreamConfig {
        max_heaps: 64,
        rate: 57e3, // 57 kB/s: each 57-byte heap takes a millisecond
        max_packet_size: 64,
        burst_size: 64,
        ..Default::default()
    };
    let stream = Stream::new(transport, config).unwrap();
    // The first heap's batch fails (sent alone: a heap queued behind it
    // could share its batch if the worker were held up for a millisecond).
    let first = stream.submit(small_heap()).unwrap();
    assert!(matches!(
        first.wait_spinning(Duration::ZERO),
        Err(SendError::Transport(_))
    ));
    // Spinning for up to 5 s on a heap ~20 ms away: it spins (the thread
    // is on the CPU most of the time) and gets the outcome.
    let mut heaps: Vec<_> = (0..20).map(|_| stream.submit(small_heap()).unwrap()).collect();
    let spun = heaps.pop().unwrap();
    let (bytes, wall, cpu) = timed_wait(|| spun.wait_spinning(Duration::from_secs(5)));
    assert_eq!(bytes, 57);
    assert!(cpu >= wall / 3, "spun {cpu:?} of {wall:?}");
    // Spinning for 1 us on a heap ~40 ms away: it sleeps almost all the way.
    let mut heaps: Vec<_> = (0..40).map(|_| stream.submit(small_heap()).unwrap()).collect();
    let slept = heaps.pop().unwrap();
    let (bytes, wall, cpu) = timed_wait(|| slept.wait_spinning(Duration::from_micros(1)));
    assert_eq!(bytes, 57);
    assert!(wall >= Duration::from_millis(20), "{wall:?}");
    assert!(cpu <= wall / 4, "busy {cpu:?} of {wall:?}");
    stream.flush();
}

/// Wakes a parked thread: the least an executor does.
struct ThreadWaker(std::thread::Thread);

impl std::task::Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let waker = Arc::new(ThreadWaker(std::thread::current())).into();
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match std::future::Future::poll(future.as_mut(), &mut cx) {
            std::task::Poll::Ready(out) => return out,
            std::task::Poll::Pending => std::thread::park(),
        }
    }
}

/// Counts wakes and unparks the thread that polls.
struct CountingWaker {
    thread: std::thread::Thread,
    wakes: AtomicUsize,
}

impl std::task::Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        self.thread.unpark();
    }
}

#[test]
fn completions_are_futures_for_any_executor() {
    let gate = Arc::new(Barrier::new(2));
    let (transport, _) = gated(Some(Arc::clone(&gate)), 0);
    let stream = Stream::new(transport, StreamConfig::default()).unwrap();
    let completion = stream.submit(small_heap()).unwrap();
    // The worker is inside its first batch, held at the gate.
    gate.wait();
    let counter = Arc::new(CountingWaker {
        thread: std::thread::current(),
        wakes: AtomicUsize::new(0),
    });
    let waker = std::task::Waker::from(Arc::clone(&counter));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(completion);
    assert!(
        std::future::Future::poll(future.as_mut(), &mut cx).is_pending(),
        "pending while the heap is held"
    );
    assert_eq!(counter.wakes.load(Ordering::SeqCst), 0);
    gate.wait();
    // Woken once the heap is sent, then ready with its bytes.
    while counter.wakes.load(Ordering::SeqCst) == 0 {
        std::thread::park();
    }
    match std::future::Future::poll(future.as_mut(), &mut cx) {
        std::task::Poll::Ready(result) => assert_eq!(result.unwrap(), 57),
        std::task::Poll::Pending => panic!("woken but not ready"),
    }
    // And a blocking executor gets the same.
    assert_eq!(block_on(stream.submit(small_heap()).unwrap()).unwrap(), 57);
}

#[test]
fn raw_datagrams_go_through_the_same_queue_and_pacing() {
    let transport = MemoryTransport::new(2);
    let config = StreamConfig {
        rate: 1e6, // bytes/s
        max_packet_size: 1000,
        burst_size: 1000,
        ..Default::default()
    };
    let stream = Stream::new(transport.clone(), config).unwrap();
    // VDIF-like frames of 1000 bytes, not SPEAD.
    let frames: Vec<Bytes> = (0..100u8).map(|i| Bytes::from(vec![i; 1000])).collect();
    let started = Instant::now();
    let bytes = stream
        .submit_datagrams(frames.clone(), 1, None)
        .unwrap()
        .wait()
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(bytes, 100_000);
    assert_eq!(transport.bytes(1), frames.concat());
    assert!(transport.bytes(0).is_empty());
    // 100 kB at 1 MB/s: at least ~0.1 s minus one burst, however fast the machine.
    assert!(elapsed >= Duration::from_millis(95), "not paced: {elapsed:?}");

    let too_big = vec![Bytes::from(vec![0u8; 1473])];
    match stream.submit_datagrams(too_big, 0, None) {
        Err(SendError::Invalid {
            reason,
            unsent: Unsent::Datagrams(d),
            ..
        }) => {
            assert_eq!(d.len(), 1);
            assert!(reason.to_string().contains("1473"), "{reason}");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    let with_an_empty_one = vec![Bytes::from_static(b"frame"), Bytes::new()];
    match stream.submit_datagrams(with_an_empty_one, 0, None) {
        Err(SendError::Invalid {
            index: 1,
            reason: Invalid::EmptyDatagram,
            unsent: Unsent::Datagrams(d),
        }) => assert_eq!(d.len(), 2),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn a_heap_is_updated_in_place_and_resent_without_rebuilding() {
    let transport = MemoryTransport::new(1);
    let stream = Stream::new(transport.clone(), StreamConfig::default()).unwrap();
    let spectrum = Bytes::from(vec![7u8; 3000]);
    let mut heap = Heap::new(Flavour::SPEAD_64_48);
    let timestamp = heap.add(Item::immediate(0x1600, 0)).unwrap();
    heap.add(Item::new(0x1800, spectrum.clone())).unwrap();
    let mut heap = Arc::new(heap);
    for t in 1..=3u64 {
        Arc::get_mut(&mut heap)
            .expect("the stream let go of the heap before completing")
            .set_immediate(timestamp, t * 1000)
            .unwrap();
        stream.send_heap(HeapRef::new(Arc::clone(&heap))).unwrap();
    }
    // Each heap on the wire carries its own timestamp; the spectrum was
    // never copied into a new heap.
    let bytes = transport.bytes(0);
    for t in 1..=3u64 {
        let word = Flavour::SPEAD_64_48.immediate(0x1600, t * 1000).to_be_bytes();
        assert!(bytes.windows(8).any(|w| w == word), "timestamp {t} missing");
    }
    assert_eq!(Arc::strong_count(&heap), 1);
}

#[test]
fn groups_across_substreams_match_spead2_udp_stream() {
    // (seed, substream) per heap; one round-robin and one serial group, each
    // spanning both substreams.
    let groups: [(GroupMode, &[(u64, usize)]); 2] = [
        (GroupMode::RoundRobin, &[(1, 0), (2, 1), (3, 0)]),
        (GroupMode::Serial, &[(4, 1), (5, 0)]),
    ];
    let theirs: Vec<_> = (0..2).map(|_| common::capture_udp()).collect();
    let spec = json!({
        "max_packet_size": 1472,
        "cnt_sequence": [10, 3],
        "ports": theirs.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
        "sends": groups.iter().map(|(mode, heaps)| json!({
            "mode": mode_name(*mode),
            "heaps": heaps.iter().map(|(seed, substream)| json!({
                "cnt": null,
                "substream": substream,
                "items": items_json(*seed),
            })).collect::<Vec<Value>>(),
        })).collect::<Vec<Value>>(),
    });
    run_spead2_stream(&spec);
    let theirs: Vec<Vec<Vec<u8>>> = theirs.into_iter().map(|(_, h)| h.join().unwrap()).collect();

    let ours: Vec<_> = (0..2).map(|_| common::capture_udp()).collect();
    let destinations = ours.iter().map(|(p, _)| ([127, 0, 0, 1], *p).into()).collect();
    let transport =
        spead_xdp::transport::UdpTransport::new(&spead_xdp::transport::UdpConfig::new(destinations)).unwrap();
    let config = StreamConfig {
        rate: 100e6,
        max_heaps: 64,
        ..Default::default()
    };
    let stream = Stream::new(transport, config).unwrap();
    stream.set_cnt_sequence(10, 3).unwrap();
    for (mode, heaps) in groups {
        let refs = heaps
            .iter()
            .map(|(seed, sub)| HeapRef::new(heap(*seed)).substream(*sub))
            .collect();
        stream.send_heaps(refs, mode).unwrap();
    }
    drop(stream);
    let ours: Vec<Vec<Vec<u8>>> = ours.into_iter().map(|(_, h)| h.join().unwrap()).collect();
    for substream in 0..2 {
        assert!(
            !theirs[substream].is_empty(),
            "spead2 sent nothing to substream {substream}"
        );
        assert_eq!(
            ours[substream].len(),
            theirs[substream].len(),
            "substream {substream}: datagram count"
        );
        assert!(
            ours[substream] == theirs[substream],
            "substream {substream}: datagrams differ"
        );
    }
    println!(
        "groups across 2 substreams: {} and {} datagrams identical to spead2's UdpStream",
        ours[0].len(),
        ours[1].len()
    );
}

#[test]
fn a_heap_can_override_the_stream_rate() {
    let heap_of = |bytes: usize| {
        let mut heap = Heap::new(Flavour::SPEAD_64_48);
        heap.add(Item::new(0x1800, vec![1u8; bytes])).unwrap();
        heap
    };
    let paced = |stream_rate: f64, heap_rate: Option<f64>| {
        let config = StreamConfig {
            rate: stream_rate,
            burst_size: 1472,
            ..Default::default()
        };
        let stream = Stream::new(MemoryTransport::new(1), config).unwrap();
        let mut heap = HeapRef::new(heap_of(200_000));
        heap.rate = heap_rate;
        let started = Instant::now();
        stream.send_heap(heap).unwrap();
        started.elapsed()
    };
    // ~200 kB at 2 MB/s is ~0.1 s, whatever the stream's own rate.
    assert!(paced(0.0, Some(2e6)) >= Duration::from_millis(95));
    // Rate 0 for the heap: unlimited, on a stream paced at 20 kB/s (which
    // would take 10 s).
    assert!(paced(2e4, Some(0.0)) < Duration::from_secs(2));
}

/// The CPU lists of this process's threads named `name` (other tests'
/// workers included, but none of them is pinned).
fn cpus_of_threads(name: &str) -> Vec<String> {
    let mut lists = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let dir = task.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        if comm.trim() == name {
            if let Some(line) = status.lines().find(|l| l.starts_with("Cpus_allowed_list:")) {
                lists.extend(line.split_whitespace().nth(1).map(str::to_owned));
            }
        }
    }
    lists
}

#[test]
fn the_worker_is_pinned_to_its_core() {
    let core = core_affinity::get_core_ids().unwrap().last().unwrap().id;
    let worker = WorkerConfig {
        core: Some(core),
        ..Default::default()
    };
    let stream = Stream::with_worker(MemoryTransport::new(1), StreamConfig::default(), worker).unwrap();
    stream.send_heap(small_heap()).unwrap();
    let lists = cpus_of_threads("spead-send");
    assert!(
        lists.contains(&core.to_string()),
        "no worker pinned to core {core}: {lists:?}"
    );
    drop(stream);

    let bad = WorkerConfig {
        core: Some(4096),
        ..Default::default()
    };
    let err = Stream::with_worker(MemoryTransport::new(1), StreamConfig::default(), bad).unwrap_err();
    assert!(err.to_string().contains("core 4096"), "{err}");
}

/// Splits a byte stream of back-to-back SPEAD packets into packets.
fn split_packets(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    while !bytes.is_empty() {
        let info = spead_xdp::protocol::PacketInfo::parse(bytes).expect("a SPEAD packet");
        let len = 8 + 8 * info.raw_pointers().len() + info.payload().len();
        packets.push(bytes[..len].to_vec());
        bytes = &bytes[len..];
    }
    packets
}

#[test]
fn several_workers_send_each_packet_once_and_complete_in_order() {
    let transports: Vec<MemoryTransport> = (0..3).map(|_| MemoryTransport::new(1)).collect();
    let config = StreamConfig {
        max_heaps: 64,
        ..Default::default()
    };
    let workers = vec![WorkerConfig::default(); 3];
    let stream = Stream::with_workers(transports.clone(), config, workers).unwrap();
    let sizing = spead_xdp::protocol::PacketSizing::new(1472).unwrap();
    let mut expected: Vec<Vec<u8>> = Vec::new();
    let group: Vec<HeapRef> = (1..=3).map(|seed| HeapRef::new(heap(seed))).collect();
    for (i, seed) in (1..=3).enumerate() {
        expected.extend(sizing.packets(&heap(seed), i as u64 + 1).unwrap());
    }
    let group_done = stream.submit_group(group, GroupMode::RoundRobin).unwrap();
    let mut completions = Vec::new();
    for seed in 4..=15u64 {
        expected.extend(sizing.packets(&heap(seed), seed).unwrap());
        completions.push(stream.submit(heap(seed)).unwrap());
    }
    let last = completions.pop().unwrap();
    assert!(last.wait().is_ok());
    // In order: once the last has completed, every earlier one has.
    assert!(group_done.wait().is_ok());
    for (i, mut c) in completions.into_iter().enumerate() {
        assert!(
            c.try_wait().is_some_and(|r| r.is_ok()),
            "heap {} not complete",
            i + 4
        );
    }
    let mut shares: Vec<Vec<Vec<u8>>> = transports.iter().map(|t| split_packets(&t.bytes(0))).collect();
    let total = expected.len();
    for (w, share) in shares.iter().enumerate() {
        assert!(
            share.len() * 3 >= total - 30 && share.len() * 3 <= total + 30,
            "worker {w} sent {}",
            share.len()
        );
    }
    let mut sent: Vec<Vec<u8>> = shares.iter_mut().flat_map(std::mem::take).collect();
    sent.sort();
    expected.sort();
    assert_eq!(sent.len(), expected.len());
    assert!(sent == expected, "every packet exactly once");
}

#[test]
fn submissions_from_several_threads_reach_every_worker_in_one_order() {
    // Heaps of 1 to 4 packets from two threads at once: were the workers'
    // queues to get them in different orders, the workers' shares would
    // disagree and packets would go twice or not at all.
    let transports: Vec<MemoryTransport> = (0..2).map(|_| MemoryTransport::new(1)).collect();
    let config = StreamConfig {
        max_heaps: 1000,
        ..Default::default()
    };
    let stream = Stream::with_workers(transports.clone(), config, vec![WorkerConfig::default(); 2]).unwrap();
    let sizing = spead_xdp::protocol::PacketSizing::new(1472).unwrap();
    let heap_of = |cnt: u64| {
        let mut heap = Heap::new(Flavour::SPEAD_64_48);
        heap.add(Item::new(
            0x1800,
            vec![cnt as u8; 1000 + 1400 * (cnt as usize % 4)],
        ))
        .unwrap();
        heap
    };
    let completions: Vec<Completion> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..2u64)
            .map(|t| {
                let (stream, heap_of) = (&stream, &heap_of);
                scope.spawn(move || {
                    (0..300u64)
                        .map(|i| {
                            let cnt = t * 1000 + i + 1;
                            stream.submit(HeapRef::new(heap_of(cnt)).cnt(cnt)).unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
    });
    for completion in completions {
        completion.wait().unwrap();
    }
    let mut expected: Vec<Vec<u8>> = (0..2u64)
        .flat_map(|t| (0..300u64).map(move |i| t * 1000 + i + 1))
        .flat_map(|cnt| sizing.packets(&heap_of(cnt), cnt).unwrap().collect::<Vec<_>>())
        .collect();
    let mut sent: Vec<Vec<u8>> = transports
        .iter()
        .flat_map(|t| split_packets(&t.bytes(0)))
        .collect();
    sent.sort();
    expected.sort();
    assert_eq!(sent.len(), expected.len(), "packets sent");
    assert!(sent == expected, "every packet exactly once");
}

#[test]
fn several_workers_keep_the_stream_rate_together() {
    let transports: Vec<MemoryTransport> = (0..3).map(|_| MemoryTransport::new(1)).collect();
    let config = StreamConfig {
        rate: 1e6, // bytes/s
        burst_size: 3000,
        ..Default::default()
    };
    let stream = Stream::with_workers(transports, config, vec![WorkerConfig::default(); 3]).unwrap();
    let mut big = Heap::new(Flavour::SPEAD_64_48);
    big.add(Item::new(0x1800, vec![1u8; 100_000])).unwrap();
    let started = Instant::now();
    stream.send_heap(big).unwrap();
    let elapsed = started.elapsed();
    // ~100 kB at 1 MB/s in all: 0.1 s; not 0.033 s (each worker at the
    // full rate) nor 0.3 s (the share applied twice).
    assert!(elapsed >= Duration::from_millis(95), "too fast: {elapsed:?}");
    assert!(elapsed < Duration::from_millis(250), "too slow: {elapsed:?}");
}

#[test]
fn workers_and_transports_must_match() {
    let two = vec![MemoryTransport::new(1), MemoryTransport::new(1)];
    let err = Stream::with_workers(two, StreamConfig::default(), vec![WorkerConfig::default()]).unwrap_err();
    assert!(err.to_string().contains("2 transport(s) but 1 worker"), "{err}");
    let mixed = vec![MemoryTransport::new(1), MemoryTransport::new(2)];
    let err =
        Stream::with_workers(mixed, StreamConfig::default(), vec![WorkerConfig::default(); 2]).unwrap_err();
    assert!(
        matches!(
            err,
            StreamError::Transport(TransportError::SubstreamsDiffer { first: 1, other: 2 })
        ),
        "{err}"
    );
}

#[test]
fn statistics_count_every_packet_byte_and_heap_per_worker() {
    let transports = vec![MemoryTransport::new(2), MemoryTransport::new(2)];
    let workers = vec![WorkerConfig::default(), WorkerConfig::default()];
    let stream = Stream::with_workers(transports.clone(), StreamConfig::default(), workers).unwrap();
    let handle = stream.stats_handle();
    let sizing = spead_xdp::protocol::PacketSizing::new(StreamConfig::default().max_packet_size).unwrap();
    let mut packets = 0u64;
    let mut bytes = 0u64;
    for seed in 0..10u64 {
        for packet in sizing.packets(&heap(seed), seed + 1).unwrap() {
            packets += 1;
            bytes += packet.len() as u64;
        }
        stream.send_heap(heap(seed)).unwrap();
    }
    let frames: Vec<Bytes> = (0..5u8).map(|i| Bytes::from(vec![i; 100])).collect();
    stream.submit_datagrams(frames, 1, None).unwrap().wait().unwrap();
    drop(stream);

    // Read through the handle after the stream is gone.
    let stats = handle.snapshot();
    assert_eq!(
        (stats.heaps, stats.errors, stats.queue_full),
        (11, 0, 0),
        "{stats:?}"
    );
    assert_eq!(stats.packets(), packets + 5, "{stats:?}");
    assert_eq!(stats.bytes(), bytes + 500, "{stats:?}");
    let written: usize = transports
        .iter()
        .map(|t| t.bytes(0).len() + t.bytes(1).len())
        .sum();
    assert_eq!(stats.bytes(), written as u64);
    // Packets are dealt alternately, carrying on across heaps.
    let per_worker: Vec<u64> = stats.workers.iter().map(|w| w.packets).collect();
    assert_eq!(per_worker, vec![(packets + 6) / 2, (packets + 5) / 2]);
    assert!(stats.rate() > 0.0);

    let text = stats.to_prometheus();
    for line in [
        format!("spead_send_packets_total{{worker=\"0\"}} {}", per_worker[0]),
        format!("spead_send_packets_total{{worker=\"1\"}} {}", per_worker[1]),
        format!(
            "spead_send_bytes_total{{worker=\"0\"}} {}",
            stats.workers[0].bytes
        ),
        "spead_send_heaps_total 11".to_string(),
        "spead_send_errors_total 0".to_string(),
        "spead_send_queue_full_total 0".to_string(),
        "# TYPE spead_send_packets_total counter".to_string(),
        "# TYPE spead_send_rate_bytes_per_second gauge".to_string(),
    ] {
        assert!(text.lines().any(|l| l == line), "no line {line:?} in:\n{text}");
    }
}

/// Submits a heap the worker holds at the gate, then `more` heaps, and lets
/// the worker go: the `more` heaps are all queued when it goes on.
fn queued_behind_a_gate(fail: usize, more: usize) -> (Vec<Completion>, Arc<Mutex<Vec<usize>>>, Stream) {
    let gate = Arc::new(Barrier::new(2));
    let (transport, _) = gated(Some(Arc::clone(&gate)), fail);
    let batches = Arc::clone(&transport.batches);
    let config = StreamConfig {
        max_heaps: more + 1,
        ..Default::default()
    };
    let stream = Stream::new(transport, config).unwrap();
    let mut completions = vec![stream.submit(small_heap()).unwrap()];
    gate.wait();
    completions.extend((0..more).map(|_| stream.submit(small_heap()).unwrap()));
    gate.wait();
    (completions, batches, stream)
}

#[test]
fn a_batch_carries_on_into_the_queued_heaps() {
    let (completions, batches, stream) = queued_behind_a_gate(0, 9);
    for completion in completions {
        assert_eq!(completion.wait().unwrap(), 57);
    }
    // One-packet heaps: the held one alone; then each batch finishes
    // heaps ahead only while as many stay queued, so the submitter can
    // refill the queue while the rest go out: 1 + 4 (4 left), 1 + 1
    // (2 left), then one each.
    assert_eq!(*batches.lock().unwrap(), [1, 5, 2, 1, 1]);
    let stats = stream.stats();
    assert_eq!(
        (stats.heaps, stats.packets(), stats.bytes()),
        (10, 10, 570),
        "{stats:?}"
    );
}

#[test]
fn a_failed_shared_batch_fails_every_heap_in_it() {
    // The held heap's batch fails, then the batch of heaps 2 to 6 (see
    // a_batch_carries_on_into_the_queued_heaps); heaps 7 to 10 go in later
    // batches.
    let (completions, _, stream) = queued_behind_a_gate(2, 9);
    let results: Vec<_> = completions.into_iter().map(Completion::wait).collect();
    assert!(matches!(&results[0], Err(SendError::Transport(_))), "{results:?}");
    let is_the_batch_failure = |error: &TransportError| matches!(error, TransportError::Io { what, source } if what == "sending a batch" && source.raw_os_error() == Some(EMSGSIZE));
    match &results[1] {
        Err(SendError::Transport(error)) => assert!(is_the_batch_failure(error), "{error}"),
        other => panic!("{other:?}"),
    }
    for shared in &results[2..6] {
        match shared {
            Err(SendError::SharedBatch(error)) => assert!(is_the_batch_failure(error), "{error}"),
            other => panic!("{other:?}"),
        }
    }
    for sent in &results[6..] {
        assert_eq!(sent.as_ref().unwrap(), &57);
    }
    let stats = stream.stats();
    assert_eq!(
        (stats.heaps, stats.errors, stats.packets()),
        (4, 6, 4),
        "{stats:?}"
    );
}

#[test]
fn metrics_are_served_over_http_until_the_server_is_dropped() {
    let stream = Stream::new(MemoryTransport::new(1), StreamConfig::default()).unwrap();
    let server = stream.serve_metrics("127.0.0.1:0").unwrap();
    let address = server.local_addr();
    let (status, before) = common::http_get(address, "/metrics");
    assert_eq!(status, "HTTP/1.0 200 OK");
    assert!(before.contains("\nspead_send_heaps_total 0\n"), "{before}");
    stream.send_heap(small_heap()).unwrap();
    stream.send_heap(small_heap()).unwrap();
    let (_, after) = common::http_get(address, "/metrics");
    assert!(after.contains("\nspead_send_heaps_total 2\n"), "{after}");
    assert!(
        after.contains("# TYPE spead_send_packets_total counter"),
        "{after}"
    );
    let (status, body) = common::http_get(address, "/elsewhere");
    assert_eq!(status, "HTTP/1.0 404 Not Found");
    assert!(body.contains("/metrics"), "{body}");
    drop(server);
    assert!(
        std::net::TcpStream::connect(address).is_err(),
        "the listener outlived its server"
    );
}

#[test]
fn a_client_dripping_its_request_does_not_hold_the_metrics_server() {
    use std::io::Write;
    let stream = Stream::new(MemoryTransport::new(1), StreamConfig::default()).unwrap();
    let server = stream.serve_metrics("127.0.0.1:0").unwrap();
    let address = server.local_addr();
    let mut dripping = std::net::TcpStream::connect(address).unwrap();
    // One byte of a request head every 100 ms, for up to 10 s: each read
    // is quick, so only a deadline on the whole request ends it.
    let drip = std::thread::spawn(move || {
        for _ in 0..100 {
            if dripping.write_all(b"G").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    // Accepted after the dripping client (connections are taken in
    // order): answered once its 1 s is up.
    let started = std::time::Instant::now();
    let (status, _) = common::http_get(address, "/metrics");
    assert_eq!(status, "HTTP/1.0 200 OK");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the dripping client held the server {:?}",
        started.elapsed()
    );
    drop(server);
    drip.join().unwrap();
}
