//! Benchmark peer for `cport blocking`: the same 16-byte request/response
//! protocol (byte 8 set: make the blocking call first), on tokio's
//! multi-thread runtime, a task per connection.
//!
//! `tokio-blocking ADDR MODE BLOCK [BLOCK_MS] [WORKERS]`
//! - MODE `inline`: the task makes the blocking call itself (it stalls its
//!   worker thread, as a handler with no hand-off stalls a cport slot);
//!   `spawn_blocking`: the call runs on tokio's blocking pool and the task awaits it.
//! - BLOCK `sleep` (BLOCK_MS, default 2) or `fsync` (4 KiB written to a
//!   file, fsync, read back).
//! - WORKERS defaults to the CPUs the process may use (tokio's default).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const REQUEST: usize = 16;

thread_local! {
    static SCRATCH: Option<File> = scratch_file().ok();
}

fn scratch_file() -> std::io::Result<File> {
    static N: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "tokio-blocking-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let f = File::options().read(true).write(true).create_new(true).open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(f)
}

fn block_once(fsync: bool, time: Duration) {
    if !fsync {
        std::thread::sleep(time);
        return;
    }
    SCRATCH.with(|f| {
        if let Some(f) = f {
            let mut page = [7u8; 4096];
            let _ = f.write_all_at(&page, 0);
            let _ = f.sync_data();
            let _ = f.read_exact_at(&mut page, 0);
        }
    });
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7501".into());
    let spawn_blocking = match args.next().as_deref() {
        Some("spawn_blocking") => true,
        Some("inline") | None => false,
        Some(m) => panic!("mode must be inline or spawn_blocking, not {m}"),
    };
    let fsync = args.next().as_deref() == Some("fsync");
    let time = Duration::from_secs_f64(args.next().and_then(|m| m.parse::<f64>().ok()).unwrap_or(2.0) / 1000.0);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers: usize = args.next().and_then(|w| w.parse().ok()).unwrap_or(cpus);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_io()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(&addr).await?;
        println!("tokio-blocking on {addr}: {workers} workers, spawn_blocking {spawn_blocking}, fsync {fsync}");
        loop {
            let (mut socket, _) = listener.accept().await?;
            let _ = socket.set_nodelay(true);
            tokio::spawn(async move {
                let mut req = [0u8; REQUEST];
                loop {
                    if socket.read_exact(&mut req).await.is_err() {
                        return;
                    }
                    if req[8] == 1 {
                        if spawn_blocking {
                            if tokio::task::spawn_blocking(move || block_once(fsync, time))
                                .await
                                .is_err()
                            {
                                return;
                            }
                        } else {
                            block_once(fsync, time);
                        }
                    }
                    if socket.write_all(&req).await.is_err() {
                        return;
                    }
                }
            });
        }
    })
}
