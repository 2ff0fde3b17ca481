//! The HTTP request stream: pipelined request heads (and bodies, when the
//! limits allow them) parsed one after another from arbitrary bytes, as the
//! server does, then the path, range and method rules on what parsed.
//!
//! Invariants beyond "no panic": a complete head lies within the input and
//! is not empty; a body never exceeds the body limit; a head that parsed
//! from a prefix of the stream parses the same from all of it (more bytes
//! never change a complete head); every error is a 4xx/5xx status; a
//! decoded path is relative with no `..`; a partial range lies in the file.
//!
//! Then the same bytes through `RequestStream` (the server's connection
//! parser, chunked upload bodies included), cut into pieces the input
//! chooses: no more body handed out than arrived or than the upload limit
//! allows, every body piece inside a request that asked for it, nothing
//! after the stream ended, and pauses lose nothing.
#![no_main]

use std::path::Component;

use cport_proto::http::{
    check_method, decode_path, parse_range, parse_request, Event, Flow, Limits, Method, Parse, RangeOutcome, RequestStream,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, input)) = data.split_first() else {
        return;
    };
    // Small limits reach the 414/431/413 paths with short inputs.
    let limits = if knobs & 1 == 0 {
        Limits::default()
    } else {
        Limits {
            max_request_line: 64,
            max_header_bytes: 256,
            max_headers: 4,
            max_body: u64::from(knobs >> 4) * 16,
            max_upload: u64::from(knobs >> 2) * 64,
        }
    };
    stream(knobs, input, &limits);
    let mut pos = 0;
    // Each round consumes at least one byte, so this ends.
    while pos < input.len() {
        let rest = &input[pos..];
        let parsed = match parse_request(rest, &limits) {
            Ok(p) => p,
            Err(e) => {
                assert!((400..=599).contains(&e.status), "{e:?}");
                assert!(e.close, "a parse error leaves the stream out of sync: {e:?}");
                return;
            }
        };
        let Parse::Complete { request, head_len } = parsed else {
            return;
        };
        assert!(
            head_len > 0 && head_len <= rest.len(),
            "head_len {head_len} of {}",
            rest.len()
        );
        assert!(request.content_length <= limits.max_body);
        assert!(request.version_minor <= 1);
        // More bytes never change a complete head.
        if head_len < rest.len() {
            match parse_request(&rest[..head_len], &limits) {
                Ok(Parse::Complete {
                    request: again,
                    head_len: n,
                }) => {
                    assert_eq!(n, head_len);
                    assert_eq!(again, request);
                }
                other => panic!("the head alone parsed as {other:?}"),
            }
        }
        let _ = check_method(&request);
        if let Ok(path) = decode_path(request.target) {
            assert!(
                path.rel.components().all(|c| matches!(c, Component::Normal(_))),
                "{path:?}"
            );
        }
        if let Some(range) = request.range {
            for len in [0, 1, 1000, u64::MAX] {
                if let RangeOutcome::Partial { start, end_inclusive } = parse_range(range, len) {
                    assert!(start <= end_inclusive && end_inclusive < len, "{range:?} of {len}");
                }
            }
        }
        let Some(next) = (head_len as u64)
            .checked_add(request.content_length)
            .and_then(|n| pos.checked_add(usize::try_from(n).ok()?))
        else {
            return;
        };
        pos = next;
    }
});

/// Feeds `input` to a `RequestStream` in pieces of 1 to 64 bytes (sizes
/// from the input itself), reading the bodies of PUT and PATCH, pausing at
/// every other body end.
fn stream(knobs: u8, input: &[u8], limits: &Limits) {
    let mut s = RequestStream::default();
    let (mut in_body, mut body, mut total_body, mut ended) = (false, 0u64, 0u64, false);
    let mut pause = knobs & 2 != 0;
    let mut at = 0;
    let mut step = 0usize;
    while at < input.len() {
        let n = 1 + (input[(at + step) % input.len()] as usize % 64);
        step += 1;
        let piece = &input[at..(at + n).min(input.len())];
        at += piece.len();
        let mut chunk = piece;
        loop {
            let mut paused = false;
            let _ = s.feed(chunk, limits, |ev| {
                assert!(!ended, "an event after the stream ended");
                match ev {
                    Event::Request(r) | Event::Upgrade(r, _) => {
                        assert!(!in_body, "a request inside a body");
                        let upload = matches!(&r.method, Method::Other(m) if m == "PUT" || m == "PATCH");
                        if upload {
                            in_body = true;
                            body = 0;
                            Flow::ReadBody
                        } else {
                            Flow::Continue
                        }
                    }
                    Event::Body(b) => {
                        assert!(in_body && !b.is_empty());
                        body += b.len() as u64;
                        total_body += b.len() as u64;
                        assert!(body <= limits.max_upload.max(limits.max_body), "{body}");
                        Flow::Continue
                    }
                    Event::BodyEnd => {
                        assert!(in_body);
                        in_body = false;
                        pause = !pause;
                        paused = pause;
                        if pause {
                            Flow::Pause
                        } else {
                            Flow::Continue
                        }
                    }
                    Event::Refused(e) => {
                        assert!((400..=599).contains(&e.status) && e.close, "{e:?}");
                        ended = true;
                        Flow::Stop
                    }
                }
            });
            chunk = &[];
            if !paused {
                break;
            }
        }
        assert!(total_body <= at as u64);
    }
}
