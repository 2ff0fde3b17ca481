//! One completion port and one worker pool for several servers: IOCP's
//! "one port per process" (every socket of every server associated with
//! one port, one pool of threads dequeuing all their completions).
//!
//! Each server started on a [`Runtime`] gets a *route*, a byte in every
//! context word it issues (`context::Route`); the runtime's workers read it
//! and hand the completion to that server's dispatcher. Routes are never
//! reused: a server that shut down keeps its route (its late completions,
//! such as a timer still in flight, find it and are dropped there) until
//! the runtime itself drops, so one runtime starts at most 255 servers.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering::*};
use std::sync::{Arc, OnceLock};

use cport::{Backend, Completion, Port, WorkerPool};
use parking_lot::Mutex;

use crate::context::{enter_route, Route};
use crate::server_core::WorkerIds;

/// What a runtime worker hands a completion to: one server's dispatcher.
pub(crate) trait Routed: Send + Sync {
    /// Runs one completion of this server.
    fn handle(&self, c: Completion);
}

/// The routes of a runtime, 1 to 255 (0 names no server). Filled once
/// each, read with one load per completion.
struct Routes {
    table: Box<[OnceLock<Arc<dyn Routed>>]>,
    next: AtomicUsize,
}

impl Routes {
    fn dispatch(&self, c: Completion) {
        let r = Route::of(c.ctx());
        match self.table.get(r.0 as usize).and_then(OnceLock::get) {
            Some(to) => {
                enter_route(r);
                to.handle(c);
                enter_route(Route(0));
            }
            None => {
                tracing::warn!(route = r.0, kind = ?c.kind(), "a completion for no server on this runtime: dropped")
            }
        }
    }
}

/// How a [`Runtime`] is sized: the I/O models' rule unless told otherwise.
///
/// Concurrency (IOCP's NumberOfConcurrentThreads) is the number of CPUs:
/// more threads running at once than cores only adds switches. Threads are
/// twice that, because a handler may block (a database call, a disk read):
/// the port's hand-off lets a waiting thread take a blocked one's slot, so
/// the extra threads keep every CPU busy while some block.
#[derive(Debug, Clone)]
pub struct RuntimeBuilder {
    threads: Option<usize>,
    concurrency: Option<usize>,
    backend: Backend,
    handoff: bool,
}

impl Default for RuntimeBuilder {
    fn default() -> Self {
        RuntimeBuilder {
            threads: None,
            concurrency: None,
            backend: Backend::Auto,
            handoff: true,
        }
    }
}

/// The sizes a [`RuntimeBuilder`] chose, and why: what `cport serve`
/// prints at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSizes {
    /// Worker threads.
    pub threads: usize,
    /// Threads allowed to run completions at once.
    pub concurrency: usize,
    /// CPUs this process may run on.
    pub cpus: usize,
    /// Whether the thread count was given (else: 2 × concurrency).
    pub threads_given: bool,
    /// Whether the concurrency was given (else: the CPU count).
    pub concurrency_given: bool,
}

impl PoolSizes {
    /// One line saying the sizes and where each came from.
    pub fn describe(&self) -> String {
        let conc = if self.concurrency_given {
            "as given".to_string()
        } else {
            format!("one per CPU, {} CPUs", self.cpus)
        };
        let threads = if self.threads_given {
            "as given".to_string()
        } else {
            "2 x concurrency: a handler that blocks hands its slot to a waiting thread".to_string()
        };
        format!(
            "{} worker threads ({threads}), concurrency {} ({conc})",
            self.threads, self.concurrency
        )
    }
}

impl RuntimeBuilder {
    /// Worker threads (default: twice the concurrency).
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = Some(n.max(1));
        self
    }
    /// Threads allowed to run completions at once (default: the CPU count).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = Some(n.max(1));
        self
    }
    /// The port's backend (default `Auto`).
    pub fn backend(mut self, b: Backend) -> Self {
        self.backend = b;
        self
    }
    /// The port's automatic hand-off of blocked workers' slots (default on).
    pub fn handoff(mut self, on: bool) -> Self {
        self.handoff = on;
        self
    }

    /// The sizes [`build`](Self::build) will use, by the rule above.
    pub fn sizes(&self) -> PoolSizes {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let concurrency = self.concurrency.unwrap_or(cpus);
        PoolSizes {
            threads: self.threads.unwrap_or(2 * concurrency),
            concurrency,
            cpus,
            threads_given: self.threads.is_some(),
            concurrency_given: self.concurrency.is_some(),
        }
    }

    /// Builds the port and starts the workers.
    ///
    /// # Errors
    /// When the port cannot be built or a thread cannot be spawned.
    pub fn build(self) -> io::Result<Runtime> {
        let sizes = self.sizes();
        let port = Port::builder()
            .concurrency(sizes.concurrency)
            .backend(self.backend)
            .handoff(self.handoff)
            .build()?;
        let routes = Arc::new(Routes {
            table: (0..=u8::MAX as usize).map(|_| OnceLock::new()).collect(),
            next: AtomicUsize::new(1),
        });
        let ids = Arc::new(WorkerIds::default());
        let (r, w) = (routes.clone(), ids.clone());
        let workers = WorkerPool::start(&port, sizes.threads, move |_, c| {
            w.enter();
            r.dispatch(c);
        })?;
        tracing::info!(
            backend = port.backend().name(),
            threads = sizes.threads,
            concurrency = sizes.concurrency,
            "runtime started"
        );
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                port,
                sizes,
                routes,
                ids,
                workers: Mutex::new(Some(workers)),
            }),
        })
    }
}

/// One completion port and its worker pool, shared by every server started
/// on it ([`ServerBuilder::runtime`](crate::ServerBuilder::runtime)): one
/// IOCP object for every socket of the process, as the I/O models put it.
///
/// Cheap to clone. Each server keeps its runtime alive; the workers stop
/// and the port shuts down when the last clone (and the last server on it)
/// is gone.
///
/// # Examples
///
/// ```no_run
/// use cport_server::{Runtime, Server};
/// # use cport_server::{Handler, Message, Session};
/// # struct Echo;
/// # impl Handler for Echo {
/// #     type State = ();
/// #     fn on_connect(&self, _: &Session) {}
/// #     fn on_message(&self, s: &Session, _: &mut (), m: Message) { let _ = s.send(m); }
/// # }
/// let rt = Runtime::builder().build()?; // concurrency = CPUs, threads = 2 x CPUs
/// let a = Server::builder().bind("127.0.0.1:7000".parse().unwrap()).runtime(&rt).start(Echo)?;
/// let b = Server::builder().bind("127.0.0.1:7003".parse().unwrap()).runtime(&rt).start(Echo)?;
/// // One port, one pool: both servers' sockets are associated with `rt.port()`.
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    port: Port,
    sizes: PoolSizes,
    routes: Arc<Routes>,
    ids: Arc<WorkerIds>,
    workers: Mutex<Option<WorkerPool>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("sizes", &self.inner.sizes).finish()
    }
}

impl Runtime {
    /// A builder sized by the rule (concurrency = CPUs, threads = 2 × that).
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// The completion port every server on this runtime uses. Do not
    /// dequeue from it: the workers own that.
    pub fn port(&self) -> &Port {
        &self.inner.port
    }

    /// The sizes chosen, and why.
    pub fn sizes(&self) -> PoolSizes {
        self.inner.sizes
    }

    /// The backend the port runs on (never `Auto`).
    pub fn backend(&self) -> Backend {
        self.inner.port.backend()
    }

    /// The pool's worker identities (shared with every server on it).
    pub(crate) fn worker_ids(&self) -> Arc<WorkerIds> {
        self.inner.ids.clone()
    }

    /// Takes the next route.
    pub(crate) fn reserve_route(&self) -> io::Result<Route> {
        let r = &self.inner.routes;
        let n = r.next.fetch_add(1, Relaxed);
        if n >= r.table.len() {
            r.next.store(r.table.len(), Relaxed);
            return Err(io::Error::other("a runtime starts at most 255 servers"));
        }
        Ok(Route(n as u8))
    }

    /// Sends `route`'s completions to `to` from now on.
    pub(crate) fn install(&self, route: Route, to: Arc<dyn Routed>) {
        let _ = self.inner.routes.table[route.0 as usize].set(to);
    }
}

impl Drop for RuntimeInner {
    /// Shuts the port down first, so that every operation still in flight
    /// (an application's own, on a server that already stopped) completes
    /// with the shutdown error on a worker, in its server's handler, before
    /// the workers stop.
    fn drop(&mut self) {
        self.port.shutdown();
        if let Some(w) = self.workers.lock().take() {
            w.stop();
        }
    }
}
