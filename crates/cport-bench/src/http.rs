//! HTTP load: keep-alive connections each sending GET requests (closed
//! loop), or, with an upload size, each sending `PUT` uploads of that size
//! one after another (to cport's `/upload/` or to nginx's DAV module).

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cport::{Backend, OpKind, Payload, Port};

use crate::conn;
use crate::report::{LatencyRecorder, Report, Window};

/// What to run.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Server address.
    pub target: SocketAddr,
    /// Host header value.
    pub host: String,
    /// Request path, e.g. `/index.html`.
    pub path: String,
    /// Connections.
    pub conns: usize,
    /// Measured time.
    pub duration: Duration,
    /// Unmeasured time first.
    pub warmup: Duration,
    /// Client backend.
    pub backend: Backend,
    /// Send `PUT` uploads of this many bytes instead of GETs (the path is
    /// the upload prefix, e.g. `/upload/`; each connection uploads to a name
    /// of its own).
    pub upload: Option<u64>,
    /// Bearer token for uploads.
    pub token: Option<String>,
}

/// Upload bodies go out in sends of this size (one shared buffer).
const UPLOAD_PIECE: usize = 1 << 20;

/// Parses `http://host:port/path` into an address, host and path.
///
/// # Errors
/// When the URL is not `http://` with a numeric or resolvable host.
pub fn parse_url(url: &str) -> io::Result<(SocketAddr, String, String)> {
    use std::net::ToSocketAddrs;
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "only http:// URLs"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let with_port = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    let addr = with_port
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "host did not resolve"))?;
    Ok((addr, hostport.to_string(), path.to_string()))
}

/// Incremental reader of HTTP/1.1 responses on one connection.
#[derive(Default)]
struct ResponseReader {
    /// An unfinished response head carried over from the previous chunk.
    head: Vec<u8>,
    body_left: usize,
}

impl ResponseReader {
    /// Feeds received bytes; returns (responses completed, body bytes, bad response seen).
    fn feed(&mut self, chunk: &[u8]) -> (u64, u64, bool) {
        let (mut done, mut body) = (0, 0);
        // Parse in place when no head is pending (the common case), else
        // append to it. A pending head means no body is pending.
        let mut owned = None;
        let data: &[u8] = if self.head.is_empty() {
            chunk
        } else {
            self.head.extend_from_slice(chunk);
            owned.insert(std::mem::take(&mut self.head))
        };
        let mut off = 0;
        while off < data.len() {
            if self.body_left > 0 {
                let n = self.body_left.min(data.len() - off);
                self.body_left -= n;
                body += n as u64;
                off += n;
                if self.body_left == 0 {
                    done += 1;
                }
                continue;
            }
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&data[off..]) {
                Ok(httparse::Status::Complete(n)) => {
                    let len = resp
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    let ok = resp.code.is_some_and(|c| c < 400);
                    if !ok {
                        return (done, body, true);
                    }
                    off += n;
                    if len == 0 {
                        done += 1;
                    }
                    self.body_left = len;
                }
                Ok(httparse::Status::Partial) => {
                    if data.len() - off > 64 * 1024 {
                        return (done, body, true);
                    }
                    break;
                }
                Err(_) => return (done, body, true),
            }
        }
        // Keep an unfinished head for the next chunk.
        if off < data.len() {
            match owned {
                Some(mut buf) => {
                    buf.drain(..off);
                    self.head = buf;
                }
                // Nothing was pending: `data` is `chunk`.
                None => self.head.extend_from_slice(&chunk[off..]),
            }
        }
        (done, body, false)
    }
}

/// Runs the load.
///
/// # Errors
/// When the client port cannot be built.
pub fn run(cfg: &HttpConfig) -> io::Result<Report> {
    if let Some(size) = cfg.upload {
        return run_upload(cfg, size);
    }
    let port = Port::builder().concurrency(1).backend(cfg.backend).build()?;
    let req = Bytes::from(format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: cport-bench\r\n\r\n",
        cfg.path, cfg.host
    ));
    let mut rep = Report {
        kind: "http".into(),
        target: format!("{}{}", cfg.target, cfg.path),
        conns: cfg.conns,
        ..Report::default()
    };
    struct C {
        h: cport::Handle,
        rd: ResponseReader,
        sent: Instant,
    }
    let mut cs = Vec::with_capacity(cfg.conns);
    for i in 0..cfg.conns {
        let h = conn::open(&port, cfg.target, None, i as u64, 0)?;
        cs.push(C {
            h,
            rd: ResponseReader::default(),
            sent: Instant::now(),
        });
    }
    let mut window = Window::start(cfg.warmup, cfg.duration);
    let mut lat = LatencyRecorder::default();
    while let Some(c) = window.next(&port)? {
        let Some(x) = cs.get_mut(c.key().0 as usize) else {
            continue;
        };
        match c.kind() {
            OpKind::Connect if c.result().is_ok() => {
                x.sent = Instant::now();
                port.send(&x.h, req.clone(), 0)?;
                port.recv(&x.h, Vec::with_capacity(64 * 1024), 0)?;
            }
            OpKind::Connect => rep.connect_errors += 1,
            OpKind::Recv => match c.into_parts() {
                (Ok(n), Payload::Buf(b)) if n > 0 => {
                    let mut v = b.into_vec();
                    let (done, body, bad) = x.rd.feed(&v);
                    let now = Instant::now();
                    if bad {
                        rep.errors += 1;
                        continue;
                    }
                    let measured = window.measures(now);
                    for _ in 0..done {
                        if measured {
                            lat.record(now - x.sent);
                            rep.messages += 1;
                        }
                        x.sent = now;
                        port.send(&x.h, req.clone(), 0)?;
                    }
                    if measured {
                        rep.bytes += body;
                    }
                    v.clear();
                    port.recv(&x.h, v, 0)?;
                }
                _ => {
                    rep.errors += 1;
                }
            },
            _ => {}
        }
    }
    window.finish(&mut rep, &lat);
    Ok(rep)
}

/// Runs the upload load: each connection PUTs `size` bytes, waits for the
/// answer, and starts the next. Bytes count as they are accepted by the
/// server's socket (the server pauses reading while its disk writes are
/// pending, so they are what it took in); an upload counts once answered.
fn run_upload(cfg: &HttpConfig, size: u64) -> io::Result<Report> {
    let port = Port::builder().concurrency(1).backend(cfg.backend).build()?;
    let piece = Bytes::from(vec![b'u'; UPLOAD_PIECE]);
    let auth = cfg
        .token
        .as_ref()
        .map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let mut rep = Report {
        kind: "http-upload".into(),
        target: format!("{}{}", cfg.target, cfg.path),
        conns: cfg.conns,
        size: size as usize,
        ..Report::default()
    };
    struct C {
        h: cport::Handle,
        rd: ResponseReader,
        sent: Instant,
        /// Body bytes still to send of the current upload.
        left: u64,
        head: Bytes,
    }
    let mut cs = Vec::with_capacity(cfg.conns);
    for i in 0..cfg.conns {
        let h = conn::open(&port, cfg.target, None, i as u64, 0)?;
        let head = Bytes::from(format!(
            "PUT {}bench-{i}.bin HTTP/1.1\r\nHost: {}\r\nUser-Agent: cport-bench\r\n{auth}Content-Length: {size}\r\n\r\n",
            cfg.path, cfg.host
        ));
        cs.push(C {
            h,
            rd: ResponseReader::default(),
            sent: Instant::now(),
            left: 0,
            head,
        });
    }
    // The next send of an upload: its head with the first piece, or a piece.
    let next = |x: &mut C, port: &Port, first: bool| -> io::Result<()> {
        let n = x.left.min(UPLOAD_PIECE as u64) as usize;
        x.left -= n as u64;
        if first {
            port.send_vectored(&x.h, vec![x.head.clone().into(), piece.slice(..n).into()], 0)?;
        } else {
            port.send(&x.h, piece.slice(..n), 0)?;
        }
        Ok(())
    };
    let mut window = Window::start(cfg.warmup, cfg.duration);
    let mut lat = LatencyRecorder::default();
    while let Some(c) = window.next(&port)? {
        let Some(x) = cs.get_mut(c.key().0 as usize) else {
            continue;
        };
        match c.kind() {
            OpKind::Connect if c.result().is_ok() => {
                x.sent = Instant::now();
                x.left = size;
                next(x, &port, true)?;
                port.recv(&x.h, Vec::with_capacity(4096), 0)?;
            }
            OpKind::Connect => rep.connect_errors += 1,
            OpKind::Send | OpKind::SendVectored => match c.result() {
                Ok(n) => {
                    if window.measures(Instant::now()) {
                        rep.bytes += *n as u64;
                    }
                    if x.left > 0 {
                        next(x, &port, false)?;
                    }
                }
                Err(_) => rep.errors += 1,
            },
            OpKind::Recv => match c.into_parts() {
                (Ok(n), Payload::Buf(b)) if n > 0 => {
                    let mut v = b.into_vec();
                    let (done, _, bad) = x.rd.feed(&v);
                    let now = Instant::now();
                    if bad {
                        rep.errors += 1;
                        continue;
                    }
                    for _ in 0..done {
                        if window.measures(now) {
                            lat.record(now - x.sent);
                            rep.messages += 1;
                        }
                        x.sent = now;
                        x.left = size;
                        next(x, &port, true)?;
                    }
                    v.clear();
                    port.recv(&x.h, v, 0)?;
                }
                _ => rep.errors += 1,
            },
            _ => {}
        }
    }
    window.finish(&mut rep, &lat);
    Ok(rep)
}

/// Parses a size such as `1MiB`, `1GiB`, `512KiB` or `4096`.
///
/// # Errors
/// When it is not a number with an optional KiB, MiB or GiB suffix.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = [
        ("GiB", 1u64 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ]
    .iter()
    .find_map(|(suf, m)| s.strip_suffix(suf).map(|n| (n, *m)))
    .unwrap_or((s, 1));
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("not a size: {s:?} (e.g. 1MiB, 1GiB, 4096)"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_parse() {
        assert_eq!(super::parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(super::parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(super::parse_size("4096"), Ok(4096));
        assert!(super::parse_size("1TB").is_err());
    }

    use super::*;

    #[test]
    fn reader_counts_pipelined_responses_split_anywhere() {
        let one = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        let stream: Vec<u8> = one.iter().chain(one.iter()).chain(one.iter()).copied().collect();
        for split in 0..stream.len() {
            let mut r = ResponseReader::default();
            let (a, ab, _) = r.feed(&stream[..split]);
            let (b, bb, bad) = r.feed(&stream[split..]);
            assert!(!bad);
            assert_eq!((a + b, ab + bb), (3, 15), "split at {split}");
        }
    }

    #[test]
    fn reader_counts_responses_fed_byte_by_byte() {
        let one = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        let empty = b"HTTP/1.1 204 No Content\r\n\r\n";
        let stream: Vec<u8> = one.iter().chain(empty.iter()).chain(one.iter()).copied().collect();
        let mut r = ResponseReader::default();
        let (mut n, mut b) = (0, 0);
        for byte in &stream {
            let (d, bb, bad) = r.feed(std::slice::from_ref(byte));
            assert!(!bad);
            (n, b) = (n + d, b + bb);
        }
        assert_eq!((n, b), (3, 10));
    }

    #[test]
    fn error_status_is_reported() {
        let mut r = ResponseReader::default();
        let (_, _, bad) = r.feed(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        assert!(bad);
    }

    #[test]
    fn urls_parse() {
        let (a, h, p) = parse_url("http://127.0.0.1:8080/x/y.html").unwrap();
        assert_eq!(
            (a.port(), h.as_str(), p.as_str()),
            (8080, "127.0.0.1:8080", "/x/y.html")
        );
        assert!(parse_url("https://x").is_err());
    }
}
