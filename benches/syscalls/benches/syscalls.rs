//! The calls on cport's hot path, through each syscall layer a Rust crate
//! can use: `libc` called directly (what `crates/cport/src/sys` does today),
//! `rustix` (which on Linux issues the system call itself, without libc),
//! and `nix` (typed wrappers over libc).
//!
//! - `send_recv`: 64 B `send` then `recv` on a connected loopback TCP pair
//!   (what the epoll backend does per echoed message);
//! - `pipe_rw`: 64 B `write` then `read` on a pipe (the wake-up and file
//!   paths);
//! - `epoll_wait`: one `epoll_wait` with a timeout of 0 on an epoll set with
//!   one ready (level-triggered) descriptor;
//! - `sendmsg_recv`: a gathering `sendmsg` of two 32 B buffers with
//!   `MSG_NOSIGNAL`, then a 64 B `recv` (the epoll backend's `send_vectored`:
//!   a `msghdr` built by hand for libc, `IoSlice`s for rustix).
//!
//! Time is the benchmark thread's own CPU time (`CLOCK_THREAD_CPUTIME_ID`),
//! not wall time: on a shared, loaded machine wall time mostly measures
//! how long the thread waited for a core.
//!
//! Run: `cargo bench --manifest-path benches/syscalls/Cargo.toml`. The
//! ratios between layers are what counts; say the machine's load beside
//! them.

#![allow(missing_docs)]

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, criterion_main, Criterion};
use std::time::Duration;

/// The calling thread's CPU time, as a criterion measurement.
struct ThreadCpu;

fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

static WALL: WallTime = WallTime;

impl Measurement for ThreadCpu {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        thread_cpu()
    }
    fn end(&self, i: Duration) -> Duration {
        thread_cpu() - i
    }
    fn add(&self, v1: &Duration, v2: &Duration) -> Duration {
        *v1 + *v2
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Nanoseconds either way: wall time's formatter prints them.
        WALL.formatter()
    }
}

type C = Criterion<ThreadCpu>;

const MSG: usize = 64;

fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (b, _) = l.accept().unwrap();
    a.set_nodelay(true).unwrap();
    b.set_nodelay(true).unwrap();
    (a, b)
}

fn send_recv(c: &mut C) {
    let mut g = c.benchmark_group("send_recv");
    let (a, b) = tcp_pair();
    let out = [7u8; MSG];
    let mut inb = [0u8; MSG];
    g.bench_function("libc", |bn| {
        bn.iter(|| {
            // SAFETY: `a` and `b` are open sockets for the whole call; `out`
            // and `inb` are valid for MSG bytes (read and written).
            let n = unsafe { libc::send(a.as_raw_fd(), out.as_ptr().cast(), MSG, 0) };
            assert_eq!(n, MSG as isize);
            // SAFETY: as above.
            let n = unsafe { libc::recv(b.as_raw_fd(), inb.as_mut_ptr().cast(), MSG, 0) };
            black_box(n)
        })
    });
    g.bench_function("rustix", |bn| {
        use rustix::net::{recv, send, RecvFlags, SendFlags};
        bn.iter(|| {
            assert_eq!(send(&a, &out, SendFlags::empty()).unwrap(), MSG);
            black_box(recv(&b, &mut inb, RecvFlags::empty()).unwrap())
        })
    });
    g.bench_function("nix", |bn| {
        use nix::sys::socket::{recv, send, MsgFlags};
        bn.iter(|| {
            assert_eq!(send(a.as_raw_fd(), &out, MsgFlags::empty()).unwrap(), MSG);
            black_box(recv(b.as_raw_fd(), &mut inb, MsgFlags::empty()).unwrap())
        })
    });
    g.bench_function("std", |bn| {
        let (mut a, mut b) = (&a, &b);
        bn.iter(|| {
            a.write_all(&out).unwrap();
            b.read_exact(&mut inb).unwrap();
            black_box(inb[0])
        })
    });
    g.finish();
}

fn pipe_rw(c: &mut C) {
    let mut g = c.benchmark_group("pipe_rw");
    let (r, w): (OwnedFd, OwnedFd) = rustix::pipe::pipe().unwrap();
    let out = [7u8; MSG];
    let mut inb = [0u8; MSG];
    g.bench_function("libc", |bn| {
        bn.iter(|| {
            // SAFETY: `w` and `r` are open for the whole call; the buffers
            // are valid for MSG bytes.
            let n = unsafe { libc::write(w.as_raw_fd(), out.as_ptr().cast(), MSG) };
            assert_eq!(n, MSG as isize);
            // SAFETY: as above.
            let n = unsafe { libc::read(r.as_raw_fd(), inb.as_mut_ptr().cast(), MSG) };
            black_box(n)
        })
    });
    g.bench_function("rustix", |bn| {
        bn.iter(|| {
            assert_eq!(rustix::io::write(&w, &out).unwrap(), MSG);
            black_box(rustix::io::read(&r, &mut inb).unwrap())
        })
    });
    g.bench_function("nix", |bn| {
        bn.iter(|| {
            assert_eq!(nix::unistd::write(&w, &out).unwrap(), MSG);
            black_box(nix::unistd::read(r.as_fd(), &mut inb).unwrap())
        })
    });
    g.finish();
}

fn epoll_wait(c: &mut C) {
    use rustix::event::epoll;
    let mut g = c.benchmark_group("epoll_wait");
    let (r, w) = rustix::pipe::pipe().unwrap();
    rustix::io::write(&w, b"x").unwrap(); // stays readable: level-triggered
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC).unwrap();
    epoll::add(&ep, &r, epoll::EventData::new_u64(1), epoll::EventFlags::IN).unwrap();
    g.bench_function("libc", |bn| {
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 64];
        bn.iter(|| {
            // SAFETY: `ep` is an open epoll fd; `evs` holds 64 writable events.
            let n = unsafe { libc::epoll_wait(ep.as_raw_fd(), evs.as_mut_ptr(), 64, 0) };
            assert_eq!(n, 1);
            black_box(evs[0].u64)
        })
    });
    g.bench_function("rustix", |bn| {
        let empty = epoll::Event {
            flags: epoll::EventFlags::empty(),
            data: epoll::EventData::new_u64(0),
        };
        let mut evs = [empty; 64];
        let zero = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
        bn.iter(|| {
            let n = epoll::wait(&ep, &mut evs[..], Some(&zero)).unwrap();
            assert_eq!(n, 1);
            black_box(evs[0].data.u64())
        })
    });
    g.bench_function("nix", |bn| {
        use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
        let nep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
        nep.add(&r, EpollEvent::new(EpollFlags::EPOLLIN, 1)).unwrap();
        let mut evs = [EpollEvent::empty(); 64];
        bn.iter(|| {
            let n = nep.wait(&mut evs, EpollTimeout::ZERO).unwrap();
            assert_eq!(n, 1);
            black_box(evs[0].data())
        })
    });
    g.finish();
}

fn sendmsg_recv(c: &mut C) {
    use std::io::IoSlice;
    let mut g = c.benchmark_group("sendmsg_recv");
    let (a, b) = tcp_pair();
    let (head, tail) = ([7u8; MSG / 2], [8u8; MSG / 2]);
    let mut inb = [0u8; MSG];
    g.bench_function("libc", |bn| {
        bn.iter(|| {
            let mut iov = [
                libc::iovec {
                    iov_base: head.as_ptr() as *mut libc::c_void,
                    iov_len: head.len(),
                },
                libc::iovec {
                    iov_base: tail.as_ptr() as *mut libc::c_void,
                    iov_len: tail.len(),
                },
            ];
            // SAFETY: all-zero bytes are a valid msghdr.
            let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
            hdr.msg_iov = iov.as_mut_ptr();
            hdr.msg_iovlen = 2;
            // SAFETY: the header points at two live iovecs over live buffers.
            let n = unsafe { libc::sendmsg(a.as_raw_fd(), &hdr, libc::MSG_NOSIGNAL) };
            assert_eq!(n, MSG as isize);
            // SAFETY: `b` is open; `inb` is valid for MSG bytes.
            let n = unsafe { libc::recv(b.as_raw_fd(), inb.as_mut_ptr().cast(), MSG, 0) };
            black_box(n)
        })
    });
    g.bench_function("rustix", |bn| {
        use rustix::net::{recv, sendmsg, RecvFlags, SendAncillaryBuffer, SendFlags};
        bn.iter(|| {
            let iov = [IoSlice::new(&head), IoSlice::new(&tail)];
            let n = sendmsg(&a, &iov, &mut SendAncillaryBuffer::default(), SendFlags::NOSIGNAL).unwrap();
            assert_eq!(n, MSG);
            black_box(recv(&b, &mut inb, RecvFlags::empty()).unwrap())
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .with_measurement(ThreadCpu)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = send_recv, pipe_rw, epoll_wait, sendmsg_recv
}
criterion_main!(benches);
