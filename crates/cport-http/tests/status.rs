//! Status codes the way RFC 9110 hands them out: a raw space in the target
//! is a malformed request (400, not 505), a method the server does not
//! recognise is 501 (methods are case-sensitive), a small body on a `GET`
//! is read and ignored (413 only past the body limit), and the access log
//! records the bytes of error replies. On both backends.

use cport_testutil::http as util;

use std::io::Write;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use util::*;

/// Everything logged under `cport_http::access` by this test binary.
fn access_log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("cport_http::access=info"))
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .try_init();
        log
    })
    .clone()
}

/// A `Write` into the shared log.
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

backend_tests! {
    fn a_raw_space_in_the_target_is_400_and_closes(backend: Backend) {
        access_log(); // first, so this binary's logs go where the log test reads them
        let site = site();
        let server = serve(backend, site.path());
        let (r, mut rd) = exchange_conn(server.local_addr(), b"GET /hello world.txt HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(closes(&mut rd));
        // A real version the server does not speak is still 505.
        let (r, _) = exchange_conn(server.local_addr(), b"GET /hello.txt HTTP/3.0\r\nHost: x\r\n\r\n");
        assert_eq!(r.status, 505);
    }

    fn an_unrecognised_method_is_501_and_keeps_the_connection(backend: Backend) {
        access_log(); // first, so this binary's logs go where the log test reads them
        let site = site();
        let server = serve(backend, site.path());
        for m in ["BREW", "get", "Head", "M-SEARCH"] {
            let req = format!("{m} /hello.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n");
            let (r, mut rd) = exchange_conn(server.local_addr(), req.as_bytes());
            assert_eq!(r.status, 501, "{m}");
            assert_eq!(r.text(), "501 Not Implemented\n", "{m}");
            let next = read_response(&mut rd, false).unwrap();
            assert_eq!((next.status, next.text()), (200, "hello, world\n".to_owned()), "{m}");
        }
        // With a body past the limit the body is not read: 501 and close.
        let (r, mut rd) = exchange_conn(
            server.local_addr(),
            format!("BREW / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", 1 << 20).as_bytes(),
        );
        assert_eq!(r.status, 501);
        assert!(closes(&mut rd));
    }

    fn a_small_body_on_get_is_read_and_ignored(backend: Backend) {
        access_log(); // first, so this binary's logs go where the log test reads them
        let site = site();
        let server = serve(backend, site.path());
        // The body is split from its head and followed by a pipelined request.
        let mut rd = send(server.local_addr(), b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\n\r\nGET /x HTT");
        std::thread::sleep(std::time::Duration::from_millis(50));
        rd.get_mut().write_all(b"P/1.1\r\nGET /one.bin HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let r = read_response(&mut rd, false).unwrap();
        assert_eq!((r.status, r.text()), (200, "hello, world\n".to_owned()));
        let r = read_response(&mut rd, false).unwrap();
        assert_eq!((r.status, r.body.len()), (200, 1024), "the body was skipped, not parsed");
        assert!(stays_open(&mut rd));
        // Past the limit (64 KiB by default): 413, and the connection closes.
        let (r, mut rd) = exchange_conn(
            server.local_addr(),
            format!("GET /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", 64 * 1024 + 1).as_bytes(),
        );
        assert_eq!(r.status, 413);
        assert!(closes(&mut rd));
    }

    fn the_access_log_records_the_bytes_of_error_replies(backend: Backend) {
        let log = access_log();
        let site = site();
        let server = serve_with(backend, site.path(), |c| c.access_log(true));
        let tag = format!("/missing-{}-{}", backend.name(), std::process::id());
        let (r, _) = exchange_conn(server.local_addr(), format!("GET {tag} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        assert_eq!((r.status, r.body.len()), (404, "404 Not Found\n".len()));
        let (r, _) = exchange_conn(server.local_addr(), format!("HEAD {tag}-head HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        assert_eq!(r.status, 404);
        let line = |needle: &str| {
            let text = String::from_utf8_lossy(&log.lock()).into_owned();
            text.lines().find(|l| l.contains(needle)).map(str::to_owned)
        };
        wait_until("the access log line", || line(&format!("\"{tag}\"")).is_some());
        let get = line(&format!("\"{tag}\"")).unwrap();
        assert!(get.contains("status=404") && get.contains("bytes=14"), "{get}");
        wait_until("the HEAD's log line", || line(&format!("\"{tag}-head\"")).is_some());
        let head = line(&format!("\"{tag}-head\"")).unwrap();
        assert!(head.contains("status=404") && head.contains("bytes=0"), "a HEAD sends no body: {head}");
        // A refusal of the stream itself (no method or target to log).
        let (r, _) = exchange_conn(server.local_addr(), format!("GET {tag} x HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        assert_eq!((r.status, r.body.len()), (400, "400 Bad Request\n".len()));
        let peer_refusals = || {
            let text = String::from_utf8_lossy(&log.lock()).into_owned();
            text.lines().filter(|l| l.contains("status=400") && l.contains("bytes=16")).count()
        };
        wait_until("the 400's log line", || peer_refusals() > 0);
    }
}
