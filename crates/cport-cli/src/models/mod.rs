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
mod model;
mod poll;
mod select;

pub use model::{Model, ModelReport};

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

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
    /// Returns within about [`STOP_CHECK_INTERVAL`](model::STOP_CHECK_INTERVAL) plus the time to close the
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
