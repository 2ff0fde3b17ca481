//! The opening handshake (RFC 6455 §4.2), server side: checks an HTTP
//! upgrade request and builds the `101 Switching Protocols` answer.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha1::{Digest, Sha1};

/// The GUID the accept key is derived with (RFC 6455 §1.3).
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only protocol version this server speaks.
pub const VERSION: &str = "13";

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`:
/// base64(SHA-1(key + GUID)).
///
/// # Examples
///
/// ```
/// // The example of RFC 6455 §1.3.
/// assert_eq!(
///     cport_proto::ws::accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
///     "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
/// );
/// ```
#[must_use]
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.trim().as_bytes());
    h.update(GUID.as_bytes());
    BASE64.encode(h.finalize())
}

/// Why an upgrade request was refused, and the status to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// 400: not a GET over HTTP/1.1, `Upgrade`/`Connection` missing, or a
    /// `Sec-WebSocket-Key` that is not 16 bytes in base64.
    BadRequest(&'static str),
    /// 426 with `Sec-WebSocket-Version: 13`: a version this server does not speak.
    UnsupportedVersion,
    /// 403: the `Origin` is not on the allow-list.
    ForbiddenOrigin,
}

impl HandshakeError {
    /// The HTTP status to answer with.
    #[must_use]
    pub fn status(self) -> u16 {
        match self {
            HandshakeError::BadRequest(_) => 400,
            HandshakeError::UnsupportedVersion => 426,
            HandshakeError::ForbiddenOrigin => 403,
        }
    }

    /// The complete HTTP answer (the connection closes after it).
    #[must_use]
    pub fn response(self) -> Vec<u8> {
        let (line, extra, body) = match self {
            HandshakeError::BadRequest(why) => ("400 Bad Request", "", why),
            HandshakeError::UnsupportedVersion => (
                "426 Upgrade Required",
                "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n",
                "WebSocket version 13 only",
            ),
            HandshakeError::ForbiddenOrigin => ("403 Forbidden", "", "origin not allowed"),
        };
        format!(
            "HTTP/1.1 {line}\r\n{extra}Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}\n",
            body.len() + 1
        )
        .into_bytes()
    }
}

/// A request asked to upgrade to WebSocket: `Upgrade: websocket` is present.
/// Cheap enough to ask of every request head.
#[must_use]
pub fn wants_upgrade(head: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    if !matches!(req.parse(head), Ok(httparse::Status::Complete(_))) {
        return false;
    }
    req.headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("upgrade") && has_token(h.value, "websocket"))
}

/// Who may open a WebSocket, and what the client offered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Upgrade {
    /// The answer to send: `101 Switching Protocols` with the accept key.
    pub response: Vec<u8>,
    /// The request's `Origin`, if any.
    pub origin: Option<String>,
    /// The client offered `permessage-deflate`; it was declined (left out
    /// of the answer), so every frame comes uncompressed.
    pub deflate_declined: bool,
}

/// Checks a complete request head that [`wants_upgrade`] and builds the
/// answer. `allowed_origins` empty allows every origin (and requests with
/// none, as non-browser clients send); otherwise `Origin` must be one of
/// them (compared without case).
///
/// # Errors
/// See [`HandshakeError`].
pub fn upgrade(head: &[u8], allowed_origins: &[String]) -> Result<Upgrade, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(HandshakeError::BadRequest("malformed request head")),
    }
    if req.method != Some("GET") {
        return Err(HandshakeError::BadRequest("a WebSocket handshake is a GET"));
    }
    if req.version != Some(1) {
        return Err(HandshakeError::BadRequest("a WebSocket handshake needs HTTP/1.1"));
    }
    let hs: &[httparse::Header<'_>] = req.headers;
    let get = |name: &'static str| hs.iter().filter(move |h| h.name.eq_ignore_ascii_case(name));
    if !get("upgrade").any(|h| has_token(h.value, "websocket")) {
        return Err(HandshakeError::BadRequest("Upgrade: websocket missing"));
    }
    if !get("connection").any(|h| has_token(h.value, "upgrade")) {
        return Err(HandshakeError::BadRequest("Connection: Upgrade missing"));
    }
    let mut keys = get("sec-websocket-key");
    let key = match (keys.next(), keys.next()) {
        (Some(k), None) => std::str::from_utf8(k.value).map_err(|_| HandshakeError::BadRequest("bad key"))?,
        _ => return Err(HandshakeError::BadRequest("exactly one Sec-WebSocket-Key needed")),
    };
    if !matches!(BASE64.decode(key.trim()), Ok(k) if k.len() == 16) {
        return Err(HandshakeError::BadRequest(
            "Sec-WebSocket-Key is not 16 bytes in base64",
        ));
    }
    let mut versions = get("sec-websocket-version");
    match (versions.next(), versions.next()) {
        (Some(v), None) if v.value.trim_ascii() == VERSION.as_bytes() => {}
        (None, _) => return Err(HandshakeError::BadRequest("Sec-WebSocket-Version missing")),
        _ => return Err(HandshakeError::UnsupportedVersion),
    }
    let origin = get("origin")
        .next()
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .map(|s| s.trim().to_owned());
    if !allowed_origins.is_empty() {
        let ok = origin
            .as_deref()
            .is_some_and(|o| allowed_origins.iter().any(|a| a.eq_ignore_ascii_case(o)));
        if !ok {
            return Err(HandshakeError::ForbiddenOrigin);
        }
    }
    let deflate_declined = get("sec-websocket-extensions").any(|h| has_token(h.value, "permessage-deflate"));
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key)
    )
    .into_bytes();
    Ok(Upgrade {
        response,
        origin,
        deflate_declined,
    })
}

/// Whether a comma-separated header value holds `token` (parameters after
/// `;` ignored, case-insensitive).
fn has_token(value: &[u8], token: &str) -> bool {
    value.split(|&b| b == b',').any(|item| {
        let name = item.split(|&b| b == b';').next().unwrap_or_default();
        name.trim_ascii().eq_ignore_ascii_case(token.as_bytes())
    })
}
