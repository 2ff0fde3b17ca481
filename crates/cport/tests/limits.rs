//! The queue limit (fail or wait when operations in flight plus completions
//! queued reach it) and high-priority completions jumping the queue.

use cport_testutil::port as util;

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::thread;

use cport::{Buf, Ctx, FullPolicy, Key, OpKind, Payload, Priority, SubmitErrorKind};
use util::*;

backend_tests! {
    fn issuing_past_the_queue_limit_fails_and_hands_the_buffer_back(backend: Backend) {
        let port = port_with(backend, |b| b.queue_limit(4));
        let (h, _peer) = associated_pair(&port, Key(1));
        // Two receives in flight and two posted packets queued: the limit.
        port.recv(&h, Vec::with_capacity(8), 1u64).unwrap();
        port.recv(&h, Vec::with_capacity(8), 2u64).unwrap();
        port.post(Key(9), 0, 3u64).unwrap();
        port.post(Key(9), 0, 4u64).unwrap();
        let s = port.stats();
        assert_eq!((s.in_flight, s.queued), (2, 2));

        let mut buf = Vec::with_capacity(32);
        buf.extend_from_slice(b"mine");
        let e = port.recv(&h, buf, 5u64).unwrap_err();
        assert_eq!(e.kind, SubmitErrorKind::QueueFull);
        match e.payload {
            Payload::Buf(Buf::Vec(v)) => assert_eq!((&v[..], v.capacity()), (&b"mine"[..], 32)),
            other => panic!("buffer not handed back: {other:?}"),
        }
        assert_eq!(port.send(&h, "x", 6u64).unwrap_err().kind, SubmitErrorKind::QueueFull);
        assert_eq!(port.post(Key(9), 0, 7u64).unwrap_err().kind, SubmitErrorKind::QueueFull);
        assert_eq!(port.nop(8u64).unwrap_err().kind, SubmitErrorKind::QueueFull);
        assert_eq!(port.stats().in_flight, 2, "refused operations were never started");

        // Dequeuing makes room again.
        next_of(&port, OpKind::Post, 3);
        port.nop(9u64).unwrap();
        assert_eq!(port.post(Key(9), 0, 10u64).unwrap_err().kind, SubmitErrorKind::QueueFull);
        next_of(&port, OpKind::Post, 4);
        next_of(&port, OpKind::Nop, 9);
        port.post(Key(9), 0, 11u64).unwrap();
        next_of(&port, OpKind::Post, 11);

        port.close(&h).unwrap();
        let mut ended: Vec<u64> = (0..2).map(|_| next(&port)).map(|c| { assert!(c.is_cancelled()); c.ctx() }).collect();
        ended.sort();
        assert_eq!(ended, [1, 2]);
        assert_nothing_more(&port);
    }

    fn a_full_queue_with_the_wait_policy_blocks_until_a_consumer_dequeues(backend: Backend) {
        let port = port_with(backend, |b| b.queue_limit(2).full_policy(FullPolicy::Wait));
        port.post(Key(1), 0, 1u64).unwrap();
        port.nop(2u64).unwrap();
        let posted = Arc::new(AtomicBool::new(false));
        let (p, done) = (port.clone(), posted.clone());
        let producer = thread::spawn(move || {
            p.post(Key(1), 0, 3u64).expect("room is made");
            done.store(true, SeqCst);
        });
        // Negative check: the producer stays blocked while nobody dequeues.
        thread::sleep(SHORT);
        assert!(!posted.load(SeqCst), "posting past the limit did not wait");
        next_of(&port, OpKind::Post, 1);
        wait_until("the blocked producer gets through", || posted.load(SeqCst));
        producer.join().unwrap();
        // The nop's and the new post's completions come from different
        // sources; their relative order is not specified.
        let mut rest: Vec<(u64, OpKind)> = (0..2).map(|_| next(&port)).map(|c| (c.ctx(), c.kind())).collect();
        rest.sort_by_key(|r| r.0);
        assert_eq!(rest, [(2, OpKind::Nop), (3, OpKind::Post)]);
        assert_nothing_more(&port);
    }

    fn a_producer_waiting_for_room_is_released_by_shutdown(backend: Backend) {
        let port = port_with(backend, |b| b.queue_limit(1).full_policy(FullPolicy::Wait));
        port.post(Key(1), 0, 1u64).unwrap();
        let p = port.clone();
        let producer = thread::spawn(move || p.post(Key(1), 0, 2u64).map_err(|e| e.kind));
        thread::sleep(SHORT);
        assert!(!producer.is_finished(), "posting past the limit did not wait");
        port.shutdown();
        wait_until("the producer returns", || producer.is_finished());
        assert_eq!(producer.join().unwrap(), Err(SubmitErrorKind::ShutDown));
    }

    fn high_priority_posts_are_dequeued_first_fifo_within_each_class(backend: Backend) {
        let port = port_with(backend, |b| b.concurrency(1));
        for v in 0..4u64 {
            port.post(Key(1), 0, v).unwrap();
        }
        for v in 10..13u64 {
            port.post(Key(1), 0, Ctx::high(v)).unwrap();
        }
        port.post(Key(1), 0, 4u64).unwrap();
        port.post(Key(1), 0, Ctx::high(13)).unwrap();
        let got: Vec<(u64, Priority)> = (0..9).map(|_| next(&port)).map(|c| (c.ctx(), c.priority())).collect();
        let want: Vec<(u64, Priority)> = (10..14)
            .map(|v| (v, Priority::High))
            .chain((0..5).map(|v| (v, Priority::Normal)))
            .collect();
        assert_eq!(got, want);
    }

    fn high_priority_operations_complete_before_normal_ones(backend: Backend) {
        let port = port_with(backend, |b| b.concurrency(1));
        // Nops complete as soon as they are submitted; the first `get`
        // collects all of them at once, so priority alone decides the order.
        for v in 0..3u64 {
            port.nop(v).unwrap();
        }
        for v in 10..13u64 {
            port.nop(Ctx::high(v)).unwrap();
        }
        let got: Vec<u64> = (0..6).map(|_| next(&port).ctx()).collect();
        assert_eq!(got, [10, 11, 12, 0, 1, 2]);
    }
}
