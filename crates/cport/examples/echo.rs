//! The classic IOCP echo server, written against the port directly.
//!
//! One listener with a multishot accept, one multishot pooled receive per
//! connection, and every received buffer sent back as it is (no copy). As in
//! any IOCP server, each connection has at most one send in flight, so a
//! short send is finished before later bytes go. A pool of worker threads
//! loops on `get`, as an IOCP server's workers loop on
//! `GetQueuedCompletionStatus`.
//!
//! ```text
//! cargo run --release -p cport --example echo -- 127.0.0.1:7000 [THREADS] [unbatched]
//! ```
//!
//! `unbatched` submits every operation at once instead of once per batch
//! (for measuring what batching saves; see docs/ARCHITECTURE.md).

use std::collections::{HashMap, VecDeque};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};

use cport::{Buf, BufPool, Completion, Handle, Key, OpKind, Payload, Port, WorkerPool};
use parking_lot::Mutex;
use rustix::io::Errno;

/// The listener's key; connections get keys from 1 up.
const LISTENER: Key = Key(0);
/// Receiving pauses while a connection has this many buffers waiting to go.
const MAX_QUEUED: usize = 16;

/// Per-connection state (IOCP's per-handle data).
struct Conn {
    h: Handle,
    queue: VecDeque<Buf>,
    sending: bool,
    receiving: bool,
    eof: bool,
}

struct Server {
    pool: BufPool,
    listener: Handle,
    next_key: AtomicU64,
    conns: Mutex<HashMap<u64, Conn>>,
}

impl Server {
    /// After any change to a connection: send its next buffer, keep a receive
    /// armed, or close it once it is finished and owed nothing.
    fn drive(&self, port: &Port, key: u64) {
        let mut conns = self.conns.lock();
        let Some(c) = conns.get_mut(&key) else { return };
        if !c.sending {
            if let Some(buf) = c.queue.pop_front() {
                c.sending = port.send(&c.h, buf, 0).is_ok();
            }
        }
        if !c.receiving && !c.eof && c.queue.len() < MAX_QUEUED {
            c.receiving = port.recv_pooled_multi(&c.h, &self.pool, 0).is_ok();
        }
        if c.eof && !c.sending && !c.receiving && c.queue.is_empty() {
            let _ = port.close(&c.h);
            conns.remove(&key);
        }
    }

    fn on_completion(&self, port: &Port, mut c: Completion) {
        let key = c.key().0;
        match c.kind() {
            OpKind::Accept => {
                if let Some(stream) = c.take_accepted() {
                    let key = self.next_key.fetch_add(1, Ordering::Relaxed);
                    if let Ok(h) = port.associate(stream, Key(key)) {
                        let conn = Conn {
                            h,
                            queue: VecDeque::new(),
                            sending: false,
                            receiving: false,
                            eof: false,
                        };
                        self.conns.lock().insert(key, conn);
                        self.drive(port, key);
                    }
                }
                if !c.more() {
                    // The multishot accept ended (an error or a cancel): re-arm it.
                    let _ = port.accept_multi(&self.listener, 0);
                }
            }
            OpKind::RecvPooled => {
                let more = c.more();
                {
                    let mut conns = self.conns.lock();
                    let Some(conn) = conns.get_mut(&key) else { return };
                    conn.receiving = more;
                    match c.into_parts() {
                        // Queue the very buffer the kernel filled.
                        (Ok(n), Payload::Buf(buf)) if n > 0 => conn.queue.push_back(buf),
                        // Pool momentarily empty: `drive` re-arms as sends return buffers.
                        (Err(e), _) if e.raw_os_error() == Some(Errno::NOBUFS.raw_os_error()) => {}
                        // End of stream or an error.
                        _ if !more => conn.eof = true,
                        _ => {}
                    }
                }
                self.drive(port, key);
            }
            OpKind::Send => {
                {
                    let mut conns = self.conns.lock();
                    let Some(conn) = conns.get_mut(&key) else { return };
                    conn.sending = false;
                    match c.into_parts() {
                        // A short send: the rest goes before anything queued after it.
                        (Ok(n), Payload::Buf(b)) if n < b.len() => conn
                            .queue
                            .push_front(Buf::Bytes(bytes::Bytes::copy_from_slice(&b[n..]))),
                        (Ok(_), _) => {}
                        (Err(_), _) => {
                            conn.queue.clear();
                            conn.eof = true;
                        }
                    }
                }
                self.drive(port, key);
            }
            _ => {}
        }
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7000".into());
    let threads: usize = args.next().and_then(|t| t.parse().ok()).unwrap_or(1);
    let batched = args.next().as_deref() != Some("unbatched");

    let port = Port::builder()
        .concurrency(threads)
        .batch_submissions(batched)
        .build()?;
    // Receive memory is taken only when data arrives: idle connections pin none.
    let pool = port.buf_pool(4096, 4096)?;
    let listener = port.associate(TcpListener::bind(&addr)?, LISTENER)?;
    port.accept_multi(&listener, 0)?;
    eprintln!("echo on {addr}, backend {:?}, {threads} worker(s)", port.backend());

    let server = Server {
        pool,
        listener,
        next_key: AtomicU64::new(1),
        conns: Mutex::new(HashMap::new()),
    };
    let workers = WorkerPool::start(&port, threads, move |port, c| server.on_completion(port, c))?;
    // Serve until Ctrl-C (the default SIGINT action ends the process).
    workers.join();
    Ok(())
}
