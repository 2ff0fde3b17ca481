//! The completion port model: cport's `Port`, the model the others lead up to.
//!
//! One multishot accept, one multishot pooled receive per connection (an idle
//! connection pins no buffer), and each received buffer sent back as it is.
//! As in any IOCP server, a connection has at most one send in flight: a
//! short send is finished before the next buffer goes, so bytes never
//! overtake each other. This thread is the port's only worker: it loops on
//! `get` like an IOCP worker on GetQueuedCompletionStatus.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cport::{Backend, Buf, Completion, Handle, Key, OpKind, Payload, Port};

use super::model::{Model, ModelReport, STOP_CHECK_INTERVAL};

const LISTENER: Key = Key(0);
/// Stop receiving on a connection while this many buffers wait to be sent:
/// a peer that does not read cannot drain the shared pool.
const MAX_QUEUED: usize = 16;
/// ctx of the timer that re-arms receives starved by an empty pool.
const RETRY: u64 = u64::MAX;

#[derive(Default)]
struct Conn {
    queue: VecDeque<Buf>,
    sending: bool,
    receiving: bool,
    eof: bool,
}

struct Echo {
    port: Port,
    pool: cport::BufPool,
    conns: HashMap<u64, (Handle, Conn)>,
    starved: Vec<u64>,
}

impl Conn {
    /// Keeps a receive armed while the connection is open and not backed up.
    fn arm_recv(&mut self, port: &Port, pool: &cport::BufPool, h: &Handle) {
        if !self.receiving && !self.eof && self.queue.len() < MAX_QUEUED {
            self.receiving = port.recv_pooled_multi(h, pool, 0).is_ok();
        }
    }
}

impl Echo {
    fn arm_recv(&mut self, key: u64) {
        if let Some((h, c)) = self.conns.get_mut(&key) {
            c.arm_recv(&self.port, &self.pool, h);
        }
    }

    /// After any change to a connection: sends its next queued buffer if
    /// none is in flight (or closes it once it is finished and owed
    /// nothing), then keeps a receive armed.
    fn drive(&mut self, key: u64) {
        let Some((h, c)) = self.conns.get_mut(&key) else { return };
        if !c.sending {
            if let Some(buf) = c.queue.pop_front() {
                c.sending = self.port.send(h, buf, 0).is_ok();
            } else if c.eof && !c.receiving {
                let _ = self.port.close(h);
                self.conns.remove(&key);
                return;
            }
        }
        c.arm_recv(&self.port, &self.pool, h);
    }
}

pub(super) fn serve(listener: TcpListener, stop: &AtomicBool) -> io::Result<ModelReport> {
    let port = Port::builder().concurrency(1).backend(Backend::Auto).build()?;
    let pool = port.buf_pool(8192, 4096)?;
    let lh = port.associate(listener, LISTENER)?;
    port.accept_multi(&lh, 0)?;
    let mut e = Echo {
        port: port.clone(),
        pool,
        conns: HashMap::new(),
        starved: Vec::new(),
    };
    let mut report = ModelReport::default();
    let mut next_key = 1u64;
    // GetQueuedCompletionStatusEx: a batch per dequeue, as IOCP servers do.
    let mut batch = Vec::with_capacity(BATCH);
    while !stop.load(Ordering::Acquire) {
        match port.get_many(&mut batch, BATCH, Some(STOP_CHECK_INTERVAL)) {
            Ok(_) => {}
            Err(cport::GetError::Timeout) => continue,
            Err(err) => return Err(err.into()),
        }
        for c in batch.drain(..) {
            e.handle(c, &lh, &mut next_key, &mut report)?;
        }
    }
    for (h, _) in e.conns.values() {
        let _ = port.close(h);
    }
    let _ = port.close(&lh);
    Ok(report)
}

/// Completions taken per dequeue.
const BATCH: usize = 64;

impl Echo {
    fn handle(
        &mut self,
        mut c: Completion,
        lh: &Handle,
        next_key: &mut u64,
        report: &mut ModelReport,
    ) -> io::Result<()> {
        if c.ctx() == RETRY {
            for key in std::mem::take(&mut self.starved) {
                self.arm_recv(key);
            }
            return Ok(());
        }
        match c.kind() {
            OpKind::Accept => {
                if let Some(s) = c.take_accepted() {
                    let key = *next_key;
                    *next_key += 1;
                    match self.port.associate(s, Key(key)) {
                        Ok(h) => {
                            self.conns.insert(key, (h, Conn::default()));
                            self.arm_recv(key);
                            report.opened(self.conns.len());
                        }
                        Err(_) => report.refuse(Model::CompletionPort, "could not associate the connection"),
                    }
                } else if c.result().is_err() {
                    report.accept_errors += 1;
                }
                if !c.more() {
                    self.port.accept_multi(lh, 0)?;
                }
            }
            OpKind::RecvPooled => {
                let key = c.key().0;
                let more = c.more();
                let Some((_, conn)) = self.conns.get_mut(&key) else {
                    return Ok(());
                };
                conn.receiving = more;
                match c.into_parts() {
                    (Ok(n), Payload::Buf(buf)) if n > 0 => {
                        report.bytes_echoed += n as u64;
                        conn.queue.push_back(buf);
                    }
                    (Err(err), _) if err.raw_os_error() == Some(rustix::io::Errno::NOBUFS.raw_os_error()) => {
                        // The pool is empty: try again once buffers come back.
                        if self.starved.is_empty() {
                            self.port.timeout(Duration::from_millis(1), RETRY)?;
                        }
                        self.starved.push(key);
                    }
                    (Ok(_), _) | (Err(_), _) if !more => conn.eof = true,
                    _ => {}
                }
                self.drive(key);
            }
            OpKind::Send => {
                let key = c.key().0;
                let sent = c.into_parts();
                let Some((_, conn)) = self.conns.get_mut(&key) else {
                    return Ok(());
                };
                conn.sending = false;
                match sent {
                    // A short send: the rest goes first, before any later buffer.
                    (Ok(n), Payload::Buf(b)) if n > 0 && n < b.len() => {
                        conn.queue
                            .push_front(Buf::Bytes(bytes::Bytes::copy_from_slice(&b[n..])));
                    }
                    (Ok(_), _) => {}
                    (Err(_), _) => {
                        conn.queue.clear();
                        conn.eof = true;
                    }
                }
                self.drive(key);
            }
            _ => {}
        }
        Ok(())
    }
}
