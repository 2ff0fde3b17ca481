//! Uploads: `PUT /upload/<name>` streamed to disk through the port's own
//! `write_at`, atomic, verified, resumable (tus 1.0 core: `HEAD` and
//! `PATCH` with `Upload-Offset`). docs/UPLOADS.md is the user's guide.
//!
//! Memory per upload is bounded: body bytes gather in a staging buffer of
//! [`WINDOW`] bytes; a full buffer becomes one `write_at`, at most
//! [`MAX_WRITES`] in flight. When both are full the session's receiving is
//! paused ([`Session::pause_receiving`]): TCP slows the client down, nothing
//! else is buffered. Each completion issues the next write and releases
//! the pause.
//!
//! Life of an upload: the data goes to a file in `<dir>/.cport-upload/`,
//! hashed (sha-256) in order as it is issued. At the body's end, once every
//! write completed: `fsync`, then the digest check (`Repr-Digest`, RFC 9530),
//! then `rename` into place, then the answer. An upload cut short keeps its
//! written bytes and its hash state as a *partial* for `PATCH` to continue
//! (in memory: partials do not outlive the server process; their files are
//! removed at the next start).
//!
//! Concurrency rule: one upload per name at a time. A second `PUT` or
//! `PATCH` of a name while one is in progress is refused with 409; a
//! finished upload replaces the file atomically (the last to finish wins).

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use cport::{Completion, Handle, Key, OpKind, Payload};
use cport_proto::http::{parse_repr_digest, repr_digest, Method, Request, ResponseHead};
use cport_server::{app_ctx, Session};
use parking_lot::Mutex;
use rustix::io::Errno;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// Bytes gathered before one `write_at`.
pub(crate) const WINDOW: usize = 256 << 10;
/// Writes in flight per upload. With [`WINDOW`]: at most 768 KiB of an
/// upload's body in memory (two writes and a full staging buffer).
pub(crate) const MAX_WRITES: usize = 2;
/// The hidden directory under the upload directory that holds uploads in
/// progress; never served.
pub(crate) const TEMP_DIR: &str = ".cport-upload";
/// Partial uploads kept for resuming, at most; the oldest goes first.
const MAX_PARTIALS: usize = 64;
/// A partial upload not continued for this long is dropped.
const PARTIAL_TTL: Duration = Duration::from_secs(24 * 3600);
/// Longest upload name, in bytes.
pub(crate) const MAX_NAME: usize = 200;
/// Finished uploads listed at `/_cport/uploads`.
const RECENT: usize = 20;
/// The request path prefix of uploads.
pub(crate) const UPLOAD_PREFIX: &str = "/upload/";

/// The protocol version of tus this speaks (core protocol only).
const TUS: &str = "1.0.0";

/// How the server takes uploads.
pub(crate) struct Uploads {
    dir: PathBuf,
    temp: PathBuf,
    token_sha: [u8; 32],
    max: u64,
    next_id: AtomicU64,
    /// Uploads with writes or an fsync in flight, by id (the ops' context).
    live: Mutex<HashMap<u64, Arc<Mutex<Upload>>>>,
    /// Names and partials: one lock, so "in progress" and "resumable" never
    /// disagree.
    names: Mutex<Names>,
    recent: Mutex<VecDeque<Recent>>,
}

#[derive(Default)]
struct Names {
    /// Names with an upload in progress.
    active: HashMap<String, u64>,
    /// Uploads cut short, by name, to continue with PATCH.
    partials: HashMap<String, Partial>,
}

/// An upload cut short: what was written and the hash state at that point.
struct Partial {
    temp: PathBuf,
    offset: u64,
    length: Option<u64>,
    hasher: Sha256,
    digest: Option<[u8; 32]>,
    since: Instant,
}

/// A finished upload, for the page's list.
#[derive(Clone)]
struct Recent {
    name: String,
    size: u64,
    digest: String,
    at: SystemTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Body bytes still arrive.
    Receiving,
    /// The body is in; writes drain, then fsync.
    Draining,
    /// The fsync is in flight.
    Syncing,
    /// Renamed into place; the directory's fsync is in flight.
    SyncingDir,
    /// Answered (or abandoned): nothing more happens.
    Done,
}

/// One upload in progress.
pub(crate) struct Upload {
    id: u64,
    name: String,
    session: Session,
    file: Handle,
    temp: PathBuf,
    patch: bool,
    keep_alive: bool,
    /// Bytes issued (hashed) so far: the next write's offset.
    issued: u64,
    /// Bytes whose writes completed.
    written: u64,
    /// The whole upload's length, when known.
    length: Option<u64>,
    hasher: Sha256,
    digest: Option<[u8; 32]>,
    staged: Vec<u8>,
    writes: usize,
    phase: Phase,
    /// A write or the fsync failed: the answer once writes are drained.
    failed: Option<u16>,
    /// The session's receiving is paused by this upload.
    holding: bool,
    /// The connection went away.
    orphaned: bool,
    /// The body's end was seen.
    body_in: bool,
    /// The upload directory, open for its fsync after the rename.
    dir: Option<Handle>,
    /// The digest computed, once the data is in.
    sum: Option<[u8; 32]>,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("name", &self.name)
            .field("written", &self.written)
            .field("phase", &self.phase)
            .finish()
    }
}

/// What a request to `/upload/...` gets before any body is read.
pub(crate) enum Start {
    /// Stream the body into this upload (a 100 Continue was sent if asked).
    Body(Arc<Mutex<Upload>>),
    /// A complete answer, and whether the connection stays open (there
    /// is no body to read).
    Answer(Bytes, bool),
    /// A refusal sent before the body: the body is read and dropped, then
    /// the connection closes (so the client sees the answer, not a reset).
    Refuse(Bytes),
}

/// A refused body up to this size is read and dropped before closing;
/// a larger one is cut at once.
const DRAIN_MAX: u64 = 64 << 20;

impl Uploads {
    /// Prepares `dir` (created if missing, with its temp directory emptied).
    pub(crate) fn new(dir: &Path, token: &str, max: u64) -> io::Result<Uploads> {
        let token = token.trim();
        if token.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "the upload token is empty"));
        }
        fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
        let temp = dir.join(TEMP_DIR);
        let _ = fs::remove_dir_all(&temp);
        fs::create_dir_all(&temp)?;
        Ok(Uploads {
            dir,
            temp,
            token_sha: Sha256::digest(token.as_bytes()).into(),
            max,
            next_id: AtomicU64::new(1),
            live: Mutex::new(HashMap::new()),
            names: Mutex::new(Names::default()),
            recent: Mutex::new(VecDeque::new()),
        })
    }

    /// The directory finished uploads land in.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// `true` for a request path under [`UPLOAD_PREFIX`].
    pub(crate) fn is_upload_path(target: &str) -> bool {
        target.starts_with(UPLOAD_PREFIX)
    }

    /// Answers a request to `/upload/<name>` or starts its upload.
    pub(crate) fn start(&self, s: &Session, req: &Request<'_>, date: &str) -> Start {
        let ka = req.keep_alive;
        let method = match &req.method {
            Method::Other(m) => m.as_str(),
            Method::Get => "GET",
            Method::Head => "HEAD",
        };
        let body = req.chunked || req.content_length > 0;
        // A refusal closes when a body follows, once the body is read.
        let refuse = |status: u16, extra: &[(&str, &str)]| {
            let head = text_response(status, ka && !body, extra, date);
            if !body {
                Start::Answer(head, ka)
            } else if req.chunked || req.content_length <= DRAIN_MAX {
                Start::Refuse(head)
            } else {
                Start::Answer(head, false)
            }
        };
        if method == "OPTIONS" {
            let max = self.max.to_string();
            let extra = [("Tus-Resumable", TUS), ("Tus-Version", TUS), ("Tus-Max-Size", &max)];
            return Start::Answer(empty_response(204, ka, &extra, date), ka);
        }
        if !matches!(method, "PUT" | "PATCH" | "HEAD") {
            return refuse(405, &[("Allow", "PUT, PATCH, HEAD, OPTIONS")]);
        }
        match self.authorized(req.upload.authorization) {
            Some(true) => {}
            Some(false) => return refuse(403, &[]),
            None => return refuse(401, &[("WWW-Authenticate", "Bearer realm=\"cport uploads\"")]),
        }
        let name = match upload_name(req.target) {
            Ok(n) => n,
            Err(status) => return refuse(status, &[]),
        };
        let digest = match req.upload.repr_digest.map(parse_repr_digest) {
            None | Some(Ok(None)) => None,
            Some(Ok(Some(d))) => Some(d),
            Some(Err(_)) => return refuse(400, &[]),
        };
        let number = |v: Option<&str>| -> Result<Option<u64>, ()> {
            v.map(|v| v.trim().parse::<u64>().map_err(|_| ())).transpose()
        };
        let (Ok(offset), Ok(length)) = (number(req.upload.offset), number(req.upload.length)) else {
            return refuse(400, &[]);
        };
        let mut names = self.names.lock();
        names.expire();
        if names.active.contains_key(&name) {
            return refuse(409, &[]);
        }
        if method == "HEAD" {
            let Some(p) = names.partials.get(&name) else {
                return Start::Answer(empty_response(404, ka, &[("Tus-Resumable", TUS)], date), ka);
            };
            let off = p.offset.to_string();
            let len = p.length.map(|l| l.to_string());
            let mut extra = vec![
                ("Upload-Offset", off.as_str()),
                ("Tus-Resumable", TUS),
                ("Cache-Control", "no-store"),
            ];
            if let Some(l) = &len {
                extra.push(("Upload-Length", l));
            }
            return Start::Answer(empty_response(200, ka, &extra, date), ka);
        }
        let patch = method == "PATCH";
        let id = self.next_id.fetch_add(1, Relaxed);
        let (file, temp, state) = if patch {
            let Some(p) = names.partials.get(&name) else {
                return refuse(404, &[("Tus-Resumable", TUS)]);
            };
            if offset != Some(p.offset) {
                let off = p.offset.to_string();
                return refuse(409, &[("Upload-Offset", &off), ("Tus-Resumable", TUS)]);
            }
            let length = match (p.length, length) {
                (Some(a), Some(b)) if a != b => return refuse(400, &[]),
                (a, b) => a.or(b),
            };
            if length.is_some_and(|l| l > self.max || p.offset + req.content_length > l) {
                return refuse(413, &[]);
            }
            let file = match File::options().write(true).open(&p.temp) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(error = %e, name, "cannot reopen a partial upload");
                    return refuse(500, &[]);
                }
            };
            let p = names.partials.remove(&name).expect("looked up above");
            let digest = digest.or(p.digest);
            (file, p.temp, (p.offset, length, p.hasher, digest))
        } else {
            if let Some(old) = names.partials.remove(&name) {
                let _ = fs::remove_file(&old.temp);
            }
            let temp = self.temp.join(format!("{id}-{}", s.id()));
            let file = match File::options().write(true).create_new(true).mode(0o644).open(&temp) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot create an upload file");
                    return refuse(storage_status(&e), &[]);
                }
            };
            let length = (!req.chunked).then_some(req.content_length);
            (file, temp, (0, length, Sha256::new(), digest))
        };
        let file = match s.port().associate(file, Key(id)) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "cannot associate an upload file");
                let _ = fs::remove_file(&temp);
                return refuse(500, &[]);
            }
        };
        names.active.insert(name.clone(), id);
        drop(names);
        if req.upload.expect_continue {
            let _ = s.send(Bytes::from_static(b"HTTP/1.1 100 Continue\r\n\r\n"));
        }
        let (offset, length, hasher, digest) = state;
        let up = Arc::new(Mutex::new(Upload {
            id,
            name,
            session: s.clone(),
            file,
            temp,
            patch,
            keep_alive: ka,
            issued: offset,
            written: offset,
            length,
            hasher,
            digest,
            staged: Vec::new(),
            writes: 0,
            phase: Phase::Receiving,
            failed: None,
            holding: false,
            orphaned: false,
            body_in: false,
            dir: None,
            sum: None,
        }));
        self.live.lock().insert(id, up.clone());
        Start::Body(up)
    }

    /// Whether the bearer token matches (`None`: no bearer token at all).
    /// Compared in constant time, over sha-256 sums so that its length
    /// does not leak either.
    fn authorized(&self, header: Option<&str>) -> Option<bool> {
        let token = header.and_then(|h| {
            let (scheme, token) = h.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
        })?;
        let sum: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        Some(sum.ct_eq(&self.token_sha).into())
    }

    /// Body bytes of an upload, in order.
    pub(crate) fn body(&self, up: &Mutex<Upload>, piece: &[u8]) {
        let mut u = up.lock();
        if u.phase != Phase::Receiving || u.failed.is_some() {
            return;
        }
        if u.length
            .is_some_and(|l| u.issued + (u.staged.len() + piece.len()) as u64 > l)
        {
            // A PATCH whose chunked body runs past the declared length.
            u.failed = Some(413);
            self.settle(&mut u);
            return;
        }
        if u.staged.capacity() == 0 {
            u.staged.reserve_exact(WINDOW + 16 * 1024);
        }
        u.staged.extend_from_slice(piece);
        self.pump(&mut u);
        if u.writes == MAX_WRITES && u.staged.len() >= WINDOW && !u.holding {
            u.holding = true;
            u.session.pause_receiving();
        }
    }

    /// The body is complete: drain, fsync, check, rename, answer. The
    /// session's input stays held until the answer is out.
    pub(crate) fn body_end(&self, up: &Mutex<Upload>) {
        let mut u = up.lock();
        u.body_in = true;
        if u.phase == Phase::Done {
            // Failed and answered early: the body was read to its end.
            if !u.orphaned {
                u.session.close();
            }
            return;
        }
        if !u.holding {
            u.holding = true;
            u.session.pause_receiving();
        }
        if u.phase == Phase::Receiving {
            u.phase = Phase::Draining;
        }
        self.pump(&mut u);
        self.settle(&mut u);
    }

    /// The connection went away: once its writes are in, the upload is kept
    /// as a partial (or dropped, if it failed).
    pub(crate) fn disconnected(&self, up: &Mutex<Upload>) {
        let mut u = up.lock();
        u.orphaned = true;
        if u.phase == Phase::Receiving {
            u.staged = Vec::new(); // not hashed yet: simply not written
            self.settle(&mut u);
        }
    }

    /// A write or fsync of an upload completed (`tag`: the upload's id,
    /// the operation's [`app_ctx`]).
    pub(crate) fn on_completion(&self, tag: u64, c: Completion) {
        let Some(up) = self.live.lock().get(&tag).cloned() else {
            return;
        };
        let kind = c.kind();
        let (res, payload) = c.into_parts();
        let mut u = up.lock();
        match kind {
            OpKind::WriteAt => {
                u.writes -= 1;
                let Payload::Buf(buf) = payload else {
                    u.failed.get_or_insert(500);
                    return self.settle(&mut u);
                };
                match res {
                    Ok(n) if n == buf.len() => u.written += n as u64,
                    Ok(n) if n > 0 => {
                        // A short write (the disk filling up): write the rest.
                        let rest = buf.as_slice()[n..].to_vec();
                        let at = u.written + n as u64;
                        u.written += n as u64;
                        if let Err(e) = u.session.port().write_at(&u.file, rest, at, app_ctx(u.id)) {
                            tracing::warn!(error = %e, "cannot issue an upload write");
                            u.failed.get_or_insert(500);
                        } else {
                            u.writes += 1;
                        }
                    }
                    Ok(_) => {
                        u.failed.get_or_insert(507);
                    }
                    Err(e) => {
                        if !(c_is_shutdown(&e) || u.orphaned) {
                            tracing::warn!(error = %e, name = u.name, "upload write failed");
                        }
                        u.failed.get_or_insert(storage_status(&e));
                    }
                }
                self.pump(&mut u);
                if u.holding && u.phase == Phase::Receiving && u.writes < MAX_WRITES && u.failed.is_none() {
                    u.holding = false;
                    u.session.resume_receiving();
                }
            }
            OpKind::Fsync if u.phase == Phase::SyncingDir => {
                // The rename is done; a failed directory fsync only weakens
                // its durability: logged, and the upload stands.
                if let Err(e) = res {
                    tracing::warn!(error = %e, "upload directory fsync failed");
                }
                if let Some(d) = u.dir.take() {
                    let _ = u.session.port().close(&d);
                }
                return self.conclude(&mut u, 0);
            }
            OpKind::Fsync => {
                if let Err(e) = res {
                    tracing::warn!(error = %e, name = u.name, "upload fsync failed");
                    u.failed.get_or_insert(storage_status(&e));
                }
                u.phase = Phase::Draining;
                return self.complete(&mut u);
            }
            _ => return,
        }
        self.settle(&mut u);
    }

    /// Issues writes of staged bytes while there is room: full windows, or
    /// whatever is left once the body is in.
    fn pump(&self, u: &mut Upload) {
        while u.failed.is_none()
            && u.writes < MAX_WRITES
            && (u.staged.len() >= WINDOW || (u.phase == Phase::Draining && !u.staged.is_empty()))
        {
            let data = std::mem::take(&mut u.staged);
            u.hasher.update(&data);
            let at = u.issued;
            u.issued += data.len() as u64;
            match u.session.port().write_at(&u.file, data, at, app_ctx(u.id)) {
                Ok(_) => u.writes += 1,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot issue an upload write");
                    u.failed = Some(500);
                }
            }
        }
    }

    /// Moves an upload on once its writes are in: fail, keep as a partial,
    /// or fsync.
    fn settle(&self, u: &mut Upload) {
        if u.writes > 0 || matches!(u.phase, Phase::Syncing | Phase::SyncingDir | Phase::Done) {
            return;
        }
        if u.failed.is_some() {
            return self.complete(u);
        }
        if u.orphaned && u.phase == Phase::Receiving {
            return self.keep_partial(u);
        }
        if u.phase != Phase::Draining || !u.staged.is_empty() {
            return;
        }
        let whole = match u.length {
            Some(l) => u.written == l,
            None => !u.patch, // a chunked PUT: its end is the end
        };
        if !whole {
            // A PATCH that did not reach the length: continue with the next.
            self.keep_partial(u);
            let off = u.written.to_string();
            let extra = [("Upload-Offset", off.as_str()), ("Tus-Resumable", TUS)];
            let head = empty_response(204, u.keep_alive, &extra, &now_date());
            return self.answer(u, head);
        }
        u.length = Some(u.written);
        match u.session.port().fsync(&u.file, true, app_ctx(u.id)) {
            Ok(_) => u.phase = Phase::Syncing,
            Err(e) => {
                tracing::warn!(error = %e, "cannot issue an upload fsync");
                u.failed = Some(500);
                self.complete(u);
            }
        }
    }

    /// After the fsync (or a failure): check the digest, rename, then
    /// fsync the directory (the new name is durable once it is) or answer.
    fn complete(&self, u: &mut Upload) {
        let sum: [u8; 32] = std::mem::take(&mut u.hasher).finalize().into();
        u.sum = Some(sum);
        let status = match u.failed {
            Some(s) => s,
            None if u.digest.is_some_and(|d| d != sum) => 400,
            None => match fs::rename(&u.temp, self.dir.join(&u.name)) {
                Ok(()) => 0,
                Err(e) => {
                    tracing::warn!(error = %e, name = u.name, "cannot rename an upload into place");
                    storage_status(&e)
                }
            },
        };
        if status == 0 {
            let port = u.session.port();
            let dir = File::open(&self.dir).and_then(|d| port.associate(d, Key(u.id)));
            if let Ok(d) = dir {
                if port.fsync(&d, false, app_ctx(u.id)).is_ok() {
                    u.dir = Some(d);
                    u.phase = Phase::SyncingDir;
                    return;
                }
                let _ = port.close(&d);
            }
        }
        self.conclude(u, status);
    }

    /// Ends an upload: closes its file, frees its name, answers `status`
    /// (0: stored).
    fn conclude(&self, u: &mut Upload, status: u16) {
        let date = now_date();
        let field = repr_digest(&u.sum.unwrap_or_default());
        let _ = u.session.port().close(&u.file);
        self.live.lock().remove(&u.id);
        {
            let mut names = self.names.lock();
            if names.active.get(&u.name) == Some(&u.id) {
                names.active.remove(&u.name);
            }
        }
        u.phase = Phase::Done;
        let head = if status == 0 {
            let mut r = self.recent.lock();
            if r.len() == RECENT {
                r.pop_back();
            }
            r.push_front(Recent {
                name: u.name.clone(),
                size: u.written,
                digest: field.clone(),
                at: SystemTime::now(),
            });
            drop(r);
            tracing::info!(name = u.name, bytes = u.written, "upload stored");
            let location = format!("/files/{}", percent_encode(&u.name));
            let off = u.written.to_string();
            let mut extra = vec![("Repr-Digest", field.as_str()), ("Location", location.as_str())];
            if u.patch {
                extra.push(("Upload-Offset", &off));
                extra.push(("Tus-Resumable", TUS));
                empty_response(204, u.keep_alive, &extra, &date)
            } else {
                text_response(201, u.keep_alive, &extra, &date)
            }
        } else {
            let _ = fs::remove_file(&u.temp);
            // A digest mismatch comes after the whole body: the connection
            // goes on. Any other failure closes it once the body is read.
            if status != 400 {
                u.keep_alive = false;
            }
            text_response(status, u.keep_alive, &[("Repr-Digest", field.as_str())], &date)
        };
        self.answer(u, head);
    }

    /// Sends an upload's answer and lets the session's input go on. After
    /// an early failure the rest of the body is still read (and dropped),
    /// so the client sees the answer rather than a reset; the session
    /// closes at the body's end.
    fn answer(&self, u: &mut Upload, head: Bytes) {
        if u.orphaned {
            return;
        }
        let _ = u.session.send(head);
        if !u.keep_alive && u.body_in {
            u.session.close();
        } else if u.holding {
            u.holding = false;
            u.session.resume_receiving();
        }
    }

    /// Keeps what was written for a later PATCH.
    fn keep_partial(&self, u: &mut Upload) {
        let _ = u.session.port().close(&u.file);
        self.live.lock().remove(&u.id);
        let mut names = self.names.lock();
        if names.active.get(&u.name) == Some(&u.id) {
            names.active.remove(&u.name);
        }
        if u.phase == Phase::Receiving {
            tracing::info!(name = u.name, offset = u.written, "upload interrupted: kept to resume");
        }
        u.phase = Phase::Done;
        names.expire();
        if names.partials.len() >= MAX_PARTIALS {
            let oldest = names
                .partials
                .iter()
                .min_by_key(|(_, p)| p.since)
                .map(|(n, _)| n.clone());
            if let Some(p) = oldest.and_then(|n| names.partials.remove(&n)) {
                let _ = fs::remove_file(&p.temp);
            }
        }
        names.partials.insert(
            u.name.clone(),
            Partial {
                temp: u.temp.clone(),
                offset: u.written,
                length: u.length,
                hasher: u.hasher.clone(),
                digest: u.digest,
                since: Instant::now(),
            },
        );
    }

    /// The recent uploads as JSON, newest first.
    pub(crate) fn recent_json(&self) -> String {
        let list: Vec<serde_json::Value> = self
            .recent
            .lock()
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.name,
                    "size": r.size,
                    "digest": r.digest,
                    "url": format!("/files/{}", percent_encode(&r.name)),
                    "at": r.at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
                })
            })
            .collect();
        serde_json::Value::Array(list).to_string()
    }
}

impl Names {
    /// Drops partials not continued for [`PARTIAL_TTL`].
    fn expire(&mut self) {
        self.partials.retain(|_, p| {
            let keep = p.since.elapsed() < PARTIAL_TTL;
            if !keep {
                let _ = fs::remove_file(&p.temp);
            }
            keep
        });
    }
}

fn c_is_shutdown(e: &io::Error) -> bool {
    Errno::from_io_error(e) == Some(Errno::CANCELED)
}

/// The status for a failed file write: 507 when the disk (or the file size
/// limit) is full, else 500.
fn storage_status(e: &io::Error) -> u16 {
    match Errno::from_io_error(e) {
        Some(Errno::NOSPC | Errno::DQUOT | Errno::FBIG) => 507,
        _ => 500,
    }
}

/// The upload name in a target `/upload/<name>`: one path segment, as
/// strict as a GET path (decoded once; no `..`, NUL, backslash, slash) and
/// stricter: no hidden name, no control character, at most [`MAX_NAME`]
/// bytes. 400 for a malformed target, 403 for a name not allowed.
pub(crate) fn upload_name(target: &str) -> Result<String, u16> {
    let path = cport_proto::http::decode_path(target).map_err(|_| 400u16)?;
    let mut parts = path.rel.components();
    let (Some(first), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(403);
    };
    if first.as_os_str() != "upload" || path.dir {
        return Err(403);
    }
    let name = name.as_os_str().to_str().ok_or(400u16)?;
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with(['.', ' ', '-'])
        && !name.ends_with([' ', '.'])
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | ' ' | '(' | ')' | ',' | '@'));
    if ok {
        Ok(name.to_owned())
    } else {
        Err(403)
    }
}

/// Escapes a name for a URL path segment.
fn percent_encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn now_date() -> String {
    cport_proto::http::http_date(SystemTime::now())
}

/// A response with no body.
fn empty_response(status: u16, keep_alive: bool, extra: &[(&str, &str)], date: &str) -> Bytes {
    let mut head = ResponseHead::new(status, 0, keep_alive);
    head.extra = extra;
    let mut out = BytesMut::with_capacity(320);
    head.write(date, &mut out);
    out.freeze()
}

/// A response with a one-line text body: the status and its reason.
fn text_response(status: u16, keep_alive: bool, extra: &[(&str, &str)], date: &str) -> Bytes {
    let text = format!("{status} {}\n", cport_proto::http::reason_phrase(status));
    let mut head = ResponseHead::new(status, text.len() as u64, keep_alive);
    head.content_type = Some("text/plain; charset=utf-8");
    let mut all: Vec<(&str, &str)> = extra.to_vec();
    all.push(("Cache-Control", "no-store"));
    head.extra = &all;
    let mut out = BytesMut::with_capacity(320 + text.len());
    head.write(date, &mut out);
    out.extend_from_slice(text.as_bytes());
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_names_are_one_plain_segment() {
        assert_eq!(upload_name("/upload/a.txt"), Ok("a.txt".into()));
        assert_eq!(
            upload_name("/upload/My%20Photo%20(1).jpg"),
            Ok("My Photo (1).jpg".into())
        );
        for (target, status) in [
            ("/upload/../etc/passwd", 400),
            ("/upload/%2e%2e/x", 400),
            ("/upload/a%5cb", 400),
            ("/upload/a%00b", 400),
            ("/upload/.hidden", 403),
            ("/upload/.cport-upload", 403),
            ("/upload/a/b", 403),
            ("/upload/", 403),
            ("/upload/a%0ab", 403),
            ("/upload/a:b", 403),
            ("/upload/-rf", 403),
            ("/elsewhere/a", 403),
            ("/upload/a/", 403),
        ] {
            assert_eq!(upload_name(target), Err(status), "{target}");
        }
        let long = format!("/upload/{}", "a".repeat(MAX_NAME + 1));
        assert_eq!(upload_name(&long), Err(403));
        assert!(upload_name(&format!("/upload/{}", "a".repeat(MAX_NAME))).is_ok());
    }
}
