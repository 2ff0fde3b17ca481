//! The codecs: [`Decoder`] and [`Encoder`] with their two framings,
//! [`LengthPrefixed`] (binary packets) and [`Lines`] (text).

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Why a frame could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// The frame is longer than the codec allows (`len` bytes, at most `max`).
    ///
    /// When decoding, `len` is the declared length, or for line framing the
    /// number of bytes already buffered without a newline.
    TooLarge {
        /// Length of the offending frame (or the bytes seen so far).
        len: usize,
        /// The codec's limit.
        max: usize,
    },
    /// The message cannot be framed as it is (for example a newline inside a
    /// line-framed message).
    Malformed(&'static str),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the limit of {max} bytes")
            }
            FrameError::Malformed(why) => write!(f, "malformed frame: {why}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Takes complete frames off the front of a receive buffer.
///
/// A decoder may keep state between calls about the buffer it is fed (for
/// example how far it has already scanned), so use one decoder per stream.
pub trait Decoder {
    /// Removes one complete frame from the front of `buf` and returns its
    /// payload, or `Ok(None)` if `buf` does not hold a complete frame yet.
    ///
    /// The payload shares `buf`'s allocation (no copy).
    ///
    /// # Errors
    ///
    /// [`FrameError::TooLarge`] as soon as the frame at the front of `buf` is
    /// known to exceed the codec's limit; the stream cannot be resumed.
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError>;
}

/// Appends framed messages to an output buffer.
pub trait Encoder {
    /// Appends `msg`, framed, to `out`. On error `out` is left unchanged.
    ///
    /// # Errors
    ///
    /// [`FrameError::TooLarge`] if `msg` exceeds the codec's limit, or
    /// [`FrameError::Malformed`] if it cannot be represented in this framing.
    fn encode(&self, msg: &[u8], out: &mut BytesMut) -> Result<(), FrameError>;
}

/// Width of a [`LengthPrefixed`] length field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthWidth {
    /// Two bytes, little-endian: payloads up to 65,535 bytes.
    U16,
    /// Four bytes, little-endian: payloads up to 4 GiB − 1.
    U32,
}

impl LengthWidth {
    /// Number of bytes the length field occupies.
    #[must_use]
    pub const fn bytes(self) -> usize {
        match self {
            LengthWidth::U16 => 2,
            LengthWidth::U32 => 4,
        }
    }

    /// Largest payload length the field can express.
    #[must_use]
    pub const fn max_len(self) -> usize {
        match self {
            LengthWidth::U16 => u16::MAX as usize,
            LengthWidth::U32 => u32::MAX as usize,
        }
    }
}

/// Binary frames: a little-endian payload length, then the payload.
///
/// This is the usual game-server packet. The length counts the payload only;
/// the decoded frame is the payload without its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LengthPrefixed {
    /// Width of the length field.
    pub width: LengthWidth,
    /// Largest accepted payload, in bytes.
    pub max_frame: usize,
}

impl LengthPrefixed {
    /// A codec with the given prefix width and payload limit.
    #[must_use]
    pub const fn new(width: LengthWidth, max_frame: usize) -> Self {
        LengthPrefixed { width, max_frame }
    }

    fn limit(&self) -> usize {
        self.max_frame.min(self.width.max_len())
    }
}

impl Decoder for LengthPrefixed {
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let prefix = self.width.bytes();
        if buf.len() < prefix {
            return Ok(None);
        }
        let declared = match self.width {
            LengthWidth::U16 => usize::from(u16::from_le_bytes([buf[0], buf[1]])),
            LengthWidth::U32 => {
                let raw = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
                usize::try_from(raw).unwrap_or(usize::MAX)
            }
        };
        if declared > self.max_frame {
            return Err(FrameError::TooLarge {
                len: declared,
                max: self.max_frame,
            });
        }
        let total = prefix + declared;
        if buf.len() < total {
            // No `reserve(total)` here: a peer could then pin `max_frame`
            // bytes per connection by sending only a prefix.
            return Ok(None);
        }
        buf.advance(prefix);
        Ok(Some(buf.split_to(declared).freeze()))
    }
}

impl Encoder for LengthPrefixed {
    fn encode(&self, msg: &[u8], out: &mut BytesMut) -> Result<(), FrameError> {
        let max = self.limit();
        if msg.len() > max {
            return Err(FrameError::TooLarge { len: msg.len(), max });
        }
        out.reserve(self.width.bytes() + msg.len());
        // The casts cannot truncate: `msg.len() <= width.max_len()`.
        match self.width {
            LengthWidth::U16 => out.put_u16_le(msg.len() as u16),
            LengthWidth::U32 => out.put_u32_le(msg.len() as u32),
        }
        out.put_slice(msg);
        Ok(())
    }
}

/// Where the first line of a buffer ends, under a length limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineScan {
    /// A line of `content` bytes (terminator excluded) ends after `total` bytes.
    Complete { content: usize, total: usize },
    /// No newline yet, but the line can still turn out short enough.
    Incomplete,
    /// The line exceeds the limit; `seen` bytes are already buffered.
    TooLong { seen: usize },
}

/// Finds the end of the first line of `buf`, scanning from `from` (bytes
/// before it are known to hold no `\n`). A line is at most `max` bytes, not
/// counting its `\n` or `\r\n` terminator.
pub(crate) fn scan_line(buf: &[u8], from: usize, max: usize) -> LineScan {
    // A valid line with its terminator fits in `max + 2` bytes.
    let window = buf.len().min(max.saturating_add(2));
    let from = from.min(window);
    match memchr::memchr(b'\n', &buf[from..window]) {
        Some(i) => {
            let nl = from + i;
            let content = if nl > 0 && buf[nl - 1] == b'\r' { nl - 1 } else { nl };
            if content > max {
                LineScan::TooLong { seen: content }
            } else {
                LineScan::Complete { content, total: nl + 1 }
            }
        }
        None => {
            // `max` content bytes plus a pending `\r` may still be valid.
            let may_still_fit = buf.len() <= max || (buf.len() == max + 1 && buf[max] == b'\r');
            if may_still_fit {
                LineScan::Incomplete
            } else {
                LineScan::TooLong { seen: buf.len() }
            }
        }
    }
}

/// The pieces of `data` between `\n` bytes, as `data.split(|&b| b == b'\n')`
/// gives them (the last piece is whatever follows the last newline, maybe
/// empty), found with `memchr`.
pub fn split_newlines(data: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    let mut ends = memchr::memchr_iter(b'\n', data);
    let mut start = Some(0);
    std::iter::from_fn(move || {
        let from = start?;
        match ends.next() {
            Some(nl) => {
                start = Some(nl + 1);
                Some(&data[from..nl])
            }
            None => {
                start = None;
                Some(&data[from..])
            }
        }
    })
}

/// Newline-delimited text: each frame is one line without its `\n` or `\r\n`.
///
/// A line may hold at most `max_line` bytes, not counting its terminator.
/// [`Decoder::decode`] reports [`FrameError::TooLarge`] as soon as the buffer
/// holds more bytes than any valid line could: `max_line + 1` bytes without a
/// newline (or `max_line + 2` when the last of them is `\r`).
///
/// The decoder remembers how much of the buffer it has scanned, so feeding a
/// long line in many small pieces stays linear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lines {
    max_line: usize,
    /// Bytes at the front of the buffer already known to hold no `\n`.
    scanned: usize,
}

impl Lines {
    /// A line codec accepting lines of up to `max_line` bytes.
    #[must_use]
    pub const fn new(max_line: usize) -> Self {
        Lines { max_line, scanned: 0 }
    }

    /// The longest accepted line, in bytes, terminator excluded.
    #[must_use]
    pub const fn max_line(&self) -> usize {
        self.max_line
    }

    /// [`Decoder::decode`] on a borrowed buffer, without copying: the first
    /// complete line of `buf` (terminator excluded) and how many bytes it
    /// took, terminator included. The caller drops those bytes from the
    /// front and calls again with what follows; after `Ok(None)` it calls
    /// again with the same bytes and more appended. Same limits and errors.
    ///
    /// # Errors
    /// [`FrameError::TooLarge`] as [`Decoder::decode`] reports it.
    pub fn decode_slice<'a>(&mut self, buf: &'a [u8]) -> Result<Option<(&'a [u8], usize)>, FrameError> {
        match scan_line(buf, self.scanned, self.max_line) {
            LineScan::Complete { content, total } => {
                self.scanned = 0;
                Ok(Some((&buf[..content], total)))
            }
            LineScan::Incomplete => {
                self.scanned = buf.len();
                Ok(None)
            }
            LineScan::TooLong { seen } => Err(FrameError::TooLarge {
                len: seen,
                max: self.max_line,
            }),
        }
    }
}

impl Decoder for Lines {
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let Some((line, total)) = self.decode_slice(buf)? else {
            return Ok(None);
        };
        let content = line.len();
        let mut line = buf.split_to(total);
        line.truncate(content);
        Ok(Some(line.freeze()))
    }
}

impl Encoder for Lines {
    fn encode(&self, msg: &[u8], out: &mut BytesMut) -> Result<(), FrameError> {
        if msg.len() > self.max_line {
            return Err(FrameError::TooLarge {
                len: msg.len(),
                max: self.max_line,
            });
        }
        if memchr::memchr(b'\n', msg).is_some() {
            return Err(FrameError::Malformed("line contains a newline"));
        }
        if msg.last() == Some(&b'\r') {
            return Err(FrameError::Malformed("line ends with a carriage return"));
        }
        out.reserve(msg.len() + 1);
        out.put_slice(msg);
        out.put_u8(b'\n');
        Ok(())
    }
}
