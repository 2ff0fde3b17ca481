//! What every model shares as plain values: which model it is, what it
//! reports, and how often it looks at its stop flag.

use std::time::Duration;

/// How long a model may sit in `select`/`poll`/`epoll_wait` before it looks
/// at the stop flag again: short enough that [`ModelServer::stop`](super::ModelServer::stop) is prompt,
/// long enough that an idle server costs nothing measurable.
pub(super) const STOP_CHECK_INTERVAL: Duration = Duration::from_millis(50);

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

/// What a model did while it served, returned by [`ModelServer::stop`](super::ModelServer::stop).
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
    pub(super) fn opened(&mut self, open_now: usize) {
        self.accepted += 1;
        self.peak_connections = self.peak_connections.max(open_now as u64);
    }

    /// Counts a connection the model had to turn away, and says why.
    pub(super) fn refuse(&mut self, model: Model, reason: &'static str) {
        if self.refusal_reason.is_none() {
            tracing::warn!(model = model.name(), reason, "refusing connections");
        }
        self.refused += 1;
        self.refusal_reason = Some(reason);
    }
}
