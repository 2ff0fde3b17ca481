//! The `Range` header for single byte ranges.
//!
//! Resuming downloads and media seeking need `bytes=a-b`, `bytes=a-` and
//! `bytes=-n`. Anything else (other units, several ranges, bad syntax) is
//! ignored and the full file served, which RFC 9110 allows and which keeps
//! multipart responses out of the server.

/// What to serve for a `Range` header, given the file length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeOutcome {
    /// Ignore the header and serve the whole file with 200.
    Full,
    /// Serve bytes `start..=end_inclusive` with 206.
    Partial {
        /// First byte offset.
        start: u64,
        /// Last byte offset, inclusive (always below the file length).
        end_inclusive: u64,
    },
    /// Answer 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

impl RangeOutcome {
    /// Number of bytes a [`RangeOutcome::Partial`] covers; 0 otherwise.
    #[must_use]
    pub fn partial_len(&self) -> u64 {
        match *self {
            RangeOutcome::Partial { start, end_inclusive } => end_inclusive - start + 1,
            _ => 0,
        }
    }
}

/// Interprets a `Range` header value for a file of `len` bytes.
///
/// `bytes=a-b` serves `a..=min(b, len-1)`; `bytes=a-` serves from `a` to the
/// end; `bytes=-n` serves the last `n` bytes (all of them if `n >= len`).
/// A start at or past the end, a zero suffix, or any range of an empty file
/// is [`RangeOutcome::Unsatisfiable`]. Invalid syntax, `b < a`, other units
/// and multiple ranges give [`RangeOutcome::Full`].
///
/// # Examples
///
/// ```
/// use cport_proto::http::{parse_range, RangeOutcome};
///
/// assert_eq!(
///     parse_range("bytes=-100", 1000),
///     RangeOutcome::Partial { start: 900, end_inclusive: 999 }
/// );
/// assert_eq!(parse_range("bytes=1000-", 1000), RangeOutcome::Unsatisfiable);
/// assert_eq!(parse_range("bytes=0-1,5-6", 1000), RangeOutcome::Full);
/// ```
#[must_use]
pub fn parse_range(value: &str, len: u64) -> RangeOutcome {
    let Some((unit, set)) = value.trim().split_once('=') else {
        return RangeOutcome::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || set.contains(',') {
        return RangeOutcome::Full;
    }
    let Some((first, last)) = set.trim().split_once('-') else {
        return RangeOutcome::Full;
    };
    if first.is_empty() {
        let Some(suffix) = digits(last) else {
            return RangeOutcome::Full;
        };
        if suffix == 0 || len == 0 {
            return RangeOutcome::Unsatisfiable;
        }
        return RangeOutcome::Partial {
            start: len.saturating_sub(suffix),
            end_inclusive: len - 1,
        };
    }
    let Some(start) = digits(first) else {
        return RangeOutcome::Full;
    };
    let last = if last.is_empty() {
        u64::MAX
    } else {
        match digits(last) {
            Some(last) if last >= start => last,
            _ => return RangeOutcome::Full,
        }
    };
    if start >= len {
        return RangeOutcome::Unsatisfiable;
    }
    RangeOutcome::Partial {
        start,
        end_inclusive: last.min(len - 1),
    }
}

/// A non-empty run of ASCII digits; values past `u64::MAX` saturate (they
/// are past any file's end either way).
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |acc, b| {
        acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeOutcome::{Full, Partial, Unsatisfiable};

    fn part(start: u64, end_inclusive: u64) -> RangeOutcome {
        Partial { start, end_inclusive }
    }

    #[test]
    fn closed_range_is_clamped_to_the_end() {
        assert_eq!(parse_range("bytes=0-0", 10), part(0, 0));
        assert_eq!(parse_range("bytes=2-5", 10), part(2, 5));
        assert_eq!(parse_range("bytes=2-9", 10), part(2, 9));
        assert_eq!(parse_range("bytes=2-10", 10), part(2, 9));
        assert_eq!(parse_range("bytes=9-99999999999999999999999", 10), part(9, 9));
    }

    #[test]
    fn open_range_runs_to_the_end() {
        assert_eq!(parse_range("bytes=0-", 10), part(0, 9));
        assert_eq!(parse_range("bytes=9-", 10), part(9, 9));
    }

    #[test]
    fn suffix_range_takes_the_tail() {
        assert_eq!(parse_range("bytes=-1", 10), part(9, 9));
        assert_eq!(parse_range("bytes=-10", 10), part(0, 9));
        assert_eq!(parse_range("bytes=-11", 10), part(0, 9));
    }

    #[test]
    fn start_at_or_past_the_end_is_unsatisfiable() {
        assert_eq!(parse_range("bytes=10-", 10), Unsatisfiable);
        assert_eq!(parse_range("bytes=10-20", 10), Unsatisfiable);
        assert_eq!(parse_range("bytes=99999999999999999999999-", 10), Unsatisfiable);
    }

    #[test]
    fn zero_suffix_and_empty_files_are_unsatisfiable() {
        assert_eq!(parse_range("bytes=-0", 10), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=-5", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-0", 0), Unsatisfiable);
    }

    #[test]
    fn invalid_or_unsupported_ranges_are_ignored() {
        for v in [
            "",
            "bytes",
            "bytes=",
            "bytes=-",
            "bytes=a-b",
            "bytes=5-2",
            "bytes=+1-2",
            "bytes=1 - 2",
            "bytes=0-1,3-4",
            "items=0-1",
            "bytes=--1",
        ] {
            assert_eq!(parse_range(v, 10), Full, "{v:?}");
        }
    }

    /// `b < a` is invalid syntax, so the header is ignored even when the
    /// start is past the end (checking the start first would answer 416).
    #[test]
    fn inverted_range_past_the_end_is_ignored() {
        assert_eq!(parse_range("bytes=20-5", 10), Full);
        assert_eq!(parse_range("bytes=10-9", 10), Full);
        assert_eq!(parse_range("bytes=1-0", 0), Full);
    }

    #[test]
    fn unit_is_case_insensitive_and_whitespace_trimmed() {
        assert_eq!(parse_range(" Bytes=1-2 ", 10), part(1, 2));
    }

    #[test]
    fn partial_len_counts_inclusive_bytes() {
        assert_eq!(part(2, 5).partial_len(), 4);
        assert_eq!(Full.partial_len(), 0);
    }
}
