//! Uploads over real sockets into real files, on both backends: round
//! trips checked by sha-256, chunked and Content-Length, digest checks,
//! resuming a cut upload (tus HEAD/PATCH), refusals (401, 403, 408, 409,
//! 413), path escapes, and the disk filling up (507).

use cport_testutil::http as util;

use std::fs;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use cport_http::{Backend, HttpServer};
use sha2::{Digest as _, Sha256};
use util::*;

const TOKEN: &str = "s3cret-token-for-tests";

/// A server with uploads into `<site>/up` (the site is served too).
fn upload_server(backend: Backend, site: &TempDir, max: u64) -> HttpServer {
    serve_with(backend, site.path(), |c| {
        c.uploads(site.path().join("up"), TOKEN)
            .max_upload(max)
            .request_timeout(Duration::from_secs(2))
    })
}

/// Deterministic test bytes: `len` of them, from `seed` (a 64 KiB
/// pseudo-random block, each repeat marked with its index, so that no two
/// 64 KiB pieces are alike and a misplaced piece changes the digest).
fn data(len: usize, seed: u8) -> Vec<u8> {
    let mut x = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    let block: Vec<u8> = (0..1 << 16)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let mut out = Vec::with_capacity(len);
    for i in 0u32.. {
        if out.len() >= len {
            break;
        }
        let n = (len - out.len()).min(block.len());
        out.extend_from_slice(&block[..n]);
        let at = out.len() - n;
        for (o, b) in out[at..].iter_mut().zip(i.to_le_bytes()) {
            *o ^= b;
        }
    }
    out
}

fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn digest_field(sum: &[u8; 32]) -> String {
    format!("sha-256=:{}:", base64::engine::general_purpose::STANDARD.encode(sum))
}

/// Sends a PUT (Content-Length, or chunked in pieces of `piece` bytes) and
/// reads the answer.
fn put(addr: SocketAddr, name: &str, body: &[u8], chunked: Option<usize>, extra: &str) -> Response {
    let s = connect(addr);
    // A large body takes a while in a debug build on a loaded machine.
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(120))).unwrap();
    let framing = match chunked {
        Some(_) => "Transfer-Encoding: chunked".to_owned(),
        None => format!("Content-Length: {}", body.len()),
    };
    let head =
        format!("PUT /upload/{name} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n{framing}\r\n{extra}\r\n");
    let writer = {
        let mut s = s.try_clone().unwrap();
        let body = body.to_vec();
        std::thread::spawn(move || {
            s.write_all(head.as_bytes())?;
            match chunked {
                None => s.write_all(&body)?,
                Some(n) => {
                    for c in body.chunks(n) {
                        s.write_all(format!("{:x}\r\n", c.len()).as_bytes())?;
                        s.write_all(c)?;
                        s.write_all(b"\r\n")?;
                    }
                    s.write_all(b"0\r\n\r\n")?;
                }
            }
            std::io::Result::Ok(())
        })
    };
    let mut r = BufReader::new(s);
    let resp = read_response(&mut r, false).expect("an answer to the PUT");
    let _ = writer.join();
    resp
}

/// GETs `/files/<name>` and returns its status, sha-256 and length.
fn fetched(addr: SocketAddr, name: &str) -> (u16, [u8; 32], u64) {
    let s = connect(addr);
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    (&s).write_all(format!("GET /files/{name} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let r = read_response(&mut BufReader::new(s), false).expect("reading the file back");
    (r.status, sha(&r.body), r.body.len() as u64)
}

/// Names in a directory (not recursing), sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The files of uploads in progress or kept to resume.
fn temp_files(site: &TempDir) -> Vec<String> {
    names(&site.path().join("up/.cport-upload"))
}

backend_tests! {
    fn round_trips_are_byte_identical_with_both_framings(backend: Backend) {
        let site = site();
        let server = upload_server(backend, &site, 1 << 30);
        let addr = server.local_addr();
        for (i, len) in [0usize, 1, 1 << 20].into_iter().enumerate() {
            let body = data(len, i as u8);
            for (framing, chunked) in [("cl", None), ("chunked", Some(7919))] {
                let name = format!("f{len}-{framing}.bin");
                let resp = put(addr, &name, &body, chunked, "");
                assert_eq!(resp.status, 201, "{name}: {}", resp.text());
                assert_eq!(resp.header("repr-digest"), Some(digest_field(&sha(&body)).as_str()));
                assert_eq!(resp.header("location"), Some(format!("/files/{name}").as_str()));
                assert_eq!(fetched(addr, &name), (200, sha(&body), len as u64), "{name}");
                // Inside the served root, the same file is served from there too.
                let r = get(addr, &format!("/up/{name}"), &[("Range", "bytes=0-0")]);
                assert_eq!(r.status(), if len == 0 { 416 } else { 206 });
            }
        }
        assert!(temp_files(&site).is_empty(), "{:?}", temp_files(&site));
        let recent: serde_json::Value = serde_json::from_slice(&body(get(addr, "/_cport/uploads", &[]))).unwrap();
        assert_eq!(recent[0]["name"], "f1048576-chunked.bin");
    }

    fn a_200_mib_upload_round_trips(backend: Backend) {
        let site = site();
        let server = upload_server(backend, &site, 1 << 30);
        let addr = server.local_addr();
        let body = data(200 << 20, 9);
        let resp = put(addr, "big.bin", &body, None, "");
        assert_eq!(resp.status, 201, "{}", resp.text());
        assert_eq!(fetched(addr, "big.bin"), (200, sha(&body), body.len() as u64));
    }

    fn a_matching_digest_is_accepted_and_a_wrong_one_refused_with_nothing_written(backend: Backend) {
        let site = site();
        let server = upload_server(backend, &site, 1 << 30);
        let addr = server.local_addr();
        let body = data(300_000, 3);
        let good = format!("Repr-Digest: sha-512=:AAAA:, {}\r\n", digest_field(&sha(&body)));
        assert_eq!(put(addr, "ok.bin", &body, None, &good).status, 201);
        let wrong = format!("Repr-Digest: {}\r\n", digest_field(&sha(b"something else")));
        for chunked in [None, Some(4096)] {
            let resp = put(addr, "bad.bin", &body, chunked, &wrong);
            assert_eq!(resp.status, 400, "{}", resp.text());
            // The answer names what the server computed.
            assert_eq!(resp.header("repr-digest"), Some(digest_field(&sha(&body)).as_str()));
        }
        assert_eq!(put(addr, "bad.bin", &body, None, "Repr-Digest: sha-256=:notb64:\r\n").status, 400);
        assert!(!site.path().join("up/bad.bin").exists());
        assert!(temp_files(&site).is_empty(), "{:?}", temp_files(&site));
    }

    fn a_cut_upload_leaves_no_file_and_resumes_byte_identical(backend: Backend) {
        let site = site();
        let server = upload_server(backend, &site, 1 << 30);
        let addr = server.local_addr();
        let body = data(3 << 20, 5);
        let cut = 2 << 20;
        {
            let mut s = connect(addr);
            let head = format!(
                "PUT /upload/resume.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\nRepr-Digest: {}\r\n\r\n",
                body.len(),
                digest_field(&sha(&body)),
            );
            s.write_all(head.as_bytes()).unwrap();
            s.write_all(&body[..cut]).unwrap();
        } // the connection is cut here
        let head = |addr| {
            exchange(
                addr,
                format!("HEAD /upload/resume.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nTus-Resumable: 1.0.0\r\n\r\n").as_bytes(),
            )
        };
        // The server notices the cut and keeps what it wrote.
        let mut offset = 0;
        wait_until("the partial upload", || {
            let r = head(addr);
            offset = r.header("upload-offset").and_then(|v| v.parse().ok()).unwrap_or(0);
            r.status == 200
        });
        assert!(!site.path().join("up/resume.bin").exists(), "no file under its final name");
        assert!(offset <= cut as u64, "{offset}");
        assert_eq!(head(addr).header("upload-length"), Some("3145728"));
        // A PATCH at the wrong offset is refused with the right one.
        let patch = |at: u64, part: &[u8]| {
            let mut req = format!(
                "PATCH /upload/resume.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nTus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\nUpload-Offset: {at}\r\nContent-Length: {}\r\n\r\n",
                part.len()
            )
            .into_bytes();
            req.extend_from_slice(part);
            exchange(addr, &req)
        };
        let r = patch(offset + 1, b"x");
        assert_eq!((r.status, r.header("upload-offset")), (409, Some(offset.to_string().as_str())));
        // Two PATCHes complete it; the digest sent with the PUT is checked.
        let mid = offset as usize + 100_000;
        let r = patch(offset, &body[offset as usize..mid]);
        assert_eq!((r.status, r.header("upload-offset")), (204, Some(mid.to_string().as_str())));
        assert!(!site.path().join("up/resume.bin").exists());
        let r = patch(mid as u64, &body[mid..]);
        assert_eq!(r.status, 204, "{}", r.text());
        assert_eq!(r.header("repr-digest"), Some(digest_field(&sha(&body)).as_str()));
        assert_eq!(fetched(addr, "resume.bin"), (200, sha(&body), body.len() as u64));
        assert_eq!(head(addr).status, 404, "nothing left to resume");
        assert!(temp_files(&site).is_empty());
    }

    fn a_cut_chunked_upload_resumes_with_a_deferred_length(backend: Backend) {
        let site = site();
        let server = upload_server(backend, &site, 1 << 30);
        let addr = server.local_addr();
        let body = data(600_000, 6);
        {
            let mut s = connect(addr);
            let head = format!("PUT /upload/c.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n");
            s.write_all(head.as_bytes()).unwrap();
            s.write_all(format!("{:x}\r\n", 300_000).as_bytes()).unwrap();
            s.write_all(&body[..300_000]).unwrap();
            s.write_all(b"\r\n").unwrap();
        }
        let auth = format!("Authorization: Bearer {TOKEN}\r\n");
        let mut offset = 0u64;
        wait_until("the partial upload", || {
            let r = exchange(addr, format!("HEAD /upload/c.bin HTTP/1.1\r\nHost: x\r\n{auth}\r\n").as_bytes());
            offset = r.header("upload-offset").and_then(|v| v.parse().ok()).unwrap_or(0);
            r.status == 200 && r.header("upload-length").is_none()
        });
        assert!(!site.path().join("up/c.bin").exists());
        let mut req = format!(
            "PATCH /upload/c.bin HTTP/1.1\r\nHost: x\r\n{auth}Upload-Offset: {offset}\r\nUpload-Length: {}\r\nContent-Length: {}\r\n\r\n",
            body.len(),
            body.len() as u64 - offset
        )
        .into_bytes();
        req.extend_from_slice(&body[offset as usize..]);
        let r = exchange(addr, &req);
        assert_eq!(r.status, 204, "{}", r.text());
        assert_eq!(fetched(addr, "c.bin"), (200, sha(&body), body.len() as u64));
    }

    fn unauthorised_oversized_and_stalled_uploads_are_refused(backend: Backend) {
        let site = site();
        let server = upload_server(backend, &site, 1000);
        let addr = server.local_addr();
        let req = |auth: &str, len: usize| {
            format!("PUT /upload/a.txt HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {len}\r\n\r\n")
        };
        let r = exchange(addr, req("", 3).as_bytes());
        assert_eq!(r.status, 401);
        assert!(r.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")));
        assert_eq!(exchange(addr, req("Authorization: Basic eDp5\r\n", 3).as_bytes()).status, 401);
        assert_eq!(exchange(addr, req("Authorization: Bearer wrong\r\n", 3).as_bytes()).status, 403);
        let near = format!("Authorization: Bearer {}x\r\n", TOKEN);
        assert_eq!(exchange(addr, req(&near, 3).as_bytes()).status, 403);
        let auth = format!("Authorization: Bearer {TOKEN}\r\n");
        let r = exchange(addr, req(&auth, 1001).as_bytes());
        assert_eq!(r.status, 413);
        // A chunked body that grows past the limit.
        let mut s = connect(addr);
        s.write_all(format!("PUT /upload/a.txt HTTP/1.1\r\nHost: x\r\n{auth}Transfer-Encoding: chunked\r\n\r\n400\r\n").as_bytes()).unwrap();
        s.write_all(&[b'a'; 1024]).unwrap();
        let mut r = BufReader::new(s);
        assert_eq!(read_response(&mut r, false).unwrap().status, 413);
        // A body that stops arriving: 408 after the request timeout.
        let (resp, mut conn) = exchange_conn(addr, format!("{}abc", req(&auth, 10)).as_bytes());
        assert_eq!(resp.status, 408);
        assert!(closes(&mut conn));
        assert!(!site.path().join("up/a.txt").exists());
        // An upload-sized body elsewhere is refused, not read.
        let (r, mut conn) = exchange_conn(addr, format!("PUT /hello.txt HTTP/1.1\r\nHost: x\r\n{auth}Transfer-Encoding: chunked\r\n\r\n").as_bytes());
        assert_eq!(r.status, 405);
        assert!(closes(&mut conn));
        // Other methods on the upload path.
        let r = exchange(addr, format!("DELETE /upload/a.txt HTTP/1.1\r\nHost: x\r\n{auth}\r\n").as_bytes());
        assert_eq!(r.status, 405);
    }

    fn a_wrong_token_or_name_is_forbidden_and_the_body_still_read(backend: Backend) {
        let site = site();
        let server = upload_server(backend, &site, 1 << 30);
        let addr = server.local_addr();
        let req = |auth: &str, len: usize| {
            format!("PUT /upload/a.txt HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {len}\r\n\r\n")
        };
        // A refused body is read to its end before the close: the client
        // sees the answer, not a reset.
        let s = connect(addr);
        let mut w = s.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            w.write_all(req("Authorization: Bearer wrong\r\n", 2 << 20).as_bytes())?;
            w.write_all(&vec![b'z'; 2 << 20])
        });
        let mut r = BufReader::new(s);
        assert_eq!(read_response(&mut r, false).unwrap().status, 403);
        assert!(writer.join().unwrap().is_ok(), "the whole body was taken");
        assert!(closes(&mut r));
        let auth = format!("Authorization: Bearer {TOKEN}\r\n");
        let r = exchange(addr, format!("PUT /upload/.hidden HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 1\r\n\r\nx").as_bytes());
        assert_eq!(r.status, 403);
    }

    fn path_escapes_are_refused(backend: Backend) {
        let site = site();
        let server = upload_server(backend, &site, 1000);
        let addr = server.local_addr();
        let auth = format!("Authorization: Bearer {TOKEN}\r\n");
        for target in [
            "/upload/../escape.txt",
            "/upload/%2e%2e/escape.txt",
            "/upload/%2E%2E%2Fescape.txt",
            "/upload/..%2fescape.txt",
            "/upload/sub/escape.txt",
            "/upload/.cport-upload",
            "/upload/.htaccess",
            "/upload/a%00.txt",
            "/upload/a%5c..%5cescape.txt",
            "/upload/%0d%0aX:y",
            "/upload/",
            "/upload",
            "/up/../upload/x",
        ] {
            let r = exchange(addr, format!("PUT {target} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 1\r\n\r\nx").as_bytes());
            assert!(matches!(r.status, 400 | 403 | 405), "{target}: {}", r.status);
        }
        let long = format!("/upload/{}", "n".repeat(201));
        let r = exchange(addr, format!("PUT {long} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 1\r\n\r\nx").as_bytes());
        assert_eq!(r.status, 403);
        assert_eq!(names(&site.path().join("up")), vec![".cport-upload"]);
        assert!(!site.path().join("escape.txt").exists() && !site.path().parent().unwrap().join("escape.txt").exists());
        // Uploads in progress are never served.
        assert_eq!(get(addr, "/up/.cport-upload/", &[]).status(), 404);
        assert_eq!(get(addr, "/files/.cport-upload/x", &[]).status(), 404);
    }

    fn two_uploads_of_one_name_never_interleave(backend: Backend) {
        let site = site();
        let server = upload_server(backend, &site, 1 << 30);
        let addr = server.local_addr();
        let first = data(1 << 20, 1);
        let mut s = connect(addr);
        s.write_all(format!("PUT /upload/same.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n", first.len()).as_bytes()).unwrap();
        s.write_all(&first[..1000]).unwrap();
        // While the first is in progress, the second is refused.
        let mut second = None;
        wait_until("the first upload to be in progress", || {
            let r = put(addr, "same.bin", &data(5000, 2), None, "");
            second = Some(r.status);
            r.status == 409
        });
        s.write_all(&first[1000..]).unwrap();
        let resp = read_response(&mut BufReader::new(s), false).unwrap();
        assert_eq!(resp.status, 201);
        assert_eq!(fetched(addr, "same.bin"), (200, sha(&first), first.len() as u64));
        // Once it is done, a new upload replaces it whole.
        let third = data(7000, 3);
        assert_eq!(put(addr, "same.bin", &third, None, "").status, 201);
        assert_eq!(fetched(addr, "same.bin"), (200, sha(&third), third.len() as u64));
    }

    fn requests_pipelined_after_an_upload_are_answered_in_order(backend: Backend) {
        let site = site();
        let server = upload_server(backend, &site, 1 << 30);
        let addr = server.local_addr();
        let req = format!(
            "PUT /upload/p.txt HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 5\r\n\r\nhello\
             GET /files/p.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n"
        );
        let mut r = send(addr, req.as_bytes());
        assert_eq!(read_response(&mut r, false).unwrap().status, 201);
        let got = read_response(&mut r, false).unwrap();
        assert_eq!((got.status, got.text()), (200, "hello".to_owned()));
        assert_eq!(read_response(&mut r, false).unwrap().text(), "hello, world\n");
        assert!(stays_open(&mut r));
    }

    fn expect_continue_gets_a_100_first(backend: Backend) {
        let site = site();
        let server = upload_server(backend, &site, 1 << 30);
        let addr = server.local_addr();
        let mut s = connect(addr);
        s.write_all(format!("PUT /upload/c.txt HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n").as_bytes()).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        assert_eq!(read_response(&mut r, false).unwrap().status, 100);
        s.write_all(b"ok").unwrap();
        assert_eq!(read_response(&mut r, false).unwrap().status, 201);
    }

    fn a_full_disk_gives_507_and_no_file(backend: Backend) {
        // A 1 MiB tmpfs as the upload directory: mounting needs root.
        let site = site();
        let up = site.path().join("up");
        fs::create_dir_all(&up).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(&up)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("skipped: mounting a tmpfs needs root (CI runs as root)");
            return;
        }
        struct Unmount<'a>(&'a Path);
        impl Drop for Unmount<'_> {
            fn drop(&mut self) {
                let _ = std::process::Command::new("umount").arg("-l").arg(self.0).status();
            }
        }
        let _unmount = Unmount(&up);
        let server = upload_server(backend, &site, 1 << 30);
        let addr = server.local_addr();
        let body = data(4 << 20, 4);
        for chunked in [None, Some(65536)] {
            let resp = put(addr, "full.bin", &body, chunked, "");
            assert_eq!(resp.status, 507, "{}", resp.text());
            assert!(!up.join("full.bin").exists());
            wait_until("the failed upload's file to go", || temp_files(&site).is_empty());
        }
        // The disk has room again: a small upload goes through.
        assert_eq!(put(addr, "small.bin", b"fits", None, "").status, 201);
        drop(server);
    }
}

/// An upload through curl, the client most users will reach for.
#[test]
fn curl_uploads_with_a_digest() {
    if !curl_available() {
        eprintln!("skipped: curl is not installed");
        return;
    }
    let site = site();
    let server = upload_server(Backend::IoUring, &site, 1 << 30);
    let src = site.write("src.bin", data(3 << 20, 8));
    let body = fs::read(&src).unwrap();
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "20", "-o", "/dev/null", "-w", "%{http_code}", "-T"])
        .arg(&src)
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .args(["-H", &format!("Repr-Digest: {}", digest_field(&sha(&body)))])
        .arg(format!("http://{}/upload/curl.bin", server.local_addr()))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "201",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fetched(server.local_addr(), "curl.bin"),
        (200, sha(&body), body.len() as u64)
    );
    let _ = TcpStream::connect(server.local_addr());
}
