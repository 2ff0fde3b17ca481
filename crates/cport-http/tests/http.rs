//! The HTTP server's features over real sockets, on both backends: files and
//! their headers, HEAD, directories, validators and 304, ranges at the
//! edges, keep-alive, `Connection: close`, HTTP/1.0, pipelining, the cache's
//! invalidation, the stats endpoint, and a 100 MiB file byte for byte.

use cport_testutil::http as util;

use std::io::{BufReader, Write};
use std::time::Duration;

use util::*;

backend_tests! {
    fn get_serves_a_file_with_its_headers(backend: Backend) {
        let site = site();
        let server = serve(backend, site.path());
        let r = get(server.local_addr(), "/hello.txt", &[]);
        assert_eq!(r.status(), 200);
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(r.header("content-length"), Some("13"));
        assert_eq!(r.header("accept-ranges"), Some("bytes"));
        let etag = r.header("etag").expect("an ETag").to_owned();
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        let modified = r.header("last-modified").expect("Last-Modified").to_owned();
        assert!(modified.ends_with(" GMT"), "{modified}");
        assert!(r.header("date").is_some());
        assert_eq!(body(r), b"hello, world\n");
    }

    fn content_type_follows_the_extension(backend: Backend) {
        let site = site();
        let server = serve(backend, site.path());
        for (path, ctype) in [
            ("/style.css", "text/css; charset=utf-8"),
            ("/app.js", "text/javascript; charset=utf-8"),
            ("/data.json", "application/json; charset=utf-8"),
            ("/index.html", "text/html; charset=utf-8"),
            ("/blob.unknownext", "application/octet-stream"),
        ] {
            let r = get(server.local_addr(), path, &[]);
            assert_eq!(r.status(), 200, "{path}");
            assert_eq!(r.header("content-type"), Some(ctype), "{path}");
        }
    }

    fn head_sends_the_headers_without_a_body(backend: Backend) {
        let site = site();
        let server = serve(backend, site.path());
        let mut r = send(
            server.local_addr(),
            b"HEAD /hello.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        let head = read_response(&mut r, true).unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.header("content-length"), Some("13"));
        // The next response starts right after the head: no body was sent.
        let next = read_response(&mut r, false).unwrap();
        assert_eq!(next.body, b"hello, world\n");
        assert_eq!(head.header("etag"), next.header("etag"));
    }

    fn empty_files_are_served(backend: Backend) {
        let site = site();
        let server = serve(backend, site.path());
        let r = exchange(server.local_addr(), b"GET /empty.txt HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-length"), Some("0"));
    }

    fn directories_serve_index_html_redirect_or_404(backend: Backend) {
        let site = site();
        let server = serve(backend, site.path());
        let addr = server.local_addr();
        assert_eq!(body(get(addr, "/", &[])), b"<h1>home</h1>\n");
        assert_eq!(body(get(addr, "/sub/", &[])), b"<p>sub</p>\n");
        let r = get(addr, "/sub?x=1", &[]);
        assert_eq!(r.status(), 301);
        assert_eq!(r.header("location"), Some("/sub/?x=1"));
        assert_eq!(get(addr, "/noindex/", &[]).status(), 404);
        assert_eq!(get(addr, "/hello.txt/", &[]).status(), 404, "a file is not a directory");
        assert_eq!(get(addr, "/missing.txt", &[]).status(), 404);
        assert_eq!(get(addr, "/missing/dir/", &[]).status(), 404);
    }

    fn listing_is_only_behind_the_flag_and_escaped(backend: Backend) {
        let site = site();
        site.write("noindex/<b>&\"x\".txt", "x");
        site.write("noindex/.hidden", "x");
        let server = serve_with(backend, site.path(), |c| c.listing(true));
        let r = get(server.local_addr(), "/noindex/", &[]);
        assert_eq!(r.status(), 200);
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        let page = String::from_utf8(body(r)).unwrap();
        assert!(page.contains("&lt;b&gt;&amp;&quot;x&quot;.txt"), "{page}");
        assert!(page.contains("href=\"%3Cb%3E%26%22x%22.txt\""), "{page}");
        assert!(page.contains("href=\"a.txt\""), "{page}");
        assert!(!page.contains("<b>") && !page.contains(".hidden"), "{page}");
        // A directory with an index still serves the index.
        assert_eq!(body(get(server.local_addr(), "/sub/", &[])), b"<p>sub</p>\n");
    }

    fn validators_give_304(backend: Backend) {
        let site = site();
        let server = serve(backend, site.path());
        let addr = server.local_addr();
        for path in ["/hello.txt", "/one.bin"] {
            let r = get(addr, path, &[]);
            let etag = r.header("etag").unwrap().to_owned();
            let modified = r.header("last-modified").unwrap().to_owned();
            let weak = format!("W/{etag}");
            let list = format!("\"nope\", {etag}");
            for h in [
                ("If-None-Match", etag.as_str()),
                ("If-None-Match", weak.as_str()),
                ("If-None-Match", list.as_str()),
                ("If-None-Match", "*"),
                ("If-Modified-Since", modified.as_str()),
            ] {
                let r = get(addr, path, &[h]);
                assert_eq!(r.status(), 304, "{path} {h:?}");
                assert_eq!(r.header("etag"), Some(etag.as_str()));
                assert!(r.header("content-length").is_none());
                assert!(body(r).is_empty());
            }
            let r = get(addr, path, &[("If-None-Match", "\"other\""), ("If-Modified-Since", &modified)]);
            assert_eq!(r.status(), 200, "If-None-Match wins over If-Modified-Since");
            let r = get(addr, path, &[("If-Modified-Since", "Mon, 01 Jan 1990 00:00:00 GMT")]);
            assert_eq!(r.status(), 200);
        }
    }

    fn ranges_at_the_edges(backend: Backend) {
        let site = site();
        let server = serve_with(backend, site.path(), |c| c.cache(0, 0)); // file ranges, not memory
        let data: Vec<u8> = (0..1024u32).map(|i| (i % 251) as u8).collect();
        check_ranges(server.local_addr(), &data);
    }

    fn ranges_from_the_cache(backend: Backend) {
        let site = site();
        let server = serve(backend, site.path());
        let data: Vec<u8> = (0..1024u32).map(|i| (i % 251) as u8).collect();
        check_ranges(server.local_addr(), &data);
        assert!(server.stats().cache.hits > 0);
    }

    fn if_range_guards_the_range(backend: Backend) {
        let site = site();
        let server = serve(backend, site.path());
        let addr = server.local_addr();
        let etag = get(addr, "/one.bin", &[]).header("etag").unwrap().to_owned();
        let r = get(addr, "/one.bin", &[("Range", "bytes=0-9"), ("If-Range", &etag)]);
        assert_eq!(r.status(), 206);
        let r = get(addr, "/one.bin", &[("Range", "bytes=0-9"), ("If-Range", "\"stale\"")]);
        assert_eq!(r.status(), 200);
        assert_eq!(body(r).len(), 1024);
    }

    fn keep_alive_serves_many_requests_on_one_connection(backend: Backend) {
        let site = site();
        let server = serve(backend, site.path());
        let s = connect(server.local_addr());
        let mut r = BufReader::new(s.try_clone().unwrap());
        for i in 0..20 {
            (&s).write_all(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let resp = read_response(&mut r, false).unwrap();
            assert_eq!((resp.status, resp.header("connection")), (200, Some("keep-alive")), "request {i}");
        }
        assert_eq!(server.server_stats().accepted, 1);
        (&s).write_all(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let resp = read_response(&mut r, false).unwrap();
        assert_eq!(resp.header("connection"), Some("close"));
        assert!(closes(&mut r), "Connection: close is honoured");
    }

    fn http10_closes_unless_asked_to_keep_alive(backend: Backend) {
        let site = site();
        let server = serve(backend, site.path());
        let addr = server.local_addr();
        let (r, mut rd) = exchange_conn(addr, b"GET /hello.txt HTTP/1.0\r\n\r\n");
        assert_eq!((r.status, r.header("connection")), (200, Some("close")));
        assert_eq!(r.body, b"hello, world\n");
        assert!(closes(&mut rd));
        let (r, mut rd) = exchange_conn(addr, b"GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!((r.status, r.header("connection")), (200, Some("keep-alive")));
        assert!(stays_open(&mut rd));
        let (r, mut rd) = exchange_conn(addr, b"HEAD / HTTP/1.0\r\n\r\n");
        assert_eq!(r.status, 200);
        assert!(closes(&mut rd));
    }

    fn pipelined_requests_are_answered_in_order(backend: Backend) {
        let site = site();
        let server = serve_with(backend, site.path(), |c| c.cache(0, 0));
        // Three requests in one write: a file range, a HEAD, a 404.
        let mut r = send(
            server.local_addr(),
            b"GET /one.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=1-3\r\n\r\n\
              HEAD /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        let a = read_response(&mut r, false).unwrap();
        let b = read_response(&mut r, true).unwrap();
        let c = read_response(&mut r, false).unwrap();
        assert_eq!((a.status, a.body.as_slice()), (206, &[1u8, 2, 3][..]));
        assert_eq!((b.status, b.header("content-length")), (200, Some("13")));
        assert_eq!(c.status, 404);
        assert!(stays_open(&mut r));
    }

    fn pipelining_stops_at_connection_close(backend: Backend) {
        let site = site();
        let server = serve(backend, site.path());
        let mut r = send(
            server.local_addr(),
            b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /style.css HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n\
              GET /app.js HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        assert_eq!(read_response(&mut r, false).unwrap().body, b"hello, world\n");
        assert_eq!(read_response(&mut r, false).unwrap().body, b"body{}\n");
        assert!(closes(&mut r), "nothing after the close");
    }

    fn many_pipelined_requests_in_one_write(backend: Backend) {
        let site = site();
        let server = serve(backend, site.path());
        let one = b"GET /one.bin HTTP/1.1\r\nHost: x\r\n\r\n";
        let all: Vec<u8> = one.iter().copied().cycle().take(one.len() * 200).collect();
        let mut r = send(server.local_addr(), &all);
        for i in 0..200 {
            let resp = read_response(&mut r, false).unwrap();
            assert_eq!((resp.status, resp.body.len()), (200, 1024), "response {i}");
        }
    }

    fn a_changed_file_is_served_fresh(backend: Backend) {
        let site = site();
        let server = serve(backend, site.path());
        let addr = server.local_addr();
        let first = get(addr, "/hello.txt", &[]);
        let tag1 = first.header("etag").unwrap().to_owned();
        assert_eq!(body(first), b"hello, world\n");
        assert_eq!(body(get(addr, "/hello.txt", &[])), b"hello, world\n");
        assert!(server.stats().cache.hits >= 1, "the second GET came from memory");
        // Same length, new bytes.
        site.write("hello.txt", "HELLO, WORLD\n");
        let r = get(addr, "/hello.txt", &[]);
        assert_ne!(r.header("etag").unwrap(), tag1);
        assert_eq!(body(r), b"HELLO, WORLD\n");
        // Replaced by another file (new inode) through a rename.
        let tmp = site.write("tmp.txt", "replaced\n");
        std::fs::rename(tmp, site.path().join("hello.txt")).unwrap();
        assert_eq!(body(get(addr, "/hello.txt", &[])), b"replaced\n");
        std::fs::remove_file(site.path().join("hello.txt")).unwrap();
        assert_eq!(get(addr, "/hello.txt", &[]).status(), 404);
    }

    fn stats_endpoint_shows_live_counters(backend: Backend) {
        let site = site();
        let server = serve(backend, site.path());
        let addr = server.local_addr();
        for _ in 0..3 {
            get(addr, "/hello.txt", &[]);
        }
        let r = get(addr, "/_cport/stats", &[]);
        assert_eq!(r.status(), 200);
        assert_eq!(r.header("content-type"), Some("application/json; charset=utf-8"));
        assert_eq!(r.header("cache-control"), Some("no-store"));
        let v: serde_json::Value = serde_json::from_slice(&body(r)).unwrap();
        assert_eq!(v["backend"], backend.name());
        assert!(v["http"]["requests"].as_u64().unwrap() >= 3);
        assert!(v["server"]["accepted"].as_u64().unwrap() >= 4);
        assert!(v["port"]["completed_total"].as_u64().unwrap() > 0);
        assert!(v["port"]["completed"]["accept"].as_u64().unwrap() >= 4);
        let js = server.stats_json();
        assert!(js.contains("\"requests\""));
        let off = serve_with(backend, site.path(), |c| c.stats_endpoint(false));
        assert_eq!(get(off.local_addr(), "/_cport/stats", &[]).status(), 404);
    }

    fn big_file_is_byte_identical(backend: Backend) {
        let dir = TempDir::new("big");
        write_pattern_file(&dir.path().join("big.bin"), 100);
        let server = serve(backend, dir.path());
        let r = get(server.local_addr(), "/big.bin", &[]);
        assert_eq!(r.status(), 200);
        assert_eq!(r.header("content-length"), Some("104857600"));
        check_pattern(&mut r.into_reader(), 0, 100 * BLOCK as u64);
        // A range across a block boundary, deep in the file.
        let start = 57 * BLOCK as u64 - 5;
        let range = format!("bytes={start}-{}", start + 3 * BLOCK as u64 - 1);
        let r = get(server.local_addr(), "/big.bin", &[("Range", &range)]);
        assert_eq!(r.status(), 206);
        check_pattern(&mut r.into_reader(), start, 3 * BLOCK as u64);
        assert!(server.stats().file_bodies >= 2, "sent as file ranges");
    }

    fn the_bundled_web_root_is_a_real_page_with_live_counters(backend: Backend) {
        let www = cport_http::bundled_www().expect("www/ beside the crate");
        let server = serve(backend, &www);
        let addr = server.local_addr();
        let page = String::from_utf8(body(get(addr, "/", &[]))).unwrap();
        assert!(page.contains("<title>cport"), "{page}");
        assert!(page.contains("/_cport/stats") && page.contains("/stats.js"));
        let r = get(addr, "/stats.js", &[]);
        assert_eq!(r.header("content-type"), Some("text/javascript; charset=utf-8"));
        assert!(String::from_utf8(body(r)).unwrap().contains("fetch(\"/_cport/stats\""));
        assert_eq!(get(addr, "/style.css", &[]).status(), 200);
        let v: serde_json::Value = serde_json::from_slice(&body(get(addr, "/_cport/stats", &[]))).unwrap();
        assert!(v["server"]["sessions"].as_u64().unwrap() >= 1);
    }

    fn access_log_and_threads(backend: Backend) {
        let site = site();
        let server = serve_with(backend, site.path(), |c| c.threads(2).access_log(true));
        let addr = server.local_addr();
        let clients: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(move || {
                    for _ in 0..25 {
                        assert_eq!(body(get(addr, "/one.bin", &[])).len(), 1024);
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        assert_eq!(server.stats().requests, 100);
        let report = server.shutdown(Duration::from_secs(2));
        assert_eq!(report.aborted, 0);
    }
}

/// Every range case against a 1 KiB file whose byte `i` is `i % 251`.
fn check_ranges(addr: std::net::SocketAddr, data: &[u8]) {
    let n = data.len() as u64;
    for (range, start, end) in [
        ("bytes=0-0".to_owned(), 0, 0),
        ("bytes=0-1023".to_owned(), 0, 1023),
        ("bytes=0-99999".to_owned(), 0, 1023),
        ("bytes=1023-".to_owned(), 1023, 1023),
        ("bytes=1023-1023".to_owned(), 1023, 1023),
        ("bytes=-1".to_owned(), 1023, 1023),
        ("bytes=-1024".to_owned(), 0, 1023),
        ("bytes=-5000".to_owned(), 0, 1023),
        ("bytes=100-199".to_owned(), 100, 199),
        ("bytes=512-".to_owned(), 512, 1023),
    ] {
        let r = get(addr, "/one.bin", &[("Range", &range)]);
        assert_eq!(r.status(), 206, "{range}");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes {start}-{end}/{n}").as_str()),
            "{range}"
        );
        assert_eq!(r.header("content-length"), Some((end - start + 1).to_string().as_str()));
        assert_eq!(body(r), &data[start as usize..=end as usize], "{range}");
    }
    for range in [
        "bytes=1024-",
        "bytes=1024-2000",
        "bytes=-0",
        "bytes=99999999999999999999-",
    ] {
        let r = get(addr, "/one.bin", &[("Range", range)]);
        assert_eq!(r.status(), 416, "{range}");
        assert_eq!(r.header("content-range"), Some("bytes */1024"), "{range}");
    }
    let r = get(addr, "/empty.txt", &[("Range", "bytes=0-")]);
    assert_eq!(r.status(), 416);
    assert_eq!(r.header("content-range"), Some("bytes */0"));
    // Ignored: several ranges, other units, bad syntax.
    for range in ["bytes=0-1,5-6", "items=0-1", "bytes=5-2", "bytes=x-"] {
        let r = get(addr, "/one.bin", &[("Range", range)]);
        assert_eq!(r.status(), 200, "{range}");
        assert_eq!(body(r), data, "{range}");
    }
    // HEAD with a range: the 206 head, no body.
    let r = exchange(addr, b"HEAD /one.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=10-19\r\n\r\n");
    assert_eq!((r.status, r.header("content-length")), (206, Some("10")));
}
