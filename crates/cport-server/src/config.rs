//! Settings resolved at start, and the coarse time they are counted in.

use std::time::Duration;

use crate::message::Framing;
pub(crate) use crate::wheel::Tick;

/// "Not scheduled" for wheel, linger and timer deadlines.
pub(crate) const NEVER: Tick = Tick::MAX;

/// A server's settings, as the sessions' state machines read them.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub name: String,
    pub framing: Framing,
    pub max_queued: usize,
    /// Output backlog at which a session's receiving pauses.
    pub high_water: usize,
    /// Output backlog at which a paused session's receiving resumes.
    pub low_water: usize,
    /// How long a session's queue may stay past the cap before it is cut.
    pub slow_ticks: Tick,
    /// The size of one pool buffer: parked input is delivered in pieces of it.
    pub recv_size: usize,
    pub idle_ticks: Option<Tick>,
    pub frame_ticks: Option<Tick>,
    pub linger_ticks: Tick,
    pub tick: Duration,
    pub multishot: bool,
    pub nodelay: bool,
    pub threads: usize,
}

impl Config {
    /// A duration in ticks, rounded so that a deadline counted from a
    /// session's last stamp never fires early. The stamp is the coarse clock
    /// as of the last tick, which the timer keeps at most one tick behind
    /// the real time even when its completion waits behind a batch: so two
    /// ticks more than the duration itself (a timeout fires up to two ticks
    /// late).
    pub(crate) fn ticks(tick: Duration, d: Duration) -> Tick {
        let t = d.as_nanos().div_ceil(tick.as_nanos().max(1)) + 2;
        t.min(u32::MAX as u128 / 2) as Tick
    }
}
