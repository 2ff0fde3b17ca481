//! Half-close both ways. The client closes its side first: what it sent
//! before is still answered in full, then the server closes. The server
//! closes its side first (`Connection: close`, chat's `/quit`): the client
//! gets the whole answer, then the end of the stream.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::thread;

use crate::clients::{connect, read_head, skip_body, warm_chat, warm_echo, warm_http, LineClient, Scratch};
use crate::server::{serve_args, Backend, Launch, Tolerance};

pub fn case(b: Backend) {
    let root = Scratch::new("halfclose");
    root.file("one.bin", 300_000);
    root.file("small.txt", 100);
    let server = Launch::new(&serve_args(&["--root", root.as_str()]), &["echo", "chat", "http"]).spawn(b);
    warm_echo(server.addr("echo"));
    warm_http(server.addr("http"), "/small.txt", "/one.bin");
    warm_chat(server.addr("chat"));
    let before = server.quiet_usage();

    // Echo: 1 MiB, then FIN; all of it comes back, then the server's FIN.
    let mut s = connect(server.addr("echo"));
    let mut w = s.try_clone().unwrap();
    let writer = thread::spawn(move || {
        let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 253) as u8).collect();
        w.write_all(&data).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    s.read_to_end(&mut back).expect("echo stream ends cleanly");
    writer.join().unwrap();
    assert_eq!(back.len(), 1 << 20, "{b:?}: echo after the client's FIN");
    assert!(back.iter().enumerate().all(|(i, &x)| x == (i % 253) as u8));

    // HTTP: three pipelined requests, then FIN; three answers, then FIN.
    let mut s = connect(server.addr("http"));
    for _ in 0..3 {
        s.write_all(b"GET /one.bin HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    }
    s.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    for i in 0..3 {
        let head = read_head(&mut s, &mut rest).unwrap_or_else(|e| panic!("{b:?}: answer {i}: {e}"));
        assert_eq!((head.status, head.content_length), (200, Some(300_000)));
        skip_body(&mut s, &mut rest, 300_000).unwrap();
    }
    assert!(rest.is_empty());
    assert_eq!(
        s.read(&mut [0u8; 64]).unwrap(),
        0,
        "{b:?}: the server closes after the last answer"
    );

    // HTTP, the server's side first: `Connection: close`.
    let mut s = connect(server.addr("http"));
    s.write_all(b"GET /one.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut rest = Vec::new();
    let head = read_head(&mut s, &mut rest).unwrap();
    assert_eq!((head.status, head.content_length), (200, Some(300_000)));
    skip_body(&mut s, &mut rest, 300_000).unwrap();
    assert_eq!(s.read(&mut [0u8; 64]).unwrap(), 0, "{b:?}: FIN after Connection: close");
    // The client's side is still open: the server may not have reset it.
    let _ = s.write_all(b"late");

    // Chat: `/quit` gets its goodbye, then the end of the stream.
    let mut c = LineClient::connect(server.addr("chat"));
    c.send("/quit\n");
    c.until_line("* bye");
    assert_eq!(c.line(), None, "{b:?}: chat closes after /quit");

    server.assert_flat(&before, Tolerance::CONNECTIONS);
    server.assert_no_panic();
}
