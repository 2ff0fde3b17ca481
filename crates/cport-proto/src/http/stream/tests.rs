use super::*;
use crate::http::Method;

fn collect(stream: &mut RequestStream, chunks: &[&[u8]]) -> Vec<Result<String, u16>> {
    let mut out = Vec::new();
    for c in chunks {
        let _ = stream.feed(c, &Limits::default(), |ev| {
            match ev {
                Event::Request(r) | Event::Upgrade(r, _) => out.push(Ok(r.target.to_owned())),
                Event::Refused(e) => out.push(Err(e.status)),
                Event::Body(_) | Event::BodyEnd => unreachable!("no body was asked for"),
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
    let _ = s.feed(
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
    let refused = |req: &[u8], limits: &Limits| {
        let mut s = RequestStream::default();
        let mut out = Vec::new();
        let _ = s.feed(req, limits, |ev| {
            if let Event::Refused(e) = ev {
                out.push((e.status, e.close));
            }
            Flow::Continue
        });
        out
    };
    let body = "Host: x\r\nContent-Length: 3\r\n\r\nabc";
    for (method, status) in [("POST", 405), ("PUT", 405), ("BREW", 501), ("GET", 413)] {
        let req = format!("{method} / HTTP/1.1\r\n{body}");
        assert_eq!(refused(req.as_bytes(), &none), vec![(status, true)], "{method}");
    }
    // With uploads on, an upload past their limit is 413.
    let uploads = Limits { max_upload: 2, ..none };
    assert_eq!(
        refused(format!("PUT / HTTP/1.1\r\n{body}").as_bytes(), &uploads),
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
        let _ = s.feed(c, &limits, |ev| {
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
    let _ = s.feed(req, &Limits::default(), |ev| {
        plain = matches!(ev, Event::Request(_));
        Flow::Continue
    });
    assert!(plain);
}

/// What a consumer that reads every body saw: `(target, body, ended)` per
/// request, and refusals.
#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    requests: Vec<(String, Vec<u8>, bool)>,
    refused: Vec<u16>,
}

fn read_bodies(chunks: &[&[u8]], limits: &Limits, pause_at_end: bool) -> (Seen, RequestStream) {
    let mut s = RequestStream::default();
    let mut seen = Seen::default();
    for c in chunks {
        let mut chunk: &[u8] = c;
        loop {
            let mut paused = false;
            let _ = s.feed(chunk, limits, |ev| match ev {
                Event::Request(r) | Event::Upgrade(r, _) => {
                    seen.requests.push((r.target.to_owned(), Vec::new(), false));
                    Flow::ReadBody
                }
                Event::Body(b) => {
                    seen.requests.last_mut().unwrap().1.extend_from_slice(b);
                    Flow::Continue
                }
                Event::BodyEnd => {
                    seen.requests.last_mut().unwrap().2 = true;
                    if pause_at_end {
                        paused = true;
                        Flow::Pause
                    } else {
                        Flow::Continue
                    }
                }
                Event::Refused(e) => {
                    seen.refused.push(e.status);
                    Flow::Stop
                }
            });
            chunk = &[];
            if !paused {
                break;
            }
        }
    }
    (seen, s)
}

#[test]
fn upload_bodies_come_out_whole_however_split_with_and_without_pauses() {
    let limits = Limits {
        max_upload: 1000,
        ..Limits::default()
    };
    let all = b"PUT /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
PUT /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nwor\r\n2\r\nld\r\n0\r\n\r\n\
PUT /c HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n\
GET /d HTTP/1.1\r\nHost: x\r\n\r\n";
    let want = Seen {
        requests: vec![
            ("/a".into(), b"hello".to_vec(), true),
            ("/b".into(), b"world".to_vec(), true),
            ("/c".into(), Vec::new(), true),
            ("/d".into(), Vec::new(), true),
        ],
        refused: vec![],
    };
    for pause in [false, true] {
        for cut1 in 0..all.len() {
            for cut2 in (cut1..all.len()).step_by(7) {
                let (seen, s) = read_bodies(&[&all[..cut1], &all[cut1..cut2], &all[cut2..]], &limits, pause);
                assert_eq!(seen, want, "{cut1} {cut2} pause {pause}");
                assert!(!s.has_partial());
            }
        }
    }
}

#[test]
fn a_body_in_progress_is_partial_and_bad_chunking_is_refused() {
    let limits = Limits {
        max_upload: 8,
        ..Limits::default()
    };
    let (seen, s) = read_bodies(
        &[b"PUT /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhel"],
        &limits,
        false,
    );
    assert_eq!(seen.requests, vec![("/a".into(), b"hel".to_vec(), false)]);
    assert!(s.has_partial() && !s.has_pending());
    let chunked = b"PUT /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    let (seen, s) = read_bodies(&[chunked, b"zz\r\n"], &limits, false);
    assert_eq!(seen.refused, vec![400]);
    assert!(s.is_done());
    let (seen, _) = read_bodies(&[chunked, b"5\r\nhello\r\n4\r\n"], &limits, false);
    assert_eq!((seen.refused, &seen.requests[0].1[..]), (vec![413], &b"hello"[..]));
}

#[test]
fn a_paused_stream_keeps_the_rest_for_the_next_feed() {
    let limits = Limits {
        max_upload: 100,
        ..Limits::default()
    };
    let mut s = RequestStream::default();
    let mut targets = Vec::new();
    let both = b"PUT /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nxGET /b HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut on = |ev: Event<'_>| match ev {
        Event::Request(r) => {
            targets.push(r.target.to_owned());
            Flow::ReadBody
        }
        Event::BodyEnd => Flow::Pause,
        _ => Flow::Continue,
    };
    let _ = s.feed(both, &limits, &mut on);
    assert!(s.has_pending());
    let _ = s.feed(&[], &limits, &mut on);
    assert!(!s.has_pending() && !s.has_partial());
    assert_eq!(targets, vec!["/a", "/b"]);
}
