use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;

/// Decodes every complete frame in `buf`.
fn drain(dec: &mut impl Decoder, buf: &mut BytesMut) -> Result<Vec<Bytes>, FrameError> {
    let mut frames = Vec::new();
    while let Some(frame) = dec.decode(buf)? {
        frames.push(frame);
    }
    Ok(frames)
}

#[test]
fn length_prefixed_u16_strips_prefix() {
    let mut dec = LengthPrefixed::new(LengthWidth::U16, 1024);
    let mut buf = BytesMut::from(&[3, 0, b'a', b'b', b'c', 1, 0, b'z'][..]);
    assert_eq!(drain(&mut dec, &mut buf).unwrap(), vec!["abc", "z"]);
    assert!(buf.is_empty());
}

#[test]
fn length_prefixed_waits_for_prefix_and_payload() {
    let mut dec = LengthPrefixed::new(LengthWidth::U32, 1024);
    let mut buf = BytesMut::from(&[2, 0, 0][..]);
    assert_eq!(dec.decode(&mut buf), Ok(None));
    buf.extend_from_slice(&[0, b'h']);
    assert_eq!(dec.decode(&mut buf), Ok(None));
    buf.extend_from_slice(b"i");
    assert_eq!(dec.decode(&mut buf).unwrap().unwrap(), "hi");
}

#[test]
fn length_prefixed_empty_payload_is_a_frame() {
    let mut dec = LengthPrefixed::new(LengthWidth::U16, 8);
    let mut buf = BytesMut::from(&[0, 0][..]);
    assert_eq!(dec.decode(&mut buf).unwrap().unwrap(), "");
}

#[test]
fn length_prefixed_rejects_declared_oversize_before_payload_arrives() {
    let mut dec = LengthPrefixed::new(LengthWidth::U32, 100);
    let mut buf = BytesMut::from(&101u32.to_le_bytes()[..]);
    assert_eq!(dec.decode(&mut buf), Err(FrameError::TooLarge { len: 101, max: 100 }));
}

#[test]
fn length_prefixed_accepts_exactly_max() {
    let mut codec = LengthPrefixed::new(LengthWidth::U16, 4);
    let mut buf = BytesMut::new();
    codec.encode(b"abcd", &mut buf).unwrap();
    assert_eq!(&buf[..], &[4, 0, b'a', b'b', b'c', b'd']);
    assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), "abcd");
}

#[test]
fn length_prefixed_encode_refuses_over_max_and_over_width() {
    let mut out = BytesMut::new();
    let small = LengthPrefixed::new(LengthWidth::U32, 3);
    assert_eq!(
        small.encode(b"abcd", &mut out),
        Err(FrameError::TooLarge { len: 4, max: 3 })
    );
    let narrow = LengthPrefixed::new(LengthWidth::U16, usize::MAX);
    let big = vec![0u8; 65_536];
    assert_eq!(
        narrow.encode(&big, &mut out),
        Err(FrameError::TooLarge {
            len: 65_536,
            max: 65_535
        })
    );
    assert!(out.is_empty(), "failed encodes leave the output untouched");
}

#[test]
fn lines_strip_lf_and_crlf() {
    let mut dec = Lines::new(16);
    let mut buf = BytesMut::from("one\ntwo\r\n\nthree");
    assert_eq!(drain(&mut dec, &mut buf).unwrap(), vec!["one", "two", ""]);
    assert_eq!(&buf[..], b"three");
}

#[test]
fn lines_only_the_last_cr_is_stripped() {
    let mut dec = Lines::new(16);
    let mut buf = BytesMut::from("a\r\r\n");
    assert_eq!(dec.decode(&mut buf).unwrap().unwrap(), "a\r");
}

#[test]
fn lines_accept_exactly_max_line_with_either_terminator() {
    let mut dec = Lines::new(3);
    let mut buf = BytesMut::from("abc\nabc\r\n");
    assert_eq!(drain(&mut dec, &mut buf).unwrap(), vec!["abc", "abc"]);
}

#[test]
fn lines_reject_once_no_valid_line_is_possible() {
    // max_line bytes and no newline: still fine.
    let mut dec = Lines::new(3);
    let mut buf = BytesMut::from("abc");
    assert_eq!(dec.decode(&mut buf), Ok(None));
    // A pending '\r' after max_line bytes may still become "\r\n".
    buf.extend_from_slice(b"\r");
    assert_eq!(dec.decode(&mut buf), Ok(None));
    buf.extend_from_slice(b"x");
    assert_eq!(dec.decode(&mut buf), Err(FrameError::TooLarge { len: 5, max: 3 }));

    let mut dec = Lines::new(3);
    let mut buf = BytesMut::from("abcd");
    assert_eq!(dec.decode(&mut buf), Err(FrameError::TooLarge { len: 4, max: 3 }));
}

#[test]
fn lines_reject_long_line_even_when_newline_is_present() {
    let mut dec = Lines::new(3);
    let mut buf = BytesMut::from("abcd\n");
    assert!(matches!(dec.decode(&mut buf), Err(FrameError::TooLarge { max: 3, .. })));
}

#[test]
fn lines_fed_byte_by_byte_find_the_newline() {
    let mut dec = Lines::new(64);
    let mut buf = BytesMut::new();
    for &b in b"hello worl" {
        buf.extend_from_slice(&[b]);
        assert_eq!(dec.decode(&mut buf), Ok(None));
    }
    buf.extend_from_slice(b"d\r\nnext\n");
    assert_eq!(drain(&mut dec, &mut buf).unwrap(), vec!["hello world", "next"]);
}

#[test]
fn lines_encoder_appends_newline_and_refuses_embedded_ones() {
    let codec = Lines::new(8);
    let mut out = BytesMut::new();
    codec.encode(b"hi", &mut out).unwrap();
    assert_eq!(&out[..], b"hi\n");
    assert_eq!(
        codec.encode(b"a\nb", &mut out),
        Err(FrameError::Malformed("line contains a newline"))
    );
    assert!(codec.encode(b"a\r", &mut out).is_err());
    assert_eq!(
        codec.encode(b"123456789", &mut out),
        Err(FrameError::TooLarge { len: 9, max: 8 })
    );
    assert_eq!(&out[..], b"hi\n");
}

#[test]
fn frame_error_displays_limits() {
    let e = FrameError::TooLarge { len: 9, max: 8 };
    assert_eq!(e.to_string(), "frame of 9 bytes exceeds the limit of 8 bytes");
}

/// Feeds `stream` to `dec` in pieces cut at `cuts` and returns every frame.
fn decode_in_chunks(dec: &mut impl Decoder, stream: &[u8], cuts: &[usize]) -> Result<Vec<Bytes>, FrameError> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    points.push(stream.len());
    points.sort_unstable();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut at = 0;
    for p in points {
        buf.extend_from_slice(&stream[at..p]);
        at = p;
        frames.extend(drain(dec, &mut buf)?);
    }
    assert!(buf.is_empty(), "whole stream consumed");
    Ok(frames)
}

fn width() -> impl Strategy<Value = LengthWidth> {
    prop_oneof![Just(LengthWidth::U16), Just(LengthWidth::U32)]
}

proptest! {
    #[test]
    fn length_prefixed_round_trips_in_any_chunking(
        width in width(),
        msgs in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..20),
        cuts in prop::collection::vec(any::<usize>(), 0..30),
    ) {
        let mut codec = LengthPrefixed::new(width, 300);
        let mut stream = BytesMut::new();
        for m in &msgs {
            codec.encode(m, &mut stream).unwrap();
        }
        let frames = decode_in_chunks(&mut codec, &stream, &cuts).unwrap();
        prop_assert_eq!(frames, msgs);
    }

    #[test]
    fn lines_round_trip_in_any_chunking(
        msgs in prop::collection::vec("[^\n]{0,40}[^\n\r]?", 0..20),
        cuts in prop::collection::vec(any::<usize>(), 0..30),
    ) {
        let msgs: Vec<&String> = msgs.iter().filter(|m| !m.ends_with('\r')).collect();
        let codec = Lines::new(200);
        let mut stream = BytesMut::new();
        for m in &msgs {
            codec.encode(m.as_bytes(), &mut stream).unwrap();
        }
        let mut dec = codec.clone();
        let frames = decode_in_chunks(&mut dec, &stream, &cuts).unwrap();
        let frames: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
        let msgs: Vec<&[u8]> = msgs.iter().map(|m| m.as_bytes()).collect();
        prop_assert_eq!(frames, msgs);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(
        data in prop::collection::vec(any::<u8>(), 0..600),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
        max in 0usize..64,
    ) {
        let mut decoders: Vec<Box<dyn Decoder>> = vec![
            Box::new(Lines::new(max)),
            Box::new(LengthPrefixed::new(LengthWidth::U16, max)),
            Box::new(LengthPrefixed::new(LengthWidth::U32, max)),
        ];
        for dec in &mut decoders {
            let mut buf = BytesMut::new();
            let mut at = 0;
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
            points.push(data.len());
            points.sort_unstable();
            'feed: for p in points {
                buf.extend_from_slice(&data[at..p]);
                at = p;
                loop {
                    match dec.decode(&mut buf) {
                        Ok(Some(frame)) => prop_assert!(frame.len() <= max),
                        Ok(None) => {
                            // Undecoded bytes never exceed one maximal frame.
                            prop_assert!(buf.len() <= max + 4);
                            break;
                        }
                        Err(_) => break 'feed,
                    }
                }
            }
        }
    }
}

proptest! {
    /// `split_newlines` (memchr) cuts exactly where `slice::split` does.
    #[test]
    fn split_newlines_matches_slice_split(data in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), any::<u8>()], 0..300)) {
        let ours: Vec<&[u8]> = split_newlines(&data).collect();
        let std: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
        prop_assert_eq!(ours, std);
    }
}

proptest! {
    /// `decode_slice` cuts the same lines, with the same errors, as `decode`.
    #[test]
    fn decode_slice_agrees_with_decode(data in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), any::<u8>()], 0..200), cut in 0usize..200) {
        let cut = cut.min(data.len());
        let (mut owned, mut borrowed) = (Lines::new(8), Lines::new(8));
        let mut buf = BytesMut::new();
        let mut pending: Vec<u8> = Vec::new();
        for piece in [&data[..cut], &data[cut..]] {
            buf.extend_from_slice(piece);
            pending.extend_from_slice(piece);
            loop {
                let a = owned.decode(&mut buf);
                let b = borrowed.decode_slice(&pending).map(|o| o.map(|(l, n)| (l.to_vec(), n)));
                match (a, b) {
                    (Ok(Some(x)), Ok(Some((y, n)))) => {
                        prop_assert_eq!(&x[..], &y[..]);
                        pending.drain(..n);
                    }
                    (Ok(None), Ok(None)) => break,
                    (Err(x), Err(y)) => {
                        prop_assert_eq!(x, y);
                        return Ok(());
                    }
                    (x, y) => prop_assert!(false, "decode {:?}, decode_slice {:?}", x, y),
                }
            }
        }
    }
}

#[test]
fn a_cleared_stream_holds_nothing_and_starts_afresh() {
    let mut s = FrameStream::lines(100);
    s.push(b"half a li");
    assert_eq!(s.buffered(), 9);
    s.clear();
    assert!(!s.has_partial());
    assert_eq!(s.buffered(), 0);
    assert_eq!(s.next_frame(), Ok(None));
    s.push(b"new\n");
    assert_eq!(s.next_frame(), Ok(Some(Bytes::from_static(b"new"))));
}

#[test]
fn a_line_of_exactly_the_limit_encodes_and_one_more_byte_does_not() {
    let codec = Lines::new(4);
    let mut out = BytesMut::new();
    codec.encode(b"abcd", &mut out).unwrap();
    assert_eq!(&out[..], b"abcd\n");
    assert!(matches!(
        codec.encode(b"abcde", &mut out),
        Err(FrameError::TooLarge { len: 5, max: 4 })
    ));
}
