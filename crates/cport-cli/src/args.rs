//! Command-line value parsers shared by the commands: durations and the
//! completion port's backend.

use std::time::Duration;

use cport::Backend;

/// Parses `3s`, `500ms`, `2m` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let v: f64 = num.parse().map_err(|_| format!("not a duration: {s}"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        _ => return Err(format!("unknown unit in {s}: use ms, s or m")),
    };
    if !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("duration out of range: {s}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a backend as [`Backend::parse`] does: `auto` (io_uring when the
/// kernel allows it, else epoll; `CPORT_BACKEND` may force one), `uring`
/// (also `io_uring`, `iouring`: io_uring only, failing if it is unavailable)
/// or `epoll`, in any case.
pub fn parse_backend(s: &str) -> Result<Backend, String> {
    Backend::parse(s).ok_or_else(|| format!("unknown backend {s}: use auto, uring or epoll"))
}

#[cfg(test)]
mod unit {
    use super::{parse_backend, parse_duration};
    use cport::Backend;
    use std::time::Duration;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("3h").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn backends_parse_as_both_former_parsers_did() {
        // What the servers' flag took (auto, uring, epoll) and what the load
        // tools' took (`Backend::parse`, a superset).
        assert_eq!(parse_backend("auto"), Ok(Backend::Auto));
        assert_eq!(parse_backend("uring"), Ok(Backend::IoUring));
        assert_eq!(parse_backend("epoll"), Ok(Backend::Epoll));
        assert_eq!(parse_backend("io_uring"), Ok(Backend::IoUring));
        assert_eq!(parse_backend("EPOLL"), Ok(Backend::Epoll));
        assert!(parse_backend("kqueue").is_err());
    }
}
