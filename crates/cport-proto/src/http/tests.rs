//! Property tests across the HTTP module: no input panics, no decoded path
//! escapes, and pipelined streams parse the same however they are split.

use std::path::Component;

use proptest::prelude::*;

use super::*;

/// Request targets built from the characters path attacks are made of.
fn hostile_target() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("/"),
            Just("."),
            Just(".."),
            Just("%2e"),
            Just("%2E"),
            Just("%2f"),
            Just("%5c"),
            Just("%00"),
            Just("%25"),
            Just("%"),
            Just("\\"),
            Just("?"),
            Just("#"),
            Just("a"),
            Just("http://h"),
        ],
        0..12,
    )
    .prop_map(|parts| parts.concat())
}

fn assert_contained(p: &DecodedPath) -> Result<(), TestCaseError> {
    prop_assert!(p.rel.is_relative());
    for c in p.rel.components() {
        prop_assert!(matches!(c, Component::Normal(_)), "component {c:?}");
        prop_assert!(c.as_os_str() != "..");
    }
    Ok(())
}

#[derive(Debug, Clone)]
struct Req {
    head: bool,
    target: String,
    close: bool,
    extra: bool,
}

impl Req {
    fn bytes(&self) -> Vec<u8> {
        let method = if self.head { "HEAD" } else { "GET" };
        let mut s = format!("{method} {} HTTP/1.1\r\nHost: example\r\n", self.target);
        if self.extra {
            s.push_str("Accept: */*\r\nRange: bytes=0-9\r\n");
        }
        if self.close {
            s.push_str("Connection: close\r\n");
        }
        s.push_str("\r\n");
        s.into_bytes()
    }
}

fn req() -> impl Strategy<Value = Req> {
    (any::<bool>(), "/[a-z0-9/._-]{0,20}", any::<bool>(), any::<bool>()).prop_map(|(head, target, close, extra)| Req {
        head,
        target,
        close,
        extra,
    })
}

proptest! {
    #[test]
    fn parse_request_never_panics_on_any_bytes(
        buf in prop::collection::vec(any::<u8>(), 0..512),
        small in any::<bool>(),
    ) {
        let limits = if small {
            Limits { max_request_line: 16, max_header_bytes: 64, max_headers: 3, max_body: 4 }
        } else {
            Limits::default()
        };
        if let Ok(Parse::Complete { head_len, .. }) = parse_request(&buf, &limits) {
            prop_assert!(head_len <= buf.len());
            prop_assert!(head_len <= limits.max_header_bytes);
        }
    }

    #[test]
    fn parse_request_never_panics_on_near_valid_heads(
        prefix in "(GET|HEAD|POST) [ -~]{0,30} HTTP/1\\.[01]\r\n",
        headers in "([A-Za-z-]{1,12}: [ -~]{0,20}\r\n){0,6}",
        end in "(\r\n)?",
    ) {
        let buf = format!("{prefix}{headers}{end}");
        let _ = parse_request(buf.as_bytes(), &Limits::default());
    }

    #[test]
    fn decoded_paths_never_escape(target in any::<String>()) {
        if let Ok(p) = decode_path(&target) {
            assert_contained(&p)?;
        }
    }

    #[test]
    fn hostile_paths_never_escape(target in hostile_target()) {
        if let Ok(p) = decode_path(&target) {
            assert_contained(&p)?;
        }
    }

    #[test]
    fn ranges_stay_inside_the_file(value in "[ -~]{0,24}", len in 0u64..50) {
        if let RangeOutcome::Partial { start, end_inclusive } = parse_range(&value, len) {
            prop_assert!(start <= end_inclusive);
            prop_assert!(end_inclusive < len);
        }
        let bytes_form = format!("bytes={value}");
        if let RangeOutcome::Partial { start, end_inclusive } = parse_range(&bytes_form, len) {
            prop_assert!(start <= end_inclusive && end_inclusive < len);
        }
    }

    #[test]
    fn pipelined_stream_parses_the_same_in_any_split(
        reqs in prop::collection::vec(req(), 1..8),
        cuts in prop::collection::vec(any::<usize>(), 0..20),
    ) {
        let stream: Vec<u8> = reqs.iter().flat_map(Req::bytes).collect();
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        points.push(stream.len());
        points.sort_unstable();

        let limits = Limits::default();
        let mut buf: Vec<u8> = Vec::new();
        let mut got = Vec::new();
        let mut fed = 0;
        for p in points {
            buf.extend_from_slice(&stream[fed..p]);
            fed = p;
            loop {
                match parse_request(&buf, &limits) {
                    Ok(Parse::Complete { request, head_len }) => {
                        got.push((request.method, request.target.to_owned(), request.keep_alive, request.range.is_some()));
                        buf.drain(..head_len);
                    }
                    Ok(Parse::Partial) => break,
                    Err(e) => return Err(TestCaseError::fail(format!("error {e}"))),
                }
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got.len(), reqs.len());
        for ((r_method, r_target, r_keep_alive, r_range), want) in got.iter().zip(&reqs) {
            let method = if want.head { Method::Head } else { Method::Get };
            prop_assert_eq!(r_method, &method);
            prop_assert_eq!(r_target, &want.target);
            prop_assert_eq!(*r_keep_alive, !want.close);
            prop_assert_eq!(*r_range, want.extra);
        }
    }
}
