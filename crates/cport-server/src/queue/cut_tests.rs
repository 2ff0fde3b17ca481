//! A cut queue never leaves a message half sent: whatever the short sends,
//! the bytes on the wire end on a message boundary.

use proptest::prelude::*;

use super::*;

/// Sends one batch of at most `cap` bytes (at least 1, unless `none`) and
/// completes it; returns `false` when nothing was queued.
fn step(q: &mut SendQueue, wire: &mut Vec<u8>, cap: usize) -> bool {
    let Some(batch) = q.next_batch() else { return false };
    match batch {
        Batch::One(b) => {
            let n = b.len().min(cap);
            wire.extend_from_slice(&b[..n]);
            q.complete_one(n, b);
        }
        Batch::Many(v) => {
            let total: usize = v.iter().map(|b| b.len()).sum();
            let mut left = total.min(cap);
            let n = left;
            for b in &v {
                let k = left.min(b.len());
                wire.extend_from_slice(&b[..k]);
                left -= k;
            }
            q.complete_many(n, v);
        }
        Batch::File { .. } => unreachable!("no files queued"),
    }
    true
}

#[test]
fn a_cut_drops_what_has_not_started_and_finishes_what_has() {
    let mut q = SendQueue::default();
    q.push(Item::Buf(Buf::from(&b"one\n"[..])));
    let Some(Batch::One(b)) = q.next_batch() else { panic!() };
    q.push(Item::Buf(Buf::from(&b"two\n"[..])));
    q.push(Item::Buf(Buf::from(&b"three\n"[..])));
    q.complete_one(2, b); // "on" left, "e\n" is the rest in front
    q.cut();
    assert_eq!(q.held(), 2, "only the rest of the started message is kept");
    let mut wire = b"on".to_vec();
    while step(&mut q, &mut wire, 1) {}
    assert_eq!(wire, b"one\n");
    assert!(q.is_idle());
    assert_eq!((q.held(), q.backlog()), (0, 0));
}

#[test]
fn the_backlog_counts_file_ranges_but_the_held_bytes_do_not() {
    let f = Arc::new(std::fs::File::open("/dev/null").unwrap());
    let mut q = SendQueue::default();
    q.push(Item::Buf(Buf::from(&b"head"[..])));
    q.push(Item::File {
        file: f.clone(),
        offset: 0,
        len: 1000,
    });
    assert_eq!((q.held(), q.backlog()), (4, 1004));
    let Some(Batch::One(b)) = q.next_batch() else { panic!() };
    q.complete_one(4, b);
    let Some(Batch::File { file, .. }) = q.next_batch() else {
        panic!()
    };
    assert!(q.complete_file(600, file));
    assert_eq!(q.backlog(), 400);
    let Some(Batch::File { .. }) = q.next_batch() else {
        panic!()
    };
    q.fail();
    assert_eq!(q.backlog(), 0);
}

proptest! {
    /// Messages queued and sent with arbitrary short sends, cut at an
    /// arbitrary batch: the wire holds whole messages, in order, and the
    /// queue ends empty with nothing counted.
    #[test]
    fn a_cut_never_truncates_a_message(
        sizes in proptest::collection::vec(1usize..300, 1..60),
        caps in proptest::collection::vec(0usize..700, 1..80),
        cut_at in 0usize..40,
        pushed_first in 0usize..60,
    ) {
        let msgs: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let mut m = vec![b'a' + (i % 26) as u8; *n];
                m.push(b'\n');
                m
            })
            .collect();
        let mut q = SendQueue::default();
        let split = pushed_first.min(msgs.len());
        for m in &msgs[..split] {
            q.push(Item::Buf(Buf::Vec(m.clone())));
        }
        let mut wire = Vec::new();
        let mut caps = caps.iter().cycle();
        for i in 0..cut_at {
            if i == 1 {
                for m in &msgs[split..] {
                    q.push(Item::Buf(Buf::Vec(m.clone())));
                }
            }
            step(&mut q, &mut wire, *caps.next().unwrap());
        }
        q.cut();
        // After a cut the peer still reads: every send takes at least a byte.
        let mut rounds = 0;
        while step(&mut q, &mut wire, caps.next().unwrap().max(&1).to_owned()) {
            rounds += 1;
            prop_assert!(rounds < 10_000);
        }
        prop_assert!(q.is_idle());
        prop_assert_eq!((q.held(), q.backlog()), (0, 0));
        let all: Vec<u8> = msgs.concat();
        prop_assert!(all.starts_with(&wire), "bytes out of order");
        prop_assert!(wire.is_empty() || wire.ends_with(b"\n"), "a message was truncated: {} bytes", wire.len());
    }
}
