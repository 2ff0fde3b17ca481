//! CPU time spent by this process or by one thread.
//!
//! The shootout compares models by server CPU time per echoed message as well
//! as by messages per second: on a small machine the load generator can
//! saturate its own core first, and then only CPU time tells the models apart.

use std::io;
use std::ops::Sub;
use std::time::Duration;

use nix::sys::resource::{getrusage, Usage, UsageWho};
use nix::sys::time::TimeVal;

/// CPU time, split as the kernel accounts it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct CpuTime {
    /// Time spent running the program's own code.
    pub user: Duration,
    /// Time spent in the kernel on the program's behalf (system calls,
    /// network stack work charged to it).
    pub system: Duration,
}

impl CpuTime {
    /// CPU time used so far by the whole process, every thread included.
    ///
    /// # Errors
    ///
    /// Whatever `getrusage(2)` reports; in practice it does not fail.
    pub fn process() -> io::Result<CpuTime> {
        usage(UsageWho::RUSAGE_SELF)
    }

    /// CPU time used so far by the calling thread alone.
    ///
    /// # Errors
    ///
    /// Whatever `getrusage(2)` reports; in practice it does not fail.
    pub fn thread() -> io::Result<CpuTime> {
        usage(UsageWho::RUSAGE_THREAD)
    }

    /// User and system time together.
    pub fn total(self) -> Duration {
        self.user + self.system
    }
}

/// The CPU time between two readings, `later - earlier`; zero where a reading
/// went backwards (it should not, but a table must not panic over it).
impl Sub for CpuTime {
    type Output = CpuTime;

    fn sub(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }
}

fn usage(who: UsageWho) -> io::Result<CpuTime> {
    let usage: Usage = getrusage(who)?;
    Ok(CpuTime {
        user: duration(usage.user_time()),
        system: duration(usage.system_time()),
    })
}

fn duration(time: TimeVal) -> Duration {
    let secs = u64::try_from(time.tv_sec()).unwrap_or(0);
    let micros = u32::try_from(time.tv_usec()).unwrap_or(0);
    Duration::from_secs(secs) + Duration::from_micros(micros.into())
}

#[cfg(test)]
mod tests {
    use super::CpuTime;

    #[test]
    fn cpu_time_grows_with_work() {
        let before = CpuTime::thread().unwrap();
        let mut x = 0_u64;
        while (CpuTime::thread().unwrap() - before).total().is_zero() {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let process = CpuTime::process().unwrap();
        assert!(process.total() >= (CpuTime::thread().unwrap() - before).total());
    }
}
