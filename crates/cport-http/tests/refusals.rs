//! Every refusal is a proper HTTP answer, closed when the stream can no
//! longer be trusted: 414, 431, 413, 405 with `Allow`, 400, 505, 404/403 for
//! paths that try to leave the root (`..`, `%2e%2e`, backslash, NUL,
//! symlinks out of the root, FIFOs), and 408 or a close for clients that
//! are too slow or idle. On both backends.

use cport_testutil::http as util;

use std::io::{BufReader, Write};
use std::time::{Duration, Instant};

use util::*;

/// A web root beside a secret that must never be served.
fn jail() -> (TempDir, TempDir) {
    let outside = TempDir::new("outside");
    outside.write("secret.txt", "TOP SECRET\n");
    let site = site();
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), site.path().join("leak.txt")).unwrap();
    std::os::unix::fs::symlink(outside.path(), site.path().join("leakdir")).unwrap();
    std::os::unix::fs::symlink("hello.txt", site.path().join("alias.txt")).unwrap();
    std::os::unix::fs::symlink("sub", site.path().join("subalias")).unwrap();
    (site, outside)
}

/// A GET of `path` with `Host` and `n` more header fields.
fn with_headers(path: &str, n: usize) -> String {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n");
    for i in 0..n {
        req.push_str(&format!("X-H{i}: v\r\n"));
    }
    req.push_str("\r\n");
    req
}

backend_tests! {
    fn request_line_over_the_limit_is_414_and_closes(backend: Backend) {
        let site = site();
        let server = serve(backend, site.path());
        let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
        let (r, mut rd) = exchange_conn(server.local_addr(), long.as_bytes());
        assert_eq!(r.status, 414);
        assert_eq!(r.header("connection"), Some("close"));
        assert!(closes(&mut rd));
        // Refused before the line is even complete.
        let mut rd = send(server.local_addr(), format!("GET /{}", "a".repeat(9000)).as_bytes());
        assert_eq!(read_response(&mut rd, false).unwrap().status, 414);
        assert!(closes(&mut rd));
    }

    fn headers_over_the_limits_are_431_and_close(backend: Backend) {
        let site = site();
        let server = serve(backend, site.path());
        let big = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "b".repeat(17 * 1024));
        let (r, mut rd) = exchange_conn(server.local_addr(), big.as_bytes());
        assert_eq!(r.status, 431);
        assert!(closes(&mut rd));
        let many = with_headers("/", 101);
        let (r, mut rd) = exchange_conn(server.local_addr(), many.as_bytes());
        assert_eq!(r.status, 431);
        assert!(closes(&mut rd));
        // Under both limits is fine.
        let ok = with_headers("/hello.txt", 90);
        assert_eq!(exchange(server.local_addr(), ok.as_bytes()).status, 200);
    }

    fn request_bodies_past_the_limit_are_413_and_close(backend: Backend) {
        let site = site();
        let server = serve_with(backend, site.path(), |c| {
            c.limits(cport_http::Limits {
                max_body: 4,
                ..Default::default()
            })
        });
        let (r, mut rd) = exchange_conn(
            server.local_addr(),
            b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        );
        assert_eq!(r.status, 413);
        assert!(closes(&mut rd));
        let (r, mut rd) = exchange_conn(
            server.local_addr(),
            b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        );
        assert_eq!(r.status, 411);
        assert!(closes(&mut rd));
    }

    fn other_methods_are_405_with_allow(backend: Backend) {
        let site = site();
        let server = serve(backend, site.path());
        for m in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
            let req = format!("{m} /hello.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n");
            let (r, mut rd) = exchange_conn(server.local_addr(), req.as_bytes());
            assert_eq!(r.status, 405, "{m}");
            assert_eq!(r.header("allow"), Some("GET, HEAD"), "{m}");
            // Without a body the stream is intact: the next request is served.
            assert_eq!(read_response(&mut rd, false).unwrap().status, 200, "{m}");
        }
        // With a small body it is 405 too; the body is read and skipped, so
        // the next request is served.
        let (r, mut rd) = exchange_conn(
            server.local_addr(),
            b"POST /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
        assert_eq!(read_response(&mut rd, false).unwrap().status, 200);
    }

    fn malformed_requests_are_400_and_close(backend: Backend) {
        let site = site();
        let server = serve(backend, site.path());
        for req in [
            &b"GARBAGE\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\n\r\n",                             // no Host
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",       // two Hosts
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
            b"GET  HTTP/1.1\r\nHost: x\r\n\r\n",
            b"\x00\x01\x02\x03\r\n\r\n",
        ] {
            let (r, mut rd) = exchange_conn(server.local_addr(), req);
            assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(req));
            assert!(closes(&mut rd), "{:?}", String::from_utf8_lossy(req));
        }
        let (r, mut rd) = exchange_conn(server.local_addr(), b"GET / HTTP/2.0\r\nHost: x\r\n\r\n");
        assert_eq!(r.status, 505);
        assert!(closes(&mut rd));
    }

    fn bad_paths_are_400_and_keep_the_connection(backend: Backend) {
        let site = site();
        let server = serve(backend, site.path());
        for target in ["/../hello.txt", "/%2e%2e/hello.txt", "/sub/%2E%2E/%2e%2e/x", "/a\\..\\b", "/%5c..%5cb",
                       "/x%00.txt", "/%zz", "*", "hello.txt", "/%ff%fe"] {
            let req = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\nGET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n");
            let (r, mut rd) = exchange_conn(server.local_addr(), req.as_bytes());
            assert_eq!(r.status, 400, "{target}");
            assert_eq!(read_response(&mut rd, false).unwrap().status, 200, "{target}: connection kept");
        }
    }

    fn nothing_outside_the_root_is_served(backend: Backend) {
        let (site, outside) = jail();
        let server = serve_with(backend, site.path(), |c| c.listing(true));
        let addr = server.local_addr();
        let secret_name = outside.path().file_name().unwrap().to_str().unwrap().to_owned();
        for target in [
            "/leak.txt".to_owned(),
            "/leakdir/secret.txt".to_owned(),
            "/leakdir/".to_owned(),
            format!("/../{secret_name}/secret.txt"),
            format!("/%2e%2e/{secret_name}/secret.txt"),
            format!("/sub/..%2f..%2f{secret_name}/secret.txt"),
            format!("/..%5c{secret_name}%5csecret.txt"),
            "/leak.txt%00.html".to_owned(),
            format!("http://x/../{secret_name}/secret.txt"),
        ] {
            let req = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
            let r = exchange(addr, req.as_bytes());
            assert!(matches!(r.status, 400 | 403 | 404), "{target}: {}", r.status);
            assert!(!r.text().contains("TOP SECRET"), "{target} leaked");
        }
        // Repeated, so a cached answer cannot leak either.
        for _ in 0..3 {
            assert_eq!(exchange(addr, b"GET /leak.txt HTTP/1.1\r\nHost: x\r\n\r\n").status, 403);
        }
        // Symlinks that stay inside the root are fine.
        assert_eq!(exchange(addr, b"GET /alias.txt HTTP/1.1\r\nHost: x\r\n\r\n").body, b"hello, world\n");
        assert_eq!(exchange(addr, b"GET /subalias/ HTTP/1.1\r\nHost: x\r\n\r\n").body, b"<p>sub</p>\n");
    }

    /// A directory whose `index.html` leads out of the root is refused (403),
    /// not listed or called missing; so is a symlink into a sibling directory
    /// whose name starts with the root's (`<root>-private`).
    fn an_index_or_sibling_symlink_out_of_the_root_is_refused(backend: Backend) {
        let (site, outside) = jail();
        std::fs::create_dir(site.path().join("box")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.txt"), site.path().join("box/index.html")).unwrap();
        let mut sibling = site.path().as_os_str().to_owned();
        sibling.push("-private");
        let sibling = std::path::PathBuf::from(sibling);
        std::fs::create_dir_all(&sibling).unwrap();
        std::fs::write(sibling.join("secret.txt"), "TOP SECRET\n").unwrap();
        std::os::unix::fs::symlink(sibling.join("secret.txt"), site.path().join("sib.txt")).unwrap();
        let server = serve_with(backend, site.path(), |c| c.listing(true));
        let addr = server.local_addr();
        for target in ["/box/", "/sib.txt"] {
            let req = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
            let r = exchange(addr, req.as_bytes());
            assert_eq!(r.status, 403, "{target}: {}", r.text());
            assert!(!r.text().contains("TOP SECRET"), "{target} leaked");
        }
        let _ = std::fs::remove_dir_all(&sibling);
    }

    fn a_path_turned_into_an_escaping_symlink_is_refused_even_when_cached(backend: Backend) {
        let (site, outside) = jail();
        std::fs::write(outside.path().join("secret.txt"), "TOP SECRET X\n").unwrap(); // same length as hello.txt
        let server = serve(backend, site.path());
        let addr = server.local_addr();
        assert_eq!(exchange(addr, b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n").body, b"hello, world\n");
        std::fs::remove_file(site.path().join("hello.txt")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.txt"), site.path().join("hello.txt")).unwrap();
        let r = exchange(addr, b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(r.status, 403);
        assert!(!r.text().contains("SECRET"));
    }

    fn special_files_are_refused_without_blocking(backend: Backend) {
        let site = site();
        rustix::fs::mkfifoat(rustix::fs::CWD, site.path().join("fifo"), rustix::fs::Mode::from_bits_truncate(0o644)).unwrap();
        let server = serve(backend, site.path());
        let t0 = Instant::now();
        assert_eq!(exchange(server.local_addr(), b"GET /fifo HTTP/1.1\r\nHost: x\r\n\r\n").status, 403);
        assert!(t0.elapsed() < Duration::from_secs(2));
    }

    fn a_slow_request_head_gets_408_and_a_close(backend: Backend) {
        let site = site();
        let server = serve_with(backend, site.path(), |c| c.request_timeout(Duration::from_millis(400)));
        let s = connect(server.local_addr());
        let t0 = Instant::now();
        // Slow loris: a byte at a time, never finishing. Progress does not
        // extend the deadline: it runs from the first byte.
        for b in b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nX-Slow: " {
            if (&s).write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(30));
            if t0.elapsed() > Duration::from_secs(3) {
                break;
            }
        }
        let mut rd = BufReader::new(s);
        let r = read_response(&mut rd, false).unwrap();
        assert_eq!(r.status, 408);
        assert_eq!(r.header("connection"), Some("close"));
        assert!(closes(&mut rd));
        let elapsed = t0.elapsed();
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
        assert_eq!(server.stats().timeouts, 1);
    }

    fn a_request_completed_in_time_is_served(backend: Backend) {
        let site = site();
        let server = serve_with(backend, site.path(), |c| c.request_timeout(Duration::from_millis(800)));
        let s = connect(server.local_addr());
        for part in [&b"GET /hello"[..], b".txt HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"] {
            (&s).write_all(part).unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut rd = BufReader::new(s);
        assert_eq!(read_response(&mut rd, false).unwrap().status, 200);
        // The timer does not fire on an idle keep-alive connection after it.
        std::thread::sleep(Duration::from_millis(1200));
        (rd.get_ref()).write_all(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut rd, false).unwrap().status, 200);
        assert_eq!(server.stats().timeouts, 0);
    }

    fn idle_connections_are_closed(backend: Backend) {
        let site = site();
        let server = serve_with(backend, site.path(), |c| c.idle_timeout(Duration::from_millis(400)));
        let s = connect(server.local_addr());
        let t0 = Instant::now();
        let mut rd = BufReader::new(s);
        // Nothing sent at all: closed without an answer.
        let mut b = [0u8; 1];
        let n = std::io::Read::read(rd.get_mut(), &mut b).unwrap_or(0);
        assert_eq!(n, 0);
        assert!(t0.elapsed() < Duration::from_secs(3));
        wait_until("the idle disconnect to be counted", || {
            server.server_stats().disconnects_of(cport_server::ReasonKind::IdleTimeout) == 1
        });
    }

    fn a_client_that_does_not_read_is_cut_off(backend: Backend) {
        let dir = TempDir::new("slowreader");
        write_pattern_file(&dir.path().join("big.bin"), 32);
        let server = serve_with(backend, dir.path(), |c| c.idle_timeout(Duration::from_millis(500)));
        let s = connect(server.local_addr());
        (&s).write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        // Never read: the send stalls, the idle timer ends the connection.
        wait_until("the stalled download to be cut", || server.server_stats().sessions == 0);
    }
}
