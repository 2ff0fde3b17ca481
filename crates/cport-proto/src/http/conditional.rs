//! Validators and conditional requests: ETag, 304 Not Modified, If-Range.
//!
//! Browsers and caches revalidate constantly; answering 304 with no body is
//! most of what makes a static server cheap for repeat visits. If-Range
//! keeps a resumed download from splicing two versions of a file together.

use std::time::{SystemTime, UNIX_EPOCH};

use super::Request;

/// A strong entity tag for a file: `"<len hex>-<mtime nanoseconds hex>"`.
///
/// Built from metadata only (no hashing of the contents), like nginx's; the
/// nanoseconds catch a rewrite within the same second.
#[must_use]
pub fn etag(len: u64, mtime: SystemTime) -> String {
    let nanos = mtime.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("\"{len:x}-{nanos:x}\"")
}

/// Whether a GET or HEAD may be answered 304 Not Modified.
///
/// `If-None-Match` decides when present (weak comparison; `*` matches any
/// existing file) and `If-Modified-Since` is then ignored, as RFC 9110
/// requires. Otherwise `If-Modified-Since` matches when the file's mtime,
/// truncated to seconds, is not after the given date; an unparsable date is
/// ignored.
#[must_use]
pub fn not_modified(request: &Request<'_>, etag: &str, mtime: SystemTime) -> bool {
    if let Some(list) = &request.if_none_match {
        return etag_list_matches(list, etag);
    }
    match request.if_modified_since.map(httpdate::parse_http_date) {
        Some(Ok(since)) => unix_secs(mtime) <= unix_secs(since),
        _ => false,
    }
}

/// Whether a `Range` header may be honoured given `If-Range`.
///
/// True without `If-Range`. With an entity tag, true only for a strong
/// match; with a date, only if it equals the mtime to the second. Otherwise
/// the full file must be sent.
#[must_use]
pub fn if_range_allows(request: &Request<'_>, etag: &str, mtime: SystemTime) -> bool {
    let Some(value) = request.if_range else {
        return true;
    };
    if value.starts_with('"') || value.starts_with("W/") {
        return value == etag && !etag.starts_with("W/");
    }
    match httpdate::parse_http_date(value) {
        Ok(date) => unix_secs(date) == unix_secs(mtime),
        Err(_) => false,
    }
}

/// Weak comparison of `etag` against a comma-separated `If-None-Match` list.
fn etag_list_matches(list: &str, etag: &str) -> bool {
    if list.trim() == "*" {
        return true;
    }
    let ours = opaque(etag);
    let mut rest = list;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_ascii_whitespace());
        if rest.is_empty() {
            return false;
        }
        let tag = rest.strip_prefix("W/").unwrap_or(rest);
        let Some(body) = tag.strip_prefix('"') else {
            return false;
        };
        let Some(close) = body.find('"') else {
            return false;
        };
        if Some(&body[..close]) == ours {
            return true;
        }
        rest = &body[close + 1..];
    }
}

/// The quoted part of an entity tag, without `W/` and quotes.
fn opaque(tag: &str) -> Option<&str> {
    tag.strip_prefix("W/")
        .unwrap_or(tag)
        .strip_prefix('"')?
        .strip_suffix('"')
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::http::Method;

    fn request() -> Request<'static> {
        Request {
            method: Method::Get,
            target: "/",
            version_minor: 1,
            keep_alive: true,
            host: Some("x"),
            range: None,
            if_range: None,
            if_none_match: None,
            if_modified_since: None,
            content_length: 0,
            chunked: false,
            upload: Default::default(),
        }
    }

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn etag_is_quoted_hex_of_length_and_mtime() {
        assert_eq!(etag(255, at(1, 16)), "\"ff-3b9aca10\"");
        assert_ne!(etag(10, at(5, 1)), etag(10, at(5, 2)));
        assert_eq!(etag(0, UNIX_EPOCH - Duration::from_secs(1)), "\"0-0\"");
    }

    #[test]
    fn no_conditionals_means_modified() {
        assert!(!not_modified(&request(), "\"a\"", at(100, 0)));
    }

    #[test]
    fn if_none_match_matches_lists_weak_tags_and_star() {
        let tag = etag(3, at(100, 0));
        let mut r = request();
        for (header, expect) in [
            (tag.clone(), true),
            (format!("W/{tag}"), true),
            (format!("\"other\", {tag}"), true),
            (format!("\"other\",W/{tag} , \"x\""), true),
            ("*".to_owned(), true),
            ("\"other\"".to_owned(), false),
            ("garbage".to_owned(), false),
            ("\"unterminated".to_owned(), false),
            (String::new(), false),
        ] {
            r.if_none_match = Some(header.clone().into());
            assert_eq!(not_modified(&r, &tag, at(100, 0)), expect, "{header}");
        }
    }

    #[test]
    fn if_none_match_takes_precedence_over_if_modified_since() {
        let mut r = request();
        r.if_none_match = Some("\"other\"".into());
        let since = httpdate::fmt_http_date(at(200, 0));
        r.if_modified_since = Some(&since);
        assert!(!not_modified(&r, "\"mine\"", at(100, 0)));
    }

    #[test]
    fn if_modified_since_compares_whole_seconds() {
        let mut r = request();
        let since = httpdate::fmt_http_date(at(100, 0));
        r.if_modified_since = Some(&since);
        assert!(not_modified(&r, "\"t\"", at(100, 999_999_999)), "same second");
        assert!(not_modified(&r, "\"t\"", at(99, 0)), "older file");
        assert!(!not_modified(&r, "\"t\"", at(101, 0)), "newer file");
        r.if_modified_since = Some("yesterday");
        assert!(!not_modified(&r, "\"t\"", at(1, 0)), "bad dates are ignored");
    }

    #[test]
    fn if_range_needs_strong_match_or_exact_date() {
        let tag = etag(3, at(100, 0));
        let mut r = request();
        assert!(if_range_allows(&r, &tag, at(100, 0)));
        r.if_range = Some(&tag);
        assert!(if_range_allows(&r, &tag, at(100, 0)));
        let weak = format!("W/{tag}");
        r.if_range = Some(&weak);
        assert!(!if_range_allows(&r, &tag, at(100, 0)));
        r.if_range = Some("\"other\"");
        assert!(!if_range_allows(&r, &tag, at(100, 0)));
        let date = httpdate::fmt_http_date(at(100, 0));
        r.if_range = Some(&date);
        assert!(if_range_allows(&r, &tag, at(100, 5)));
        assert!(!if_range_allows(&r, &tag, at(101, 0)));
        r.if_range = Some("not a date");
        assert!(!if_range_allows(&r, &tag, at(100, 0)));
    }
}
