//! `cport blocking`: a request/response server whose handlers sometimes
//! block (a sleep, or a synchronous file write with fsync and a read), the
//! server behind the hand-off benchmark (`scripts/bench-blocking.py`).
//!
//! Written on the port directly, as an IOCP server's workers loop on
//! `GetQueuedCompletionStatus`: each worker dequeues one completion at a
//! time (a batch would hold its other requests behind a blocked one).
//! A request is 16 bytes; byte 8 set to 1 asks for the blocking call; the
//! answer is the request itself. `--handoff` picks how a blocking handler
//! lets the others run: the port's automatic hand-off, a `Port::blocking`
//! scope around the call, or nothing (the slot stays blocked).

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, ValueEnum};
use cport::{Backend, Buf, Completion, GetError, Handle, Key, OpKind, Payload, Port};
use parking_lot::Mutex;

use crate::args::{parse_backend, parse_duration};

/// A request's size; the answer is the same bytes.
pub const REQUEST: usize = 16;

/// Arguments of `cport blocking`.
#[derive(Args, Debug)]
pub struct BlockingArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7500")]
    listen: SocketAddr,
    /// Worker threads.
    #[arg(long, default_value_t = 8)]
    threads: usize,
    /// Threads allowed to run at once (default: the CPUs this process may use).
    #[arg(long)]
    concurrency: Option<usize>,
    /// How a blocking handler lets the other workers run.
    #[arg(long, value_enum, default_value_t = HandoffMode::Auto)]
    handoff: HandoffMode,
    /// The blocking call.
    #[arg(long, value_enum, default_value_t = BlockKind::Sleep)]
    block: BlockKind,
    /// How long `--block sleep` sleeps.
    #[arg(long, default_value = "2ms", value_parser = parse_duration)]
    block_time: Duration,
    /// The completion port's backend: auto, uring or epoll.
    #[arg(long, default_value = "auto", value_parser = parse_backend)]
    backend: Backend,
    /// Print the port's hand-off counters on stdout at this interval.
    #[arg(long, value_parser = parse_duration)]
    stats_every: Option<Duration>,
}

impl BlockingArgs {
    /// A server on `listen` with `threads` workers, concurrency = the CPUs
    /// this process may use, sleeping `block_time` on a request that asks
    /// (what `cport models --block-every` serves as the completion port).
    pub fn sleeping(listen: SocketAddr, threads: usize, handoff: HandoffMode, block_time: Duration) -> Self {
        BlockingArgs {
            listen,
            threads,
            concurrency: None,
            handoff,
            block: BlockKind::Sleep,
            block_time,
            backend: Backend::Auto,
            stats_every: None,
        }
    }
}

/// How a handler that blocks lets the other workers run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum HandoffMode {
    /// The port notices the blocked worker and hands its slot off.
    Auto,
    /// The handler wraps the call in `Port::blocking` (no detection delay).
    Scope,
    /// Neither: the blocked worker keeps its slot.
    Off,
}

/// The blocking call a request may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BlockKind {
    /// `thread::sleep(--block-time)`.
    Sleep,
    /// Write 4 KiB to a file, fsync it, read it back (synchronous file work).
    Fsync,
}

struct Server {
    listener: Handle,
    next_key: AtomicU64,
    /// Each connection's handle and the bytes of a request not yet whole.
    conns: Mutex<HashMap<u64, (Handle, Vec<u8>)>>,
    mode: HandoffMode,
    block: BlockKind,
    block_time: Duration,
}

thread_local! {
    /// This worker's scratch file for `--block fsync` (unlinked at once).
    static SCRATCH: Option<File> = scratch_file().ok();
}

fn scratch_file() -> io::Result<File> {
    static N: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "cport-blocking-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let f = File::options().read(true).write(true).create_new(true).open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(f)
}

/// The blocking call itself.
pub fn block_once(kind: BlockKind, time: Duration) {
    match kind {
        BlockKind::Sleep => std::thread::sleep(time),
        BlockKind::Fsync => SCRATCH.with(|f| {
            if let Some(f) = f {
                let mut page = [7u8; 4096];
                let _ = f.write_all_at(&page, 0);
                let _ = f.sync_data();
                let _ = f.read_exact_at(&mut page, 0);
            }
        }),
    }
}

impl Server {
    fn on_completion(&self, port: &Port, mut c: Completion) {
        let key = c.key().0;
        match c.kind() {
            OpKind::Accept => {
                if let Some(stream) = c.take_accepted() {
                    let key = self.next_key.fetch_add(1, Ordering::Relaxed);
                    let _ = stream.set_nodelay(true);
                    if let Ok(h) = port.associate(stream, Key(key)) {
                        if port.recv(&h, Vec::with_capacity(4 * REQUEST), 0).is_ok() {
                            self.conns.lock().insert(key, (h, Vec::new()));
                        } else {
                            let _ = port.close(&h);
                        }
                    }
                }
                if !c.more() {
                    let _ = port.accept_multi(&self.listener, 0);
                }
            }
            OpKind::Recv => {
                let (res, payload) = c.into_parts();
                let mut buf = match (res, payload) {
                    (Ok(n), Payload::Buf(Buf::Vec(v))) if n > 0 => v,
                    // End of stream or an error: the connection is done.
                    _ => return self.close(port, key),
                };
                let mut requests = Vec::new();
                let h = {
                    let mut conns = self.conns.lock();
                    let Some((h, pending)) = conns.get_mut(&key) else {
                        return;
                    };
                    pending.extend_from_slice(&buf);
                    while pending.len() >= REQUEST {
                        requests.push(Bytes::copy_from_slice(&pending[..REQUEST]));
                        pending.drain(..REQUEST);
                    }
                    *h
                };
                for r in requests {
                    if r[8] == 1 {
                        match self.mode {
                            HandoffMode::Scope => port.blocking(|| block_once(self.block, self.block_time)),
                            HandoffMode::Auto | HandoffMode::Off => block_once(self.block, self.block_time),
                        }
                    }
                    if port.send(&h, r, 0).is_err() {
                        return self.close(port, key);
                    }
                }
                buf.clear();
                if port.recv(&h, buf, 0).is_err() {
                    self.close(port, key);
                }
            }
            // 16 bytes on a socket with room: a short send is not worth
            // handling apart; a failed one ends the connection.
            OpKind::Send if c.result().is_err() => self.close(port, key),
            _ => {}
        }
    }

    fn close(&self, port: &Port, key: u64) {
        if let Some((h, _)) = self.conns.lock().remove(&key) {
            let _ = port.close(&h);
        }
    }
}

/// Runs the server until the process is stopped.
///
/// # Errors
/// When the port or the listener cannot be set up.
pub fn run(a: BlockingArgs) -> io::Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let concurrency = a.concurrency.unwrap_or(cpus).max(1);
    let threads = a.threads.max(1);
    let port = Port::builder()
        .concurrency(concurrency)
        .backend(a.backend)
        .handoff(a.handoff == HandoffMode::Auto)
        .build()
        .map_err(io::Error::other)?;
    let socket = TcpListener::bind(a.listen)?;
    let addr = socket.local_addr()?;
    let listener = port.associate(socket, Key(0))?;
    port.accept_multi(&listener, 0)?;
    println!(
        "cport blocking: listening on {addr} (backend {}, {threads} workers, concurrency {concurrency}, hand-off {:?}, block {:?})",
        port.backend().name(),
        a.handoff,
        a.block
    );
    let server = std::sync::Arc::new(Server {
        listener,
        next_key: AtomicU64::new(1),
        conns: Mutex::new(HashMap::new()),
        mode: a.handoff,
        block: a.block,
        block_time: a.block_time,
    });
    let workers: Vec<_> = (0..threads)
        .map(|i| {
            let (port, server) = (port.clone(), server.clone());
            std::thread::Builder::new()
                .name(format!("blocking-worker-{i}"))
                .spawn(move || loop {
                    match port.get(None) {
                        Ok(c) => server.on_completion(&port, c),
                        Err(GetError::Timeout) => {}
                        Err(_) => return,
                    }
                })
        })
        .collect::<io::Result<_>>()?;
    if let Some(every) = a.stats_every {
        loop {
            std::thread::sleep(every);
            let s = port.stats();
            println!(
                "{{\"handoffs\":{},\"blocking_scopes\":{},\"blocked_now\":{},\"over_cap_ms\":{:.1},\"delay_p50_us\":{},\"delay_p99_us\":{},\"max_running\":{}}}",
                s.handoffs,
                s.blocking_scopes,
                s.blocked_now,
                s.over_cap.as_secs_f64() * 1e3,
                s.detection_delay_p50.map_or(0, |d| d.as_micros()),
                s.detection_delay_p99.map_or(0, |d| d.as_micros()),
                s.max_running
            );
        }
    }
    for w in workers {
        let _ = w.join();
    }
    Ok(())
}
