//! One connection's request stream (sans-I/O): received chunks in; request
//! heads, body pieces and refusals out, in order.
//!
//! Bytes are copied only when a request head is split across chunks: a
//! chunk that holds whole requests is parsed where it lies (the receive
//! buffer itself), and body bytes are handed out where they lie. What is
//! kept between chunks is bounded by the head limits ([`parse_request`]
//! refuses a partial head past `max_header_bytes`), by the chunked
//! decoder's line bound, or, after [`Flow::Pause`], by one chunk.
//!
//! Call order: [`RequestStream::feed`] each chunk as it arrives. The
//! consumer answers each [`Event`] with a [`Flow`]: a request's body is
//! skipped unless the answer is [`Flow::ReadBody`]; after [`Flow::Stop`] or
//! a refusal the stream is finished and ignores the rest; after
//! [`Flow::Pause`] it keeps what it has not parsed until the next `feed`
//! (an empty chunk resumes it).

use bytes::{Buf as _, Bytes, BytesMut};

use super::chunked::{ChunkedDecoder, Decoded};
use super::{method_refusal, parse_request, HttpError, Limits, Parse, Request};

/// What the consumer wants after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Flow {
    /// Go on: after a request head, skip its body (if any).
    Continue,
    /// After a request head: hand its body out as [`Event::Body`] pieces
    /// and one [`Event::BodyEnd`]. Elsewhere as `Continue`.
    ReadBody,
    /// The connection is closing: ignore everything after this.
    Stop,
    /// The connection switched protocols (WebSocket): the stream ends and
    /// the bytes after this request are handed back in [`Fed::rest`].
    Upgrade,
    /// Stop parsing for now and keep the rest (for example until an
    /// upload's answer is out); the next [`RequestStream::feed`] goes on.
    Pause,
}

/// What the stream yields.
#[derive(Debug)]
pub enum Event<'a> {
    /// A complete request head, borrowing the received bytes.
    Request(Request<'a>),
    /// A piece of the body of the last request (after [`Flow::ReadBody`]),
    /// chunked framing removed.
    Body(&'a [u8]),
    /// The body of the last request (after [`Flow::ReadBody`]) is complete.
    BodyEnd,
    /// The stream broke a rule: answer with this error and close.
    Refused(HttpError),
    /// A request that asks for `Upgrade: websocket` (only when the stream
    /// was told to look for them), with its whole head for the handshake.
    Upgrade(Request<'a>, &'a [u8]),
}

/// What one [`RequestStream::feed`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fed {
    /// Request heads (and refusals) handed out.
    pub events: usize,
    /// Body bytes handed out or skipped.
    pub body_bytes: u64,
    /// After [`Flow::Upgrade`]: the received bytes that followed the
    /// upgrade request (they belong to the new protocol).
    pub rest: Option<Bytes>,
}

/// Where the stream is between request heads.
#[derive(Debug, Default)]
enum BodyState {
    /// No body in progress: the next bytes start a request head.
    #[default]
    None,
    /// This many bytes of a `Content-Length` body are still to come.
    Length { left: u64, deliver: bool },
    /// A chunked body in progress.
    Chunked { decoder: ChunkedDecoder, deliver: bool },
}

/// The request stream of one connection. See the module docs for the call order.
#[derive(Debug, Default)]
pub struct RequestStream {
    /// Received bytes not yet parsed: the start of a request head, or what
    /// followed a pause.
    pending: BytesMut,
    body: BodyState,
    /// A refusal or a `Stop` ended the stream.
    done: bool,
    /// Look for WebSocket upgrade requests.
    upgrades: bool,
}

/// Why parsing of one `feed` ended early.
enum End {
    Finish,
    Pause,
    Upgrade,
}

impl RequestStream {
    /// A stream that reports WebSocket upgrade requests as [`Event::Upgrade`].
    #[must_use]
    pub fn with_upgrades() -> RequestStream {
        RequestStream {
            upgrades: true,
            ..RequestStream::default()
        }
    }

    /// `true` while part of a request (head or body) has arrived and the
    /// rest has not: a request timer should run.
    #[must_use]
    pub fn has_partial(&self) -> bool {
        !self.done && (!self.pending.is_empty() || !matches!(self.body, BodyState::None))
    }

    /// `true` while bytes wait unparsed after a [`Flow::Pause`] (or a
    /// partial head): an empty [`feed`](Self::feed) goes on with them.
    #[must_use]
    pub fn has_pending(&self) -> bool {
        !self.done && !self.pending.is_empty()
    }

    /// `true` once the stream ended (refused, or stopped by the consumer).
    #[must_use]
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Ends the stream: nothing more is parsed (the connection is closing).
    pub fn finish(&mut self) {
        self.done = true;
        self.pending = BytesMut::new();
        self.body = BodyState::None;
    }

    /// Feeds one received chunk (empty: go on after a pause); `on` gets
    /// every event in order, and at most one refusal, which ends the stream.
    pub fn feed(&mut self, chunk: &[u8], limits: &Limits, mut on: impl FnMut(Event<'_>) -> Flow) -> Fed {
        let mut fed = Fed::default();
        if self.done {
            return fed;
        }
        // Parse in place when nothing is pending (the common case), else
        // append to what is.
        let mut owned = None;
        let data: &[u8] = if self.pending.is_empty() {
            chunk
        } else {
            self.pending.extend_from_slice(chunk);
            &owned.insert(std::mem::take(&mut self.pending))[..]
        };
        let (off, end) = self.parse(data, limits, &mut on, &mut fed);
        match end {
            Some(End::Finish) => self.finish(),
            Some(End::Upgrade) => {
                fed.rest = (off < data.len()).then(|| Bytes::copy_from_slice(&data[off..]));
                self.finish();
            }
            Some(End::Pause) | None if off < data.len() => match owned {
                Some(mut buf) => {
                    buf.advance(off);
                    self.pending = buf;
                }
                // Nothing was pending: `data` is `chunk`.
                None => self.pending.extend_from_slice(&chunk[off..]),
            },
            Some(End::Pause) | None => {}
        }
        fed
    }

    /// Parses `data` until it is used up or the consumer ends or pauses;
    /// returns how far it got.
    fn parse(
        &mut self,
        data: &[u8],
        limits: &Limits,
        on: &mut impl FnMut(Event<'_>) -> Flow,
        fed: &mut Fed,
    ) -> (usize, Option<End>) {
        let mut off = 0;
        loop {
            // A body in progress first.
            let flow = match &mut self.body {
                BodyState::None => None,
                BodyState::Length { left, deliver } => {
                    let n = (*left).min((data.len() - off) as u64) as usize;
                    let piece = &data[off..off + n];
                    off += n;
                    *left -= n as u64;
                    fed.body_bytes += n as u64;
                    let (ended, deliver) = (*left == 0, *deliver);
                    if ended {
                        self.body = BodyState::None;
                    }
                    let mut flow = Flow::Continue;
                    if deliver && n > 0 {
                        flow = on(Event::Body(piece));
                    }
                    if deliver && ended && flow == Flow::Continue {
                        flow = on(Event::BodyEnd);
                    }
                    Some(flow)
                }
                BodyState::Chunked { decoder, deliver } => {
                    let deliver = *deliver;
                    match decoder.decode(&data[off..]) {
                        Ok(Decoded::Data { start, end }) => {
                            let piece = &data[off + start..off + end];
                            off += end;
                            fed.body_bytes += piece.len() as u64;
                            Some(if deliver {
                                on(Event::Body(piece))
                            } else {
                                Flow::Continue
                            })
                        }
                        Ok(Decoded::More) => {
                            off = data.len();
                            Some(Flow::Continue)
                        }
                        Ok(Decoded::End { used }) => {
                            off += used;
                            self.body = BodyState::None;
                            Some(if deliver { on(Event::BodyEnd) } else { Flow::Continue })
                        }
                        Err(err) => {
                            fed.events += 1;
                            let _ = on(Event::Refused(err));
                            return (off, Some(End::Finish));
                        }
                    }
                }
            };
            match flow {
                Some(Flow::Stop) => return (off, Some(End::Finish)),
                Some(Flow::Pause) => return (off, Some(End::Pause)),
                Some(_) | None => {}
            }
            if flow.is_some() {
                if off == data.len() {
                    return (off, None);
                }
                continue;
            }
            if off == data.len() {
                return (off, None);
            }
            let (request, head_len) = match parse_request(&data[off..], limits) {
                Ok(Parse::Partial) => return (off, None),
                Ok(Parse::Complete { request, head_len }) => (request, head_len),
                Err(err) => {
                    fed.events += 1;
                    let _ = on(Event::Refused(refine(err, &data[off..], limits)));
                    return (off, Some(End::Finish));
                }
            };
            let head = &data[off..off + head_len];
            off += head_len;
            fed.events += 1;
            let (length, chunked) = (request.content_length, request.chunked);
            let max = if chunked { limits.max_upload } else { 0 };
            let ev = if self.upgrades && crate::ws::wants_upgrade(head) {
                Event::Upgrade(request, head)
            } else {
                Event::Request(request)
            };
            let flow = on(ev);
            let deliver = flow == Flow::ReadBody;
            if chunked {
                self.body = BodyState::Chunked {
                    decoder: ChunkedDecoder::new(max),
                    deliver,
                };
            } else if length > 0 || deliver {
                self.body = BodyState::Length { left: length, deliver };
            }
            match flow {
                Flow::Continue | Flow::ReadBody => {}
                Flow::Stop => return (off, Some(End::Finish)),
                Flow::Upgrade => return (off, Some(End::Upgrade)),
                Flow::Pause => return (off, Some(End::Pause)),
            }
        }
    }
}

/// A body refused (413) on a method other than GET or HEAD (or an upload's
/// PUT or PATCH when uploads are on) is answered 405 (501 for an
/// unrecognised method): the method is the real problem. Either way the
/// connection closes, as the body is not read.
fn refine(err: HttpError, head: &[u8], limits: &Limits) -> HttpError {
    if err != HttpError::PAYLOAD_TOO_LARGE {
        return err;
    }
    let start = head
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(head.len());
    let method = head[start..].split(|&b| b == b' ').next().unwrap_or_default();
    let upload = limits.max_upload > 0 && (method == b"PUT" || method == b"PATCH");
    if method == b"GET" || method == b"HEAD" || upload {
        err
    } else {
        HttpError {
            close: true,
            ..method_refusal(method)
        }
    }
}

#[cfg(test)]
mod tests;
