//! An HTTP server handed over as a plain `cport_server::Server` (how `cport
//! serve` runs it beside the echo and chat servers) keeps serving, keeps
//! its request timeout (the server core's session timer: no thread of its
//! own), and leaves no thread behind once shut down. One test per binary:
//! it counts the process's threads.

use cport_testutil::http as util;

use std::time::Duration;

use cport_http::Backend;
use util::*;

/// Threads of this process.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// Threads of this process named like the request timer it once had.
fn timer_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end().starts_with("cport-http-tim"))
        })
        .count()
}

#[test]
fn into_server_keeps_serving_and_cleans_up() {
    for backend in [Backend::IoUring, Backend::Epoll] {
        let site = site();
        let before = threads();
        let http = serve_with(backend, site.path(), |c| c.request_timeout(Duration::from_millis(300)));
        assert_eq!(timer_threads(), 0, "the request timeout runs on the server's own timer");
        let server = http.into_server();
        let addr = server.local_addr();
        let r = exchange(addr, b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(r.body, b"hello, world\n");
        let mut rd = send(addr, b"GET /hello.txt HTTP/1.1\r\n");
        let r = read_response(&mut rd, false).unwrap_or_else(|e| panic!("{}: {e}", backend.name()));
        assert_eq!(r.status, 408, "{}", backend.name());
        server.shutdown(Duration::from_secs(1));
        wait_until("every thread of the server to end", || threads() == before);
    }
}
