//! A pool of worker threads that loop on `get` and call a handler: the
//! classic IOCP server skeleton, created once and reused.

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::completion::Completion;
use crate::error::GetError;
use crate::kind::OpKind;
use crate::port::Port;

/// Worker threads dequeuing from one port.
///
/// Each worker calls the handler for every completion it dequeues, and exits
/// on an [`OpKind::Quit`] packet or when the port is shut down and drained.
/// [`stop`](Self::stop) posts one quit packet per worker and joins them.
pub struct WorkerPool {
    port: Port,
    threads: Vec<JoinHandle<()>>,
}

impl WorkerPool {
    /// IOCP's classic advice: two workers per processor, so a worker that blocks
    /// does not starve the port.
    pub fn default_size() -> usize {
        2 * std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    /// Starts `n` workers (0: [`default_size`](Self::default_size)) named `cport-worker-N`.
    ///
    /// Each worker dequeues up to 64 completions at a time
    /// ([`Port::get_many`], as IOCP servers use GetQueuedCompletionStatusEx)
    /// and runs them one after another on its one concurrency slot. So a
    /// handler must not block waiting for the effect of another completion
    /// (which may sit later in its own batch), and one that calls
    /// [`Port::release_slot`] runs the rest of its batch without a slot. If
    /// a handler panics, its worker exits and the completions left in its
    /// batch go back to the port for the other workers.
    ///
    /// # Errors
    /// When a thread cannot be spawned (already started ones are stopped).
    pub fn start<F>(port: &Port, n: usize, handler: F) -> io::Result<WorkerPool>
    where
        F: Fn(&Port, Completion) + Send + Sync + 'static,
    {
        let n = if n == 0 { Self::default_size() } else { n };
        let handler = Arc::new(handler);
        let mut pool = WorkerPool {
            port: port.clone(),
            threads: Vec::with_capacity(n),
        };
        for i in 0..n {
            let port = port.clone();
            let handler = handler.clone();
            let t = std::thread::Builder::new()
                .name(format!("cport-worker-{i}"))
                .spawn(move || run_worker(&port, &*handler));
            match t {
                Ok(t) => pool.threads.push(t),
                Err(e) => {
                    pool.stop_inner();
                    return Err(e);
                }
            }
        }
        Ok(pool)
    }

    /// How many workers run.
    pub fn len(&self) -> usize {
        self.threads.len()
    }

    /// `true` if the pool has no workers.
    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    /// Waits for the workers to exit by themselves (a quit packet each, or
    /// the port shutting down).
    pub fn join(mut self) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }

    /// Posts one quit packet per worker and joins them all.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if self.threads.is_empty() {
            return;
        }
        if self.port.post_quit(self.threads.len()).is_err() {
            // Shut down or full: shutting down releases every worker too.
            self.port.shutdown();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Completions a worker takes per dequeue (one lock and one queue-limit
/// update per batch; `get_many` caps it at the worker's fair share).
const WORKER_BATCH: usize = 64;

/// A batch being run, last completion first. If a handler panics, the
/// completions it did not reach go back to the port for another worker.
struct Batch<'a> {
    port: &'a Port,
    rest: Vec<Completion>,
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        if !self.rest.is_empty() {
            self.port.requeue(self.rest.drain(..).rev());
        }
    }
}

/// One worker's loop: dequeue a batch, run the handler on each completion.
fn run_worker<F: Fn(&Port, Completion)>(port: &Port, handler: &F) {
    let mut batch = Batch {
        port,
        rest: Vec::with_capacity(WORKER_BATCH),
    };
    loop {
        match port.get_many(&mut batch.rest, WORKER_BATCH, None) {
            Ok(_) => {
                // A quit packet only ever comes alone (`get_many` ends a batch before one).
                if batch.rest.first().is_some_and(|c| c.kind() == OpKind::Quit) {
                    batch.rest.clear(); // this worker's quit: consumed
                    return;
                }
                batch.rest.reverse();
                while let Some(c) = batch.rest.pop() {
                    handler(port, c);
                }
            }
            Err(GetError::Timeout) => {}
            Err(GetError::ShutDown) => return,
            Err(GetError::Io(e)) => {
                tracing::error!(error = %e, "worker stops: waiting for completions failed");
                return;
            }
        }
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.stop_inner();
    }
}
