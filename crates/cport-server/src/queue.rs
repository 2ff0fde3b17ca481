//! A session's send queue: what the application queued, gathered into one
//! send at a time (sans-I/O: the server issues the batches it hands out).
//!
//! Call order: [`push`](SendQueue::push) any number of items; when nothing is
//! in flight, [`next_batch`](SendQueue::next_batch) hands out everything that
//! can go in one system call (all queued buffers up to the next file range, as
//! one gathering send), and exactly one of the `complete_*`/[`fail`](SendQueue::fail)
//! calls must follow before the next batch. A short send puts the unsent rest
//! back at the front, so bytes leave in the order they were queued.
//!
//! A queue can be [`cut`](SendQueue::cut) (a slow consumer): what has not
//! started to leave is dropped, but an item that went out in part is
//! finished, so the peer never gets a message truncated mid-frame.

use std::collections::VecDeque;
use std::fs::File;
use std::sync::Arc;

use cport::Buf;

/// The most buffers one gathering send carries (the kernel's `IOV_MAX`).
pub(crate) const MAX_IOVECS: usize = 1024;

/// Pool buffers a queue keeps waiting behind a send in flight before it
/// copies further ones out: a slow reader must not pin the shared receive
/// pool. Below this, pool buffers wait as they are (no copy).
const MAX_WAITING_POOLED: usize = 4;

/// A copy target for pool buffers grows up to this before a new one starts.
const COALESCE_CAP: usize = 16 * 1024;

/// A reused gather vector is kept only up to this capacity (idle sessions stay small).
const SPARE_CAP: usize = 64;

/// One thing to send.
#[derive(Debug)]
pub(crate) enum Item {
    /// Bytes in memory.
    Buf(Buf),
    /// A range of a file, sent by the kernel without a user-space copy.
    File { file: Arc<File>, offset: u64, len: u64 },
}

/// What one send operation carries.
#[derive(Debug)]
pub(crate) enum Batch {
    /// A single buffer: a plain send.
    One(Buf),
    /// Several buffers: one gathering send.
    Many(Vec<Buf>),
    /// A file range.
    File { file: Arc<File>, offset: u64, len: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flight {
    None,
    /// Buffers holding this many bytes; `rest` when the first one is the
    /// unsent rest of an item that went out in part.
    Bufs {
        bytes: usize,
        rest: bool,
    },
    /// A file range.
    File {
        offset: u64,
        len: u64,
    },
}

/// A session's queue of outgoing items. See the module docs for the call order.
#[derive(Debug)]
pub(crate) struct SendQueue {
    items: VecDeque<Item>,
    /// Bytes of memory held by queued and in-flight buffers (file ranges hold none).
    held: usize,
    /// Pool buffers among `items`.
    waiting_pooled: usize,
    /// Bytes of file ranges queued and in flight (they hold no memory, but
    /// they are output still to go: they count toward the water marks).
    file_bytes: u64,
    /// The front item is the unsent rest of an item that went out in part.
    rest_in_front: bool,
    /// The queue was cut: only the rest of an item already started goes out.
    cut: bool,
    flight: Flight,
    spare: Vec<Buf>,
}

impl Default for SendQueue {
    fn default() -> Self {
        SendQueue {
            items: VecDeque::new(),
            held: 0,
            waiting_pooled: 0,
            file_bytes: 0,
            rest_in_front: false,
            cut: false,
            flight: Flight::None,
            spare: Vec::new(),
        }
    }
}

impl SendQueue {
    /// Bytes of memory the queue holds (queued plus in flight).
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// Output still to go: bytes held plus file range bytes, queued and in
    /// flight (what the water marks compare).
    pub(crate) fn backlog(&self) -> usize {
        self.held
            .saturating_add(self.file_bytes.min(usize::MAX as u64) as usize)
    }

    /// `true` while a batch is out.
    pub(crate) fn in_flight(&self) -> bool {
        self.flight != Flight::None
    }

    /// `true` when nothing is queued and nothing is in flight.
    pub(crate) fn is_idle(&self) -> bool {
        self.items.is_empty() && !self.in_flight()
    }

    /// Queues `item`. Empty buffers and empty file ranges are dropped.
    pub(crate) fn push(&mut self, item: Item) {
        match item {
            Item::Buf(b) if b.is_empty() => {}
            Item::Buf(b) => {
                self.held += b.len();
                if matches!(b, Buf::Pooled(_)) {
                    if self.waiting_pooled < MAX_WAITING_POOLED || self.is_idle() {
                        self.waiting_pooled += 1;
                        self.items.push_back(Item::Buf(b));
                    } else {
                        self.coalesce(&b);
                    }
                } else {
                    self.items.push_back(Item::Buf(b));
                }
            }
            Item::File { len: 0, .. } => {}
            Item::File { file, offset, len } => {
                self.file_bytes += len;
                self.items.push_back(Item::File { file, offset, len });
            }
        }
    }

    /// Copies `data` to the end of the queue, into the last buffer when it is
    /// a copy target with room.
    fn coalesce(&mut self, data: &[u8]) {
        if let Some(Item::Buf(Buf::Vec(v))) = self.items.back_mut() {
            if v.len() + data.len() <= COALESCE_CAP.max(v.capacity()) {
                v.extend_from_slice(data);
                return;
            }
        }
        let mut v = Vec::with_capacity(data.len().max(COALESCE_CAP));
        v.extend_from_slice(data);
        self.items.push_back(Item::Buf(Buf::Vec(v)));
    }

    /// Hands out the next batch, if nothing is in flight and something is queued.
    #[must_use]
    pub(crate) fn next_batch(&mut self) -> Option<Batch> {
        if self.in_flight() {
            return None;
        }
        let rest = std::mem::take(&mut self.rest_in_front);
        match self.items.front()? {
            Item::File { .. } => {
                let Some(Item::File { file, offset, len }) = self.items.pop_front() else {
                    unreachable!()
                };
                self.flight = Flight::File { offset, len };
                Some(Batch::File { file, offset, len })
            }
            Item::Buf(_) => {
                let mut bytes = 0;
                let mut first = None;
                let mut many: Option<Vec<Buf>> = None;
                while let Some(Item::Buf(_)) = self.items.front() {
                    if many.as_ref().map_or(1, |m| m.len()) >= MAX_IOVECS {
                        break;
                    }
                    let Some(Item::Buf(b)) = self.items.pop_front() else {
                        unreachable!()
                    };
                    if matches!(b, Buf::Pooled(_)) {
                        self.waiting_pooled -= 1;
                    }
                    bytes += b.len();
                    match (&mut first, &mut many) {
                        (None, None) => first = Some(b),
                        (Some(_), None) => {
                            let mut v = std::mem::take(&mut self.spare);
                            v.push(first.take().expect("first is set"));
                            v.push(b);
                            many = Some(v);
                        }
                        (_, Some(v)) => v.push(b),
                    }
                }
                self.flight = Flight::Bufs { bytes, rest };
                match (first, many) {
                    (_, Some(v)) => Some(Batch::Many(v)),
                    (Some(b), None) => Some(Batch::One(b)),
                    (None, None) => unreachable!("the front item was a buffer"),
                }
            }
        }
    }

    /// A one-buffer batch finished with `sent` bytes; an unsent rest goes
    /// back to the front of the queue.
    pub(crate) fn complete_one(&mut self, sent: usize, buf: Buf) {
        let Flight::Bufs { bytes: total, rest } = self.flight else {
            debug_assert!(false, "complete_one without a buffer batch in flight");
            return;
        };
        self.flight = Flight::None;
        let sent = sent.min(total);
        self.held -= sent;
        if sent < buf.len() {
            let started = sent > 0 || rest;
            if self.cut && !started {
                self.held -= buf.len(); // never started: dropped whole
            } else {
                self.items.push_front(Item::Buf(trim_front(buf, sent)));
                self.rest_in_front = started;
            }
        }
        self.shrink_if_idle();
    }

    /// A gathering batch finished with `sent` bytes out of the buffers handed
    /// back; the unsent rest goes back to the front of the queue, in order.
    pub(crate) fn complete_many(&mut self, sent: usize, mut bufs: Vec<Buf>) {
        let Flight::Bufs { bytes: total, rest } = self.flight else {
            debug_assert!(false, "complete_many without a buffer batch in flight");
            return;
        };
        self.flight = Flight::None;
        let sent = sent.min(total);
        self.held -= sent;
        if sent < total {
            let mut skip = sent;
            let mut split = bufs.len();
            for (i, b) in bufs.iter().enumerate() {
                if skip < b.len() {
                    split = i;
                    break;
                }
                skip -= b.len();
            }
            let started = skip > 0 || (split == 0 && rest);
            if self.cut {
                // Only the item that went out in part is finished.
                for (i, b) in bufs.drain(split..).enumerate().rev() {
                    if i == 0 && started {
                        self.items.push_front(Item::Buf(trim_front(b, skip)));
                        self.rest_in_front = true;
                    } else {
                        self.held -= b.len();
                    }
                }
            } else {
                for (i, b) in bufs.drain(split..).enumerate().rev() {
                    let b = if i == 0 && skip > 0 { trim_front(b, skip) } else { b };
                    if matches!(b, Buf::Pooled(_)) {
                        self.waiting_pooled += 1; // waiting again, as when it was queued
                    }
                    self.items.push_front(Item::Buf(b));
                }
                self.rest_in_front = started;
            }
        }
        bufs.clear();
        if bufs.capacity() <= SPARE_CAP && bufs.capacity() > self.spare.capacity() {
            self.spare = bufs;
        }
        self.shrink_if_idle();
    }

    /// A file batch finished having sent `sent` bytes of its range. A short
    /// count puts the rest of the range back at the front; returns `false`
    /// when nothing at all was sent (the file ended early: the caller should
    /// end the session, the stream is no longer what it promised).
    #[must_use]
    pub(crate) fn complete_file(&mut self, sent: u64, file: Arc<File>) -> bool {
        let Flight::File { offset, len } = self.flight else {
            debug_assert!(false, "complete_file without a file batch in flight");
            return true;
        };
        self.flight = Flight::None;
        self.file_bytes -= sent.min(len);
        if sent >= len {
            self.shrink_if_idle();
            return true;
        }
        if sent == 0 {
            self.file_bytes -= len;
            return false;
        }
        self.items.push_front(Item::File {
            file,
            offset: offset + sent,
            len: len - sent,
        });
        self.rest_in_front = true;
        true
    }

    /// The batch in flight failed: its buffers are dropped by the caller.
    pub(crate) fn fail(&mut self) {
        match self.flight {
            Flight::Bufs { bytes, .. } => self.held -= bytes,
            Flight::File { len, .. } => self.file_bytes -= len,
            Flight::None => {}
        }
        self.flight = Flight::None;
    }

    /// Drops everything queued but not in flight (an aborted session).
    pub(crate) fn clear_queued(&mut self) {
        for item in self.items.drain(..) {
            match item {
                Item::Buf(b) => self.held -= b.len(),
                Item::File { len, .. } => self.file_bytes -= len,
            }
        }
        self.waiting_pooled = 0;
        self.rest_in_front = false;
        self.shrink_if_idle();
    }

    /// Cuts the queue (a slow consumer): drops every item that has not
    /// started to leave, keeps the rest of one that went out in part, and
    /// from now on a short send finishes only the item it started.
    pub(crate) fn cut(&mut self) {
        self.cut = true;
        let keep = if self.rest_in_front {
            self.items.pop_front()
        } else {
            None
        };
        self.clear_queued();
        if let Some(item) = keep {
            // (Still counted in `held` or `file_bytes`: it was taken out
            // before the clearing.)
            if matches!(item, Item::Buf(Buf::Pooled(_))) {
                self.waiting_pooled += 1;
            }
            self.items.push_front(item);
            self.rest_in_front = true;
        }
    }

    /// An idle session keeps no queue memory.
    fn shrink_if_idle(&mut self) {
        if self.items.is_empty() && self.items.capacity() > 8 {
            self.items = VecDeque::new();
        }
    }
}

/// `b` without its first `n` bytes (`n < b.len()`), copying only a pool buffer.
fn trim_front(b: Buf, n: usize) -> Buf {
    match b {
        // A pool buffer goes back to its pool: keep only the unsent tail.
        Buf::Pooled(p) => Buf::Vec(p[n..].to_vec()),
        b => Buf::Bytes(b.into_bytes().split_off(n)),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod cut_tests;
