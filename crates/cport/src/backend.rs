//! Which kernel interface a port runs on.

/// Which kernel interface a port runs on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// io_uring if the kernel allows it, else epoll (the default). The
    /// `CPORT_BACKEND=uring|epoll` environment variable overrides it.
    #[default]
    Auto,
    /// io_uring only: building fails, naming the cause, if it cannot be set up.
    IoUring,
    /// epoll readiness turned into completions; file I/O on a small thread pool.
    Epoll,
}

impl Backend {
    /// The name used in logs and in `CPORT_BACKEND`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::IoUring => "uring",
            Backend::Epoll => "epoll",
        }
    }

    /// Parses `auto`, `uring`/`io_uring`, or `epoll`.
    pub fn parse(s: &str) -> Option<Backend> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Some(Backend::Auto),
            "uring" | "io_uring" | "iouring" => Some(Backend::IoUring),
            "epoll" => Some(Backend::Epoll),
            _ => None,
        }
    }
}
