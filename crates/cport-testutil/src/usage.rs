//! What a process uses, read from /proc (fds, threads, RSS, CPU time), the
//! tolerance a test allows after a case, and a pids cgroup to run a child
//! in: how a test tells that a server came back flat.

use std::path::PathBuf;
use std::time::Duration;

/// What a process uses, from /proc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Open file descriptors (/proc/PID/fd).
    pub fds: usize,
    /// Threads, io_uring kernel workers that are in an operation included
    /// (/proc/PID/task; idle ones waiting for work are not counted).
    pub threads: usize,
    /// Resident memory in KiB (`VmRSS` of /proc/PID/status).
    pub rss_kib: u64,
    /// User plus system CPU time (/proc/PID/stat).
    pub cpu: Duration,
}

impl Usage {
    /// Reads process `pid`'s usage; `None` once it is gone.
    pub fn of(pid: u32) -> Option<Usage> {
        let count = |dir: &str| std::fs::read_dir(format!("/proc/{pid}/{dir}")).map(|d| d.count());
        let fds = count("fd").ok()?;
        // An io_uring worker waiting for work (wchan `io_wq_worker`) holds
        // no I/O: the kernel keeps the last one of its pool past the 5 s
        // idle timeout. One parked in an operation (a splice into a full
        // socket, say) is counted.
        let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
            .ok()?
            .flatten()
            .filter(|t| {
                let read = |f: &str| std::fs::read_to_string(t.path().join(f)).unwrap_or_default();
                !(read("comm").starts_with("iou-wrk") && read("wchan").trim() == "io_wq_worker")
            })
            .count();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may hold spaces): utime and
        // stime are the 12th and 13th.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        // USER_HZ: 100 on every Linux architecture (fixed by the ABI).
        let hz = 100;
        Some(Usage {
            fds,
            threads,
            rss_kib,
            cpu: Duration::from_millis(ticks * 1000 / hz),
        })
    }

    /// Whether `self` is no more than `tol` above `before`.
    pub fn within(&self, before: &Usage, tol: Tolerance) -> bool {
        self.fds <= before.fds + tol.fds
            && self.threads <= before.threads + tol.threads
            && self.rss_kib <= before.rss_kib + tol.rss_kib
    }
}

/// How far above its starting point a server may stay after a case.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    /// Extra fds (0: every connection's fd was closed).
    pub fds: usize,
    /// Extra threads.
    pub threads: usize,
    /// Extra resident memory, KiB (the allocator keeps some freed memory).
    pub rss_kib: u64,
}

impl Tolerance {
    /// After connection-only cases: no fd, no thread, 8 MiB.
    pub const CONNECTIONS: Tolerance = Tolerance {
        fds: 0,
        threads: 0,
        rss_kib: 8 << 10,
    };
    /// After cases that moved tens of MiB: the allocator may keep a few
    /// send-queue caps' worth (the default cap is 4 MiB).
    pub const BULK: Tolerance = Tolerance {
        fds: 0,
        threads: 0,
        rss_kib: 32 << 10,
    };
}

/// A pids cgroup the test creates (cgroup v2 with the pids controller, or
/// the v1 pids hierarchy), limiting the tasks (threads included) of what
/// runs in it; removed on drop. RLIMIT_NPROC would not do: root ignores it.
pub struct PidsCgroup {
    pub(crate) dir: PathBuf,
}

impl PidsCgroup {
    /// A new cgroup allowing at most `max` tasks; `None` if this machine
    /// offers no writable pids controller.
    pub fn create(max: usize) -> Option<PidsCgroup> {
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let name = format!(
            "cport-faults-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let v2 = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .map(|c| c.split_whitespace().any(|w| w == "pids"))
            .unwrap_or(false);
        let parent = if v2 { "/sys/fs/cgroup" } else { "/sys/fs/cgroup/pids" };
        let dir = PathBuf::from(parent).join(name);
        std::fs::create_dir(&dir).ok()?;
        let cg = PidsCgroup { dir };
        std::fs::write(cg.dir.join("pids.max"), max.to_string()).ok()?;
        Some(cg)
    }
}

impl Drop for PidsCgroup {
    fn drop(&mut self) {
        // The server was killed just before; its tasks may take a moment to go.
        for _ in 0..100 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
