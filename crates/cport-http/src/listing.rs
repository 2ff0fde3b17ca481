//! The HTML listing of a directory (only when the server enables it).
//!
//! Names come from the file system and may hold anything: every name is
//! HTML-escaped for the text and percent-encoded for the link.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::Path;

/// Escapes `s` for HTML text and attribute values.
pub(crate) fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes one path segment: everything but unreserved characters.
pub(crate) fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The request path of `rel` (a decoded, relative path), percent-encoded,
/// with a leading `/` and, for a directory, a trailing one.
pub(crate) fn url_path(rel: &Path, dir: bool) -> String {
    let mut out = String::from("/");
    for (i, c) in rel.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(&encode_segment(&c.to_string_lossy()));
    }
    if dir && out.len() > 1 {
        out.push('/');
    }
    out
}

/// The listing page of directory `dir`, shown at request path `rel`.
/// Hidden entries (names starting with `.`) are left out.
pub(crate) fn render(dir: &Path, rel: &Path) -> io::Result<String> {
    let mut names: Vec<(String, bool)> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            let is_dir = e.file_type().ok()?.is_dir();
            (!name.starts_with('.')).then_some((name, is_dir))
        })
        .collect();
    names.sort();
    let title = html_escape(&url_path(rel, true));
    let mut page = String::with_capacity(512 + names.len() * 96);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title></head>\n\
         <body><h1>Index of {title}</h1>\n<ul>\n"
    );
    if rel.iter().next().is_some() {
        page.push_str("<li><a href=\"../\">../</a></li>\n");
    }
    for (name, is_dir) in names {
        let slash = if is_dir { "/" } else { "" };
        let _ = writeln!(
            page,
            "<li><a href=\"{}{slash}\">{}{slash}</a></li>",
            html_escape(&encode_segment(&name)),
            html_escape(&name)
        );
    }
    page.push_str("</ul>\n</body></html>\n");
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_for_html_and_links() {
        assert_eq!(html_escape("<a href='x'>&\""), "&lt;a href=&#39;x&#39;&gt;&amp;&quot;");
        assert_eq!(encode_segment("a b/<c>%"), "a%20b%2F%3Cc%3E%25");
        assert_eq!(url_path(Path::new("a b/c"), true), "/a%20b/c/");
        assert_eq!(url_path(Path::new(""), true), "/");
    }
}
