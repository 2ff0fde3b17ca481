//! Turning a request target into a path that cannot leave the web root.
//!
//! Path traversal is the classic static-server hole, so the rules are strict
//! and in one place: decode percent-escapes exactly once, then refuse
//! anything that could name a parent directory or confuse the file system.
//! [`resolve_under_root`] adds the one check that needs the file system:
//! symlinks that point outside the root.

use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};

use super::HttpError;

/// A request path, decoded and made relative to the web root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedPath {
    /// Relative path with only normal components (empty for `/`): safe to
    /// join to a root directory.
    pub rel: PathBuf,
    /// Whether the request named a directory (the path ended with `/`, or
    /// `/.`), so the server can look for an index file or redirect.
    pub dir: bool,
}

/// Why a request target is refused. All map to 400 Bad Request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathError {
    /// The target is neither `/path` nor `http(s)://authority/path`.
    NotOriginForm,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// The decoded path is not UTF-8.
    NotUtf8,
    /// The decoded path holds a NUL byte.
    Nul,
    /// The decoded path holds a backslash.
    Backslash,
    /// The decoded path has a `..` segment.
    DotDot,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotOriginForm => "request target is not a path",
            PathError::BadEscape => "invalid percent-escape in path",
            PathError::NotUtf8 => "path is not UTF-8",
            PathError::Nul => "path contains NUL",
            PathError::Backslash => "path contains a backslash",
            PathError::DotDot => "path contains a '..' segment",
        })
    }
}

impl std::error::Error for PathError {}

impl From<PathError> for HttpError {
    /// Every path error is a 400 that keeps the connection (the request was
    /// framed correctly).
    fn from(_: PathError) -> Self {
        HttpError::new(400, false)
    }
}

/// Decodes a request target into a path relative to the web root.
///
/// Steps: drop `http(s)://authority` (absolute form); cut the query and
/// fragment; require a leading `/`; percent-decode once (so `%252e` becomes
/// the literal name `%2e`); refuse NUL, backslash, non-UTF-8 and any `..`
/// segment (also when written `%2e%2e`); drop empty and `.` segments.
///
/// # Errors
///
/// A [`PathError`] naming the rule the target broke.
///
/// # Examples
///
/// ```
/// use cport_proto::http::{decode_path, PathError};
///
/// let p = decode_path("/docs//a%20b.txt?v=1").unwrap();
/// assert_eq!(p.rel, std::path::Path::new("docs/a b.txt"));
/// assert_eq!(decode_path("/%2e%2e/etc/passwd"), Err(PathError::DotDot));
/// ```
pub fn decode_path(target: &str) -> Result<DecodedPath, PathError> {
    let absolute = strip_absolute_form(target);
    let path = absolute.unwrap_or(target);
    let path = match path.find(['?', '#']) {
        Some(end) => &path[..end],
        None => path,
    };
    if absolute.is_some() && path.is_empty() {
        // `http://host` or `http://host?q`: the root.
        return Ok(DecodedPath {
            rel: PathBuf::new(),
            dir: true,
        });
    }
    if !path.starts_with('/') {
        return Err(PathError::NotOriginForm);
    }
    let decoded = percent_decode(path.as_bytes())?;
    if decoded.contains(&0) {
        return Err(PathError::Nul);
    }
    if decoded.contains(&b'\\') {
        return Err(PathError::Backslash);
    }
    let decoded = String::from_utf8(decoded).map_err(|_| PathError::NotUtf8)?;

    let mut rel = PathBuf::new();
    let mut last = "";
    for segment in decoded.split('/') {
        last = segment;
        match segment {
            "" | "." => {}
            ".." => return Err(PathError::DotDot),
            name => rel.push(name),
        }
    }
    Ok(DecodedPath {
        rel,
        dir: matches!(last, "" | "."),
    })
}

/// The path part of an absolute-form target (`http://authority/path` or
/// `https://...`, any case), which HTTP/1.1 servers must accept; `None` for
/// any other form.
fn strip_absolute_form(target: &str) -> Option<&str> {
    let has_prefix = |prefix: &str| {
        target
            .get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
    };
    let rest = if has_prefix("http://") {
        &target[7..]
    } else if has_prefix("https://") {
        &target[8..]
    } else {
        return None;
    };
    Some(rest.find(['/', '?', '#']).map_or("", |i| &rest[i..]))
}

fn percent_decode(input: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(input.len());
    let mut bytes = input.iter();
    while let Some(&b) = bytes.next() {
        if b == b'%' {
            let hi = bytes.next().and_then(|&h| hex(h));
            let lo = bytes.next().and_then(|&l| hex(l));
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                _ => return Err(PathError::BadEscape),
            }
        } else {
            out.push(b);
        }
    }
    Ok(out)
}

fn hex(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).map(|d| d as u8)
}

/// The web root, canonicalized once (symlinks resolved, absolute).
///
/// Build it at startup; [`resolve_under_root`] compares against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalRoot(PathBuf);

impl CanonicalRoot {
    /// Canonicalizes `root`. Touches the file system.
    ///
    /// # Errors
    ///
    /// The error of [`Path::canonicalize`], for example if `root` does not exist.
    pub fn new(root: impl AsRef<Path>) -> io::Result<Self> {
        root.as_ref().canonicalize().map(CanonicalRoot)
    }

    /// The canonical root path.
    #[must_use]
    pub fn as_path(&self) -> &Path {
        &self.0
    }
}

/// Joins `rel` to `root` and resolves symlinks, returning the real path only
/// if it is still inside the root.
///
/// This is the one function in this crate that touches the file system
/// (`realpath`): a symlink inside the root may point anywhere, and only the
/// file system knows. Returns `Ok(None)` for an escape, or if `rel` has any
/// component other than a plain name (it should come from [`decode_path`]).
///
/// The check and a later `open` are two steps: a process that can change
/// symlinks under the root between them can still win that race. Serve
/// roots that untrusted users cannot write to.
///
/// # Errors
///
/// The error of [`Path::canonicalize`], typically
/// [`io::ErrorKind::NotFound`] (answer 404).
pub fn resolve_under_root(root: &CanonicalRoot, rel: &Path) -> io::Result<Option<PathBuf>> {
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Ok(None);
    }
    let real = root.0.join(rel).canonicalize()?;
    Ok(real.starts_with(&root.0).then_some(real))
}

#[cfg(test)]
mod tests;
