//! Property tests across the HTTP module: no input panics, no decoded path
//! escapes, and pipelined streams parse the same however they are split.

use std::path::Component;

use proptest::prelude::*;

use super::*;
use crate::coverage::run_with_coverage;

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
    fn parse_request_never_panics_on_near_valid_heads(
        prefix in "(GET|HEAD|POST) [ -~]{0,30} HTTP/1\\.[01]\r\n",
        headers in "([A-Za-z-]{1,12}: [ -~]{0,20}\r\n){0,6}",
        end in "(\r\n)?",
    ) {
        let buf = format!("{prefix}{headers}{end}");
        let _ = parse_request(buf.as_bytes(), &Limits::default());
    }

    #[test]
    fn hostile_paths_never_escape(target in hostile_target()) {
        if let Ok(p) = decode_path(&target) {
            assert_contained(&p)?;
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

/// One bound of a `bytes=N-M` range for a file of `len` bytes: mostly near
/// the end of the file (inside, at, just past), sometimes huge.
fn bound(len: u64) -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => 0..len + 3,
        1 => Just(u64::MAX),
        1 => any::<u64>(),
    ]
}

/// A single byte range as a client writes it, with the file length:
/// `bytes=N-M` (also inverted), `bytes=N-`, `bytes=-N`, spelled with the
/// case and spacing clients use.
fn range_request() -> impl Strategy<Value = (Option<u64>, Option<u64>, u64, String)> {
    (0u64..40)
        .prop_flat_map(|len| {
            let bounds = prop_oneof![
                6 => (bound(len), bound(len)).prop_map(|(a, b)| (Some(a), Some(b))),
                2 => bound(len).prop_map(|a| (Some(a), None)),
                2 => bound(len).prop_map(|n| (None, Some(n))),
                1 => Just((None, None)),
            ];
            (
                bounds,
                Just(len),
                prop_oneof![Just("bytes"), Just("Bytes"), Just("BYTES")],
                any::<bool>(),
            )
        })
        .prop_map(|((first, last), len, unit, padded)| {
            let show = |b: Option<u64>| b.map(|n| n.to_string()).unwrap_or_default();
            let mut value = format!("{unit}={}-{}", show(first), show(last));
            if padded {
                value = format!(" {value} ");
            }
            (first, last, len, value)
        })
}

/// What RFC 9110 and `parse_range`'s documentation say a single range gives.
fn expected_range(first: Option<u64>, last: Option<u64>, len: u64) -> RangeOutcome {
    use RangeOutcome::{Full, Partial, Unsatisfiable};
    match (first, last) {
        (None, None) => Full,
        (None, Some(0)) => Unsatisfiable,
        (None, Some(_)) if len == 0 => Unsatisfiable,
        (None, Some(n)) => Partial {
            start: len - n.min(len),
            end_inclusive: len - 1,
        },
        // An inverted range is invalid syntax, ignored whatever the length.
        (Some(a), Some(b)) if b < a => Full,
        (Some(a), _) if a >= len => Unsatisfiable,
        (Some(a), b) => Partial {
            start: a,
            end_inclusive: b.unwrap_or(u64::MAX).min(len - 1),
        },
    }
}

#[test]
fn ranges_stay_inside_the_file() {
    run_with_coverage(
        range_request(),
        1024,
        &[
            ("partial", 200),
            ("unsatisfiable", 50),
            ("inverted", 50),
            ("inverted past the end", 10),
        ],
        |(first, last, len, value)| {
            let got = parse_range(&value, len);
            prop_assert_eq!(got, expected_range(first, last, len), "{:?} of {} bytes", value, len);
            Ok(match got {
                RangeOutcome::Partial { start, end_inclusive } => {
                    prop_assert!(start <= end_inclusive && end_inclusive < len);
                    prop_assert_eq!(got.partial_len(), end_inclusive - start + 1);
                    "partial"
                }
                RangeOutcome::Unsatisfiable => "unsatisfiable",
                RangeOutcome::Full => match (first, last) {
                    (Some(a), Some(b)) if b < a && a >= len => "inverted past the end",
                    (Some(a), Some(b)) if b < a => "inverted",
                    _ => "full",
                },
            })
        },
    );
}

/// A path segment as it is meant (before encoding): a name, or one of the
/// segments the decoder must drop or refuse.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-zA-Z0-9._~ %?#+-]{1,8}",
        1 => Just("é日".to_owned()),
        1 => Just(String::new()),
        1 => Just(".".to_owned()),
        2 => Just("..".to_owned()),
    ]
}

/// `text` percent-encoded the way clients and attackers do: each byte
/// encoded or not as `mask` says (in upper or lower case hex), and always
/// for the bytes that would otherwise end or break the path.
fn encode(text: &str, mask: &[bool], upper: bool) -> String {
    let mut out = String::new();
    for (i, b) in text.bytes().enumerate() {
        let must = matches!(b, b'%' | b'?' | b'#') || !b.is_ascii();
        if must || mask.get(i % mask.len().max(1)).copied().unwrap_or(false) {
            if upper {
                out.push_str(&format!("%{b:02X}"));
            } else {
                out.push_str(&format!("%{b:02x}"));
            }
        } else {
            out.push(char::from(b));
        }
    }
    out
}

/// A request target for a path of real segments, encoded, with an optional
/// absolute-form prefix, query and fragment.
fn encoded_target() -> impl Strategy<Value = (Vec<String>, String)> {
    (
        prop::collection::vec(segment(), 0..6),
        prop::collection::vec(any::<bool>(), 1..8),
        any::<bool>(),
        any::<bool>(),
        prop_oneof![Just(""), Just("?q=/../x"), Just("#/.."), Just("?a#b")],
        any::<bool>(),
    )
        .prop_map(|(segments, mask, upper, absolute, tail, encode_slash)| {
            let slash = if encode_slash { "%2F" } else { "/" };
            let mut target = String::from(if absolute { "http://host.example/" } else { "/" });
            let encoded: Vec<String> = segments.iter().map(|s| encode(s, &mask, upper)).collect();
            target.push_str(&encoded.join(slash));
            target.push_str(tail);
            (segments, target)
        })
}

#[test]
fn decoded_paths_never_escape() {
    run_with_coverage(
        encoded_target(),
        1024,
        &[("served", 300), ("refused", 50), ("encoded dot-dot refused", 20)],
        |(segments, target)| {
            let got = decode_path(&target);
            if segments.iter().any(|s| s == "..") {
                prop_assert_eq!(got, Err(PathError::DotDot), "{:?}", target);
                let encoded = target.contains("%2e") || target.contains("%2E");
                return Ok(if encoded { "encoded dot-dot refused" } else { "refused" });
            }
            let p = match got {
                Ok(p) => p,
                Err(e) => return Err(TestCaseError::fail(format!("{target:?} refused: {e}"))),
            };
            assert_contained(&p)?;
            let names: std::path::PathBuf = segments.iter().filter(|s| !matches!(s.as_str(), "" | ".")).collect();
            prop_assert_eq!(&p.rel, &names, "{:?}", target);
            let dir = matches!(segments.last().map_or("", String::as_str), "" | ".");
            prop_assert_eq!(p.dir, dir, "{:?}", target);
            Ok("served")
        },
    );
}

/// What a client might send: a well-formed request, or one cut short, with
/// a byte changed or inserted, or any bytes at all.
fn request_bytes() -> impl Strategy<Value = Vec<u8>> {
    let valid = || {
        (prop::collection::vec(req(), 1..3), any::<bool>()).prop_map(|(reqs, bare_lf)| {
            let bytes: Vec<u8> = reqs.iter().flat_map(Req::bytes).collect();
            if bare_lf {
                String::from_utf8(bytes).unwrap().replace("\r\n", "\n").into_bytes()
            } else {
                bytes
            }
        })
    };
    prop_oneof![
        3 => valid(),
        2 => (valid(), any::<prop::sample::Index>()).prop_map(|(b, at)| b[..at.index(b.len() + 1)].to_vec()),
        2 => (valid(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(mut b, at, x)| {
            let i = at.index(b.len());
            b[i] = x;
            b
        }),
        1 => (valid(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(mut b, at, x)| {
            b.insert(at.index(b.len() + 1), x);
            b
        }),
        2 => prop::collection::vec(any::<u8>(), 0..512),
    ]
}

#[test]
fn parse_request_never_panics_on_any_bytes() {
    run_with_coverage(
        (request_bytes(), any::<bool>()),
        1024,
        &[("complete", 120), ("partial", 50), ("refused", 50)],
        |(buf, small)| {
            let limits = if small {
                Limits {
                    max_request_line: 16,
                    max_header_bytes: 64,
                    max_headers: 3,
                    max_body: 4,
                    max_upload: 0,
                }
            } else {
                Limits::default()
            };
            Ok(match parse_request(&buf, &limits) {
                Ok(Parse::Complete { request, head_len }) => {
                    prop_assert!(head_len <= buf.len());
                    prop_assert!(head_len <= limits.max_header_bytes);
                    prop_assert!(buf[..head_len].ends_with(b"\n\n") || buf[..head_len].ends_with(b"\n\r\n"));
                    let head = String::from_utf8_lossy(&buf[..head_len]);
                    prop_assert!(
                        head.contains(request.target),
                        "target {:?} not in the head",
                        request.target
                    );
                    "complete"
                }
                Ok(Parse::Partial) => {
                    prop_assert!(buf.len() <= limits.max_header_bytes);
                    "partial"
                }
                Err(e) => {
                    prop_assert!(e.close, "a framing error closes the connection: {}", e);
                    "refused"
                }
            })
        },
    );
}
