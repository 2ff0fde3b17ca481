//! RESP, the Redis protocol, for the cluster's link, sans-I/O: commands go
//! out as arrays of bulk strings, replies and pub/sub pushes come back as
//! RESP3 frames. Both directions use the `redis-protocol` crate; this
//! module adds the byte accumulation (a bounded buffer) and a few readers.

use bytes::{Buf as _, Bytes, BytesMut};
use redis_protocol::resp3::decode::complete::decode;
use redis_protocol::resp3::encode::complete::extend_encode_borrowed;
use redis_protocol::resp3::types::BorrowedFrame;

/// One decoded RESP3 frame (a reply or a push).
pub type Frame = redis_protocol::resp3::types::OwnedFrame;

/// Appends the command `args` (`[b"SET", key, value]`) to `out`.
pub fn encode_command(out: &mut BytesMut, args: &[Bytes]) {
    let items: Vec<BorrowedFrame<'_>> = args
        .iter()
        .map(|a| BorrowedFrame::BlobString {
            data: a,
            attributes: None,
        })
        .collect();
    let frame = BorrowedFrame::Array {
        data: &items,
        attributes: None,
    };
    let before = out.len();
    // An array of blobs always encodes into a growing buffer; should the
    // crate ever refuse, nothing half-written stays behind.
    if extend_encode_borrowed(out, &frame, false).is_err() {
        out.truncate(before);
    }
}

/// Why the byte stream from Redis cannot be read on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Bytes that are not RESP.
    Malformed(String),
    /// One frame larger than the decoder's bound.
    TooLarge(usize),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Malformed(e) => write!(f, "malformed RESP from Redis: {e}"),
            DecodeError::TooLarge(n) => write!(f, "a reply from Redis exceeds {n} bytes"),
        }
    }
}

/// Accumulates bytes received from Redis and cuts them into frames.
///
/// Call [`feed`](Decoder::feed) with what arrived, then
/// [`next_frame`](Decoder::next_frame) until it answers `Ok(None)`. A frame
/// may be split anywhere; one frame larger than the bound is an error (the
/// link then drops the connection rather than buffer without end).
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    max: usize,
}

impl Decoder {
    /// A decoder that holds at most `max` bytes of one unfinished frame.
    #[must_use]
    pub fn new(max: usize) -> Decoder {
        Decoder {
            buf: BytesMut::new(),
            max,
        }
    }

    /// Appends received bytes.
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Forgets everything buffered (the connection was lost).
    pub fn reset(&mut self) {
        self.buf = BytesMut::new();
    }

    /// The next complete frame, if the buffer holds one.
    ///
    /// # Errors
    /// [`DecodeError`] when the bytes are not RESP or one frame is larger
    /// than the bound; the stream cannot be resynchronised after either.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, DecodeError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        match decode(&self.buf) {
            Ok(Some((frame, used))) => {
                self.buf.advance(used);
                Ok(Some(frame))
            }
            Ok(None) if self.buf.len() > self.max => Err(DecodeError::TooLarge(self.max)),
            Ok(None) => Ok(None),
            Err(e) => Err(DecodeError::Malformed(e.details().to_string())),
        }
    }
}

/// The bytes of a string frame (blob, simple or verbatim).
#[must_use]
pub fn bytes_of(f: &Frame) -> Option<&[u8]> {
    match f {
        Frame::BlobString { data, .. } | Frame::SimpleString { data, .. } | Frame::VerbatimString { data, .. } => {
            Some(data)
        }
        _ => None,
    }
}

/// The text of a string frame, if it is UTF-8.
#[must_use]
pub fn str_of(f: &Frame) -> Option<&str> {
    bytes_of(f).and_then(|b| std::str::from_utf8(b).ok())
}

/// The value of an integer frame.
#[must_use]
pub fn int_of(f: &Frame) -> Option<i64> {
    match f {
        Frame::Number { data, .. } => Some(*data),
        _ => None,
    }
}

/// The items of an array, set or push frame.
#[must_use]
pub fn items_of(f: &Frame) -> Option<Vec<&Frame>> {
    match f {
        Frame::Array { data, .. } | Frame::Push { data, .. } => Some(data.iter().collect()),
        Frame::Set { data, .. } => Some(data.iter().collect()),
        _ => None,
    }
}

/// The message of an error frame.
#[must_use]
pub fn error_of(f: &Frame) -> Option<String> {
    match f {
        Frame::SimpleError { data, .. } => Some(data.clone()),
        Frame::BlobError { data, .. } => Some(String::from_utf8_lossy(data).into_owned()),
        _ => None,
    }
}

/// The value under `key` in a map frame (HELLO's reply).
#[must_use]
pub fn map_get<'a>(f: &'a Frame, key: &str) -> Option<&'a Frame> {
    match f {
        Frame::Map { data, .. } => data
            .iter()
            .find(|(k, _)| bytes_of(k) == Some(key.as_bytes()))
            .map(|(_, v)| v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<Bytes> {
        a.iter().map(|s| Bytes::copy_from_slice(s.as_bytes())).collect()
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = BytesMut::new();
        encode_command(&mut out, &args(&["SET", "k", "v 1"]));
        assert_eq!(&out[..], b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv 1\r\n");
        encode_command(&mut out, &args(&["PING"]));
        assert!(out.ends_with(b"*1\r\n$4\r\nPING\r\n"));
    }

    /// Replies of every kind the link reads, back to back.
    const STREAM: &[u8] = b"+OK\r\n:42\r\n$5\r\nhello\r\n_\r\n-ERR wrong\r\n*2\r\n$1\r\na\r\n:1\r\n>3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$3\r\nhi!\r\n%1\r\n$7\r\nversion\r\n$5\r\n7.0.0\r\n";

    fn check(frames: &[Frame]) {
        assert_eq!(frames.len(), 8);
        assert_eq!(str_of(&frames[0]), Some("OK"));
        assert_eq!(int_of(&frames[1]), Some(42));
        assert_eq!(bytes_of(&frames[2]), Some(&b"hello"[..]));
        assert_eq!(frames[3], Frame::Null);
        assert_eq!(error_of(&frames[4]).as_deref(), Some("ERR wrong"));
        let a = items_of(&frames[5]).unwrap();
        assert_eq!((str_of(a[0]), int_of(a[1])), (Some("a"), Some(1)));
        assert!(matches!(frames[6], Frame::Push { .. }));
        assert_eq!(items_of(&frames[6]).unwrap().len(), 3);
        assert_eq!(map_get(&frames[7], "version").and_then(str_of), Some("7.0.0"));
    }

    #[test]
    fn replies_split_at_every_byte_decode_the_same() {
        for cut in 0..=STREAM.len() {
            let mut d = Decoder::new(1 << 20);
            let mut frames = Vec::new();
            for part in [&STREAM[..cut], &STREAM[cut..]] {
                d.feed(part);
                while let Some(f) = d.next_frame().unwrap() {
                    frames.push(f);
                }
            }
            check(&frames);
        }
        // And one byte at a time.
        let mut d = Decoder::new(1 << 20);
        let mut frames = Vec::new();
        for b in STREAM {
            d.feed(std::slice::from_ref(b));
            while let Some(f) = d.next_frame().unwrap() {
                frames.push(f);
            }
        }
        check(&frames);
    }

    #[test]
    fn garbage_and_oversized_frames_are_errors() {
        let mut d = Decoder::new(1 << 20);
        d.feed(b"?what\r\n");
        assert!(matches!(d.next_frame(), Err(DecodeError::Malformed(_))));
        let mut d = Decoder::new(16);
        d.feed(b"$100\r\n0123456789012345678901234567890");
        assert_eq!(d.next_frame(), Err(DecodeError::TooLarge(16)));
        let mut d = Decoder::new(16);
        d.feed(b"$10\r\n0123");
        assert_eq!(d.next_frame(), Ok(None), "a partial frame within the bound waits");
    }
}
