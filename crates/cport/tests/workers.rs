//! The worker pool: workers serving an echo server, `stop` joining them
//! all, and quit packets stopping exactly one dequeuing thread each.

use cport_testutil::port as util;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread;

use cport::{Completion, GetError, Handle, Key, OpKind, Port, WorkerPool};
use util::*;

/// An echo server's handler: accept, then receive and send back until the
/// client closes.
fn echo_handler(
    conns: Arc<Mutex<HashMap<u64, Handle>>>,
    failures: Arc<Mutex<Vec<String>>>,
) -> impl Fn(&Port, Completion) + Send + Sync + 'static {
    let next_key = AtomicU64::new(1);
    move |port, mut c| {
        let fail = |what: String| failures.lock().unwrap().push(what);
        match c.kind() {
            OpKind::Accept => {
                let Some(s) = c.take_accepted() else {
                    return fail(format!("accept failed: {c:?}"));
                };
                let key = next_key.fetch_add(1, SeqCst);
                let h = port.associate(s, Key(key)).unwrap();
                conns.lock().unwrap().insert(key, h);
                if let Err(e) = port.recv(&h, Vec::with_capacity(4096), 0u64) {
                    fail(format!("recv: {e}"));
                }
            }
            OpKind::Recv => {
                let h = conns.lock().unwrap()[&c.key().0];
                match c.result() {
                    Ok(n) if *n > 0 => {
                        let data = c.take_buf().unwrap();
                        if let Err(e) = port.send(&h, data, 0u64) {
                            fail(format!("send: {e}"));
                        }
                        if let Err(e) = port.recv(&h, Vec::with_capacity(4096), 0u64) {
                            fail(format!("recv: {e}"));
                        }
                    }
                    _ => {
                        conns.lock().unwrap().remove(&c.key().0);
                        port.close(&h).unwrap();
                    }
                }
            }
            OpKind::Send => {
                let len = c.take_buf().map_or(0, |b| b.len());
                if c.bytes() != len {
                    fail(format!("short or failed send: {c:?}"));
                }
            }
            _ => fail(format!("unexpected completion {c:?}")),
        }
    }
}

backend_tests! {
    fn worker_pool_serves_an_echo_server_and_stop_joins_every_worker(backend: Backend) {
        const CLIENTS: usize = 4;
        const MESSAGES: usize = 200;
        let port = port_with(backend, |b| b.concurrency(2));
        let l = listener();
        let addr = l.local_addr().unwrap();
        let lh = port.associate(l, Key(0)).unwrap();
        let conns = Arc::new(Mutex::new(HashMap::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let pool = WorkerPool::start(&port, 4, echo_handler(conns.clone(), failures.clone())).unwrap();
        assert_eq!(pool.len(), 4);
        let pool = DropAside::new(pool);
        port.accept_multi(&lh, 0u64).unwrap();

        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                thread::spawn(move || {
                    let mut s = TcpStream::connect(addr).unwrap();
                    s.set_read_timeout(Some(LONG)).unwrap();
                    for m in 0..MESSAGES {
                        let msg = pattern(1 + (m * 37) % 1500, (i * MESSAGES + m) as u64);
                        s.write_all(&msg).unwrap();
                        let mut back = vec![0; msg.len()];
                        s.read_exact(&mut back).unwrap();
                        assert!(back == msg, "client {i} message {m} echoed wrong");
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().expect("client got its echoes");
        }
        wait_until("the server closed every connection", || conns.lock().unwrap().is_empty());
        let f = failures.lock().unwrap().clone();
        assert!(f.is_empty(), "{f:?}");

        let pool = pool.take();
        within(LONG, "stop() joins every worker", move || pool.stop());
        // Stopping the pool does not shut the port down.
        assert!(!port.is_shut_down());
        port.post(Key(5), 0, 1u64).unwrap();
        next_of(&port, OpKind::Post, 1);
        let stats = port.stats();
        let worker_stats: Vec<_> = stats.threads.iter().filter(|t| t.name.as_deref().is_some_and(|n| n.starts_with("cport-worker-"))).collect();
        assert_eq!(worker_stats.len(), 4, "{:?}", stats.threads);
        assert!(worker_stats.iter().map(|t| t.completions).sum::<u64>() >= (CLIENTS * MESSAGES * 2) as u64);
        assert_eq!(stats.completed_of(OpKind::Quit), 4);
        assert_eq!(stats.completed_of(OpKind::Accept), CLIENTS as u64);
    }

    fn worker_pool_stop_handles_everything_posted_before_it(backend: Backend) {
        let port = port(backend);
        let handled = Arc::new(AtomicU64::new(0));
        let h = handled.clone();
        let pool = WorkerPool::start(&port, 3, move |_, c| {
            assert_eq!(c.kind(), OpKind::Post);
            h.fetch_add(1, SeqCst);
        })
        .unwrap();
        for i in 0..1_000u64 {
            port.post(Key(1), 0, i).unwrap();
        }
        // Quit packets queue behind the posts, so every post is handled.
        within(LONG, "stop() joins every worker", move || pool.stop());
        assert_eq!(handled.load(SeqCst), 1_000);
    }

    fn worker_pool_exits_when_the_port_shuts_down(backend: Backend) {
        let port = port(backend);
        let pool = WorkerPool::start(&port, 2, |_, _| {}).unwrap();
        let pool = DropAside::new(pool);
        wait_until("the workers are in get", || port.stats().threads.len() == 2);
        port.shutdown();
        let pool = pool.take();
        within(LONG, "workers exit on shutdown", move || pool.stop());
    }

    fn a_panicking_handler_leaves_its_batch_to_the_other_workers(backend: Backend) {
        let port = port(backend);
        let handled = Arc::new(Mutex::new(Vec::new()));
        let h = handled.clone();
        // Queued before the pool starts, so the first worker to dequeue
        // takes a batch with the poisoned packet near its front.
        for i in 0..20u64 {
            port.post(Key(1), 0, i).unwrap();
        }
        let pool = WorkerPool::start(&port, 2, move |_, c| {
            if c.ctx() == 2 {
                panic!("handler fails on packet 2 (expected by the test)");
            }
            h.lock().unwrap().push(c.ctx());
        })
        .unwrap();
        wait_until("the other packets are all handled", || handled.lock().unwrap().len() == 19);
        let mut got = handled.lock().unwrap().clone();
        got.sort_unstable();
        assert_eq!(got, (0..20).filter(|&i| i != 2).collect::<Vec<_>>(), "each once");
        assert_eq!(port.stats().queued, 0);
        within(LONG, "stop() joins the surviving worker", move || pool.stop());
    }

    fn each_quit_packet_stops_one_thread(backend: Backend) {
        let port = port(backend);
        let handled = Arc::new(AtomicU64::new(0));
        let threads = {
            let handled = handled.clone();
            spawn_workers(&port, 3, move |_c| {
                handled.fetch_add(1, SeqCst);
            })
        };
        for i in 0..10u64 {
            port.post(Key(1), 0, i).unwrap();
        }
        port.post_quit(2).unwrap();
        let finished = |ts: &[thread::JoinHandle<()>]| ts.iter().filter(|t| t.is_finished()).count();
        wait_until("two threads quit", || finished(&threads) == 2);
        thread::sleep(SHORT);
        assert_eq!(finished(&threads), 2, "a quit packet stopped more than one thread");
        assert_eq!(handled.load(SeqCst), 10, "packets before the quits were handled");
        port.post_quit(1).unwrap();
        wait_until("the last thread quits", || finished(&threads) == 3);
        for t in threads {
            t.join().unwrap();
        }
        let stats = port.stats();
        assert_eq!(stats.completed_of(OpKind::Quit), 3);
        assert_eq!(stats.completed_of(OpKind::Post), 10);
        assert!(matches!(port.get(Some(SHORT)), Err(GetError::Timeout)), "no quit packet left over");
    }

    fn default_pool_size_is_two_per_processor(backend: Backend) {
        let port = port(backend);
        let cpus = thread::available_parallelism().unwrap().get();
        assert_eq!(WorkerPool::default_size(), 2 * cpus);
        let pool = WorkerPool::start(&port, 0, |_, _| {}).unwrap();
        assert_eq!(pool.len(), 2 * cpus);
        within(LONG, "stop() joins every worker", move || pool.stop());
    }
}
