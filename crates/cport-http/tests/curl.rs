//! The server as `curl` sees it (`curl` is required: `.ci/run` installs it,
//! and these tests fail rather than pass unchecked without it): downloads byte for byte, a resumed download, ranges, HTTP/1.0,
//! HEAD, conditional GETs, keep-alive across URLs, and refusals. On both
//! backends.

use cport_testutil::http as util;

use std::path::Path;
use std::process::{Command, Output};

use util::*;

fn curl(args: &[&str]) -> Output {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("running curl");
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `curl -w '%{http_code}'` for `url` with `args`, body to `/dev/null`.
fn status(url: &str, args: &[&str]) -> String {
    let mut all = vec!["-o", "/dev/null", "-w", "%{http_code}"];
    all.extend_from_slice(args);
    all.push(url);
    String::from_utf8(curl(&all).stdout).unwrap()
}

/// `b` has `a`'s length and is the test pattern (as `a` was written).
fn same_file(a: &Path, b: &Path) {
    let (fa, fb) = (std::fs::File::open(a).unwrap(), std::fs::File::open(b).unwrap());
    let len = fa.metadata().unwrap().len();
    assert_eq!(len, fb.metadata().unwrap().len(), "lengths differ");
    let mut fb = std::io::BufReader::with_capacity(1 << 20, fb);
    check_pattern(&mut fb, 0, len);
}

backend_tests! {
    fn curl_downloads_and_resumes_a_big_file(backend: Backend) {
        require_curl();
        let dir = TempDir::new("curlbig");
        let src = dir.path().join("big.bin");
        write_pattern_file(&src, 100);
        let out = TempDir::new("curlout");
        let server = serve(backend, dir.path());
        let url = format!("http://{}/big.bin", server.local_addr());
        let dst = out.path().join("big.bin");
        curl(&["-o", dst.to_str().unwrap(), &url]);
        same_file(&src, &dst);
        // Resume: keep the first 40 MiB + 3 bytes and let curl fetch the rest.
        let f = std::fs::OpenOptions::new().write(true).open(&dst).unwrap();
        f.set_len(40 * BLOCK as u64 + 3).unwrap();
        drop(f);
        curl(&["-C", "-", "-o", dst.to_str().unwrap(), &url]);
        same_file(&src, &dst);
        // Over HTTP/1.0 as well.
        std::fs::remove_file(&dst).unwrap();
        curl(&["--http1.0", "-o", dst.to_str().unwrap(), &url]);
        same_file(&src, &dst);
    }

    fn curl_sees_ranges_heads_conditionals_and_refusals(backend: Backend) {
        require_curl();
        let site = site();
        let server = serve(backend, site.path());
        let base = format!("http://{}", server.local_addr());
        let hello = format!("{base}/hello.txt");
        assert_eq!(curl(&[&hello]).stdout, b"hello, world\n");
        assert_eq!(curl(&["-r", "7-11", &hello]).stdout, b"world");
        assert_eq!(curl(&["-r", "-6", &hello]).stdout, b"world\n");
        assert_eq!(status(&hello, &["-r", "100-"]), "416");
        let head = String::from_utf8(curl(&["-I", &hello]).stdout).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("Content-Length: 13\r\n"), "{head}");
        assert_eq!(curl(&["--http1.0", &hello]).stdout, b"hello, world\n");
        // curl -z: If-Modified-Since from a file's time.
        let ref_file = site.path().join("hello.txt");
        assert_eq!(status(&hello, &["-z", ref_file.to_str().unwrap()]), "304");
        let etag = head
            .lines()
            .find_map(|l| l.strip_prefix("ETag: "))
            .unwrap()
            .to_owned();
        assert_eq!(status(&hello, &["-H", &format!("If-None-Match: {etag}")]), "304");
        // Several URLs on one connection (curl reuses it: one accept).
        let before = server.server_stats().accepted;
        let out = curl(&[&hello, &format!("{base}/style.css"), &format!("{base}/")]);
        assert_eq!(out.stdout, b"hello, world\nbody{}\n<h1>home</h1>\n");
        assert_eq!(server.server_stats().accepted, before + 1);
        // Refusals.
        assert_eq!(status(&format!("{base}/nope"), &[]), "404");
        assert_eq!(status(&hello, &["-X", "DELETE"]), "405");
        assert_eq!(status(&format!("{base}/%2e%2e/etc/passwd"), &["--path-as-is"]), "400");
        assert_eq!(status(&format!("{base}/../etc/passwd"), &["--path-as-is"]), "400");
        assert_eq!(status(&hello, &["-d", "x=1"]), "405");
        let long = format!("{base}/{}", "a".repeat(9000));
        assert_eq!(status(&long, &[]), "414");
        assert_eq!(status(&hello, &["-H", &format!("X-Big: {}", "b".repeat(17000))]), "431");
    }
}
