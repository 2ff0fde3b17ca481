//! The framing codecs (length-prefixed and lines) over arbitrary bytes cut
//! into arbitrary pieces, as receives deliver them.
//!
//! Invariants beyond "no panic": frames never exceed the limit and never
//! hold more bytes than arrived; a line holds no `\n`; the frames and the
//! bytes left over are the same however the input is cut; whatever decodes
//! re-encodes to the bytes it came from (length-prefixed) and decodes again
//! to the same frames (both).
#![no_main]

use bytes::{Bytes, BytesMut};
use cport_proto::framing::{Decoder, Encoder, FrameError, FrameStream, LengthPrefixed, LengthWidth, Lines};
use libfuzzer_sys::fuzz_target;

/// Feeds `input` in pieces of `cut` bytes (all at once for 0), decoding
/// after each; the frames, the error if any, and the bytes left.
fn run(codec: &mut dyn Decoder, input: &[u8], cut: usize) -> (Vec<Bytes>, Option<FrameError>, BytesMut) {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let step = if cut == 0 { input.len().max(1) } else { cut };
    for piece in input.chunks(step) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => return (frames, Some(e), buf),
            }
        }
    }
    (frames, None, buf)
}

/// Feeds `input` to a session's frame reassembly in pieces of `cut` bytes
/// (all at once for 0), skipping oversized frames as a server may; the
/// frames, and whether an error that cannot be skipped ended the stream.
fn run_stream(mut s: FrameStream, input: &[u8], cut: usize) -> (Vec<Bytes>, bool) {
    let mut frames = Vec::new();
    let step = if cut == 0 { input.len().max(1) } else { cut };
    for piece in input.chunks(step) {
        s.push(piece);
        loop {
            match s.next_frame() {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) if s.skip_frame(&e) => {}
                Err(_) => return (frames, true),
            }
        }
    }
    (frames, false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, input)) = data.split_first() else {
        return;
    };
    let max = usize::from(knobs & 0x3f) * 4 + 1;
    let cut = usize::from(knobs >> 6) * 3; // 0 (whole), 3, 6 or 9 bytes at a time

    // Length-prefixed, both widths.
    for width in [LengthWidth::U16, LengthWidth::U32] {
        let codec = LengthPrefixed::new(width, max);
        let whole = run(&mut codec.clone(), input, 0);
        let pieces = run(&mut codec.clone(), input, cut);
        // An error is reported as soon as the prefix is known, so bytes
        // after the bad prefix may differ with the cut; the frames may not.
        assert_eq!(whole.0, pieces.0, "frames depend on how the input was cut");
        assert_eq!(whole.1, pieces.1);
        if whole.1.is_none() {
            assert_eq!(whole.2, pieces.2);
        }
        let mut wire = BytesMut::new();
        let mut used = 0;
        for f in &whole.0 {
            assert!(f.len() <= max);
            used += width.bytes() + f.len();
            codec.encode(f, &mut wire).expect("a decoded frame encodes");
        }
        assert!(used <= input.len());
        assert_eq!(&wire[..], &input[..used], "re-encoding gives back the input");
    }

    // The reassembly a server runs, skipping oversized frames: the same
    // frames however the input is cut, none over the limit, and no buffer
    // left once the input ends on a frame boundary.
    for stream in [
        FrameStream::lines(max),
        FrameStream::length_prefixed(LengthPrefixed::new(LengthWidth::U16, max)),
    ] {
        let whole = run_stream(stream.clone(), input, 0);
        let pieces = run_stream(stream, input, cut);
        assert_eq!(whole, pieces, "reassembly depends on how the input was cut");
        assert!(whole.0.iter().all(|f| f.len() <= max));
    }

    // Lines.
    let codec = Lines::new(max);
    let whole = run(&mut codec.clone(), input, 0);
    let pieces = run(&mut codec.clone(), input, cut);
    assert_eq!(whole.0, pieces.0, "lines depend on how the input was cut");
    assert_eq!(whole.1.is_some(), pieces.1.is_some());
    let total: usize = whole.0.iter().map(|l| l.len() + 1).sum();
    assert!(total <= input.len());
    let mut wire = BytesMut::new();
    for line in &whole.0 {
        assert!(line.len() <= max && !line.contains(&b'\n'));
        // A line ending in `\r` cannot be framed; the decoder strips one `\r` only.
        if codec.encode(line, &mut wire).is_err() {
            assert!(line.ends_with(b"\r"));
            return;
        }
    }
    let again = run(&mut codec.clone(), &wire, 0);
    assert_eq!(again.0, whole.0, "encoded lines decode to themselves");
    assert!(again.1.is_none() && again.2.is_empty());
});
