//! A session's frame reassembly: received chunks in, whole frames out.
//!
//! [`FrameStream`] wraps a codec with the buffer a session needs between
//! receives. The buffer exists only while a frame is partly received, so an
//! idle session holds no receive memory. After an oversized frame the
//! caller picks the policy: [`skip_frame`](FrameStream::skip_frame) drops it
//! and decoding resumes at the next frame, or the stream ends.
//!
//! Call order: [`push`](FrameStream::push) a received chunk, then
//! [`next_frame`](FrameStream::next_frame) until it returns `Ok(None)`; on
//! `Err`, either `skip_frame` and go on pulling, or stop (and
//! [`clear`](FrameStream::clear)). To stop early, `clear`.
//!
//! # Examples
//!
//! ```
//! use cport_proto::framing::FrameStream;
//!
//! let mut s = FrameStream::lines(8);
//! s.push(b"hel");
//! assert_eq!(s.next_frame(), Ok(None));
//! assert!(s.has_partial());
//! s.push(b"lo\nthis line is too long\nok\n");
//! assert_eq!(s.next_frame().unwrap().unwrap(), &b"hello"[..]);
//! let err = s.next_frame().unwrap_err();
//! assert!(s.skip_frame(&err), "an oversized line can be skipped");
//! assert_eq!(s.next_frame().unwrap().unwrap(), &b"ok"[..]);
//! assert_eq!(s.next_frame(), Ok(None));
//! assert!(!s.has_partial());
//! ```

use bytes::{Buf as _, Bytes, BytesMut};

use super::codec::{Decoder, FrameError, LengthPrefixed, Lines};

/// The codec a stream decodes with.
#[derive(Debug, Clone)]
enum Codec {
    Len(LengthPrefixed),
    Lines(Lines),
}

/// What to throw away before decoding resumes after a skipped frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    None,
    /// Up to and including the next `\n`.
    Line,
    /// This many more bytes.
    Bytes(u64),
}

/// One session's frame reassembly (see the module docs for the call order).
#[derive(Debug, Clone)]
pub struct FrameStream {
    codec: Codec,
    pending: Option<BytesMut>,
    skip: Skip,
}

impl FrameStream {
    /// Length-prefixed frames.
    #[must_use]
    pub fn length_prefixed(codec: LengthPrefixed) -> Self {
        FrameStream::with(Codec::Len(codec))
    }

    /// Newline-terminated lines of at most `max_line` bytes.
    #[must_use]
    pub fn lines(max_line: usize) -> Self {
        FrameStream::with(Codec::Lines(Lines::new(max_line)))
    }

    fn with(codec: Codec) -> Self {
        FrameStream {
            codec,
            pending: None,
            skip: Skip::None,
        }
    }

    /// `true` while part of a frame is buffered or being skipped (a
    /// frame-completion timer should run).
    #[must_use]
    pub fn has_partial(&self) -> bool {
        self.pending.is_some() || self.skip != Skip::None
    }

    /// Bytes buffered for an incomplete frame.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.pending.as_ref().map_or(0, BytesMut::len)
    }

    /// Adds a received chunk (after dropping what a skip still has to drop).
    pub fn push(&mut self, data: &[u8]) {
        let data = self.skip_input(data);
        if data.is_empty() {
            return;
        }
        match &mut self.pending {
            Some(b) => b.extend_from_slice(data),
            None => self.pending = Some(BytesMut::from(data)),
        }
    }

    /// The next complete frame, or `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    /// A frame broke the codec's rules: [`skip_frame`](Self::skip_frame) it
    /// (for [`FrameError::TooLarge`]) or end the stream.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        let Some(buf) = self.pending.as_mut() else {
            return Ok(None);
        };
        let r = match &mut self.codec {
            Codec::Len(c) => c.decode(buf),
            Codec::Lines(c) => c.decode(buf),
        };
        if buf.is_empty() {
            // No buffer is kept between whole frames.
            self.pending = None;
        }
        r
    }

    /// Drops the oversized frame `err` reported and resumes at the next one
    /// (for lines: after the next newline; for length-prefixed frames: after
    /// the declared length). Returns `false`, dropping nothing, for an error
    /// that cannot be skipped: the stream must end.
    pub fn skip_frame(&mut self, err: &FrameError) -> bool {
        let FrameError::TooLarge { len, .. } = err else {
            return false;
        };
        let mut buf = self.pending.take().unwrap_or_default();
        match &mut self.codec {
            Codec::Lines(c) => {
                *c = Lines::new(c.max_line());
                self.skip = Skip::Line;
            }
            Codec::Len(c) => {
                buf.advance(c.width.bytes().min(buf.len()));
                self.skip = Skip::Bytes(*len as u64);
            }
        }
        let kept = self.skip_input(&buf).len();
        buf.advance(buf.len() - kept);
        if !buf.is_empty() {
            self.pending = Some(buf);
        }
        true
    }

    /// Drops everything buffered (the reader stopped, or the stream ended).
    pub fn clear(&mut self) {
        self.pending = None;
    }

    /// Drops what a skip still has to drop from the front of `data`.
    fn skip_input<'a>(&mut self, data: &'a [u8]) -> &'a [u8] {
        match self.skip {
            Skip::None => data,
            Skip::Line => match memchr::memchr(b'\n', data) {
                Some(i) => {
                    self.skip = Skip::None;
                    &data[i + 1..]
                }
                None => &[],
            },
            Skip::Bytes(n) => {
                let k = n.min(data.len() as u64) as usize;
                self.skip = if n == k as u64 {
                    Skip::None
                } else {
                    Skip::Bytes(n - k as u64)
                };
                &data[k..]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::codec::{Encoder, LengthWidth};
    use proptest::prelude::*;

    /// Feeds `chunks`, skipping oversized frames (`skip`) or stopping at the
    /// first error; returns the frames, the errors seen, and whether it stopped.
    fn run(s: &mut FrameStream, chunks: &[&[u8]], skip: bool) -> (Vec<Vec<u8>>, usize, bool) {
        let (mut frames, mut errors) = (Vec::new(), 0);
        for c in chunks {
            s.push(c);
            loop {
                match s.next_frame() {
                    Ok(Some(f)) => frames.push(f.to_vec()),
                    Ok(None) => break,
                    Err(e) => {
                        errors += 1;
                        if !(skip && s.skip_frame(&e)) {
                            s.clear();
                            return (frames, errors, true);
                        }
                    }
                }
            }
        }
        (frames, errors, false)
    }

    /// `wire` cut into chunks at `cuts` (any order, clamped to its length).
    fn cut(wire: &[u8], mut cuts: Vec<usize>) -> Vec<&[u8]> {
        for c in &mut cuts {
            *c = (*c).min(wire.len());
        }
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut at = 0;
        for c in cuts.into_iter().chain(std::iter::once(wire.len())) {
            chunks.push(&wire[at..c]);
            at = c;
        }
        chunks
    }

    #[test]
    fn lines_split_across_chunks_come_out_whole() {
        let mut s = FrameStream::lines(100);
        let (frames, _, _) = run(&mut s, &[b"hel", b"lo\nwor", b"ld\r\n", b"x"], false);
        assert_eq!(frames, vec![b"hello".to_vec(), b"world".to_vec()]);
        assert!(s.has_partial());
        assert_eq!(s.buffered(), 1);
    }

    #[test]
    fn no_buffer_is_kept_between_whole_frames() {
        let mut s = FrameStream::lines(100);
        run(&mut s, &[b"a\nb\n"], false);
        assert!(!s.has_partial());
        assert_eq!(s.buffered(), 0);
    }

    #[test]
    fn an_oversized_line_ends_the_stream_when_not_skipped() {
        let mut s = FrameStream::lines(4);
        let (frames, errors, stopped) = run(&mut s, &[b"ok\ntoo long\n"], false);
        assert_eq!(frames, vec![b"ok".to_vec()]);
        assert_eq!((errors, stopped), (1, true));
    }

    #[test]
    fn an_oversized_line_can_be_skipped_to_its_newline() {
        let mut s = FrameStream::lines(4);
        let (frames, errors, stopped) = run(&mut s, &[b"ok\nway too", b" long still", b" going\nnext\n"], true);
        assert_eq!(frames, vec![b"ok".to_vec(), b"next".to_vec()]);
        assert_eq!((errors, stopped), (1, false));
        assert!(!s.has_partial());
    }

    #[test]
    fn an_oversized_length_prefixed_frame_can_be_skipped() {
        let codec = LengthPrefixed::new(LengthWidth::U16, 8);
        let mut s = FrameStream::length_prefixed(codec);
        let mut wire = BytesMut::new();
        codec.encode(b"one", &mut wire).unwrap();
        wire.extend_from_slice(&20u16.to_le_bytes());
        wire.extend_from_slice(&[7u8; 20]);
        codec.encode(b"two", &mut wire).unwrap();
        let (a, b) = wire.split_at(9);
        let (frames, errors, _) = run(&mut s, &[a, b], true);
        assert_eq!(frames, vec![b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(errors, 1);
    }

    #[test]
    fn a_malformed_frame_cannot_be_skipped() {
        let mut s = FrameStream::lines(4);
        assert!(!s.skip_frame(&FrameError::Malformed("bad")));
        assert!(!s.has_partial());
    }

    proptest! {
        /// Lines cut at arbitrary points come out exactly as sent; over-long
        /// ones are each reported once and skipped, the rest are intact.
        #[test]
        fn any_split_gives_the_same_lines(
            lines_in in proptest::collection::vec("[a-z ]{0,12}", 0..30),
            cuts in proptest::collection::vec(0usize..400, 0..20),
        ) {
            let max = 8;
            let mut wire = Vec::new();
            for l in &lines_in {
                wire.extend_from_slice(l.as_bytes());
                wire.push(b'\n');
            }
            let mut s = FrameStream::lines(max);
            let (frames, errors, stopped) = run(&mut s, &cut(&wire, cuts), true);
            let want: Vec<Vec<u8>> =
                lines_in.iter().filter(|l| l.len() <= max).map(|l| l.as_bytes().to_vec()).collect();
            prop_assert_eq!(frames, want);
            prop_assert_eq!(errors, lines_in.iter().filter(|l| l.len() > max).count());
            prop_assert!(!stopped);
            prop_assert!(!s.has_partial());
        }

        /// Length-prefixed frames cut at arbitrary points come out as sent.
        #[test]
        fn any_split_gives_the_same_packets(
            packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..20),
            cuts in proptest::collection::vec(0usize..1000, 0..20),
        ) {
            let codec = LengthPrefixed::new(LengthWidth::U32, 64);
            let mut wire = BytesMut::new();
            for p in &packets {
                codec.encode(p, &mut wire).unwrap();
            }
            let mut s = FrameStream::length_prefixed(codec);
            let (frames, errors, _) = run(&mut s, &cut(&wire, cuts), false);
            prop_assert_eq!(frames, packets);
            prop_assert_eq!(errors, 0);
            prop_assert!(!s.has_partial());
        }
    }
}
