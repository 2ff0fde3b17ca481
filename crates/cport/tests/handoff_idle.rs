//! A port that is never starved (every slot held with work and a thread
//! waiting) never wakes its hand-off monitor: alone in its test binary, so
//! no other port's monitor is counted.

#[allow(unused_imports)] // the two-backend macro is not needed here
use cport_testutil::port as util;

use std::thread;
use std::time::Duration;

use cport::Key;
use util::*;

/// With hand-off on and nothing starved, the monitor sleeps: an idle port
/// and one that is busy below its cap make no hand-off and no wake-ups.
#[test]
fn an_unsaturated_port_wakes_no_monitor() {
    // One thread at concurrency 1, as `cport echo` runs: every slot held, but
    // nobody waits for one.
    let port = port_with(cport::Backend::IoUring, |b| b.concurrency(1));
    // Let the monitor start and park.
    thread::sleep(Duration::from_millis(50));
    let task = std::fs::read_dir("/proc/self/task").unwrap();
    let monitor = task
        .filter_map(|e| {
            let dir = e.ok()?.path();
            let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
            (comm.trim() == "cport-handoff").then_some(dir)
        })
        .collect::<Vec<_>>();
    assert_eq!(monitor.len(), 1, "one monitor thread for the one port");
    // The monitor's context switches: this port's traffic must add none.
    let switches = || -> u64 {
        monitor
            .iter()
            .filter_map(|d| std::fs::read_to_string(d.join("status")).ok())
            .flat_map(|s| {
                s.lines()
                    .filter(|l| l.contains("ctxt_switches"))
                    .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                    .collect::<Vec<_>>()
            })
            .sum()
    };
    // Wait until the monitor has parked (its count holds still), however
    // slowly a loaded machine starts it.
    let mut before = switches();
    let deadline = std::time::Instant::now() + LONG;
    loop {
        thread::sleep(Duration::from_millis(20));
        let now = switches();
        if now == before {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the monitor never settled");
        before = now;
    }
    for i in 0..2000u64 {
        port.post(Key(1), 0, i).unwrap();
        assert_eq!(next(&port).ctx(), i);
    }
    thread::sleep(Duration::from_millis(50));
    assert_eq!(port.stats().handoffs, 0);
    assert_eq!(switches(), before, "the monitor woke on an unsaturated port");
}
