//! Timeouts: a min-heap of deadlines, cancelled entries removed lazily.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use crate::index::GenIndex;

/// Deadlines with the op id each belongs to.
#[derive(Default)]
pub(super) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, GenIndex)>>,
    /// Heap entries whose op was cancelled.
    stale: usize,
}

impl Timers {
    pub(super) fn push(&mut self, at: Instant, id: GenIndex) {
        self.heap.push(Reverse((at, id)));
    }

    /// The earliest deadline (perhaps of a cancelled timer: waking early is harmless).
    pub(super) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// The id of a timer due at `now`, removed from the heap.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<GenIndex> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse((_, id))| id),
            _ => None,
        }
    }

    /// A popped entry turned out to be stale.
    pub(super) fn forget_stale(&mut self) {
        self.stale = self.stale.saturating_sub(1);
    }

    /// A timer was cancelled; its heap entry stays until popped or compacted.
    pub(super) fn forget_one(&mut self) {
        self.stale += 1;
    }

    /// Drops stale entries once they outnumber live ones, so a server that
    /// cancels most of its timeouts keeps the heap small.
    pub(super) fn compact(&mut self, live: impl Fn(GenIndex) -> bool) {
        if self.stale > 64 && self.stale * 2 > self.heap.len() {
            self.heap.retain(|Reverse((_, id))| live(*id));
            self.stale = 0;
        }
    }

    pub(super) fn clear(&mut self) {
        self.heap.clear();
        self.stale = 0;
    }
}
