//! Port overhead beside crossbeam-channel, the reference for a user-space queue.
//!
//! - `post_get`: one thread posts a packet and dequeues it (IOCP's
//!   PostQueuedCompletionStatus → GetQueuedCompletionStatus round trip).
//! - `nop_batch`: 64 NOPs issued, then 64 completions dequeued: a round trip
//!   through the kernel backend, one submission for the batch.
//! - `mpmc`: 2 threads post and 2 threads dequeue 20,000 packets.
//!
//! `cargo bench -p cport --bench port`; set `CPORT_BACKEND=epoll` for epoll.

// criterion_group! generates an undocumented public fn.
#![allow(missing_docs)]

use std::hint::black_box;
use std::thread;
use std::time::Duration;

use cport::{Key, OpKind, Port};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

fn port(concurrency: usize) -> Port {
    Port::builder().concurrency(concurrency).build().expect("port")
}

fn post_get(c: &mut Criterion) {
    let mut g = c.benchmark_group("post_get");
    g.throughput(Throughput::Elements(1));
    let p = port(1);
    g.bench_function("cport", |b| {
        b.iter(|| {
            p.post(Key(1), 8, 0).unwrap();
            black_box(p.get(None).unwrap());
        })
    });
    let (tx, rx) = crossbeam_channel::unbounded::<(u64, usize, u64)>();
    g.bench_function("crossbeam", |b| {
        b.iter(|| {
            tx.send((1, 8, 0)).unwrap();
            black_box(rx.recv().unwrap());
        })
    });
    g.finish();
}

fn nop_batch(c: &mut Criterion) {
    let mut g = c.benchmark_group("nop_batch");
    g.throughput(Throughput::Elements(64));
    let p = port(1);
    g.bench_function("cport", |b| {
        b.iter(|| {
            for i in 0..64 {
                p.nop(i).unwrap();
            }
            for _ in 0..64 {
                black_box(p.get(None).unwrap());
            }
        })
    });
    g.finish();
}

const MPMC: usize = 20_000;

fn mpmc(c: &mut Criterion) {
    let mut g = c.benchmark_group("mpmc_2x2");
    g.throughput(Throughput::Elements(MPMC as u64));
    g.measurement_time(Duration::from_secs(5));
    g.sample_size(20);
    g.bench_function("cport", |b| {
        b.iter_batched(
            || port(2),
            |p| {
                let consumers: Vec<_> = (0..2)
                    .map(|_| {
                        let p = p.clone();
                        thread::spawn(move || {
                            let mut n = 0;
                            while p.get(None).unwrap().kind() != OpKind::Quit {
                                n += 1;
                            }
                            n
                        })
                    })
                    .collect();
                let producers: Vec<_> = (0..2)
                    .map(|_| {
                        let p = p.clone();
                        thread::spawn(move || {
                            for i in 0..MPMC / 2 {
                                p.post(Key(1), i, 0).unwrap();
                            }
                        })
                    })
                    .collect();
                producers.into_iter().for_each(|t| t.join().unwrap());
                p.post_quit(2).unwrap();
                let n: usize = consumers.into_iter().map(|t| t.join().unwrap()).sum();
                assert_eq!(n, MPMC);
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("crossbeam", |b| {
        b.iter_batched(
            crossbeam_channel::unbounded::<Option<usize>>,
            |(tx, rx)| {
                let consumers: Vec<_> = (0..2)
                    .map(|_| {
                        let rx = rx.clone();
                        thread::spawn(move || {
                            let mut n = 0;
                            while rx.recv().unwrap().is_some() {
                                n += 1;
                            }
                            n
                        })
                    })
                    .collect();
                let producers: Vec<_> = (0..2)
                    .map(|_| {
                        let tx = tx.clone();
                        thread::spawn(move || {
                            for i in 0..MPMC / 2 {
                                tx.send(Some(i)).unwrap();
                            }
                        })
                    })
                    .collect();
                producers.into_iter().for_each(|t| t.join().unwrap());
                tx.send(None).unwrap();
                tx.send(None).unwrap();
                let n: usize = consumers.into_iter().map(|t| t.join().unwrap()).sum();
                assert_eq!(n, MPMC);
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, post_get, nop_batch, mpmc);
criterion_main!(benches);
