//! One connection's request stream (sans-I/O): received chunks in, parsed
//! requests and refusals out, in order.
//!
//! Bytes are copied only when a request head is split across chunks: a
//! chunk that holds whole requests is parsed where it lies (the receive
//! buffer itself). What is kept between chunks is bounded by the head
//! limits: [`parse_request`] refuses a partial head past `max_header_bytes`.
//!
//! Call order: [`RequestStream::feed`] each chunk as it arrives; after an
//! event the callback answers [`Flow::Stop`] to, or after a refusal, the
//! stream is finished and ignores the rest.

use bytes::{Buf as _, BytesMut};
use cport_proto::http::{method_refusal, parse_request, HttpError, Limits, Parse, Request};

/// Whether the consumer wants the next request of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Go on with the next pipelined request.
    Continue,
    /// The connection is closing: ignore everything after this.
    Stop,
    /// The connection switched protocols (WebSocket): the stream ends and
    /// the bytes after this request are handed back in [`Fed::rest`].
    Upgrade,
}

/// What the stream yields.
#[derive(Debug)]
pub(crate) enum Event<'a> {
    /// A complete request head (its body, if any, is skipped), borrowing
    /// the received bytes.
    Request(Request<'a>),
    /// The stream broke a rule: answer with this error and close.
    Refused(HttpError),
    /// A request that asks for `Upgrade: websocket` (only when the stream
    /// was told to look for them), with its whole head for the handshake.
    Upgrade(Request<'a>, &'a [u8]),
}

/// The request stream of one connection. See the module docs for the call order.
#[derive(Debug, Default)]
pub(crate) struct RequestStream {
    /// Received bytes not yet parsed: the start of a request head.
    pending: BytesMut,
    /// Body bytes of the last request still to skip.
    discard: u64,
    /// A refusal or a `Stop` ended the stream.
    done: bool,
    /// Look for WebSocket upgrade requests.
    upgrades: bool,
}

/// What one [`RequestStream::feed`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Fed {
    /// Requests (and refusals) handed out.
    pub events: usize,
    /// After [`Flow::Upgrade`]: the received bytes that followed the
    /// upgrade request (they belong to the new protocol).
    pub rest: Option<bytes::Bytes>,
}

impl RequestStream {
    /// A stream that reports WebSocket upgrade requests as [`Event::Upgrade`].
    pub(crate) fn with_upgrades() -> RequestStream {
        RequestStream {
            upgrades: true,
            ..RequestStream::default()
        }
    }

    /// `true` while part of a request (head or skipped body) has arrived and
    /// the rest has not: the request timer runs.
    pub(crate) fn has_partial(&self) -> bool {
        !self.done && (!self.pending.is_empty() || self.discard > 0)
    }

    /// `true` once the stream ended (refused, or stopped by the consumer).
    #[cfg(test)]
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// Ends the stream: nothing more is parsed (the connection is closing).
    pub(crate) fn finish(&mut self) {
        self.done = true;
        self.pending = BytesMut::new();
        self.discard = 0;
    }

    /// Feeds one received chunk; `on` gets every complete request (and at
    /// most one refusal, which ends the stream) in order.
    pub(crate) fn feed(&mut self, chunk: &[u8], limits: &Limits, mut on: impl FnMut(Event<'_>) -> Flow) -> Fed {
        let mut fed = Fed::default();
        if self.done {
            return fed;
        }
        let mut chunk = chunk;
        if self.discard > 0 {
            let n = self.discard.min(chunk.len() as u64);
            chunk = &chunk[n as usize..];
            self.discard -= n;
        }
        if chunk.is_empty() {
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
        let mut off = 0;
        while off < data.len() {
            match parse_request(&data[off..], limits) {
                Ok(Parse::Partial) => break,
                Ok(Parse::Complete { request, head_len }) => {
                    off += head_len;
                    let body = request.content_length;
                    let here = body.min((data.len() - off) as u64);
                    off += here as usize;
                    self.discard = body - here;
                    fed.events += 1;
                    let head = &data[off - head_len - here as usize..off - here as usize];
                    let ev = if self.upgrades && cport_proto::ws::wants_upgrade(head) {
                        Event::Upgrade(request, head)
                    } else {
                        Event::Request(request)
                    };
                    match on(ev) {
                        Flow::Continue => {}
                        Flow::Stop => {
                            self.finish();
                            return fed;
                        }
                        Flow::Upgrade => {
                            fed.rest = (off < data.len()).then(|| bytes::Bytes::copy_from_slice(&data[off..]));
                            self.finish();
                            return fed;
                        }
                    }
                }
                Err(err) => {
                    fed.events += 1;
                    let _ = on(Event::Refused(refine(err, &data[off..])));
                    self.finish();
                    return fed;
                }
            }
        }
        if off < data.len() {
            match owned {
                Some(mut buf) => {
                    buf.advance(off);
                    self.pending = buf;
                }
                // Nothing was pending: `data` is `chunk`.
                None => self.pending.extend_from_slice(&chunk[off..]),
            }
        }
        fed
    }
}

/// A body refused (413) on a method other than GET or HEAD is answered 405
/// (501 for an unrecognised method): the method is the real problem. Either
/// way the connection closes, as the body is not read.
fn refine(err: HttpError, head: &[u8]) -> HttpError {
    if err != HttpError::PAYLOAD_TOO_LARGE {
        return err;
    }
    let start = head
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(head.len());
    let method = head[start..].split(|&b| b == b' ').next().unwrap_or_default();
    if method == b"GET" || method == b"HEAD" {
        err
    } else {
        HttpError {
            close: true,
            ..method_refusal(method)
        }
    }
}

#[cfg(test)]
mod tests {
    use cport_proto::http::Method;

    use super::*;

    fn collect(stream: &mut RequestStream, chunks: &[&[u8]]) -> Vec<Result<String, u16>> {
        let mut out = Vec::new();
        for c in chunks {
            stream.feed(c, &Limits::default(), |ev| {
                match ev {
                    Event::Request(r) | Event::Upgrade(r, _) => out.push(Ok(r.target.to_owned())),
                    Event::Refused(e) => out.push(Err(e.status)),
                }
                Flow::Continue
            });
        }
        out
    }

    #[test]
    fn pipelined_requests_come_out_in_order_however_split() {
        let all = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.0\r\n\r\n";
        for cut1 in 0..all.len() {
            for cut2 in cut1..all.len() {
                let mut s = RequestStream::default();
                let got = collect(&mut s, &[&all[..cut1], &all[cut1..cut2], &all[cut2..]]);
                assert_eq!(
                    got,
                    vec![Ok("/a".into()), Ok("/b".into()), Ok("/c".into())],
                    "{cut1} {cut2}"
                );
                assert!(!s.has_partial());
            }
        }
    }

    #[test]
    fn partial_head_is_kept_until_complete() {
        let mut s = RequestStream::default();
        assert!(collect(&mut s, &[b"GET / HT"]).is_empty());
        assert!(s.has_partial());
        assert_eq!(collect(&mut s, &[b"TP/1.1\r\nHost: x\r\n\r\n"]), vec![Ok("/".into())]);
        assert!(!s.has_partial());
    }

    #[test]
    fn refusal_ends_the_stream() {
        let mut s = RequestStream::default();
        let got = collect(
            &mut s,
            &[
                b"GARBAGE\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET / HTTP/1.1\r\n",
            ],
        );
        assert_eq!(got, vec![Err(400)]);
        assert!(s.is_done() && !s.has_partial());
    }

    #[test]
    fn stop_ignores_the_rest() {
        let mut s = RequestStream::default();
        let mut n = 0;
        s.feed(
            b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n",
            &Limits::default(),
            |_| {
                n += 1;
                Flow::Stop
            },
        );
        assert_eq!(n, 1);
        assert!(s.is_done());
    }

    #[test]
    fn oversized_partial_head_is_refused_not_buffered() {
        let mut s = RequestStream::default();
        let mut got = collect(&mut s, &[b"GET / HTTP/1.1\r\nHost: x\r\n"]);
        let filler = vec![b'a'; 1000];
        for _ in 0..20 {
            got.extend(collect(&mut s, &[b"X-Filler: ", &filler, b"\r\n"]));
        }
        assert_eq!(got, vec![Err(431)]);
        assert!(!s.has_partial());
    }

    #[test]
    fn body_over_the_limit_on_other_methods_is_405_or_501_and_on_get_413() {
        let none = Limits {
            max_body: 0,
            ..Limits::default()
        };
        let refused = |req: &[u8]| {
            let mut s = RequestStream::default();
            let mut out = Vec::new();
            s.feed(req, &none, |ev| {
                if let Event::Refused(e) = ev {
                    out.push((e.status, e.close));
                }
                Flow::Continue
            });
            out
        };
        let body = "Host: x\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(
            refused(format!("POST / HTTP/1.1\r\n{body}").as_bytes()),
            vec![(405, true)]
        );
        assert_eq!(
            refused(format!("BREW / HTTP/1.1\r\n{body}").as_bytes()),
            vec![(501, true)]
        );
        assert_eq!(
            refused(format!("GET / HTTP/1.1\r\n{body}").as_bytes()),
            vec![(413, true)]
        );
    }

    #[test]
    fn a_small_body_on_get_is_read_and_ignored() {
        let mut s = RequestStream::default();
        let got = collect(
            &mut s,
            &[
                b"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nab",
                b"cGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
            ],
        );
        assert_eq!(got, vec![Ok("/a".into()), Ok("/b".into())]);
        assert!(!s.has_partial());
    }

    #[test]
    fn allowed_bodies_are_skipped_across_chunks() {
        let limits = Limits {
            max_body: 10,
            ..Limits::default()
        };
        let mut s = RequestStream::default();
        let mut methods = Vec::new();
        for c in [
            &b"PUT /a HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nab"[..],
            b"cd",
            b"efGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
        ] {
            s.feed(c, &limits, |ev| {
                if let Event::Request(r) = ev {
                    methods.push((r.method, r.target.to_owned()));
                }
                Flow::Continue
            });
        }
        assert_eq!(
            methods,
            vec![(Method::Other("PUT".into()), "/a".into()), (Method::Get, "/b".into())]
        );
    }

    #[test]
    fn upgrade_hands_back_the_bytes_after_it() {
        let req = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
        for cut in 1..req.len() {
            let mut s = RequestStream::with_upgrades();
            let mut seen = 0;
            let mut rest = None;
            for c in [&req[..cut], &[&req[cut..], &b"\x81\x80"[..]].concat()[..]] {
                let fed = s.feed(c, &Limits::default(), |ev| {
                    assert!(matches!(ev, Event::Upgrade(r, head) if r.target == "/ws" && head == req));
                    seen += 1;
                    Flow::Upgrade
                });
                rest = rest.or(fed.rest);
            }
            assert_eq!(seen, 1);
            assert_eq!(rest.as_deref(), Some(&b"\x81\x80"[..]), "cut {cut}");
            assert!(s.is_done());
        }
        // Without upgrades enabled the same request is a plain request.
        let mut s = RequestStream::default();
        let mut plain = false;
        s.feed(req, &Limits::default(), |ev| {
            plain = matches!(ev, Event::Request(_));
            Flow::Continue
        });
        assert!(plain);
    }
}
