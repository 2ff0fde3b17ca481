use super::*;

fn parse(buf: &[u8]) -> Result<Parse<'_>, HttpError> {
    parse_request(buf, &Limits::default())
}

/// Parses a buffer that must hold one complete head.
fn complete(buf: &[u8]) -> (Request<'_>, usize) {
    match parse(buf) {
        Ok(Parse::Complete { request, head_len }) => (request, head_len),
        other => panic!("expected a complete head, got {other:?}"),
    }
}

fn status(buf: &[u8]) -> u16 {
    match parse(buf) {
        Err(e) => e.status,
        Ok(p) => panic!("expected an error, got {p:?}"),
    }
}

#[test]
fn simple_get_is_parsed() {
    let buf = b"GET /a/b.txt?x=1 HTTP/1.1\r\nHost: example.com\r\nRange: bytes=0-9\r\n\r\n";
    let (r, head_len) = complete(buf);
    assert_eq!(head_len, buf.len());
    assert_eq!(r.method, Method::Get);
    assert_eq!(r.target, "/a/b.txt?x=1");
    assert_eq!(r.version_minor, 1);
    assert!(r.keep_alive);
    assert_eq!(r.host, Some("example.com"));
    assert_eq!(r.range, Some("bytes=0-9"));
    assert!(!r.has_body());
}

#[test]
fn incomplete_heads_are_partial_at_every_cut() {
    let buf = b"HEAD / HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n";
    for cut in 0..buf.len() {
        assert_eq!(parse(&buf[..cut]), Ok(Parse::Partial), "cut at {cut}");
    }
    assert_eq!(complete(buf).0.method, Method::Head);
}

#[test]
fn leading_blank_lines_are_skipped() {
    let (r, head_len) = complete(b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(r.target, "/");
    assert_eq!(head_len, 31);
}

#[test]
fn conditional_headers_are_captured() {
    let (r, _) = complete(
        b"GET / HTTP/1.1\r\nHost: h\r\nIf-None-Match: \"a\"\r\nif-none-match: W/\"b\"\r\n\
          If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\nIf-Range: \"a\"\r\n\r\n",
    );
    assert_eq!(r.if_none_match.as_deref(), Some("\"a\", W/\"b\""));
    assert_eq!(r.if_modified_since, Some("Sun, 06 Nov 1994 08:49:37 GMT"));
    assert_eq!(r.if_range, Some("\"a\""));
}

#[test]
fn repeated_or_non_utf8_range_is_ignored() {
    let (r, _) = complete(b"GET / HTTP/1.1\r\nHost: h\r\nRange: bytes=0-1\r\nRange: bytes=2-3\r\n\r\n");
    assert_eq!(r.range, None);
    let (r, _) = complete(b"GET / HTTP/1.1\r\nHost: h\r\nRange: bytes=\xff\r\n\r\n");
    assert_eq!(r.range, None);
}

#[test]
fn keep_alive_follows_version_and_connection_header() {
    let cases: [(&[u8], bool); 7] = [
        (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", true),
        (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", false),
        (
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Keep-Alive, CLOSE\r\n\r\n",
            false,
        ),
        (b"GET / HTTP/1.0\r\n\r\n", false),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
        (
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
            false,
        ),
        (b"GET / HTTP/1.0\r\nConnection: upgrade\r\n\r\n", false),
    ];
    for (buf, keep) in cases {
        assert_eq!(complete(buf).0.keep_alive, keep, "{}", String::from_utf8_lossy(buf));
    }
}

#[test]
fn http10_needs_no_host() {
    let (r, _) = complete(b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(r.version_minor, 0);
    assert_eq!(r.host, None);
}

#[test]
fn missing_or_repeated_host_is_400() {
    assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), 400);
}

#[test]
fn malformed_requests_are_400_and_close() {
    for buf in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
        b"GET / HTTP/1.1\r\n: empty-name\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",
        b"GET / FOO/1.1\r\n\r\n",
    ] {
        let err = parse(buf).unwrap_err();
        assert_eq!(err, HttpError::BAD_REQUEST, "{}", String::from_utf8_lossy(buf));
        assert!(err.close);
    }
}

#[test]
fn other_http_versions_are_505() {
    assert_eq!(status(b"GET / HTTP/2.0\r\n\r\n"), 505);
    assert_eq!(status(b"GET / HTTP/1.2\r\nHost: h\r\n\r\n"), 505);
}

#[test]
fn bad_content_length_is_400() {
    for cl in ["abc", "-1", "+5", "1 2", "", "99999999999999999999999"] {
        let buf = format!("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: {cl}\r\n\r\n");
        assert_eq!(status(buf.as_bytes()), 400, "{cl:?}");
    }
    assert_eq!(
        status(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
        400
    );
}

#[test]
fn transfer_encoding_framing_rules() {
    // With Content-Length: request smuggling risk.
    assert_eq!(
        status(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
        400
    );
    // In HTTP/1.0, or not ending in chunked: framing unknown.
    assert_eq!(status(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
    assert_eq!(
        status(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
        400
    );
    // Chunked: refused as a body (413) when no body is allowed, or as
    // unsupported framing (411).
    let chunked = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n";
    assert_eq!(status(chunked), 411);
    let limits = Limits {
        max_body: 0,
        ..Limits::default()
    };
    assert_eq!(parse_request(chunked, &limits), Err(HttpError::PAYLOAD_TOO_LARGE));
}

#[test]
fn a_body_past_the_limit_is_413_and_closes() {
    let none = Limits {
        max_body: 0,
        ..Limits::default()
    };
    for method in ["GET", "HEAD", "POST"] {
        let buf = format!("{method} / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello");
        let err = parse_request(buf.as_bytes(), &none).unwrap_err();
        assert_eq!(err, HttpError::PAYLOAD_TOO_LARGE);
        assert!(err.close);
        // Under the default limit the small body is framed, to be read and ignored.
        let (r, head_len) = complete(buf.as_bytes());
        assert_eq!((r.content_length, &buf.as_bytes()[head_len..]), (5, &b"hello"[..]));
    }
    let (r, _) = complete(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
    assert!(!r.has_body());
}

#[test]
fn bodies_within_max_body_are_accepted() {
    let limits = Limits {
        max_body: 5,
        ..Limits::default()
    };
    let buf = b"POST /f HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
    let Ok(Parse::Complete { request, head_len }) = parse_request(buf, &limits) else {
        panic!("complete");
    };
    assert_eq!(request.content_length, 5);
    assert!(request.has_body());
    assert_eq!(&buf[head_len..], b"hello");
    let big = b"POST /f HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\n\r\n";
    assert_eq!(parse_request(big, &limits), Err(HttpError::PAYLOAD_TOO_LARGE));
}

#[test]
fn long_request_line_is_414_before_and_after_it_completes() {
    let limits = Limits::default();
    let long_target = "/".to_owned() + &"a".repeat(limits.max_request_line);
    let incomplete = format!("GET {long_target}");
    let err = parse(incomplete.as_bytes()).unwrap_err();
    assert_eq!(err, HttpError::URI_TOO_LONG);
    assert!(err.close);
    let whole = format!("GET {long_target} HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(status(whole.as_bytes()), 414);
}

#[test]
fn request_line_of_exactly_the_limit_is_accepted() {
    let limits = Limits {
        max_request_line: 32,
        ..Limits::default()
    };
    let line = format!("GET /{} HTTP/1.1", "a".repeat(32 - 14));
    assert_eq!(line.len(), 32);
    let buf = format!("{line}\r\nHost: h\r\n\r\n");
    assert!(matches!(
        parse_request(buf.as_bytes(), &limits),
        Ok(Parse::Complete { .. })
    ));
    let buf = format!("GET /a{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(32 - 14));
    assert_eq!(parse_request(buf.as_bytes(), &limits), Err(HttpError::URI_TOO_LONG));
}

#[test]
fn oversized_head_is_431_before_and_after_it_completes() {
    let mut buf = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
    while buf.len() <= Limits::default().max_header_bytes {
        buf.extend_from_slice(format!("X-Pad: {}\r\n", "p".repeat(500)).as_bytes());
    }
    assert_eq!(status(&buf), 431, "incomplete");
    buf.extend_from_slice(b"\r\n");
    let err = parse(&buf).unwrap_err();
    assert_eq!(err, HttpError::HEADERS_TOO_LARGE);
    assert!(err.close);
}

#[test]
fn too_many_headers_is_431() {
    let head = |n: usize| {
        let mut buf = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        for i in 1..n {
            buf.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        buf.extend_from_slice(b"\r\n");
        buf
    };
    assert!(matches!(parse(&head(100)), Ok(Parse::Complete { .. })));
    assert_eq!(status(&head(101)), 431);
    assert_eq!(status(&head(HEADER_SLOTS + 1)), 431);
}

#[test]
fn methods_are_case_sensitive_and_checked_separately() {
    let (r, _) = complete(b"POST / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(r.method, Method::Other("POST".into()));
    let err = check_method(&r).unwrap_err();
    assert_eq!(err, HttpError::METHOD_NOT_ALLOWED);
    assert!(!err.close, "a 405 keeps the connection");
    let (r, _) = complete(b"get / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(r.method, Method::Other("get".into()));
    let (r, _) = complete(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(check_method(&r), Ok(()));
}

#[test]
fn pipelined_requests_parse_in_order() {
    let buf = b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nHEAD /2 HTTP/1.1\r\nHost: h\r\n\r\nGET /3 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET /4";
    let mut at = 0;
    let mut seen = Vec::new();
    while let Ok(Parse::Complete { request, head_len }) = parse(&buf[at..]) {
        seen.push((request.target.to_owned(), request.keep_alive));
        at += head_len + request.content_length as usize;
    }
    assert_eq!(
        seen,
        vec![
            ("/1".to_owned(), true),
            ("/2".to_owned(), true),
            ("/3".to_owned(), false)
        ]
    );
    assert_eq!(&buf[at..], b"GET /4");
}

#[test]
fn a_raw_space_in_the_target_is_400_not_505() {
    assert_eq!(status(b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_eq!(status(b"GET /a b c HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_eq!(status(b"GET /a HTTP/3.0\r\nHost: h\r\n\r\n"), 505);
}

#[test]
fn unrecognised_methods_are_501_and_standard_ones_405() {
    for (m, want) in [
        ("BREW", 501),
        ("get", 501),
        ("Post", 501),
        ("DELETE", 405),
        ("PATCH", 405),
    ] {
        let buf = format!("{m} / HTTP/1.1\r\nHost: h\r\n\r\n");
        let (r, _) = complete(buf.as_bytes());
        let err = check_method(&r).unwrap_err();
        assert_eq!(err.status, want, "{m}");
        assert!(!err.close, "{m}: no body, the stream is intact");
    }
}

#[test]
fn uploads_may_be_chunked_or_long_under_max_upload_only() {
    let limits = Limits {
        max_upload: 100,
        ..Limits::default()
    };
    let chunked = b"PUT /upload/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nAuthorization: Bearer t\r\nRepr-Digest: sha-256=:x:\r\nExpect: 100-continue\r\n\r\n";
    let Ok(Parse::Complete { request, .. }) = parse_request(chunked, &limits) else {
        panic!("complete");
    };
    assert!(request.chunked && request.upload.expect_continue);
    assert_eq!(request.upload.authorization, Some("Bearer t"));
    assert_eq!(request.upload.repr_digest, Some("sha-256=:x:"));
    // POST is no upload: chunked stays 411.
    let post = b"POST /upload/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(parse_request(post, &limits), Err(HttpError::LENGTH_REQUIRED));
    // Uploads off (the default): chunked PUT is 411 as before.
    assert_eq!(status(chunked), 411);
    let long =
        |n: u64| format!("PATCH /upload/a HTTP/1.1\r\nHost: h\r\nContent-Length: {n}\r\nUpload-Offset: 7\r\n\r\n");
    let at_limit = long(100);
    let Ok(Parse::Complete { request, .. }) = parse_request(at_limit.as_bytes(), &limits) else {
        panic!("complete");
    };
    assert_eq!((request.content_length, request.upload.offset), (100, Some("7")));
    assert_eq!(
        parse_request(long(101).as_bytes(), &limits),
        Err(HttpError::PAYLOAD_TOO_LARGE)
    );
}
