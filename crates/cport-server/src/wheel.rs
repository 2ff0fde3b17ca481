//! A hashed timing wheel of coarse ticks (sans-I/O: the caller says what time it is).
//!
//! The server checks timeouts once per tick. A session is put on the wheel at
//! the tick when it *could* first expire; activity only updates a timestamp
//! in the session, so the hot path never touches the wheel. When its tick
//! comes, the server re-checks the session and either closes it or puts it
//! back at its new earliest deadline. Each tick therefore costs time in the
//! number of sessions that could expire then, not in the number of sessions.

/// A point in time, in ticks since the server started.
pub(crate) type Tick = u32;

use cport::GenIndex;

/// One scheduled check: which session (slot index and generation) and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub session: GenIndex,
    pub due: Tick,
}

/// The wheel. Entries further away than one turn simply wait in their slot
/// for the turn in which they are due.
#[derive(Debug)]
pub(crate) struct Wheel {
    slots: Vec<Vec<Entry>>,
    /// The last tick whose slot was expired.
    last: Tick,
}

impl Wheel {
    /// A wheel with `slots` slots (rounded up to a power of two), starting at tick 0.
    pub(crate) fn new(slots: usize) -> Self {
        let n = slots.max(2).next_power_of_two();
        Wheel {
            slots: (0..n).map(|_| Vec::new()).collect(),
            last: 0,
        }
    }

    fn slot_of(&self, t: Tick) -> usize {
        t as usize & (self.slots.len() - 1)
    }

    /// Schedules `e` at `e.due`; a due tick already expired is moved to the
    /// next one. Returns the tick the entry carries.
    pub(crate) fn schedule(&mut self, mut e: Entry) -> Tick {
        if e.due <= self.last {
            e.due = self.last + 1;
        }
        let s = self.slot_of(e.due);
        self.slots[s].push(e);
        e.due
    }

    /// Moves every entry due at or before `now` into `out` (each exactly once).
    pub(crate) fn expire(&mut self, now: Tick, out: &mut Vec<Entry>) {
        if now <= self.last {
            return;
        }
        let n = self.slots.len() as u32;
        // A gap longer than a turn visits each slot once.
        let first = if now - self.last > n {
            now - n + 1
        } else {
            self.last + 1
        };
        for t in first..=now {
            let s = self.slot_of(t);
            let slot = &mut self.slots[s];
            let mut i = 0;
            while i < slot.len() {
                if slot[i].due <= now {
                    out.push(slot.swap_remove(i));
                } else {
                    i += 1;
                }
            }
            if slot.is_empty() && slot.capacity() > 64 {
                *slot = Vec::new();
            }
        }
        self.last = now;
    }

    /// Entries waiting on the wheel.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.iter().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn e(idx: u32, due: Tick) -> Entry {
        Entry {
            session: GenIndex::new(idx, 0),
            due,
        }
    }

    #[test]
    fn entry_fires_at_its_tick_not_before() {
        let mut w = Wheel::new(8);
        w.schedule(e(1, 3));
        let mut out = Vec::new();
        w.expire(2, &mut out);
        assert!(out.is_empty());
        w.expire(3, &mut out);
        assert_eq!(out, vec![e(1, 3)]);
        w.expire(20, &mut out);
        assert_eq!(out.len(), 1, "fires once");
    }

    #[test]
    fn entries_beyond_one_turn_wait_for_their_turn() {
        let mut w = Wheel::new(4);
        w.schedule(e(1, 9)); // slot 1, two turns ahead
        let mut out = Vec::new();
        for now in 1..9 {
            w.expire(now, &mut out);
            assert!(out.is_empty(), "fired early at {now}");
        }
        w.expire(9, &mut out);
        assert_eq!(out, vec![e(1, 9)]);
    }

    #[test]
    fn past_due_entries_fire_at_next_expire() {
        let mut w = Wheel::new(4);
        let mut out = Vec::new();
        w.expire(10, &mut out);
        w.schedule(e(7, 5));
        w.expire(11, &mut out);
        assert_eq!(out[0].session.index(), 7);
    }

    #[test]
    fn a_long_gap_visits_every_slot() {
        let mut w = Wheel::new(4);
        for i in 1..=4 {
            w.schedule(e(i, i));
        }
        let mut out = Vec::new();
        w.expire(100, &mut out);
        assert_eq!(out.len(), 4);
        assert_eq!(w.len(), 0);
    }

    proptest! {
        /// Every entry fires exactly once, at the first `expire` whose `now`
        /// reaches its due tick, whatever the steps between expiries.
        #[test]
        fn every_entry_fires_once_at_or_after_due(
            slots in 1usize..40,
            dues in proptest::collection::vec(1u32..300, 0..200),
            steps in proptest::collection::vec(1u32..50, 1..40),
        ) {
            let mut w = Wheel::new(slots);
            for (i, d) in dues.iter().enumerate() {
                w.schedule(e(i as u32, *d));
            }
            let mut fired = vec![None; dues.len()];
            let mut now = 0;
            let mut prev = 0;
            let mut out = Vec::new();
            for s in steps.iter().chain(std::iter::once(&400)) {
                now += s;
                out.clear();
                w.expire(now, &mut out);
                for x in &out {
                    prop_assert!(fired[x.session.index() as usize].is_none(), "fired twice");
                    prop_assert!(x.due <= now, "fired early");
                    prop_assert!(x.due > prev, "fired late: due {} but already at {}", x.due, prev);
                    fired[x.session.index() as usize] = Some(now);
                }
                prev = now;
            }
            prop_assert!(fired.iter().all(Option::is_some), "some never fired");
            prop_assert_eq!(w.len(), 0);
        }
    }
}
