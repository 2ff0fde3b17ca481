//! Errors of the port, one enum per family of calls. (The refusal that
//! hands an operation's buffers back, `SubmitError`, lives with the
//! completion in `completion.rs`: both carry a payload.)

use std::error::Error;
use std::fmt;
use std::io;

/// Why an operation (or a posted packet) was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubmitErrorKind {
    /// Operations in flight plus completions queued reached the port's queue limit.
    QueueFull,
    /// The handle is closed, or belongs to an fd number the OS has since reused.
    InvalidHandle,
    /// The handle is being closed: no new operations on it.
    Closing,
    /// The port is shutting down.
    ShutDown,
    /// The backend cannot do this operation on this object.
    Unsupported,
    /// The handle, operation id or buffer pool belongs to another port.
    ForeignPort,
    /// A receive or read was given a buffer with no capacity: it could only
    /// complete with `Ok(0)`, which reads as the end of the stream.
    NoRoom,
}

/// Why [`Port::get`](crate::Port::get) returned no completion.
#[derive(Debug)]
#[non_exhaustive]
pub enum GetError {
    /// The timeout passed with nothing to dequeue.
    Timeout,
    /// The port is shut down and every operation has been delivered.
    ShutDown,
    /// The backend failed while waiting.
    Io(io::Error),
}

impl fmt::Display for GetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetError::Timeout => f.write_str("timed out waiting for a completion"),
            GetError::ShutDown => f.write_str("completion port is shut down"),
            GetError::Io(e) => write!(f, "waiting for completions failed: {e}"),
        }
    }
}

impl Error for GetError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            GetError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<GetError> for io::Error {
    fn from(e: GetError) -> io::Error {
        match e {
            GetError::Timeout => io::Error::new(io::ErrorKind::TimedOut, "timed out waiting for a completion"),
            GetError::ShutDown => io::Error::new(io::ErrorKind::BrokenPipe, "completion port is shut down"),
            GetError::Io(e) => e,
        }
    }
}

/// Why a port could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// io_uring was asked for and cannot be set up; the message names the cause
    /// (ENOSYS, EPERM, the `kernel.io_uring_disabled` sysctl, ...).
    IoUringUnavailable {
        /// What the kernel said.
        source: io::Error,
        /// Why, in words.
        cause: String,
    },
    /// The epoll backend could not be set up.
    Epoll(io::Error),
    /// A builder setting is out of range.
    Config(&'static str),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::IoUringUnavailable { cause, .. } => write!(f, "io_uring unavailable: {cause}"),
            BuildError::Epoll(e) => write!(f, "epoll setup failed: {e}"),
            BuildError::Config(m) => write!(f, "invalid port configuration: {m}"),
        }
    }
}

impl Error for BuildError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            BuildError::IoUringUnavailable { source, .. } | BuildError::Epoll(source) => Some(source),
            BuildError::Config(_) => None,
        }
    }
}

impl From<BuildError> for io::Error {
    fn from(e: BuildError) -> io::Error {
        match e {
            BuildError::IoUringUnavailable { source, cause } => io::Error::new(source.kind(), cause),
            BuildError::Epoll(e) => e,
            BuildError::Config(m) => io::Error::new(io::ErrorKind::InvalidInput, m),
        }
    }
}

/// The error an operation completes with when the port shut down under it.
///
/// Its kind is `BrokenPipe`, as for every other shutdown answer of the port,
/// never `Interrupted`: retry loops treat that one as transient and would
/// issue again into a port that is gone.
#[derive(Debug)]
pub(crate) struct ShutDownError;

impl ShutDownError {
    pub(crate) fn io() -> io::Error {
        io::Error::new(io::ErrorKind::BrokenPipe, ShutDownError)
    }
    pub(crate) fn is(e: &io::Error) -> bool {
        e.get_ref().is_some_and(|inner| inner.is::<ShutDownError>())
    }
}

impl fmt::Display for ShutDownError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("operation ended by completion port shutdown")
    }
}

impl Error for ShutDownError {}
