//! `Transfer-Encoding: chunked` request bodies (RFC 9112 section 7.1),
//! decoded as they arrive (sans-I/O).
//!
//! The data of each chunk is handed out where it lies in the input: no copy.
//! Only a size line or a trailer line split across inputs is kept, and it is
//! bounded ([`MAX_LINE`]), as are the trailers ([`MAX_TRAILERS`]) and the
//! body's total (the caller's limit, 413 past it).

use super::HttpError;

/// Longest chunk-size line (with its extensions) or trailer line kept.
pub const MAX_LINE: usize = 4096;
/// Most bytes of trailer fields after the last chunk.
pub const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a chunk-size line.
    Size,
    /// This many data bytes of the current chunk are still to come.
    Data(u64),
    /// The CRLF after a chunk's data; `true` once the CR was seen.
    DataEnd(bool),
    /// Reading trailer lines after the last chunk, until an empty one.
    Trailers,
    /// The body ended.
    Done,
}

/// What [`ChunkedDecoder::decode`] found at the start of its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// Body data: `input[start..end]`; resume decoding from `end`.
    Data {
        /// Where the data starts in the input.
        start: usize,
        /// Where it ends (exclusive): the next call starts here.
        end: usize,
    },
    /// The input was consumed (framing only): give more.
    More,
    /// The body ended after `used` bytes of the input (the next request
    /// starts there).
    End {
        /// Bytes of the input that belonged to the body.
        used: usize,
    },
}

/// The decoder of one chunked body. Call [`decode`](Self::decode) on the
/// bytes that follow, again and again from where it says, until
/// [`Decoded::End`].
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// A size or trailer line not yet complete.
    line: Vec<u8>,
    /// Data bytes so far.
    total: u64,
    /// Trailer bytes so far.
    trailers: usize,
    max: u64,
}

impl ChunkedDecoder {
    /// A decoder for a body of at most `max` data bytes.
    #[must_use]
    pub fn new(max: u64) -> Self {
        ChunkedDecoder {
            state: State::Size,
            line: Vec::new(),
            total: 0,
            trailers: 0,
            max,
        }
    }

    /// Data bytes decoded so far.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Decodes from the start of `input`.
    ///
    /// # Errors
    /// 400 for malformed framing (a bad size, a missing CRLF, an overlong
    /// line or trailer section), 413 when the data passes the limit. Either
    /// way the stream is out of sync and must close.
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, HttpError> {
        let mut at = 0;
        while at < input.len() {
            match self.state {
                State::Done => return Ok(Decoded::End { used: at }),
                State::Data(left) => {
                    let n = left.min((input.len() - at) as u64) as usize;
                    self.state = if left == n as u64 {
                        State::DataEnd(false)
                    } else {
                        State::Data(left - n as u64)
                    };
                    return Ok(Decoded::Data { start: at, end: at + n });
                }
                State::DataEnd(cr) => {
                    match (cr, input[at]) {
                        (false, b'\r') => self.state = State::DataEnd(true),
                        (true, b'\n') => self.state = State::Size,
                        _ => return Err(HttpError::BAD_REQUEST),
                    }
                    at += 1;
                }
                State::Size | State::Trailers => {
                    let Some(lf) = input[at..].iter().position(|&b| b == b'\n') else {
                        self.keep(&input[at..])?;
                        return Ok(Decoded::More);
                    };
                    let end = at + lf + 1;
                    let whole;
                    let line: &[u8] = if self.line.is_empty() {
                        &input[at..end]
                    } else {
                        self.keep(&input[at..end])?;
                        whole = std::mem::take(&mut self.line);
                        &whole
                    };
                    if line.len() > MAX_LINE {
                        return Err(HttpError::BAD_REQUEST);
                    }
                    at = end;
                    self.line_done(line)?;
                    if self.state == State::Done {
                        return Ok(Decoded::End { used: at });
                    }
                }
            }
        }
        Ok(Decoded::More)
    }

    /// Keeps part of a line, refusing lines past the bound.
    fn keep(&mut self, part: &[u8]) -> Result<(), HttpError> {
        if self.line.len() + part.len() > MAX_LINE {
            return Err(HttpError::BAD_REQUEST);
        }
        self.line.extend_from_slice(part);
        Ok(())
    }

    /// Acts on one complete line, `\n` included.
    fn line_done(&mut self, line: &[u8]) -> Result<(), HttpError> {
        let Some(text) = line.strip_suffix(b"\r\n") else {
            return Err(HttpError::BAD_REQUEST); // a bare LF
        };
        if self.state == State::Trailers {
            self.trailers += line.len();
            if self.trailers > MAX_TRAILERS {
                return Err(HttpError::BAD_REQUEST);
            }
            if text.is_empty() {
                self.state = State::Done;
            } else if !text.contains(&b':') {
                return Err(HttpError::BAD_REQUEST);
            }
            return Ok(());
        }
        // chunk-size [ ; chunk-ext ]: hex digits, then nothing or `;`
        // (optionally after spaces, which some clients write).
        let digits = text.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        let rest = text[digits..].trim_ascii_start();
        if digits == 0 || digits > 16 || !(rest.is_empty() || rest[0] == b';') {
            return Err(HttpError::BAD_REQUEST);
        }
        let size = text[..digits].iter().fold(0u64, |acc, &b| {
            acc << 4 | u64::from(char::from(b).to_digit(16).unwrap_or(0))
        });
        self.total = self.total.checked_add(size).ok_or(HttpError::PAYLOAD_TOO_LARGE)?;
        if self.total > self.max {
            return Err(HttpError::PAYLOAD_TOO_LARGE);
        }
        self.state = if size == 0 { State::Trailers } else { State::Data(size) };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `parts` one after another; returns the data and where the
    /// body ended (an offset into all the parts together), or the status.
    fn decode_all(parts: &[&[u8]], max: u64) -> Result<(Vec<u8>, usize), u16> {
        let mut d = ChunkedDecoder::new(max);
        let mut out = Vec::new();
        let mut before = 0;
        for part in parts {
            let mut at = 0;
            loop {
                match d.decode(&part[at..]).map_err(|e| e.status)? {
                    Decoded::Data { start, end } => {
                        out.extend_from_slice(&part[at + start..at + end]);
                        at += end;
                    }
                    Decoded::More => break,
                    Decoded::End { used } => return Ok((out, before + at + used)),
                }
            }
            before += part.len();
        }
        Err(0) // not ended
    }

    #[test]
    fn chunks_decode_however_the_input_is_split() {
        let body = b"5\r\nhello\r\n1;ext=1\r\n \r\nA \r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for cut in 0..body.len() {
            let (data, used) = decode_all(&[&body[..cut], &body[cut..]], 100).unwrap();
            assert_eq!(data, b"hello 0123456789");
            assert_eq!(&body[used..], b"NEXT", "cut {cut}");
        }
    }

    #[test]
    fn malformed_framing_is_400() {
        for bad in [
            &b"x\r\n"[..],
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"11111111111111111\r\n",
            b"0\r\nno colon\r\n\r\n",
            b"-1\r\n",
        ] {
            assert_eq!(
                decode_all(&[bad], 1 << 40),
                Err(400),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = [&b"1"[..], &[b' '; MAX_LINE], b"\r\n"].concat();
        assert_eq!(decode_all(&[&long], 100), Err(400));
    }

    #[test]
    fn data_past_the_limit_is_413_before_it_is_read() {
        assert_eq!(decode_all(&[b"5\r\nhello\r\n6\r\n"], 10), Err(413));
        assert_eq!(decode_all(&[b"ffffffffffffffff\r\n"], u64::MAX - 1), Err(413));
        assert!(decode_all(&[b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n"], 10).is_ok());
    }
}
