//! Echo with a thread per connection and blocking reads and writes.
//!
//! The first model and the plainest to read: accept, start a
//! thread, and let that thread read and write back in a loop, sleeping in the
//! kernel whenever there is nothing to do. Each connection costs a whole thread
//! (a stack, a scheduler entry, a context switch for every wake-up), which is
//! why this model is the first to break as connections rise.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, Scope};
use std::time::Duration;

use super::echo::{self, Accept, READ_BUFFER_SIZE};
use super::model::{Model, ModelReport, STOP_CHECK_INTERVAL};

/// Stack for each connection thread: it only loops over `read` and `write`,
/// and a small stack lets the model reach more connections before it breaks.
const CONN_THREAD_STACK: usize = 64 * 1024;

/// The sockets of the connections being served, so that stopping can shut
/// them down and so wake threads blocked in `read` or `write`.
type OpenConns = Mutex<HashMap<u64, Arc<TcpStream>>>;

/// Serves echo on `listener` until `stop` is set and [`wake_acceptor`] has
/// been called.
pub(super) fn serve(listener: TcpListener, stop: &AtomicBool) -> io::Result<ModelReport> {
    listener.set_nonblocking(false)?;
    let open = OpenConns::default();
    let bytes_echoed = AtomicU64::new(0);
    let mut report = ModelReport::default();

    // The scope joins every connection thread before it returns.
    let served = thread::scope(|scope| {
        let served = accept_until_stopped(scope, &listener, stop, &open, &bytes_echoed, &mut report);
        for stream in lock(&open).values() {
            // Ends a blocked `read` with end-of-file and a blocked `write`
            // with an error, so each thread finishes.
            let _ = stream.shutdown(Shutdown::Both);
        }
        served
    });
    report.bytes_echoed = bytes_echoed.load(Ordering::Relaxed);
    served.map(|()| report)
}

/// Accepts connections, each on a thread of its own, until `stop` is set.
fn accept_until_stopped<'scope>(
    scope: &'scope Scope<'scope, '_>,
    listener: &TcpListener,
    stop: &AtomicBool,
    open: &'scope OpenConns,
    bytes_echoed: &'scope AtomicU64,
    report: &mut ModelReport,
) -> io::Result<()> {
    let mut next_id = 0_u64;
    while !stop.load(Ordering::Acquire) {
        let stream = match echo::accept(listener, report)? {
            Accept::Conn(stream) => stream,
            Accept::Drained => continue,
            Accept::OutOfResources => {
                // Only this thread waits; the connections carry on.
                thread::sleep(STOP_CHECK_INTERVAL);
                continue;
            }
        };
        if stop.load(Ordering::Acquire) {
            break; // Most likely the connection from `wake_acceptor`.
        }

        let id = next_id;
        next_id += 1;
        let stream = Arc::new(stream);
        // Registered before the thread starts, so the thread's own removal
        // always comes after.
        lock(open).insert(id, Arc::clone(&stream));
        let spawned = thread::Builder::new()
            .stack_size(CONN_THREAD_STACK)
            .spawn_scoped(scope, move || {
                // Added once per connection, not per message: thousands of
                // threads would otherwise contend on this one counter. The
                // total is read only after every thread has been joined.
                bytes_echoed.fetch_add(echo_until_closed(&stream), Ordering::Relaxed);
                lock(open).remove(&id);
            });
        match spawned {
            Ok(_) => report.opened(lock(open).len()),
            Err(_) => {
                lock(open).remove(&id);
                report.refuse(Model::Blocking, "could not start a thread for the connection");
            }
        }
    }
    Ok(())
}

/// The whole life of one connection: read, write back, until end-of-file or
/// an error. Returns the bytes echoed.
fn echo_until_closed(mut stream: &TcpStream) -> u64 {
    let mut buf = vec![0; READ_BUFFER_SIZE];
    let mut echoed = 0_u64;
    loop {
        let len = match stream.read(&mut buf) {
            Ok(0) => return echoed,
            Ok(len) => len,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return echoed,
        };
        echo::handler_work(&buf[..len]);
        if stream.write_all(&buf[..len]).is_err() {
            return echoed;
        }
        echoed += len as u64;
    }
}

/// Unblocks the acceptor, which sleeps in `accept` and so cannot see the stop
/// flag by itself: connecting to the listener makes `accept` return.
pub(super) fn wake_acceptor(listen_addr: SocketAddr) {
    let mut target = listen_addr;
    if target.ip().is_unspecified() {
        target.set_ip(match target {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    if let Err(error) = TcpStream::connect_timeout(&target, Duration::from_secs(1)) {
        tracing::warn!(%target, %error, "could not wake the blocking model's acceptor");
    }
}

/// A connection thread that panicked cannot have left the map half-changed,
/// so a poisoned lock is still good to use.
fn lock(open: &OpenConns) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<TcpStream>>> {
    open.lock().unwrap_or_else(PoisonError::into_inner)
}
