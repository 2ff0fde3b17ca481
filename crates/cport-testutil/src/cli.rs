//! Helpers shared by the `cport` command's tests (the fault suite's
//! included): run the binary as a child process (on a chosen backend, under
//! a low open-file limit or in a pids cgroup), learn where it listens from
//! its stdout, signal it, read what it uses; line clients with timeouts.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub use crate::usage::{PidsCgroup, Tolerance, Usage};

pub use rustix::process::{Pid, Signal};

/// How long a test waits for something that should happen soon.
pub const LONG: Duration = Duration::from_secs(20);

/// `cport serve` with every server on a free loopback port: what a test
/// of the whole set starts (add `--root DIR` and the like with
/// [`serve_args`]).
pub const SERVE: [&str; 9] = [
    "serve",
    "--echo",
    "127.0.0.1:0",
    "--chat",
    "127.0.0.1:0",
    "--game",
    "127.0.0.1:0",
    "--http",
    "127.0.0.1:0",
];

/// [`SERVE`] followed by `extra`.
pub fn serve_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    SERVE.iter().copied().chain(extra.iter().copied()).collect()
}

/// The `cport` binary cargo built for this test run: `CARGO_BIN_EXE_cport`
/// when cargo sets it at run time, else beside the test binary's `deps/`.
pub fn cport_bin() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("CARGO_BIN_EXE_cport") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    dir.join("cport")
}

/// `cport ARGS`, logging at warn, ready to run, with its chat history in a
/// scratch directory (not the source tree) that lives as long as the
/// returned guard.
pub fn command(args: &[&str]) -> (Command, TempDir) {
    let mut cmd = Command::new(cport_bin());
    cmd.args(args).env("RUST_LOG", "warn");
    let data = tempfile::Builder::new()
        .prefix("cport-test-data-")
        .tempdir()
        .expect("a scratch data directory");
    cmd.env("CPORT_DATA", data.path());
    (cmd, data)
}

/// Runs `cport ARGS` to the end, checks it succeeded (failing the test with
/// its stderr if not), and parses what it printed as JSON.
pub fn run_json(args: &[&str]) -> serde_json::Value {
    let (mut cmd, _data) = command(args);
    let out = cmd.output().expect("run cport");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

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

    /// Starts the server on `backend` (`--backend`, checked against the
    /// listening lines).
    pub fn spawn(self, backend: Backend) -> Cli {
        self.start(Some(backend))
    }

    /// Starts the server, on the backend its arguments or defaults pick
    /// when `backend` is `None`.
    pub fn start(self, backend: Option<Backend>) -> Cli {
        raise_fd_limit();
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
        argv.push(cport_bin().to_string_lossy().into_owned());
        argv.extend(self.args.iter().cloned());
        if let Some(b) = backend {
            argv.extend(["--backend".into(), b.flag().into()]);
        }
        // Each server keeps its data (the chat's history database) in a
        // directory of its own: two servers sharing one database (the same
        // case on both backends runs at once) fail at start with "database
        // is locked".
        let data = tempfile::Builder::new()
            .prefix("cport-test-data-")
            .tempdir()
            .expect("a scratch data directory");
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .env("CPORT_DATA", data.path())
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1");
        if backend.is_some() {
            cmd.env_remove("CPORT_BACKEND");
        }
        let mut child = cmd
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
        let mut cli = Cli {
            child,
            backend,
            addrs: HashMap::new(),
            lines,
            stderr,
            _cgroup: self.cgroup,
            _data: data,
        };
        let end = Instant::now() + LONG;
        while self.servers.iter().any(|s| !cli.addrs.contains_key(*s)) {
            let Ok(line) = cli.lines.recv_timeout(end.saturating_duration_since(Instant::now())) else {
                panic!("cport did not announce {:?}: {:?}", self.servers, cli.stderr());
            };
            // "cport echo: listening on 127.0.0.1:7000 (backend uring, ...)"
            if let Some((head, rest)) = line.split_once(": listening on ") {
                match backend {
                    Some(b) => assert!(rest.contains(&format!("backend {}", b.flag())), "{line}"),
                    None => assert!(
                        rest.contains("backend uring") || rest.contains("backend epoll"),
                        "{line}"
                    ),
                }
                let name = head.trim_start_matches("cport ").to_string();
                let addr = rest.split_whitespace().next().unwrap().parse().unwrap();
                cli.addrs.insert(name, addr);
            }
        }
        cli
    }
}

/// A running `cport` child process (killed on drop).
pub struct Cli {
    child: Child,
    /// The backend it was started on (`None`: the one it picked).
    pub backend: Option<Backend>,
    addrs: HashMap<String, SocketAddr>,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<Vec<String>>>,
    // Removed after the child is gone (fields drop after `Drop::drop`).
    _cgroup: Option<PidsCgroup>,
    _data: TempDir,
}

impl Cli {
    /// Runs `cport ARGS` and waits until it prints a listening line for
    /// every server named in `servers` ("echo", "chat").
    pub fn spawn(args: &[&str], servers: &[&str]) -> Cli {
        Launch::new(args, servers).start(None)
    }

    /// Where server `name` listens.
    pub fn addr(&self, name: &str) -> SocketAddr {
        self.addrs[name]
    }

    /// The child's pid.
    pub fn pid(&self) -> Pid {
        Pid::from_child(&self.child)
    }

    /// Open fds of the child.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// What the server uses now.
    pub fn usage(&self) -> Usage {
        Usage::of(self.child.id()).expect("the server is running")
    }

    /// The server's threads as "name state wchan", to tell what stayed.
    pub fn threads(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{}/task", self.child.id())) else {
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

    /// Sends `sig` to the child.
    pub fn signal(&self, sig: Signal) {
        rustix::process::kill_process(self.pid(), sig).expect("signal cport");
    }

    /// Waits up to `limit` for the child to exit.
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

    /// Lines the child printed after its listening lines, waiting up to `limit` for each.
    pub fn next_line(&self, limit: Duration) -> Option<String> {
        self.lines.recv_timeout(limit).ok()
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Lets the test open a thousand sockets and more.
pub fn raise_fd_limit() {
    crate::raise_fd_limit();
}

/// A connected stream with read and write timeouts of [`LONG`].
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(LONG)).unwrap();
    s.set_write_timeout(Some(LONG)).unwrap();
    s
}

/// A line-protocol (chat) client with timeouts.
pub struct LineClient {
    /// The connection (public for `shutdown`, clones and raw writes).
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl LineClient {
    /// Connects to `addr`, with read and write timeouts of [`LONG`].
    pub fn connect(addr: SocketAddr) -> LineClient {
        LineClient::from_stream(connect(addr))
    }

    /// A client over a stream connected already (a clone, say).
    pub fn from_stream(stream: TcpStream) -> LineClient {
        LineClient {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes `text` as it is (the caller adds the newline).
    pub fn send(&mut self, text: &str) {
        self.stream.write_all(text.as_bytes()).unwrap();
    }

    /// The next line without its newline; `None` at end of stream or reset.
    pub fn line(&mut self) -> Option<String> {
        self.try_line().unwrap_or_else(|e| panic!("read: {e}"))
    }

    /// [`line`](Self::line), with a read timeout as an error.
    pub fn try_line(&mut self) -> io::Result<Option<String>> {
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf) {
                let rest = self.buf.split_off(i + 1);
                let mut line = std::mem::replace(&mut self.buf, rest);
                line.pop();
                return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
            }
            let mut chunk = [0u8; 16384];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(None),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads lines until one satisfies `f`; returns it.
    pub fn until(&mut self, mut f: impl FnMut(&str) -> bool) -> String {
        loop {
            let l = self.line().expect("stream ended before the expected line");
            if f(&l) {
                return l;
            }
        }
    }

    /// Reads lines until one equals `want`.
    pub fn until_line(&mut self, want: &str) {
        loop {
            match self.line() {
                Some(l) if l == want => return,
                Some(_) => {}
                None => panic!("stream ended before {want:?}"),
            }
        }
    }

    /// A chat member: renamed to `nick`, in `room`.
    pub fn member(addr: SocketAddr, nick: &str, room: &str) -> LineClient {
        let mut c = LineClient::connect(addr);
        c.send(&format!("/nick {nick}\n/join {room}\n"));
        c.until_line(&format!("* {nick} joined {room}"));
        c
    }
}
