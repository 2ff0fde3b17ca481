//! The server under test: the real `cport` binary as a child process on a
//! chosen backend, optionally under a low open-file limit or in a pids
//! cgroup, and what it uses (fds, threads, RSS, CPU time) read from /proc.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};

/// How long a test waits for something that should happen soon.
pub const LONG: Duration = Duration::from_secs(20);

/// The completion port's backend the server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// io_uring (`--backend uring`).
    Uring,
    /// epoll readiness turned into completions (`--backend epoll`).
    Epoll,
}

impl Backend {
    /// The `--backend` value.
    pub fn flag(self) -> &'static str {
        match self {
            Backend::Uring => "uring",
            Backend::Epoll => "epoll",
        }
    }

    /// Whether this machine can run it (io_uring may be disabled by sysctl).
    pub fn available(self) -> bool {
        match self {
            Backend::Epoll => true,
            Backend::Uring => std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
                .map(|s| s.trim() == "0")
                .unwrap_or(true),
        }
    }
}

/// How to start the server: its arguments, the servers it must announce,
/// and what it runs under.
pub struct Launch<'a> {
    args: Vec<String>,
    servers: Vec<&'a str>,
    nofile: Option<u64>,
    cgroup: Option<PidsCgroup>,
}

impl<'a> Launch<'a> {
    /// `cport ARGS`, ready once it announced every server in `servers`.
    pub fn new(args: &[&str], servers: &[&'a str]) -> Self {
        Launch {
            args: args.iter().map(|s| s.to_string()).collect(),
            servers: servers.to_vec(),
            nofile: None,
            cgroup: None,
        }
    }

    /// Runs the server under `RLIMIT_NOFILE` = `n` (soft and hard). As
    /// root, `CAP_SYS_RESOURCE` is dropped from its bounding set too, or
    /// the server would lift the hard limit itself (it raises its limit to
    /// `fs.nr_open` when it may).
    pub fn nofile(mut self, n: u64) -> Self {
        self.nofile = Some(n);
        self
    }

    /// Runs the server in `cgroup` (it joins before `exec`).
    pub fn cgroup(mut self, cgroup: PidsCgroup) -> Self {
        self.cgroup = Some(cgroup);
        self
    }

    /// Starts the server on `backend`.
    pub fn spawn(self, backend: Backend) -> Server {
        raise_fd_limit();
        let cport = env!("CARGO_BIN_EXE_cport");
        let mut argv: Vec<String> = Vec::new();
        if let Some(n) = self.nofile {
            argv.extend(["prlimit".into(), format!("--nofile={n}:{n}")]);
            // /proc/self belongs to the effective user.
            let root = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0;
            if root {
                argv.extend(["setpriv".into(), "--bounding-set=-sys_resource".into()]);
            }
        }
        if let Some(cg) = &self.cgroup {
            // The shell joins the cgroup, then becomes cport (same pid).
            let procs = cg.dir.join("cgroup.procs");
            argv.extend([
                "sh".into(),
                "-c".into(),
                format!("echo $$ > {} && exec \"$@\"", procs.display()),
                "sh".into(),
            ]);
        }
        argv.push(cport.into());
        argv.extend(self.args.iter().cloned());
        argv.extend(["--backend".into(), backend.flag().into()]);
        // Each server keeps its data (the chat's history database) in a
        // directory of its own: two servers sharing one database (the same
        // case on both backends runs at once) fail at start with "database
        // is locked".
        let data = tempfile::Builder::new().prefix("cport-faults-data-").tempdir().unwrap();
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .env("CPORT_DATA", data.path())
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .env_remove("CPORT_BACKEND")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {argv:?}: {e}"));
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let err = child.stderr.take().unwrap();
        let keep = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { return };
                eprintln!("[cport] {line}");
                let mut kept = keep.lock().unwrap();
                // Bounded: the first lines are the ones that explain a failure.
                if kept.len() < 10_000 {
                    kept.push(line);
                }
            }
        });
        let mut server = Server {
            child,
            backend,
            addrs: HashMap::new(),
            lines,
            stderr,
            _cgroup: self.cgroup,
            _data: data,
        };
        let end = Instant::now() + LONG;
        while self.servers.iter().any(|s| !server.addrs.contains_key(*s)) {
            let Ok(line) = server.lines.recv_timeout(end.saturating_duration_since(Instant::now())) else {
                panic!("cport did not announce {:?}: {:?}", self.servers, server.stderr());
            };
            // "cport echo: listening on 127.0.0.1:7000 (backend uring, ...)"
            if let Some((head, rest)) = line.split_once(": listening on ") {
                assert!(rest.contains(&format!("backend {}", backend.flag())), "{line}");
                let name = head.trim_start_matches("cport ").to_string();
                let addr = rest.split_whitespace().next().unwrap().parse().unwrap();
                server.addrs.insert(name, addr);
            }
        }
        server
    }
}

/// A running `cport` child process.
pub struct Server {
    child: Child,
    /// The backend it runs on.
    pub backend: Backend,
    addrs: HashMap<String, SocketAddr>,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<Vec<String>>>,
    // Removed after the child is gone (fields drop after `Drop::drop`).
    _cgroup: Option<PidsCgroup>,
    _data: tempfile::TempDir,
}

impl Server {
    /// Where server `name` ("echo", "chat", "http") listens.
    pub fn addr(&self, name: &str) -> SocketAddr {
        self.addrs[name]
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server uses now.
    pub fn usage(&self) -> Usage {
        Usage::of(self.pid()).expect("the server is running")
    }

    /// The server's threads as "name state wchan", to tell what stayed.
    pub fn threads(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) else {
            return Vec::new();
        };
        dir.flatten()
            .map(|t| {
                let read = |f: &str| std::fs::read_to_string(t.path().join(f)).unwrap_or_default();
                let stat = read("stat");
                let state = stat
                    .rsplit(')')
                    .next()
                    .and_then(|r| r.split_whitespace().next())
                    .unwrap_or("?")
                    .to_owned();
                format!("{} {state} {}", read("comm").trim(), read("wchan").trim())
            })
            .collect()
    }

    /// What the server printed on stderr so far.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Fails the test if anything in the server panicked (a handler's
    /// panic is caught and logged; a thread's is printed by the runtime).
    pub fn assert_no_panic(&self) {
        let bad: Vec<String> = self.stderr().into_iter().filter(|l| l.contains("panicked")).collect();
        assert!(bad.is_empty(), "the server reported: {bad:?}");
    }

    /// Sends `sig` to the server.
    pub fn signal(&self, sig: Signal) {
        let pid = Pid::from_raw(self.pid() as i32).expect("a child's pid is positive");
        kill_process(pid, sig).expect("signal cport");
    }

    /// Waits up to `limit` for the server to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + limit;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The next stdout line, waiting up to `limit`.
    pub fn next_line(&self, limit: Duration) -> Option<String> {
        self.lines.recv_timeout(limit).ok()
    }

    /// What the server uses once it is quiet: fds and threads unchanged
    /// over 200 ms (connections just closed by a client take a moment).
    pub fn quiet_usage(&self) -> Usage {
        let mut last = self.usage();
        for _ in 0..30 {
            std::thread::sleep(Duration::from_millis(200));
            let now = self.usage();
            if (now.fds, now.threads) == (last.fds, last.threads) {
                return now;
            }
            last = now;
        }
        last
    }

    /// Waits (up to 15 s: io_uring's kernel workers finish what they run)
    /// until the server is back within `tol` of `before`, then asserts it.
    pub fn assert_flat(&self, before: &Usage, tol: Tolerance) -> Usage {
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            let now = self.usage();
            if now.within(before, tol) {
                return now;
            }
            if Instant::now() >= end {
                panic!(
                    "{:?}: resources not back to flat (tolerance {tol:?}):\n before {before:?}\n after  {now:?}\n threads (name state wchan) {:?}",
                    self.backend,
                    self.threads()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

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

/// Lets the test process open as many sockets as its hard limit allows.
pub fn raise_fd_limit() {
    cport_testutil::raise_fd_limit();
}

/// A pids cgroup the test creates (cgroup v2 with the pids controller, or
/// the v1 pids hierarchy), limiting the tasks (threads included) of what
/// runs in it; removed on drop. RLIMIT_NPROC would not do: root ignores it.
pub struct PidsCgroup {
    dir: PathBuf,
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
