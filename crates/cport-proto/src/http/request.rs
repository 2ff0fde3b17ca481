//! Parsing an HTTP/1.1 request head into what a static file server needs.
//!
//! `httparse` does the tokenising over a fixed-size header array (no
//! allocation); this module adds the limits (414, 431), the framing rules
//! that keep a pipelined connection in sync (Content-Length versus
//! Transfer-Encoding, 413 for refused bodies), keep-alive, and borrows the
//! few header values the server uses from the buffer (nothing is copied
//! unless `If-None-Match` is repeated or the method is not GET or HEAD).

use std::borrow::Cow;

use super::HttpError;
use crate::framing::{scan_line, LineScan};

/// Headers `parse_request` can hold; [`Limits::max_headers`] above this
/// behaves as this.
pub const HEADER_SLOTS: usize = 128;

/// The methods a static server distinguishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`: the same response head as GET, without the body.
    Head,
    /// Any other method token, as sent (methods are case-sensitive).
    Other(String),
}

/// Size limits applied while parsing a request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line (method, target, version), not counting its
    /// CRLF. Longer is 414 URI Too Long. Default 8 KiB.
    pub max_request_line: usize,
    /// Longest head, request line and headers and the blank line included.
    /// Longer is 431. Default 16 KiB.
    pub max_header_bytes: usize,
    /// Most header fields (at most [`HEADER_SLOTS`]). More is 431. Default 100.
    pub max_headers: usize,
    /// Largest accepted request body. Larger is 413. Default 64 KiB: a
    /// static server reads a small body (a `GET` some clients send with
    /// one) and ignores it; 0 refuses every body.
    pub max_body: u64,
    /// Largest body of a `PUT` or `PATCH` (an upload, streamed to the
    /// consumer rather than skipped), chunked or not. Larger is 413.
    /// Default 0: uploads are off and those methods fall under `max_body`.
    pub max_upload: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: 8 * 1024,
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_body: 64 * 1024,
            max_upload: 0,
        }
    }
}

/// A parsed request head: the fields a static file server acts on, borrowed
/// from the buffer it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// The method.
    pub method: Method,
    /// The request target as sent: path and query, not decoded (see
    /// [`decode_path`](super::decode_path)).
    pub target: &'a str,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version_minor: u8,
    /// Whether the connection stays open after the response: HTTP/1.1
    /// unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
    pub keep_alive: bool,
    /// The `Host` header (required, and at most one, in HTTP/1.1).
    pub host: Option<&'a str>,
    /// The `Range` header, if exactly one was sent (see
    /// [`parse_range`](super::parse_range)).
    pub range: Option<&'a str>,
    /// The `If-Range` header.
    pub if_range: Option<&'a str>,
    /// All `If-None-Match` headers, joined with `", "` (owned only when
    /// there are several).
    pub if_none_match: Option<Cow<'a, str>>,
    /// The `If-Modified-Since` header.
    pub if_modified_since: Option<&'a str>,
    /// Length of the body that follows the head (0: no body, or a chunked
    /// one). Only uploads ([`Limits::max_upload`]) may be chunked; other
    /// chunked bodies are refused.
    pub content_length: u64,
    /// The body is `Transfer-Encoding: chunked` (an upload).
    pub chunked: bool,
    /// The headers an upload acts on.
    pub upload: UploadHeaders<'a>,
}

/// Request headers for uploads, borrowed from the buffer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadHeaders<'a> {
    /// `Authorization`.
    pub authorization: Option<&'a str>,
    /// `Repr-Digest` (RFC 9530).
    pub repr_digest: Option<&'a str>,
    /// `Upload-Offset` (tus 1.0), as sent.
    pub offset: Option<&'a str>,
    /// `Upload-Length` (tus 1.0), as sent.
    pub length: Option<&'a str>,
    /// `Expect: 100-continue`: the client waits for a 100 before the body.
    pub expect_continue: bool,
}

impl Request<'_> {
    /// Whether a body follows the head.
    #[must_use]
    pub fn has_body(&self) -> bool {
        self.content_length > 0
    }
}

/// Result of [`parse_request`] on a buffer that may hold part of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
// Returned by value and matched at once; boxing the request would cost an
// allocation per request on the hot path.
#[allow(clippy::large_enum_variant)]
pub enum Parse<'a> {
    /// The head is not complete yet: receive more and parse again.
    Partial,
    /// A complete head of `head_len` bytes. The body (`content_length`
    /// bytes) follows; the next pipelined request starts after it.
    Complete {
        /// The parsed request.
        request: Request<'a>,
        /// Bytes of the buffer the head occupies.
        head_len: usize,
    },
}

/// Parses the request head at the start of `buf`.
///
/// Call it again with more bytes after [`Parse::Partial`]. For pipelined
/// requests, parse again from `buf[head_len + content_length..]`.
///
/// # Errors
///
/// - 414 as soon as the request line is longer than `max_request_line`, even
///   before it is complete;
/// - 431 when the head exceeds `max_header_bytes` (also while incomplete) or
///   holds more than `max_headers` fields;
/// - 400 for malformed syntax, a missing or repeated `Host` in HTTP/1.1, an
///   invalid or conflicting `Content-Length`, `Transfer-Encoding` together
///   with `Content-Length`, in HTTP/1.0, or not ending in `chunked`;
/// - 413 for a body over `max_body` (any body by default), 411 for a chunked
///   body when bodies are allowed;
/// - 505 for a version other than HTTP/1.0 or HTTP/1.1 (a request line of
///   exactly three parts whose last one reads `HTTP/<digit>...`; a raw space
///   in the target is a malformed line, 400).
///
/// All of these set [`HttpError::close`]: the stream is out of sync.
///
/// # Examples
///
/// ```
/// use cport_proto::http::{parse_request, Limits, Method, Parse};
///
/// let buf = b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\nGET /next";
/// match parse_request(buf, &Limits::default()).unwrap() {
///     Parse::Complete { request, head_len } => {
///         assert_eq!(request.method, Method::Get);
///         assert_eq!(request.target, "/index.html");
///         assert!(request.keep_alive);
///         assert_eq!(&buf[head_len..], b"GET /next");
///     }
///     Parse::Partial => unreachable!(),
/// }
/// ```
pub fn parse_request<'a>(buf: &'a [u8], limits: &Limits) -> Result<Parse<'a>, HttpError> {
    // httparse skips blank lines before the request line; so do we.
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(buf.len());
    if let LineScan::TooLong { .. } = scan_line(&buf[start..], 0, limits.max_request_line) {
        return Err(HttpError::URI_TOO_LONG);
    }

    let mut headers = [httparse::EMPTY_HEADER; HEADER_SLOTS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(buf) {
        Ok(httparse::Status::Complete(head_len)) => {
            if head_len > limits.max_header_bytes || parsed.headers.len() > limits.max_headers {
                return Err(HttpError::HEADERS_TOO_LARGE);
            }
            let request = build(&parsed, limits)?;
            Ok(Parse::Complete { request, head_len })
        }
        Ok(httparse::Status::Partial) if buf.len() > limits.max_header_bytes => Err(HttpError::HEADERS_TOO_LARGE),
        Ok(httparse::Status::Partial) => Ok(Parse::Partial),
        Err(httparse::Error::TooManyHeaders) => Err(HttpError::HEADERS_TOO_LARGE),
        Err(httparse::Error::Version) if names_other_version(&buf[start..]) => Err(HttpError::VERSION_NOT_SUPPORTED),
        Err(_) => Err(HttpError::BAD_REQUEST),
    }
}

/// The methods RFC 9110 defines, plus PATCH: a server that does not allow
/// one answers 405; any other token is not implemented (501).
pub const KNOWN_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// Refuses every method but GET and HEAD: 405 for a standard method (its
/// response carries `Allow: GET, HEAD`), 501 for a token the server does
/// not recognise. Methods are case-sensitive: `get` is not `GET`.
///
/// Kept out of [`parse_request`] because a method is not a framing problem:
/// the connection stays usable, and an app with more methods can skip this.
///
/// # Errors
///
/// [`HttpError::METHOD_NOT_ALLOWED`] or [`HttpError::NOT_IMPLEMENTED`].
pub fn check_method(request: &Request<'_>) -> Result<(), HttpError> {
    match &request.method {
        Method::Get | Method::Head => Ok(()),
        Method::Other(m) => Err(method_refusal(m.as_bytes())),
    }
}

/// The refusal of a method other than GET and HEAD: 405 for a standard
/// one, 501 for anything else.
#[must_use]
pub fn method_refusal(method: &[u8]) -> HttpError {
    if KNOWN_METHODS.iter().any(|m| m.as_bytes() == method) {
        HttpError::METHOD_NOT_ALLOWED
    } else {
        HttpError::NOT_IMPLEMENTED
    }
}

/// Whether the request line is three parts whose version token is
/// `HTTP/<digit>...`: a well-formed version we do not support, rather than
/// garbage (a raw space in the target makes more parts: malformed).
fn names_other_version(line_start: &[u8]) -> bool {
    let end = memchr::memchr2(b'\r', b'\n', line_start).unwrap_or(line_start.len());
    let line = &line_start[..end];
    if line.iter().filter(|&&b| b == b' ').count() != 2 {
        return false;
    }
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or_default();
    version.len() > 5 && version[..5].eq_ignore_ascii_case(b"HTTP/") && version[5].is_ascii_digit()
}

/// Header values gathered while scanning the header fields.
#[derive(Default)]
struct Fields<'a> {
    host: Option<&'a str>,
    host_count: usize,
    content_length: Option<u64>,
    transfer_encoding: bool,
    chunked_last: bool,
    close: bool,
    keep_alive: bool,
    range: Option<&'a str>,
    range_count: usize,
    if_range: Option<&'a str>,
    if_none_match: Option<Cow<'a, str>>,
    if_modified_since: Option<&'a str>,
    upload: UploadHeaders<'a>,
}

fn build<'a>(parsed: &httparse::Request<'_, 'a>, limits: &Limits) -> Result<Request<'a>, HttpError> {
    let (Some(method), Some(target), Some(version_minor)) = (parsed.method, parsed.path, parsed.version) else {
        return Err(HttpError::BAD_REQUEST);
    };
    let mut f = Fields::default();
    for h in parsed.headers.iter() {
        read_field(&mut f, h.name, h.value)?;
    }

    if f.host_count > 1 || (version_minor >= 1 && f.host_count == 0) {
        return Err(HttpError::BAD_REQUEST);
    }
    let upload = limits.max_upload > 0 && matches!(method, "PUT" | "PATCH");
    if f.transfer_encoding {
        if version_minor == 0 || f.content_length.is_some() || !f.chunked_last {
            return Err(HttpError::BAD_REQUEST);
        }
        if !upload {
            return Err(if limits.max_body == 0 {
                HttpError::PAYLOAD_TOO_LARGE
            } else {
                HttpError::LENGTH_REQUIRED
            });
        }
    }
    let content_length = f.content_length.unwrap_or(0);
    if content_length > if upload { limits.max_upload } else { limits.max_body } {
        return Err(HttpError::PAYLOAD_TOO_LARGE);
    }

    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        other => Method::Other(other.to_owned()),
    };
    let keep_alive = !f.close && (version_minor >= 1 || f.keep_alive);
    Ok(Request {
        method,
        target,
        version_minor,
        keep_alive,
        host: f.host,
        range: if f.range_count == 1 { f.range } else { None },
        if_range: f.if_range,
        if_none_match: f.if_none_match,
        if_modified_since: f.if_modified_since,
        content_length,
        chunked: f.transfer_encoding,
        upload: f.upload,
    })
}

fn read_field<'a>(f: &mut Fields<'a>, name: &str, value: &'a [u8]) -> Result<(), HttpError> {
    let value = value.trim_ascii();
    let is = |n: &str| name.eq_ignore_ascii_case(n);
    if is("host") {
        f.host_count += 1;
        let host = std::str::from_utf8(value).map_err(|_| HttpError::BAD_REQUEST)?;
        if host.bytes().any(|b| b.is_ascii_whitespace() || b == b'/') {
            return Err(HttpError::BAD_REQUEST);
        }
        f.host = Some(host);
    } else if is("content-length") {
        let len = parse_content_length(value).ok_or(HttpError::BAD_REQUEST)?;
        if f.content_length.is_some_and(|prev| prev != len) {
            return Err(HttpError::BAD_REQUEST);
        }
        f.content_length = Some(len);
    } else if is("transfer-encoding") {
        f.transfer_encoding = true;
        let last = value.rsplit(|&b| b == b',').next().unwrap_or_default();
        f.chunked_last = last.trim_ascii().eq_ignore_ascii_case(b"chunked");
    } else if is("connection") {
        for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            f.close |= token.eq_ignore_ascii_case(b"close");
            f.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
        }
    } else if is("range") {
        f.range_count += 1;
        f.range = utf8(value);
    } else if is("if-range") {
        f.if_range = f.if_range.take().or_else(|| utf8(value));
    } else if is("if-modified-since") {
        f.if_modified_since = f.if_modified_since.take().or_else(|| utf8(value));
    } else if is("authorization") {
        f.upload.authorization = utf8(value);
    } else if is("repr-digest") {
        f.upload.repr_digest = utf8(value);
    } else if is("upload-offset") {
        f.upload.offset = utf8(value);
    } else if is("upload-length") {
        f.upload.length = utf8(value);
    } else if is("expect") {
        f.upload.expect_continue = value.eq_ignore_ascii_case(b"100-continue");
    } else if is("if-none-match") {
        if let Some(v) = utf8(value) {
            match &mut f.if_none_match {
                Some(all) => {
                    let all = all.to_mut();
                    all.push_str(", ");
                    all.push_str(v);
                }
                None => f.if_none_match = Some(Cow::Borrowed(v)),
            }
        }
    }
    Ok(())
}

/// A Content-Length value: ASCII digits only, no sign, no overflow.
fn parse_content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// A header value as text, or `None` (the header is ignored) if it is not
/// UTF-8.
fn utf8(value: &[u8]) -> Option<&str> {
    std::str::from_utf8(value).ok()
}

#[cfg(test)]
mod tests;
