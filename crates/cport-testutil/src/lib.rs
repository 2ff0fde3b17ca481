//! Helpers shared by cport's integration tests: one module per crate under
//! test, each behind the feature of the same name, and the few pieces they
//! all need (file-descriptor counts, the descriptor limit, temporary
//! directories that are removed even when a test panics).
//!
//! Dev-only: never published, never a dependency of a library.

#![deny(missing_docs)]
// Test helpers, not an API: `Rng::next` is the plain name tests read best.
#![allow(dead_code, clippy::should_implement_trait)]

#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "game")]
pub mod game;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "port")]
pub mod port;
#[cfg(feature = "server")]
pub mod server;
pub mod usage;

/// A temporary directory, removed on drop (also when the test panics).
pub use tempfile::TempDir;

/// A client socket that retries reads and writes a signal interrupted, as
/// std's `read_line` and `read_to_end` do, for clients (tungstenite's, say)
/// that give up on EINTR. Tests that run a server in their own process need
/// it: on io_uring the kernel runs a request's completion work on the thread
/// that submitted it, which interrupts a blocking call on that thread.
pub struct Retrying<S>(pub S);

impl<S: std::io::Read> std::io::Read for Retrying<S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.0.read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }
}

impl<S: std::io::Write> std::io::Write for Retrying<S> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        loop {
            match self.0.write(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Open file descriptors of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    // `None` is RLIM_INFINITY. Raising the soft limit up to the hard one is
    // allowed to any process; a failure leaves the old limit, returned below.
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        lim.current = lim.maximum;
        let _ = setrlimit(Resource::Nofile, lim);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Makes the next close of `s` send a reset (RST) instead of a FIN:
/// `SO_LINGER` on with a zero timeout.
pub fn reset_on_close(s: &impl std::os::fd::AsFd) {
    rustix::net::sockopt::set_socket_linger(s, Some(std::time::Duration::ZERO)).expect("SO_LINGER");
}

/// Sets a socket's receive buffer (`SO_RCVBUF`; the kernel doubles it), so
/// that a peer's sends fill it quickly.
pub fn set_rcvbuf(s: &impl std::os::fd::AsFd, bytes: usize) {
    rustix::net::sockopt::set_socket_recv_buffer_size(s, bytes).expect("SO_RCVBUF");
}
