//! Waiting for the signals that ask a server to stop (SIGINT, SIGTERM).

use std::io;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Registers for SIGINT and SIGTERM; from now on they no longer kill the
/// process but are delivered to [`ShutdownSignals::wait`].
#[derive(Debug)]
pub struct ShutdownSignals {
    signals: Signals,
}

impl ShutdownSignals {
    /// Starts catching SIGINT and SIGTERM. Call it before starting servers,
    /// so a signal that comes early is not lost.
    ///
    /// # Errors
    /// When the handlers cannot be installed.
    pub fn new() -> io::Result<Self> {
        Ok(ShutdownSignals {
            signals: Signals::new([SIGINT, SIGTERM])?,
        })
    }

    /// Blocks until SIGINT or SIGTERM arrives; returns its number.
    pub fn wait(&mut self) -> i32 {
        self.signals.forever().next().unwrap_or(SIGTERM)
    }

    /// The name of a signal number this waits for.
    pub fn name(sig: i32) -> &'static str {
        match sig {
            SIGINT => "SIGINT",
            SIGTERM => "SIGTERM",
            _ => "signal",
        }
    }
}
