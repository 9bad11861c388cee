//! In-process streams: a stream sending into an `InprocQueue` and a
//! receiver reading it in the same process take every heap, values whole;
//! the queue's stop ends the receiving stream; a full queue fails the
//! heap that found it full, naming the queue's capacity.

use std::time::Duration;

use spead_xdp::protocol::{Flavour, Heap, Item};
use spead_xdp::receive::{Event, Receiver, Source};
use spead_xdp::stream::{SendError, Stream, StreamConfig};
use spead_xdp::transport::{InprocQueue, InprocTransport, TransportError};

fn heap(k: u64) -> Heap<'static> {
    let mut heap = Heap::new(Flavour::SPEAD_64_48);
    heap.add(Item::new(0x1000, vec![(k % 251) as u8; 10_000]))
        .unwrap();
    heap.add(Item::immediate(0x1001, k)).unwrap();
    heap
}

#[test]
fn every_heap_arrives_whole_and_the_stop_ends_the_receiver() {
    let queue = InprocQueue::new(InprocQueue::DEFAULT_CAPACITY);
    let stream = Stream::new(
        InprocTransport::new(vec![queue.clone()]).unwrap(),
        StreamConfig::default(),
    )
    .unwrap();
    let mut receiver = Receiver::new(vec![Source::Inproc(queue.clone())], Default::default()).unwrap();
    for k in 0..50 {
        stream.send_heap(heap(k)).unwrap();
    }
    queue.stop();
    let mut seen = Vec::new();
    loop {
        match receiver.next_event(Duration::from_secs(10)).unwrap() {
            Event::Heap(received) => {
                let data = received.item(0x1000).unwrap();
                let k = received.item(0x1001).unwrap().as_u64().unwrap();
                assert_eq!(data.value(), &vec![(k % 251) as u8; 10_000][..]);
                seen.push(k);
            }
            Event::End => break,
            Event::Timeout => panic!("no end after the stop; saw {seen:?}"),
        }
    }
    assert_eq!(seen, (0..50).collect::<Vec<_>>());
    assert_eq!(receiver.stats().heaps_complete, 50);
}

#[test]
fn a_full_queue_fails_the_heap_that_found_it_full() {
    // Eight packets of room; a heap of 10 000 bytes in 1472-byte packets
    // takes eight, so the second heap finds the queue full.
    let queue = InprocQueue::new(8);
    let stream = Stream::new(
        InprocTransport::new(vec![queue.clone()]).unwrap(),
        StreamConfig::default(),
    )
    .unwrap();
    stream.send_heap(heap(0)).unwrap();
    match stream.send_heap(heap(1)) {
        Err(SendError::Transport(TransportError::InprocFull { capacity: 8 })) => {}
        other => panic!("expected the queue to be full, got {other:?}"),
    }
    queue.stop();
    match stream.send_heap(heap(2)) {
        Err(SendError::Transport(TransportError::InprocStopped)) => {}
        other => panic!("expected the stopped queue to refuse, got {other:?}"),
    }
}
