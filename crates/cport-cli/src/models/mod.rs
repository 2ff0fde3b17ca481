//! The classic server I/O models, side by side, as echo servers.
//!
//! IOCP is best understood by contrast with what came before it: a thread per
//! connection, `select()`, `poll()` and event-driven readiness. Each model here
//! is one small echo server with the same behaviour and the same
//! [`ModelReport`], so `cport models` can put all of them under the same load
//! and show where each one breaks. They are written to be read: each file shows
//! one model and nothing else; what they share (echoing on a non-blocking
//! socket, the accept policy) lives in [`echo`].
//!
//! Every model echoes whatever arrives, in order and completely, closes a
//! connection on end-of-file or error, never panics on what a peer does, and
//! holds a bounded amount of memory per connection.
pub mod shootout;

mod blocking;
mod completion_port;
mod echo;
mod epoll;
mod poll;
mod select;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// How long a model may sit in `select`/`poll`/`epoll_wait` before it looks
/// at the stop flag again: short enough that [`ModelServer::stop`] is prompt,
/// long enough that an idle server costs nothing measurable.
const STOP_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// One of the I/O models a server can be built on.
///
/// The fifth, the completion port, is served by the `cport` library itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Model {
    /// A thread per connection, blocking `read`/`write`.
    Blocking,
    /// One thread, `select()` over non-blocking sockets; capped by `FD_SETSIZE`.
    Select,
    /// One thread, `poll()` over non-blocking sockets.
    Poll,
    /// One thread, edge-triggered `epoll`: the Linux counterpart of
    /// WSAEventSelect-style event selection.
    Epoll,
    /// The cport completion port (io_uring, or epoll where io_uring is refused).
    CompletionPort,
}

impl Model {
    /// Every model, from the oldest to the completion port.
    pub const ALL: [Model; 5] = [
        Model::Blocking,
        Model::Select,
        Model::Poll,
        Model::Epoll,
        Model::CompletionPort,
    ];

    /// The short name used on the command line and in the shootout table.
    pub fn name(self) -> &'static str {
        match self {
            Model::Blocking => "blocking",
            Model::Select => "select",
            Model::Poll => "poll",
            Model::Epoll => "epoll",
            Model::CompletionPort => "cport",
        }
    }

    /// The model called `name`, as given by [`Model::name`].
    pub fn from_name(name: &str) -> Option<Model> {
        Model::ALL.into_iter().find(|model| model.name() == name)
    }
}

/// What a model did while it served, returned by [`ModelServer::stop`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelReport {
    /// Connections accepted and served.
    pub accepted: u64,
    /// Connections accepted but closed at once because the model could not
    /// take them (see `refusal_reason`).
    pub refused: u64,
    /// Bytes read from peers and written back.
    pub bytes_echoed: u64,
    /// The most connections served at the same time.
    pub peak_connections: u64,
    /// Times `accept` failed for lack of resources (descriptors, memory); the
    /// model pauses accepting briefly instead of spinning.
    pub accept_errors: u64,
    /// Why connections were refused, if any were: the model's limit.
    pub refusal_reason: Option<&'static str>,
}

impl ModelReport {
    /// Counts one more open connection, keeping `peak_connections` current.
    fn opened(&mut self, open_now: usize) {
        self.accepted += 1;
        self.peak_connections = self.peak_connections.max(open_now as u64);
    }

    /// Counts a connection the model had to turn away, and says why.
    fn refuse(&mut self, model: Model, reason: &'static str) {
        if self.refusal_reason.is_none() {
            tracing::warn!(model = model.name(), reason, "refusing connections");
        }
        self.refused += 1;
        self.refusal_reason = Some(reason);
    }
}

/// A model serving echo on its own thread(s); stop it with [`ModelServer::stop`].
///
/// Dropping a `ModelServer` without calling `stop` also stops it, discarding
/// the report.
#[derive(Debug)]
pub struct ModelServer {
    model: Model,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    join: Option<JoinHandle<io::Result<ModelReport>>>,
}

/// Starts serving echo with `model` on `listener`, in a thread of its own.
///
/// # Errors
///
/// Fails if the listener's address cannot be read or the thread cannot be
/// spawned. Errors that happen while serving come back from
/// [`ModelServer::stop`].
pub fn spawn(model: Model, listener: TcpListener) -> io::Result<ModelServer> {
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let join = thread::Builder::new()
        .name(format!("model-{}", model.name()))
        .spawn(move || match model {
            Model::Blocking => blocking::serve(listener, &flag),
            Model::Select => select::serve(listener, &flag),
            Model::Poll => poll::serve(listener, &flag),
            Model::Epoll => epoll::serve(listener, &flag),
            Model::CompletionPort => completion_port::serve(listener, &flag),
        })?;
    Ok(ModelServer {
        model,
        addr,
        stop,
        join: Some(join),
    })
}

impl ModelServer {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving, closes every connection and the listener, joins every
    /// thread the model started, and returns what it did.
    ///
    /// Returns within about [`STOP_CHECK_INTERVAL`] plus the time to close the
    /// connections, even when the model is blocked waiting for I/O.
    ///
    /// # Errors
    ///
    /// The error that ended the model early, if one did (e.g. `accept` failed
    /// in a way that is not about one connection).
    pub fn stop(mut self) -> io::Result<ModelReport> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> io::Result<ModelReport> {
        let Some(join) = self.join.take() else {
            return Ok(ModelReport::default());
        };
        self.stop.store(true, Ordering::Release);
        if self.model == Model::Blocking && !join.is_finished() {
            blocking::wake_acceptor(self.addr);
        }
        join.join()
            .unwrap_or_else(|_| Err(io::Error::other("model thread panicked")))
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        if let Err(error) = self.shut_down() {
            tracing::warn!(model = self.model.name(), %error, "model stopped with an error");
        }
    }
}

#[cfg(test)]
mod tests;
