//! The server's one port timer (sans-I/O: the caller says what time it is).
//!
//! Everything that waits for time goes through one kind of port timeout
//! (`Context::Timer`, which names the deadline it was armed for): the coarse clock's
//! tick, which expires the sessions' deadlines on the [wheel](crate::wheel),
//! and the short retry of receives that found the pool empty. This plan
//! decides when a port timeout must be armed: a wake-up wanted later than
//! one already in flight needs none (that one's completion re-plans), so
//! the number in flight stays small. A leaf: it imports nothing of the crate.

use std::time::Duration;

/// Port timeouts in flight, by the time (since the server started) each fires.
#[derive(Debug, Default)]
pub(crate) struct TimerPlan {
    armed: Vec<Duration>,
}

impl TimerPlan {
    /// A wake-up is wanted at `at` (`now` is the time): how long a port
    /// timeout must be armed for, or `None` when one in flight fires by then.
    /// The caller arms it, or calls [`failed`](Self::failed) if it cannot.
    #[must_use]
    pub(crate) fn want(&mut self, at: Duration, now: Duration) -> Option<Duration> {
        if self.armed.iter().any(|&a| a <= at) {
            return None;
        }
        self.armed.push(at);
        Some(at.saturating_sub(now))
    }

    /// The port timeout armed for `at` completed (early or late, it is no
    /// longer in flight).
    pub(crate) fn fired(&mut self, at: Duration) {
        if let Some(i) = self.armed.iter().position(|&a| a == at) {
            self.armed.swap_remove(i);
        }
    }

    /// Arming the timeout for `at` failed: it is not in flight.
    pub(crate) fn failed(&mut self, at: Duration) {
        if let Some(i) = self.armed.iter().position(|&a| a == at) {
            self.armed.swap_remove(i);
        }
    }

    /// Port timeouts in flight.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.armed.len()
    }
}

/// The time of the next tick boundary after `now` for ticks of `tick`,
/// plus a millisecond: a timer that fires a hair early must not read the
/// tick before.
pub(crate) fn next_tick_at(now: Duration, tick: Duration) -> Duration {
    let tick = tick.as_nanos().max(1);
    let next = (now.as_nanos() / tick + 1) * tick;
    Duration::from_nanos(next.min(u64::MAX as u128) as u64) + Duration::from_millis(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_later_wake_up_rides_on_the_timeout_in_flight() {
        let mut p = TimerPlan::default();
        assert_eq!(p.want(100 * MS, Duration::ZERO), Some(100 * MS));
        assert_eq!(p.want(150 * MS, 10 * MS), None);
        assert_eq!(p.in_flight(), 1);
    }

    #[test]
    fn an_earlier_wake_up_arms_its_own_timeout() {
        let mut p = TimerPlan::default();
        assert_eq!(p.want(100 * MS, Duration::ZERO), Some(100 * MS));
        assert_eq!(p.want(12 * MS, 10 * MS), Some(2 * MS));
        assert_eq!(p.in_flight(), 2);
        p.fired(12 * MS);
        assert_eq!(p.in_flight(), 1, "the tick is still in flight");
        assert_eq!(p.want(101 * MS, 12 * MS), None);
        p.fired(100 * MS);
        assert_eq!(p.want(201 * MS, 100 * MS), Some(101 * MS), "the chain goes on");
    }

    #[test]
    fn a_timeout_that_fires_a_hair_early_does_not_stop_the_chain() {
        let mut p = TimerPlan::default();
        assert!(p.want(101 * MS, Duration::ZERO).is_some());
        // Completes at 100.9 ms: the next tick is planned for 101 ms again.
        p.fired(101 * MS);
        assert!(p.want(101 * MS, 100 * MS).is_some(), "armed again");
    }

    #[test]
    fn a_failed_arm_is_not_counted_in_flight() {
        let mut p = TimerPlan::default();
        let at = 50 * MS;
        assert!(p.want(at, Duration::ZERO).is_some());
        p.failed(at);
        assert_eq!(p.want(at, 1 * MS), Some(49 * MS), "tried again");
    }

    #[test]
    fn ticks_land_just_past_their_boundary() {
        assert_eq!(next_tick_at(Duration::ZERO, 100 * MS), 101 * MS);
        assert_eq!(next_tick_at(99 * MS, 100 * MS), 101 * MS);
        assert_eq!(next_tick_at(100 * MS, 100 * MS), 201 * MS);
    }
}
