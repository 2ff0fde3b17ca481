//! Deciding the answer to one request for a file: the path rules, the cache,
//! validators, ranges, and the response head. No socket here: the result is
//! a [`Reply`] that the connection queues.

use std::borrow::Cow;
use std::fs::{self, File, Metadata};
use std::io::{self, Read as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cport_proto::http::{
    content_type, error_response, etag, if_range_allows, not_modified, parse_range, resolve_under_root,
    unsatisfiable_response, CanonicalRoot, ContentRange, DecodedPath, HttpError, Method, RangeOutcome, Request,
    ResponseHead,
};
use rustix::fs::OFlags;
use rustix::io::Errno;

use crate::cache::{CacheStats, Entry, FileCache, FileId, FileInfo};
use crate::listing;

/// Bodies up to this size are copied into the head's buffer.
const INLINE_BODY: u64 = 16 * 1024;

/// The body that follows a reply's head.
#[derive(Debug)]
pub(crate) enum Body {
    /// None (HEAD, 304, or a reply whose head buffer holds all of it).
    None,
    /// Bytes in memory (a cached file, a listing, JSON).
    Bytes(Bytes),
    /// This many body bytes, copied into the head buffer (small bodies).
    Inline(u64),
    /// A file range, sent by the kernel (splice or sendfile).
    File { file: Arc<File>, offset: u64, len: u64 },
}

impl Body {
    pub(crate) fn len(&self) -> u64 {
        match self {
            Body::None => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::Inline(n) => *n,
            Body::File { len, .. } => *len,
        }
    }
}

/// The body written after the head in one buffer (an error's text), as
/// [`Body::Inline`], so the access log and the counters see its bytes.
fn inline_body(response: &[u8]) -> Body {
    let end = memchr::memmem::find(response, b"\r\n\r\n").map_or(response.len(), |p| p + 4);
    match response.len() - end {
        0 => Body::None,
        n => Body::Inline(n as u64),
    }
}

/// A complete answer: what to queue, and whether the connection stays open.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    /// The response head (or a whole small response).
    pub head: Bytes,
    pub body: Body,
    pub keep_alive: bool,
}

impl Reply {
    /// An error answer with its one-line text body.
    pub(crate) fn error(err: HttpError, keep_alive: bool, head_only: bool, date: &str) -> Reply {
        let head = error_response(&err, keep_alive, head_only, date);
        Reply {
            status: err.status,
            body: inline_body(&head),
            head,
            keep_alive: keep_alive && !err.close,
        }
    }

    /// `head` with a body in memory (its length set here); HEAD gets the
    /// head alone.
    pub(crate) fn in_memory(mut head: ResponseHead<'_>, body: Bytes, head_only: bool, date: &str) -> Reply {
        head.content_length = body.len() as u64;
        Reply {
            status: head.status,
            head: write_head(&head, date),
            body: if head_only { Body::None } else { Body::Bytes(body) },
            keep_alive: head.keep_alive,
        }
    }
}

/// `head` in a buffer of its own.
fn write_head(head: &ResponseHead<'_>, date: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(320);
    head.write(date, &mut out);
    out.freeze()
}

/// What a request path leads to.
enum Found<'p> {
    /// A cached file that is still current.
    Cached(Arc<Entry>),
    /// A regular file, opened; `key` is its decoded path (the cache key).
    Opened {
        file: File,
        meta: Metadata,
        key: Cow<'p, Path>,
    },
    /// A directory asked for without the trailing slash.
    Redirect(String),
    /// A directory listing page.
    Listing(String),
}

/// The web root and how to serve what is under it.
#[derive(Debug)]
pub(crate) struct Files {
    root: CanonicalRoot,
    cache: FileCache,
    listing: bool,
}

impl Files {
    pub(crate) fn new(root: CanonicalRoot, cache: FileCache, listing: bool) -> Self {
        Files { root, cache, listing }
    }

    pub(crate) fn root(&self) -> &Path {
        self.root.as_path()
    }

    pub(crate) fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// The answer to a GET or HEAD (checked by the caller) of a file, a
    /// directory, or an error.
    pub(crate) fn respond(&self, req: &Request<'_>, path: &DecodedPath, date: &str) -> Reply {
        let head_only = req.method == Method::Head;
        let found = match self.find(path, req.target) {
            Ok(f) => f,
            Err(e) => return Reply::error(e, req.keep_alive, head_only, date),
        };
        match found {
            Found::Cached(entry) => file_reply(req, date, &entry.info, Source::Memory(&entry.bytes)),
            Found::Opened { file, meta, key } => self.opened(req, date, file, &meta, &key),
            Found::Redirect(location) => {
                let mut head = ResponseHead::new(301, 0, req.keep_alive);
                head.content_type = Some("text/plain; charset=utf-8");
                head.location = Some(&location);
                let body = Bytes::from_static(b"301 Moved Permanently\n");
                Reply::in_memory(head, body, head_only, date)
            }
            Found::Listing(page) => {
                let mut head = ResponseHead::new(200, 0, req.keep_alive);
                head.content_type = Some("text/html; charset=utf-8");
                Reply::in_memory(head, Bytes::from(page), head_only, date)
            }
        }
    }

    /// Serves an opened file: from memory if it is small enough to cache
    /// (reading it once), else as a file range.
    fn opened(&self, req: &Request<'_>, date: &str, mut file: File, meta: &Metadata, key: &Path) -> Reply {
        let len = meta.len();
        let id = FileId::of(meta);
        let mtime = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
        let info = FileInfo {
            mtime,
            etag: etag(len, mtime),
            content_type: content_type(key),
        };
        if let (true, Some(key)) = (self.cache.admits(len), key.to_str()) {
            let mut buf = Vec::with_capacity(len as usize + 1);
            let read = (&mut file).take(len + 1).read_to_end(&mut buf);
            let still = file.metadata().ok().map(|m| FileId::of(&m));
            if read.is_ok() && buf.len() as u64 == len && still == Some(id) {
                let entry = Arc::new(Entry {
                    id,
                    bytes: Bytes::from(buf),
                    info,
                });
                self.cache.insert(key, entry.clone());
                return file_reply(req, date, &entry.info, Source::Memory(&entry.bytes));
            }
            // Changing while read: serve this once from the file, uncached.
        }
        file_reply(req, date, &info, Source::File(Arc::new(file), len))
    }

    fn find<'p>(&self, path: &'p DecodedPath, target: &str) -> Result<Found<'p>, HttpError> {
        let key: Cow<'p, Path> = if path.dir {
            Cow::Owned(path.rel.join("index.html"))
        } else {
            Cow::Borrowed(&path.rel)
        };
        if let Some(k) = key.to_str() {
            let full = || fs::metadata(self.root.as_path().join(&key)).ok();
            if let Some(entry) = self.cache.get(k, full) {
                return Ok(Found::Cached(entry));
            }
        }
        let real = self.resolve(&path.rel)?;
        // One open and fstat tell a file from a directory (no separate
        // stat); a directory that is searchable but not readable cannot be
        // opened, so a failed open falls back to stat.
        let (file, meta) = match open_any(&real) {
            Ok((file, meta)) => (Ok(file), meta),
            Err(e) => (Err(e), fs::metadata(&real).map_err(io_status)?),
        };
        if meta.is_dir() {
            drop(file);
            if !path.dir {
                let query = target.find('?').map_or("", |i| &target[i..]);
                return Ok(Found::Redirect(format!(
                    "{}{query}",
                    listing::url_path(&path.rel, true)
                )));
            }
            // `key` is the index file's path.
            match self.resolve(&key).and_then(|p| open_file(&p)) {
                Ok((file, meta)) => return Ok(Found::Opened { file, meta, key }),
                Err(e) if e.status == 404 => {}
                Err(e) => return Err(e),
            }
            if !self.listing {
                return Err(HttpError::NOT_FOUND);
            }
            return listing::render(&real, &path.rel).map(Found::Listing).map_err(io_status);
        }
        if path.dir {
            return Err(HttpError::NOT_FOUND); // `/file.txt/`
        }
        let file = file.map_err(io_status)?;
        if !meta.is_file() {
            return Err(HttpError::FORBIDDEN);
        }
        Ok(Found::Opened { file, meta, key })
    }

    /// The real path of `rel`, refused (403) if a symlink leads outside the root.
    fn resolve(&self, rel: &Path) -> Result<PathBuf, HttpError> {
        match resolve_under_root(&self.root, rel) {
            Ok(Some(real)) => Ok(real),
            Ok(None) => Err(HttpError::FORBIDDEN),
            Err(e) => Err(io_status(e)),
        }
    }
}

/// Opens a resolved path, whatever it is, and reads its metadata.
///
/// `O_NOFOLLOW`: the path was resolved without symlinks a moment ago; if its
/// last component became one since, refuse rather than follow it.
/// `O_NONBLOCK`: a FIFO cannot block the worker in `open`.
fn open_any(real: &Path) -> io::Result<(File, Metadata)> {
    let file = File::options()
        .read(true)
        .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY).bits() as i32)
        .open(real)?;
    let meta = file.metadata()?;
    Ok((file, meta))
}

/// Opens a resolved path that must be a regular file.
fn open_file(real: &Path) -> Result<(File, Metadata), HttpError> {
    let (file, meta) = open_any(real).map_err(io_status)?;
    if meta.is_dir() {
        return Err(HttpError::NOT_FOUND);
    }
    if !meta.is_file() {
        return Err(HttpError::FORBIDDEN);
    }
    Ok((file, meta))
}

/// The status for a failed file system call.
fn io_status(e: io::Error) -> HttpError {
    match e.kind() {
        io::ErrorKind::NotFound => HttpError::NOT_FOUND,
        io::ErrorKind::PermissionDenied => HttpError::FORBIDDEN,
        _ => match Errno::from_io_error(&e) {
            Some(Errno::NOTDIR | Errno::NAMETOOLONG) => HttpError::NOT_FOUND,
            Some(Errno::LOOP) => HttpError::FORBIDDEN,
            _ => {
                tracing::warn!(error = %e, "file system error serving a request");
                HttpError::INTERNAL
            }
        },
    }
}

/// Where a file's body comes from.
enum Source<'a> {
    Memory(&'a Bytes),
    File(Arc<File>, u64),
}

/// 200, 206, 304 or 416 for a file, per the request's validators and range.
fn file_reply(req: &Request<'_>, date: &str, info: &FileInfo, src: Source<'_>) -> Reply {
    let keep_alive = req.keep_alive;
    let head_only = req.method == Method::Head;
    let len = match &src {
        Source::Memory(b) => b.len() as u64,
        Source::File(_, len) => *len,
    };
    let mut head = ResponseHead::new(200, len, keep_alive);
    head.last_modified = Some(info.mtime);
    head.etag = Some(&info.etag);
    if not_modified(req, &info.etag, info.mtime) {
        head.status = 304;
        return Reply {
            status: 304,
            head: write_head(&head, date),
            body: Body::None,
            keep_alive,
        };
    }
    let range = match req.range {
        Some(r) if if_range_allows(req, &info.etag, info.mtime) => parse_range(r, len),
        _ => RangeOutcome::Full,
    };
    let (start, count) = match range {
        RangeOutcome::Full => (0, len),
        RangeOutcome::Partial { start, end_inclusive } => {
            head.status = 206;
            head.content_range = Some(ContentRange::Bytes {
                start,
                end_inclusive,
                len,
            });
            (start, end_inclusive - start + 1)
        }
        RangeOutcome::Unsatisfiable => {
            let head = unsatisfiable_response(len, keep_alive, head_only, date);
            return Reply {
                status: 416,
                body: inline_body(&head),
                head,
                keep_alive,
            };
        }
    };
    head.content_length = count;
    head.content_type = Some(info.content_type);
    head.accept_ranges = true;
    let status = head.status;
    let (head, body) = match src {
        _ if head_only || count == 0 => (write_head(&head, date), Body::None),
        Source::Memory(b) if count <= INLINE_BODY => {
            // One buffer, one send: copying a small body is cheaper than a
            // second send (or a second iovec).
            let mut out = BytesMut::with_capacity(320 + count as usize);
            head.write(date, &mut out);
            out.extend_from_slice(&b[start as usize..(start + count) as usize]);
            (out.freeze(), Body::Inline(count))
        }
        Source::Memory(b) => (
            write_head(&head, date),
            Body::Bytes(b.slice(start as usize..(start + count) as usize)),
        ),
        Source::File(file, _) => (
            write_head(&head, date),
            Body::File {
                file,
                offset: start,
                len: count,
            },
        ),
    };
    Reply {
        status,
        head,
        body,
        keep_alive,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each file system error maps to the status a client should see; the
    /// ones a root user cannot provoke through the server (EACCES) too.
    #[test]
    fn file_system_errors_map_to_statuses() {
        let status = |e: io::Error| io_status(e).status;
        assert_eq!(status(io::ErrorKind::NotFound.into()), 404);
        assert_eq!(status(io::Error::from(Errno::NOENT)), 404);
        assert_eq!(status(io::ErrorKind::PermissionDenied.into()), 403);
        assert_eq!(status(io::Error::from(Errno::ACCESS)), 403);
        assert_eq!(status(io::Error::from(Errno::NOTDIR)), 404);
        assert_eq!(status(io::Error::from(Errno::NAMETOOLONG)), 404);
        assert_eq!(status(io::Error::from(Errno::LOOP)), 403);
        assert_eq!(status(io::Error::from(Errno::IO)), 500);
    }
}
