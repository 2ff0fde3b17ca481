//! Building response heads and small error responses.
//!
//! The server sends the head from a buffer and the body straight from the
//! file (zero-copy), so the head is built on its own. The `Date` value is
//! passed in: this crate reads no clock, and [`DateCache`] formats it once a
//! second for a busy server.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};

use super::{reason_phrase, HttpError};

/// The methods a static server allows, for the `Allow` header of a 405.
pub const ALLOW: &str = "GET, HEAD";

/// The `Content-Range` of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentRange {
    /// 206: `bytes start-end_inclusive/len`.
    Bytes {
        /// First byte offset.
        start: u64,
        /// Last byte offset, inclusive.
        end_inclusive: u64,
        /// Full length of the file.
        len: u64,
    },
    /// 416: `bytes */len`.
    Unsatisfied {
        /// Full length of the file.
        len: u64,
    },
}

/// An HTTP/1.1 response head. Fields left `None` or `false` are omitted.
///
/// For HEAD, write the same head as for GET and send no body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead<'a> {
    /// Status code; the reason phrase comes from [`reason_phrase`].
    pub status: u16,
    /// `Content-Length` (omitted for 1xx, 204 and 304, which have no body).
    pub content_length: u64,
    /// `Content-Type`.
    pub content_type: Option<&'a str>,
    /// `Last-Modified`.
    pub last_modified: Option<SystemTime>,
    /// `ETag`, already quoted (see [`etag`](super::etag)).
    pub etag: Option<&'a str>,
    /// `Content-Range`.
    pub content_range: Option<ContentRange>,
    /// `Accept-Ranges: bytes`.
    pub accept_ranges: bool,
    /// `Allow`.
    pub allow: Option<&'a str>,
    /// `Location`, for redirects.
    pub location: Option<&'a str>,
    /// `Connection: keep-alive` if true, else `Connection: close`.
    pub keep_alive: bool,
    /// Other header fields (name, value), written last, for example
    /// `("Cache-Control", "no-store")`.
    pub extra: &'a [(&'a str, &'a str)],
}

impl<'a> ResponseHead<'a> {
    /// A head with `status`, `Content-Length` and the connection choice;
    /// set the other fields directly.
    #[must_use]
    pub fn new(status: u16, content_length: u64, keep_alive: bool) -> Self {
        ResponseHead {
            status,
            content_length,
            content_type: None,
            last_modified: None,
            etag: None,
            content_range: None,
            accept_ranges: false,
            allow: None,
            location: None,
            keep_alive,
            extra: &[],
        }
    }

    /// Appends the head, blank line included, to `out`.
    ///
    /// `date` is the `Date` value (see [`DateCache`]). CR, LF and NUL are
    /// dropped from every value, so no caller-supplied string can inject a
    /// header.
    pub fn write(&self, date: &str, out: &mut BytesMut) {
        out.reserve(256);
        let _ = write!(out, "HTTP/1.1 {} {}\r\n", self.status, reason_phrase(self.status));
        out.put_slice(b"Server: cport\r\n");
        header(out, "Date", date);
        if let Some(t) = self.content_type {
            header(out, "Content-Type", t);
        }
        if !matches!(self.status, 100..=199 | 204 | 304) {
            let _ = write!(out, "Content-Length: {}\r\n", self.content_length);
        }
        if let Some(t) = self.last_modified {
            let _ = write!(out, "Last-Modified: {}\r\n", httpdate::HttpDate::from(clamp(t)));
        }
        if let Some(tag) = self.etag {
            header(out, "ETag", tag);
        }
        match self.content_range {
            Some(ContentRange::Bytes {
                start,
                end_inclusive,
                len,
            }) => {
                let _ = write!(out, "Content-Range: bytes {start}-{end_inclusive}/{len}\r\n");
            }
            Some(ContentRange::Unsatisfied { len }) => {
                let _ = write!(out, "Content-Range: bytes */{len}\r\n");
            }
            None => {}
        }
        if self.accept_ranges {
            out.put_slice(b"Accept-Ranges: bytes\r\n");
        }
        if let Some(allow) = self.allow {
            header(out, "Allow", allow);
        }
        if let Some(location) = self.location {
            header(out, "Location", location);
        }
        out.put_slice(if self.keep_alive {
            b"Connection: keep-alive\r\n"
        } else {
            b"Connection: close\r\n"
        });
        for (name, value) in self.extra {
            header(out, name, value);
        }
        out.put_slice(b"\r\n");
    }
}

/// Appends `name: value\r\n`, dropping CR, LF and NUL from `value`.
fn header(out: &mut BytesMut, name: &str, value: &str) {
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    for part in value.split(['\r', '\n', '\0']) {
        out.put_slice(part.as_bytes());
    }
    out.put_slice(b"\r\n");
}

/// `httpdate` cannot format dates before 1970 or after 9999.
fn clamp(t: SystemTime) -> SystemTime {
    const MAX_SECS: u64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) if d.as_secs() <= MAX_SECS => t,
        Ok(_) => UNIX_EPOCH + std::time::Duration::from_secs(MAX_SECS),
        Err(_) => UNIX_EPOCH,
    }
}

/// A complete error response: head plus a one-line `text/plain` body
/// (`"404 Not Found\n"`), or the head alone if `head_only` (a HEAD request).
///
/// The connection is kept only if `keep_alive` and the error allows it
/// ([`HttpError::close`]). A 405 carries `Allow: GET, HEAD`.
#[must_use]
pub fn error_response(err: &HttpError, keep_alive: bool, head_only: bool, date: &str) -> Bytes {
    let mut head = ResponseHead::new(err.status, 0, keep_alive && !err.close);
    if err.status == 405 {
        head.allow = Some(ALLOW);
    }
    with_text_body(head, err.reason, head_only, date)
}

/// A 416 Range Not Satisfiable response for a file of `len` bytes, with
/// `Content-Range: bytes */len`.
#[must_use]
pub fn unsatisfiable_response(len: u64, keep_alive: bool, head_only: bool, date: &str) -> Bytes {
    let mut head = ResponseHead::new(416, 0, keep_alive);
    head.content_range = Some(ContentRange::Unsatisfied { len });
    with_text_body(head, reason_phrase(416), head_only, date)
}

fn with_text_body(mut head: ResponseHead<'_>, reason: &str, head_only: bool, date: &str) -> Bytes {
    let body = format!("{} {reason}\n", head.status);
    head.content_length = body.len() as u64;
    head.content_type = Some("text/plain; charset=utf-8");
    let mut out = BytesMut::with_capacity(256);
    head.write(date, &mut out);
    if !head_only {
        out.put_slice(body.as_bytes());
    }
    out.freeze()
}

/// The `Content-Type` for a file, from its extension.
///
/// Text types served as UTF-8 (HTML, CSS, JavaScript, JSON, plain text,
/// Markdown, CSV, XML, SVG) get `; charset=utf-8`. Unknown extensions are
/// `application/octet-stream`.
#[must_use]
pub fn content_type(path: &Path) -> &'static str {
    let Some(mime) = mime_guess::from_path(path).first_raw() else {
        return "application/octet-stream";
    };
    match mime {
        "text/html" => "text/html; charset=utf-8",
        "text/css" => "text/css; charset=utf-8",
        "text/plain" => "text/plain; charset=utf-8",
        "text/javascript" | "application/javascript" => "text/javascript; charset=utf-8",
        "application/json" => "application/json; charset=utf-8",
        "text/markdown" => "text/markdown; charset=utf-8",
        "text/csv" => "text/csv; charset=utf-8",
        "text/xml" => "text/xml; charset=utf-8",
        "application/xml" => "application/xml; charset=utf-8",
        "image/svg+xml" => "image/svg+xml; charset=utf-8",
        other => other,
    }
}

/// Formats `t` as an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
#[must_use]
pub fn http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(clamp(t))
}

/// The `Date` header value, reformatted only when the second changes.
///
/// The caller passes the current time: this crate reads no clock.
#[derive(Debug, Clone, Default)]
pub struct DateCache {
    secs: Option<u64>,
    text: String,
}

impl DateCache {
    /// An empty cache.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The HTTP date for `now`.
    pub fn get(&mut self, now: SystemTime) -> &str {
        let now = clamp(now);
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if self.secs != Some(secs) {
            self.secs = Some(secs);
            self.text.clear();
            let _ = write!(self.text, "{}", httpdate::HttpDate::from(now));
        }
        &self.text
    }
}

#[cfg(test)]
mod tests;
