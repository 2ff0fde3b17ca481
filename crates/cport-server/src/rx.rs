//! Receive-side reassembly: received chunks in, whole frames out (sans-I/O).
//!
//! A session's reassembly buffer exists only while a frame is partly
//! received, so an idle session holds no receive memory. The codecs come from
//! `cport-proto`; what this adds is the buffer's life cycle and the recovery
//! policy after an oversized frame (skip it, or end the session).

use bytes::{Buf as _, Bytes, BytesMut};
use cport_proto::framing::{Decoder, FrameError, LengthPrefixed, Lines};

use crate::handler::{FrameAction, Framing};

/// A session's decoder state.
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

/// Whether the consumer wants more frames from the current chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Stop,
}

/// Where decoded frames go.
pub(crate) trait FrameSink {
    /// One complete frame, in order.
    fn frame(&mut self, frame: Bytes) -> Flow;
    /// A frame broke the codec's rules: skip it or end the session?
    fn error(&mut self, err: &FrameError) -> FrameAction;
}

/// How feeding one chunk ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fed {
    /// Everything was consumed or buffered.
    Ok,
    /// The consumer stopped (the session is closing); the rest was dropped.
    Stopped,
    /// A frame error the policy did not skip: the session must end.
    Fatal(FrameError),
}

/// Reassembles frames of one session. Not used for raw framing.
#[derive(Debug)]
pub(crate) struct Reassembly {
    codec: Codec,
    pending: Option<BytesMut>,
    skip: Skip,
}

impl Reassembly {
    /// State for a new session, or `None` for raw framing (chunks are messages).
    pub(crate) fn new(framing: &Framing) -> Option<Self> {
        let codec = match framing {
            Framing::Raw => return None,
            Framing::LengthPrefixed(c) => Codec::Len(*c),
            Framing::Lines { max_line } => Codec::Lines(Lines::new(*max_line)),
        };
        Some(Reassembly {
            codec,
            pending: None,
            skip: Skip::None,
        })
    }

    /// `true` while part of a frame is buffered (the frame-completion timer runs).
    pub(crate) fn has_partial(&self) -> bool {
        self.pending.is_some() || self.skip != Skip::None
    }

    /// Bytes buffered for an incomplete frame.
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.pending.as_ref().map_or(0, BytesMut::len)
    }

    /// Feeds one received chunk: `sink` gets each complete frame in order,
    /// and picks the policy for a frame error.
    pub(crate) fn feed(&mut self, mut data: &[u8], sink: &mut dyn FrameSink) -> Fed {
        data = self.skip_input(data);
        if data.is_empty() && self.pending.is_none() {
            return Fed::Ok;
        }
        let mut buf = match self.pending.take() {
            Some(mut b) => {
                b.extend_from_slice(data);
                b
            }
            None => BytesMut::from(data),
        };
        let fed = loop {
            let r = match &mut self.codec {
                Codec::Len(c) => c.decode(&mut buf),
                Codec::Lines(c) => c.decode(&mut buf),
            };
            match r {
                Ok(Some(frame)) => {
                    if sink.frame(frame) == Flow::Stop {
                        buf.clear();
                        break Fed::Stopped;
                    }
                }
                Ok(None) => break Fed::Ok,
                Err(e) => {
                    let skippable = matches!(e, FrameError::TooLarge { .. });
                    if skippable && sink.error(&e) == FrameAction::Skip {
                        self.skip_frame(&mut buf, &e);
                        let kept = self.skip_input(&buf).len();
                        buf.advance(buf.len() - kept);
                        continue;
                    }
                    buf.clear();
                    break Fed::Fatal(e);
                }
            }
        };
        if !buf.is_empty() {
            self.pending = Some(buf);
        }
        fed
    }

    /// Starts skipping the oversized frame at the front of `buf`.
    fn skip_frame(&mut self, buf: &mut BytesMut, e: &FrameError) {
        match &mut self.codec {
            Codec::Lines(c) => {
                *c = Lines::new(c.max_line());
                self.skip = Skip::Line;
            }
            Codec::Len(c) => {
                let declared = match e {
                    FrameError::TooLarge { len, .. } => *len as u64,
                    FrameError::Malformed(_) => 0,
                };
                buf.advance(c.width.bytes().min(buf.len()));
                self.skip = Skip::Bytes(declared);
            }
        }
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
                let k = (n.min(data.len() as u64)) as usize;
                self.skip = if n - k as u64 == 0 {
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
    use cport_proto::framing::{Encoder, LengthWidth};
    use proptest::prelude::*;

    fn lines(max: usize) -> Reassembly {
        Reassembly::new(&Framing::Lines { max_line: max }).unwrap()
    }

    /// Collects frames; answers errors with a fixed action; stops after `stop_after` frames.
    struct Collect {
        frames: Vec<Vec<u8>>,
        errors: usize,
        action: FrameAction,
        stop_after: usize,
    }

    impl FrameSink for Collect {
        fn frame(&mut self, f: Bytes) -> Flow {
            self.frames.push(f.to_vec());
            if self.frames.len() >= self.stop_after {
                Flow::Stop
            } else {
                Flow::Continue
            }
        }
        fn error(&mut self, _: &FrameError) -> FrameAction {
            self.errors += 1;
            self.action
        }
    }

    /// Feeds `chunks`; returns frames and the number of errors seen.
    fn run(r: &mut Reassembly, chunks: &[&[u8]], action: FrameAction) -> (Vec<Vec<u8>>, usize, Vec<Fed>) {
        let mut sink = Collect {
            frames: Vec::new(),
            errors: 0,
            action,
            stop_after: usize::MAX,
        };
        let feds = chunks.iter().map(|c| r.feed(c, &mut sink)).collect();
        (sink.frames, sink.errors, feds)
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
    fn raw_framing_needs_no_reassembly() {
        assert!(Reassembly::new(&Framing::Raw).is_none());
    }

    #[test]
    fn lines_split_across_chunks_come_out_whole() {
        let mut r = lines(100);
        let (frames, _, _) = run(&mut r, &[b"hel", b"lo\nwor", b"ld\r\n", b"x"], FrameAction::Close);
        assert_eq!(frames, vec![b"hello".to_vec(), b"world".to_vec()]);
        assert!(r.has_partial());
        assert_eq!(r.buffered(), 1);
    }

    #[test]
    fn no_buffer_is_kept_between_whole_frames() {
        let mut r = lines(100);
        run(&mut r, &[b"a\nb\n"], FrameAction::Close);
        assert!(!r.has_partial());
        assert!(r.pending.is_none());
    }

    #[test]
    fn oversized_line_is_fatal_when_not_skipped() {
        let mut r = lines(4);
        let (frames, errors, feds) = run(&mut r, &[b"ok\ntoo long\n"], FrameAction::Close);
        assert_eq!(frames, vec![b"ok".to_vec()]);
        assert_eq!(errors, 1);
        assert!(matches!(feds[0], Fed::Fatal(FrameError::TooLarge { .. })));
    }

    #[test]
    fn oversized_line_can_be_skipped_to_its_newline() {
        let mut r = lines(4);
        let (frames, errors, feds) = run(
            &mut r,
            &[b"ok\nway too", b" long still", b" going\nnext\n"],
            FrameAction::Skip,
        );
        assert_eq!(frames, vec![b"ok".to_vec(), b"next".to_vec()]);
        assert_eq!(errors, 1);
        assert!(feds.iter().all(|f| *f == Fed::Ok));
        assert!(!r.has_partial());
    }

    #[test]
    fn oversized_length_prefixed_frame_can_be_skipped() {
        let codec = LengthPrefixed::new(LengthWidth::U16, 8);
        let mut r = Reassembly::new(&Framing::LengthPrefixed(codec)).unwrap();
        let mut wire = BytesMut::new();
        codec.encode(b"one", &mut wire).unwrap();
        wire.extend_from_slice(&20u16.to_le_bytes());
        wire.extend_from_slice(&[7u8; 20]);
        codec.encode(b"two", &mut wire).unwrap();
        let (a, b) = wire.split_at(9);
        let (frames, errors, _) = run(&mut r, &[a, b], FrameAction::Skip);
        assert_eq!(frames, vec![b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(errors, 1);
    }

    #[test]
    fn stopping_drops_the_rest_of_the_chunk() {
        let mut r = lines(10);
        let mut sink = Collect {
            frames: Vec::new(),
            errors: 0,
            action: FrameAction::Close,
            stop_after: 1,
        };
        let fed = r.feed(b"a\nb\nc", &mut sink);
        assert_eq!((fed, sink.frames.len()), (Fed::Stopped, 1));
        assert!(!r.has_partial());
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
            let chunks = cut(&wire, cuts);
            let mut r = lines(max);
            let (frames, errors, feds) = run(&mut r, &chunks, FrameAction::Skip);
            let want: Vec<Vec<u8>> =
                lines_in.iter().filter(|l| l.len() <= max).map(|l| l.as_bytes().to_vec()).collect();
            prop_assert_eq!(frames, want);
            prop_assert_eq!(errors, lines_in.iter().filter(|l| l.len() > max).count());
            prop_assert!(feds.iter().all(|f| *f == Fed::Ok));
            prop_assert!(!r.has_partial());
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
            let chunks = cut(&wire, cuts);
            let mut r = Reassembly::new(&Framing::LengthPrefixed(codec)).unwrap();
            let (frames, errors, _) = run(&mut r, &chunks, FrameAction::Close);
            prop_assert_eq!(frames, packets);
            prop_assert_eq!(errors, 0);
            prop_assert!(!r.has_partial());
        }
    }
}
