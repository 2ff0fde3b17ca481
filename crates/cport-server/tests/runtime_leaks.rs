//! A runtime and its servers leave nothing behind: once the servers shut
//! down and the last runtime handle drops, every worker thread is joined
//! and every descriptor (port, listeners, sessions) closed. A test binary
//! of its own, so no other test's threads or fds are counted.

use cport_testutil::server as util;

use cport_server::{Backend, Runtime};
use util::*;

/// This process's threads, io_uring's own idle kernel workers left out.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|t| !std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with("iou-")))
        .count()
}

#[test]
fn a_runtime_and_its_servers_leave_no_thread_or_fd() {
    for backend in [Backend::IoUring, Backend::Epoll] {
        let (t0, f0) = (threads(), cport_testutil::fd_count());
        let rt = Runtime::builder()
            .threads(3)
            .concurrency(2)
            .backend(backend)
            .build()
            .unwrap();
        let a = builder(backend).runtime(&rt).start(Echo::default()).unwrap();
        let b = builder(backend).runtime(&rt).start(Echo::default()).unwrap();
        let mut ca = connect(a.local_addr());
        let mut cb = connect(b.local_addr());
        assert_eq!(round_trip(&mut ca, b"a", 1), b"a");
        assert_eq!(round_trip(&mut cb, b"b", 1), b"b");
        assert!(threads() >= t0 + 3, "the runtime's workers run");
        a.shutdown(LONG);
        drop((ca, cb));
        b.shutdown(LONG);
        drop(rt);
        assert!(
            eventually(LONG, || threads() == t0 && cport_testutil::fd_count() == f0),
            "{backend:?}: threads {t0} -> {}, fds {f0} -> {}",
            threads(),
            cport_testutil::fd_count()
        );
    }
}
