//! Helpers shared by the `cport` command's tests: run the binary as a child
//! process, learn where it listens from its stdout, signal it, count its
//! fds; line clients with timeouts.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub use rustix::process::{Pid, Signal};

/// How long a test waits for something that should happen soon.
pub const LONG: Duration = Duration::from_secs(20);

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

/// A running `cport` child process.
pub struct Cli {
    child: Child,
    addrs: HashMap<String, SocketAddr>,
    lines: mpsc::Receiver<String>,
    _data: TempDir,
}

impl Cli {
    /// Runs `cport ARGS` and waits until it prints a listening line for
    /// every server named in `servers` ("echo", "chat").
    pub fn spawn(args: &[&str], servers: &[&str]) -> Cli {
        raise_fd_limit();
        let (mut cmd, data) = command(args);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn cport");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut cli = Cli {
            child,
            addrs: HashMap::new(),
            lines: rx,
            _data: data,
        };
        let end = Instant::now() + LONG;
        while servers.iter().any(|s| !cli.addrs.contains_key(*s)) {
            let line = cli
                .lines
                .recv_timeout(end.saturating_duration_since(Instant::now()))
                .expect("cport printed where it listens");
            // "cport echo: listening on 127.0.0.1:7000 (backend uring, ...)"
            if let Some((head, rest)) = line.split_once(": listening on ") {
                let name = head.trim_start_matches("cport ").to_string();
                let addr = rest.split_whitespace().next().unwrap().parse().unwrap();
                assert!(
                    rest.contains("backend uring") || rest.contains("backend epoll"),
                    "{line}"
                );
                cli.addrs.insert(name, addr);
            }
        }
        cli
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

/// A line-protocol client with timeouts.
pub struct LineClient {
    /// The connection (public for `shutdown`, clones and raw writes).
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl LineClient {
    /// Connects to `addr`, with generous read and write timeouts.
    pub fn connect(addr: SocketAddr) -> LineClient {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(LONG)).unwrap();
        stream.set_write_timeout(Some(LONG)).unwrap();
        LineClient {
            stream,
            buf: Vec::new(),
        }
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

    /// The next line, without its newline; `None` at end of stream.
    pub fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf) {
                let rest = self.buf.split_off(i + 1);
                let mut line = std::mem::replace(&mut self.buf, rest);
                line.pop();
                return Some(String::from_utf8(line).unwrap());
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("read: {e}"),
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
}
