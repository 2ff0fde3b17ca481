use std::io::Write as _;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;

/// Runs the queue like the server does: one batch at a time, each "sent"
/// only `limit(i)` bytes at most, until it is idle. Returns the bytes that
/// left, in order, and the batches handed out.
fn drain(q: &mut SendQueue, mut limit: impl FnMut(usize) -> usize) -> (Vec<u8>, usize) {
    let mut wire = Vec::new();
    let mut batches = 0;
    while let Some(batch) = q.next_batch() {
        assert!(q.next_batch().is_none(), "a second batch while one is in flight");
        let cap = limit(batches);
        batches += 1;
        match batch {
            Batch::One(b) => {
                let n = b.len().min(cap).max(1);
                wire.extend_from_slice(&b[..n]);
                q.complete_one(n, b);
            }
            Batch::Many(v) => {
                assert!(v.len() >= 2 && v.len() <= MAX_IOVECS);
                let total: usize = v.iter().map(|b| b.len()).sum();
                let n = total.min(cap).max(1);
                let mut left = n;
                for b in &v {
                    let k = left.min(b.len());
                    wire.extend_from_slice(&b[..k]);
                    left -= k;
                }
                q.complete_many(n, v);
            }
            Batch::File { .. } => unreachable!("no files queued"),
        }
    }
    (wire, batches)
}

fn buf(kind: u8, data: Vec<u8>) -> Buf {
    if kind & 1 == 0 {
        Buf::Vec(data)
    } else {
        Buf::Bytes(Bytes::from(data))
    }
}

#[test]
fn small_sends_queued_behind_one_in_flight_go_out_as_one_gathering_send() {
    let mut q = SendQueue::default();
    q.push(Item::Buf(Buf::from(&b"first"[..])));
    let Some(Batch::One(first)) = q.next_batch() else {
        panic!("expected a single send")
    };
    for i in 0..10 {
        q.push(Item::Buf(Buf::Vec(vec![i; 3])));
    }
    assert!(q.next_batch().is_none(), "one send in flight at a time");
    q.complete_one(first.len(), first);
    let Some(Batch::Many(v)) = q.next_batch() else {
        panic!("expected one gathering send")
    };
    assert_eq!(v.len(), 10);
    q.complete_many(30, v);
    assert!(q.is_idle());
    assert_eq!(q.held(), 0);
}

#[test]
fn a_short_send_resumes_where_it_stopped() {
    let mut q = SendQueue::default();
    q.push(Item::Buf(Buf::from(&b"x"[..])));
    let Some(Batch::One(b)) = q.next_batch() else { panic!() };
    q.push(Item::Buf(Buf::from(&b"abc"[..])));
    q.push(Item::Buf(Buf::from(&b"def"[..])));
    q.complete_one(1, b);
    let Some(Batch::Many(v)) = q.next_batch() else { panic!() };
    q.complete_many(4, v); // "abc" and "d"
    assert_eq!(q.held(), 2);
    let Some(Batch::One(rest)) = q.next_batch() else {
        panic!()
    };
    assert_eq!(&rest[..], b"ef");
}

#[test]
fn file_ranges_keep_their_place_between_buffers() {
    let mut f = tempfile();
    f.write_all(b"BODY").unwrap();
    let file = Arc::new(f);
    let mut q = SendQueue::default();
    q.push(Item::Buf(Buf::from(&b"head1"[..])));
    q.push(Item::Buf(Buf::from(&b"head2"[..])));
    q.push(Item::File {
        file: file.clone(),
        offset: 0,
        len: 4,
    });
    q.push(Item::Buf(Buf::from(&b"tail"[..])));
    let Some(Batch::Many(v)) = q.next_batch() else { panic!() };
    assert_eq!(v.len(), 2, "the gathering send stops at the file");
    q.complete_many(10, v);
    let Some(Batch::File {
        offset: 0,
        len: 4,
        file: f1,
    }) = q.next_batch()
    else {
        panic!()
    };
    assert!(q.complete_file(3, f1), "a short file send resumes");
    let Some(Batch::File {
        offset: 3,
        len: 1,
        file: f2,
    }) = q.next_batch()
    else {
        panic!()
    };
    assert!(q.complete_file(1, f2));
    let Some(Batch::One(t)) = q.next_batch() else { panic!() };
    assert_eq!(&t[..], b"tail");
    q.complete_one(4, t);
    assert!(q.is_idle());
}

#[test]
fn a_file_that_sends_nothing_is_reported() {
    let file = Arc::new(tempfile());
    let mut q = SendQueue::default();
    q.push(Item::File {
        file,
        offset: 0,
        len: 10,
    });
    let Some(Batch::File { file, .. }) = q.next_batch() else {
        panic!()
    };
    assert!(!q.complete_file(0, file));
}

#[test]
fn empty_items_are_dropped() {
    let mut q = SendQueue::default();
    q.push(Item::Buf(Buf::Vec(Vec::new())));
    q.push(Item::File {
        file: Arc::new(tempfile()),
        offset: 0,
        len: 0,
    });
    assert!(q.is_idle());
    assert!(q.next_batch().is_none());
}

#[test]
fn gathering_stops_at_the_iovec_limit() {
    let mut q = SendQueue::default();
    for _ in 0..MAX_IOVECS + 5 {
        q.push(Item::Buf(Buf::from(&b"z"[..])));
    }
    let Some(Batch::Many(v)) = q.next_batch() else { panic!() };
    assert_eq!(v.len(), MAX_IOVECS);
    q.complete_many(MAX_IOVECS, v);
    let Some(Batch::Many(v)) = q.next_batch() else { panic!() };
    assert_eq!(v.len(), 5);
}

#[test]
fn clearing_drops_queued_bytes_but_not_the_batch_in_flight() {
    let mut q = SendQueue::default();
    q.push(Item::Buf(Buf::Vec(vec![1; 10])));
    let Some(Batch::One(b)) = q.next_batch() else { panic!() };
    q.push(Item::Buf(Buf::Vec(vec![2; 20])));
    assert_eq!(q.held(), 30);
    q.clear_queued();
    assert_eq!(q.held(), 10);
    q.complete_one(10, b);
    assert!(q.is_idle());
    assert_eq!(q.held(), 0);
}

/// Pool buffers holding `parts`, from real receives on a loopback pair
/// (a receive is the only way to get one).
fn pooled(parts: &[&[u8]]) -> Vec<Buf> {
    use std::net::{TcpListener, TcpStream};
    let port = cport::Port::builder().backend(cport::Backend::Epoll).build().unwrap();
    let pool = port.buf_pool(8, 64).unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut peer = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let h = port.associate(l.accept().unwrap().0, cport::Key(1)).unwrap();
    let mut got = Vec::new();
    for part in parts {
        port.recv_pooled(&h, &pool, 0u64).unwrap();
        peer.write_all(part).unwrap();
        let mut c = port.get(Some(std::time::Duration::from_secs(10))).unwrap();
        let b = c.take_buf().unwrap();
        assert!(matches!(b, Buf::Pooled(_)) && &b[..] == *part);
        got.push(b);
    }
    got
}

#[test]
fn pool_buffers_put_back_by_a_short_gathering_send_are_counted_again() {
    let mut q = SendQueue::default();
    let mut bufs = pooled(&[b"aaaa", b"bbbb", b"cccc", b"dddd"]).into_iter();
    q.push(Item::Buf(bufs.next().unwrap()));
    let Some(Batch::One(first)) = q.next_batch() else {
        panic!("expected a single send")
    };
    bufs.for_each(|b| q.push(Item::Buf(b)));
    q.complete_one(4, first);
    let Some(Batch::Many(v)) = q.next_batch() else {
        panic!("expected a gathering send")
    };
    // Only the first of three went out: the other two pool buffers are
    // queued again, whole, and go out next.
    q.complete_many(4, v);
    let (wire, _) = drain(&mut q, |_| usize::MAX);
    assert_eq!(wire, b"ccccdddd");
    assert!(q.is_idle());
}

/// An unnamed file (O_TMPFILE): gone once closed, whatever the test does.
fn tempfile() -> File {
    tempfile::tempfile().unwrap()
}

proptest! {
    /// Whatever is queued, in whatever pieces and with whatever short sends,
    /// the bytes leave exactly once and in order, and the accounting returns to zero.
    #[test]
    fn bytes_leave_in_order_whatever_the_short_sends(
        pushes in proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<u8>(), 0..50)), 0..60),
        limits in proptest::collection::vec(1usize..120, 1..30),
        push_while_in_flight in any::<bool>(),
    ) {
        let mut q = SendQueue::default();
        let mut want = Vec::new();
        let mut held = 0;
        let mut wire = Vec::new();
        let mut i = 0;
        for (kind, data) in pushes {
            want.extend_from_slice(&data);
            held += data.len();
            q.push(Item::Buf(buf(kind, data)));
            prop_assert_eq!(q.held(), held);
            if !push_while_in_flight {
                let (w, _) = drain(&mut q, |k| limits[(i + k) % limits.len()]);
                i += 1;
                wire.extend(w);
                held = 0;
                prop_assert_eq!(q.held(), 0);
            }
        }
        let (w, _) = drain(&mut q, |k| limits[k % limits.len()]);
        wire.extend(w);
        prop_assert_eq!(wire, want);
        prop_assert!(q.is_idle());
        prop_assert_eq!(q.held(), 0);
    }
}

#[test]
fn pool_buffers_beyond_the_waiting_cap_are_copied_together_into_one_buffer() {
    let mut q = SendQueue::default();
    q.push(Item::Buf(Buf::from(&b"first"[..])));
    let Some(Batch::One(first)) = q.next_batch() else {
        panic!("expected a single send")
    };
    // Behind the send in flight: MAX_WAITING_POOLED pool buffers wait as
    // they are; the two after them are copied out, into one buffer.
    let parts: [&[u8]; 6] = [b"aa", b"bb", b"cc", b"dd", b"eeee", b"ffffff"];
    assert_eq!(MAX_WAITING_POOLED, 4);
    pooled(&parts).into_iter().for_each(|b| q.push(Item::Buf(b)));
    assert_eq!(q.held(), 5 + 18);
    q.complete_one(first.len(), first);
    let Some(Batch::Many(v)) = q.next_batch() else {
        panic!("expected a gathering send")
    };
    assert_eq!(v.len(), 5, "four pool buffers and one copy: {v:?}");
    assert!(v[..4].iter().all(|b| matches!(b, Buf::Pooled(_))));
    assert!(matches!(&v[4], Buf::Vec(c) if c == b"eeeeffffff"));
    q.complete_many(18, v);
    assert!(q.is_idle());
    assert_eq!(q.held(), 0);
}

#[test]
fn pool_buffers_that_left_no_longer_count_toward_the_waiting_cap() {
    let mut q = SendQueue::default();
    for round in 0..2 {
        q.push(Item::Buf(Buf::from(&b"head"[..])));
        let Some(Batch::One(head)) = q.next_batch() else {
            panic!("expected a single send")
        };
        pooled(&[b"a", b"b", b"c", b"d"])
            .into_iter()
            .for_each(|b| q.push(Item::Buf(b)));
        q.complete_one(4, head);
        let Some(Batch::Many(v)) = q.next_batch() else {
            panic!("expected a gathering send")
        };
        assert!(
            v.len() == 4 && v.iter().all(|b| matches!(b, Buf::Pooled(_))),
            "round {round}: four pool buffers wait uncopied: {v:?}"
        );
        q.complete_many(4, v);
        assert!(q.is_idle());
    }
}

#[test]
fn an_idle_queue_gives_its_item_memory_back() {
    let mut q = SendQueue::default();
    for _ in 0..100 {
        q.push(Item::Buf(Buf::from(&b"x"[..])));
    }
    assert!(q.items.capacity() >= 100);
    let (wire, _) = drain(&mut q, |i| if i == 0 { 50 } else { usize::MAX });
    assert_eq!(wire.len(), 100);
    assert!(q.is_idle());
    assert_eq!(q.items.capacity(), 0, "an idle session keeps no queue memory");
}

#[test]
fn copies_of_pool_buffers_fill_one_buffer_up_to_the_coalescing_cap() {
    let parts: Vec<[u8; 64]> = (0..16u8).map(|i| [b'a' + i; 64]).collect();
    let parts: Vec<&[u8]> = parts.iter().map(|p| &p[..]).collect();
    let mut q = SendQueue::default();
    q.push(Item::Buf(Buf::from(&b"head"[..])));
    let Some(Batch::One(head)) = q.next_batch() else {
        panic!("expected a single send")
    };
    // Two receives' worth (the helper's pool holds 8): 4 wait, 12 are copied.
    for half in parts.chunks(8) {
        pooled(half).into_iter().for_each(|b| q.push(Item::Buf(b)));
    }
    q.complete_one(4, head);
    let Some(Batch::Many(v)) = q.next_batch() else {
        panic!("expected a gathering send")
    };
    assert_eq!(v.len(), 5, "12 copies of 768 bytes fit in one buffer of 16 KiB");
    assert!(matches!(&v[4], Buf::Vec(c) if c[..] == parts[4..].concat()[..]));
    q.complete_many(16 * 64, v);
    assert!(q.is_idle());
}

#[test]
fn the_gather_vector_is_kept_for_reuse_only_while_small() {
    let mut q = SendQueue::default();
    let gather = |q: &mut SendQueue, n: usize| {
        for _ in 0..n {
            q.push(Item::Buf(Buf::from(&b"y"[..])));
        }
        let Some(Batch::Many(v)) = q.next_batch() else {
            panic!("expected a gathering send")
        };
        assert_eq!(v.len(), n);
        q.complete_many(n, v);
        assert!(q.is_idle());
    };
    gather(&mut q, 3);
    let kept = q.spare.capacity();
    assert!((3..=SPARE_CAP).contains(&kept), "a small gather vector is kept: {kept}");
    gather(&mut q, 1000);
    assert!(
        q.spare.capacity() <= SPARE_CAP,
        "a large one is not: {}",
        q.spare.capacity()
    );
}

#[test]
fn a_short_gathering_send_that_ends_between_buffers_resumes_at_the_next_one() {
    let mut q = SendQueue::default();
    for part in [&b"aa"[..], b"bb", b"cc"] {
        q.push(Item::Buf(Buf::from(part)));
    }
    let Some(Batch::Many(v)) = q.next_batch() else {
        panic!("expected a gathering send")
    };
    q.complete_many(2, v);
    let Some(Batch::Many(v)) = q.next_batch() else {
        panic!("expected a gathering send")
    };
    let parts: Vec<&[u8]> = v.iter().map(|b| &b[..]).collect();
    assert_eq!(
        parts,
        [&b"bb"[..], b"cc"],
        "no empty rest of the buffer that went out whole"
    );
    // Nothing of the next message had left: a cut drops all of it.
    q.complete_many(0, v);
    q.cut();
    assert!(q.next_batch().is_none());
    assert_eq!(q.held(), 0);
}
