//! The error answer to a request: a status code and whether to close.
//!
//! Every refusal in this module maps to exactly one status, so the server
//! turns any error into a response with [`error_response`](super::error_response)
//! and never has to guess whether the connection is still in sync.

use std::fmt;

/// A request the server answers with an error status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpError {
    /// Status code, 400..=599.
    pub status: u16,
    /// Reason phrase for the status line.
    pub reason: &'static str,
    /// Whether the connection must be closed after the answer (the request
    /// stream can no longer be trusted, for example its framing is unknown).
    pub close: bool,
}

impl HttpError {
    /// 400: malformed request; closes.
    pub const BAD_REQUEST: Self = Self::new(400, true);
    /// 403: the path is not allowed.
    pub const FORBIDDEN: Self = Self::new(403, false);
    /// 404: nothing at that path.
    pub const NOT_FOUND: Self = Self::new(404, false);
    /// 405: method other than GET or HEAD (the response carries `Allow`).
    pub const METHOD_NOT_ALLOWED: Self = Self::new(405, false);
    /// 411: a chunked request body where only `Content-Length` is supported; closes.
    pub const LENGTH_REQUIRED: Self = Self::new(411, true);
    /// 413: request body over the limit; closes (the body is not read).
    pub const PAYLOAD_TOO_LARGE: Self = Self::new(413, true);
    /// 414: request line over the limit; closes.
    pub const URI_TOO_LONG: Self = Self::new(414, true);
    /// 416: the Range cannot be satisfied.
    pub const RANGE_NOT_SATISFIABLE: Self = Self::new(416, false);
    /// 431: header section over the size or count limit; closes.
    pub const HEADERS_TOO_LARGE: Self = Self::new(431, true);
    /// 500: the server failed (for example an I/O error other than not found).
    pub const INTERNAL: Self = Self::new(500, false);
    /// 501: a method the server does not recognise (methods are case-sensitive).
    pub const NOT_IMPLEMENTED: Self = Self::new(501, false);
    /// 505: an HTTP version other than 1.0 or 1.1; closes.
    pub const VERSION_NOT_SUPPORTED: Self = Self::new(505, true);

    /// An error with `status`, its standard reason phrase, and `close`.
    #[must_use]
    pub const fn new(status: u16, close: bool) -> Self {
        HttpError {
            status,
            reason: reason_phrase(status),
            close,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

impl std::error::Error for HttpError {}

/// The standard reason phrase for `status`, or `"Unknown"`.
#[must_use]
pub const fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => "Unknown",
    }
}
