//! The classic IOCP echo server, written against the port directly.
//!
//! One listener with a multishot accept, one multishot pooled receive per
//! connection, and every received buffer sent straight back (no copy): a
//! pool of worker threads loops on `get`, exactly as an IOCP server's
//! workers loop on `GetQueuedCompletionStatus`.
//!
//! ```text
//! cargo run --release -p cport --example echo -- 127.0.0.1:7000 [THREADS] [unbatched]
//! ```
//!
//! `unbatched` submits every operation at once instead of once per batch
//! (for measuring what batching saves; see docs/ARCHITECTURE.md).

use std::net::TcpListener;

use cport::{Completion, Key, OpKind, Payload, Port, WorkerPool};

/// The listener's key; connections get keys from 1 up.
const LISTENER: Key = Key(0);

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

    let next_key = std::sync::atomic::AtomicU64::new(1);
    let workers = WorkerPool::start(&port, threads, move |port: &Port, mut c: Completion| {
        match c.kind() {
            OpKind::Accept => {
                if let Some(stream) = c.take_accepted() {
                    let key = Key(next_key.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
                    if let Ok(h) = port.associate(stream, key) {
                        let _ = port.recv_pooled_multi(&h, &pool, 0);
                    }
                }
                if !c.more() {
                    // The multishot accept ended (error or cancel): re-arm it.
                    let _ = port.accept_multi(&listener, 0);
                }
            }
            OpKind::RecvPooled => {
                let h = c.handle().expect("receives are issued on a handle");
                let more = c.more();
                match c.into_parts() {
                    (Ok(n), Payload::Buf(buf)) if n > 0 => {
                        // Echo the very buffer the kernel filled.
                        let _ = port.send(&h, buf, 0);
                        if !more {
                            let _ = port.recv_pooled_multi(&h, &pool, 0);
                        }
                    }
                    // Pool momentarily empty: buffers come back as sends finish.
                    (Err(e), _) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        let _ = port.recv_pooled_multi(&h, &pool, 0);
                    }
                    // End of stream or an error: done with this connection.
                    _ if !more => {
                        let _ = port.close(&h);
                    }
                    _ => {}
                }
            }
            OpKind::Send => {
                // Dropping the completion returns the pooled buffer to the
                // pool. A blocking-mode socket sends a 4 KiB chunk whole; a
                // short count would mean the connection failed meanwhile.
                if let (Ok(n), Payload::Buf(b)) = c.into_parts() {
                    if n < b.len() {
                        eprintln!("short send: {n} of {}", b.len());
                    }
                }
            }
            _ => {}
        }
    })?;

    // Serve until Ctrl-C (the default SIGINT action ends the process).
    workers.join();
    Ok(())
}
