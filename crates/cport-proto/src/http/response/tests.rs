use std::time::Duration;

use super::*;

const DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

fn written(head: &ResponseHead<'_>) -> String {
    let mut out = BytesMut::new();
    head.write(DATE, &mut out);
    String::from_utf8(out.to_vec()).unwrap()
}

/// Parses a response with httparse and returns (status, headers, body).
fn reparse(bytes: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(n) = resp.parse(bytes).unwrap() else {
        panic!("incomplete response head");
    };
    let headers = resp
        .headers
        .iter()
        .map(|h| (h.name.to_owned(), String::from_utf8(h.value.to_vec()).unwrap()))
        .collect();
    (resp.code.unwrap(), headers, bytes[n..].to_vec())
}

fn get<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[test]
fn ok_head_has_every_field_in_order() {
    let mut head = ResponseHead::new(200, 1234, true);
    head.content_type = Some("text/html; charset=utf-8");
    head.last_modified = Some(UNIX_EPOCH + Duration::from_secs(784_111_777));
    head.etag = Some("\"4d2-1\"");
    head.accept_ranges = true;
    assert_eq!(
        written(&head),
        "HTTP/1.1 200 OK\r\n\
         Server: cport\r\n\
         Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
         Content-Type: text/html; charset=utf-8\r\n\
         Content-Length: 1234\r\n\
         Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
         ETag: \"4d2-1\"\r\n\
         Accept-Ranges: bytes\r\n\
         Connection: keep-alive\r\n\r\n"
    );
}

#[test]
fn partial_content_head_carries_content_range() {
    let mut head = ResponseHead::new(206, 10, false);
    head.content_range = Some(ContentRange::Bytes {
        start: 5,
        end_inclusive: 14,
        len: 100,
    });
    let text = written(&head);
    assert!(text.starts_with("HTTP/1.1 206 Partial Content\r\n"));
    let (status, headers, _) = reparse(text.as_bytes());
    assert_eq!(status, 206);
    assert_eq!(get(&headers, "Content-Range"), Some("bytes 5-14/100"));
    assert_eq!(get(&headers, "Content-Length"), Some("10"));
    assert_eq!(get(&headers, "Connection"), Some("close"));
}

#[test]
fn not_modified_has_no_content_length() {
    let mut head = ResponseHead::new(304, 999, true);
    head.etag = Some("\"x\"");
    let (status, headers, _) = reparse(written(&head).as_bytes());
    assert_eq!(status, 304);
    assert_eq!(get(&headers, "Content-Length"), None);
    assert_eq!(get(&headers, "ETag"), Some("\"x\""));
}

#[test]
fn header_values_cannot_inject_headers() {
    let mut head = ResponseHead::new(301, 0, true);
    head.location = Some("/a\r\nSet-Cookie: evil=1\0");
    let text = written(&head);
    let (_, headers, _) = reparse(text.as_bytes());
    assert_eq!(get(&headers, "Set-Cookie"), None);
    assert_eq!(get(&headers, "Location"), Some("/aSet-Cookie: evil=1"));
    let mut out = BytesMut::new();
    head.write("Mon\r\nX: y", &mut out);
    assert_eq!(get(&reparse(&out).1, "X"), None);
}

#[test]
fn extra_headers_come_last_and_cannot_inject() {
    let mut head = ResponseHead::new(200, 0, false);
    head.extra = &[("Cache-Control", "no-store"), ("X-Evil", "a\r\nSet-Cookie: b")];
    let text = written(&head);
    assert!(
        text.ends_with("Connection: close\r\nCache-Control: no-store\r\nX-Evil: aSet-Cookie: b\r\n\r\n"),
        "{text}"
    );
}

#[test]
fn error_response_has_text_body_and_honours_close() {
    let bytes = error_response(&HttpError::NOT_FOUND, true, false, DATE);
    let (status, headers, body) = reparse(&bytes);
    assert_eq!(status, 404);
    assert_eq!(body, b"404 Not Found\n");
    assert_eq!(get(&headers, "Content-Length"), Some("14"));
    assert_eq!(get(&headers, "Content-Type"), Some("text/plain; charset=utf-8"));
    assert_eq!(get(&headers, "Connection"), Some("keep-alive"));

    let bytes = error_response(&HttpError::BAD_REQUEST, true, false, DATE);
    assert_eq!(get(&reparse(&bytes).1, "Connection"), Some("close"));
    let bytes = error_response(&HttpError::NOT_FOUND, false, false, DATE);
    assert_eq!(get(&reparse(&bytes).1, "Connection"), Some("close"));
}

#[test]
fn head_error_response_has_same_headers_and_no_body() {
    let get_bytes = error_response(&HttpError::NOT_FOUND, true, false, DATE);
    let head_bytes = error_response(&HttpError::NOT_FOUND, true, true, DATE);
    let (_, get_headers, _) = reparse(&get_bytes);
    let (_, head_headers, body) = reparse(&head_bytes);
    assert_eq!(get_headers, head_headers);
    assert!(body.is_empty());
}

#[test]
fn method_not_allowed_lists_allowed_methods() {
    let bytes = error_response(&HttpError::METHOD_NOT_ALLOWED, true, false, DATE);
    let (status, headers, _) = reparse(&bytes);
    assert_eq!(status, 405);
    assert_eq!(get(&headers, "Allow"), Some("GET, HEAD"));
    assert_eq!(get(&headers, "Connection"), Some("keep-alive"));
}

#[test]
fn unsatisfiable_response_names_the_length() {
    let bytes = unsatisfiable_response(10, true, false, DATE);
    let (status, headers, body) = reparse(&bytes);
    assert_eq!(status, 416);
    assert_eq!(get(&headers, "Content-Range"), Some("bytes */10"));
    assert_eq!(body, b"416 Range Not Satisfiable\n");
}

#[test]
fn content_types_come_from_the_extension() {
    let cases = [
        ("index.html", "text/html; charset=utf-8"),
        ("INDEX.HTM", "text/html; charset=utf-8"),
        ("notes.txt", "text/plain; charset=utf-8"),
        ("app.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("data.json", "application/json; charset=utf-8"),
        ("logo.svg", "image/svg+xml; charset=utf-8"),
        ("photo.png", "image/png"),
        ("archive.tar.gz", "application/gzip"),
        ("blob.unknownext", "application/octet-stream"),
        ("Makefile", "application/octet-stream"),
    ];
    for (name, expect) in cases {
        assert_eq!(content_type(Path::new(name)), expect, "{name}");
    }
}

#[test]
fn date_cache_reformats_only_on_a_new_second() {
    let mut cache = DateCache::new();
    let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
    assert_eq!(cache.get(t), DATE);
    assert_eq!(cache.get(t + Duration::from_millis(999)), DATE);
    assert_eq!(cache.get(t + Duration::from_secs(1)), "Sun, 06 Nov 1994 08:49:38 GMT");
}

#[test]
fn dates_outside_the_formattable_range_are_clamped() {
    assert_eq!(
        http_date(UNIX_EPOCH - Duration::from_secs(5)),
        "Thu, 01 Jan 1970 00:00:00 GMT"
    );
    let far = UNIX_EPOCH + Duration::from_secs(400_000_000_000);
    assert_eq!(http_date(far), "Fri, 31 Dec 9999 23:59:59 GMT");
}
