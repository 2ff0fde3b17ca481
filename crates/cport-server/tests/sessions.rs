//! Session behaviour through real sockets: slow consumers cut at the cap
//! while others keep receiving, peers that reset, half-close or send
//! oversized frames disturbing nobody, timeouts, graceful close, files in
//! order with bytes, and handles that go stale.

use cport_testutil::server as util;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cport_server::{DisconnectReason, Framing, Handler, LengthWidth, Message, ReasonKind, SendErrorKind, Session};
use util::*;

/// Makes the next close of `s` send a reset instead of a FIN.
fn set_linger_zero(s: &TcpStream) {
    cport_testutil::reset_on_close(s);
}

/// Shrinks a client's receive buffer so the server's queue fills quickly.
fn small_rcvbuf(s: &TcpStream) {
    cport_testutil::set_rcvbuf(s, 4096);
}

backend_tests! {
    fn slow_consumer_is_cut_at_the_cap_while_others_keep_receiving(backend: Backend) {
        let cap = 256 * 1024;
        let keep = Keep::default();
        let server = builder(backend).max_queued_bytes(cap).start(keep.clone()).unwrap();
        let addr = server.local_addr();
        let slow = connect(addr);
        small_rcvbuf(&slow);
        let mut fast = connect(addr);
        let (slow_s, fast_s) = (session_of(&keep, &slow), session_of(&keep, &fast));
        let chunk = Bytes::from(vec![b'x'; 16 * 1024]);
        let total = 32 << 20; // far more than the slow client's kernel buffers plus the cap
        let reader = thread::spawn(move || {
            let mut got = 0usize;
            let mut buf = vec![0u8; 1 << 16];
            let t0 = Instant::now();
            while got < total {
                let n = fast.read(&mut buf).expect("fast reader keeps receiving");
                assert!(n > 0, "fast reader cut off after {got} bytes");
                got += n;
            }
            (t0.elapsed(), fast)
        });
        let mut sent = 0;
        let mut slow_cut_at = None;
        let deadline = Instant::now() + 3 * LONG;
        while sent < total {
            // Pace on the fast session only: it reads, so it must never pass the cap.
            while fast_s.queued_bytes() > cap / 2 {
                assert!(
                    Instant::now() < deadline,
                    "the fast session's queue stopped draining after {sent} bytes ({} queued)",
                    fast_s.queued_bytes()
                );
                thread::sleep(Duration::from_micros(200));
            }
            let b = server.broadcast([&fast_s, &slow_s], &chunk);
            if b.refused > 0 && slow_cut_at.is_none() {
                slow_cut_at = Some(sent);
            }
            sent += chunk.len();
        }
        let (elapsed, _fast) = reader.join().unwrap();
        assert!(slow_cut_at.is_some(), "the slow consumer was never cut off");
        assert!(eventually(LONG, || keep.gone.lock().iter().any(|(id, k)| *id == slow_s.id() && *k == ReasonKind::SlowConsumer)));
        assert!(fast_s.is_open(), "the fast consumer is still connected: {:?}", keep.gone.lock());
        assert!(elapsed < Duration::from_secs(20), "fast consumer slowed down: {elapsed:?}");
        assert_eq!(server.stats().disconnects_of(ReasonKind::SlowConsumer), 1);
        drop(slow);
    }

    fn resets_half_closes_and_oversized_lines_disturb_nobody(backend: Backend) {
        let echo = Echo::lines();
        let server = builder(backend).framing(Framing::Lines { max_line: 64 }).start(echo.clone()).unwrap();
        let addr = server.local_addr();
        // A steady client pinging all along.
        let steady = thread::spawn(move || {
            let mut s = connect(addr);
            for i in 0..300 {
                let line = format!("ping {i}\n");
                assert_eq!(round_trip(&mut s, line.as_bytes(), line.len()), line.as_bytes());
                thread::sleep(Duration::from_millis(2));
            }
        });
        for round in 0..5 {
            // Reset mid-send: half a line and a big unread echo pending, then RST.
            let mut r = connect(addr);
            r.write_all(&b"full line\n".repeat(2000)).unwrap();
            r.write_all(b"half a li").unwrap();
            set_linger_zero(&r);
            drop(r);
            // Half-close: everything sent before the FIN is echoed, then the end.
            let mut h = connect(addr);
            let lines: String = (0..100).map(|i| format!("line {round} {i}\n")).collect();
            h.write_all(lines.as_bytes()).unwrap();
            h.shutdown(Shutdown::Write).unwrap();
            let (got, res) = read_to_end_or_reset(&mut h);
            res.unwrap();
            assert_eq!(String::from_utf8(got).unwrap(), lines);
            // Oversized line: that session ends, with a clear reason.
            let mut o = connect(addr);
            o.write_all(&[b'a'; 500]).unwrap();
            o.write_all(b"\n").unwrap();
            let (got, _) = read_to_end_or_reset(&mut o);
            assert!(got.is_empty());
        }
        steady.join().unwrap();
        assert!(eventually(LONG, || echo.gone.lock().len() >= 15));
        let stats = server.stats();
        assert_eq!(stats.disconnects_of(ReasonKind::Frame), 5, "{stats:?}");
        assert!(stats.disconnects_of(ReasonKind::PeerClosed) >= 5, "{stats:?}");
    }

    fn oversized_length_prefixed_frame_ends_only_that_session(backend: Backend) {
        let h = on_message(|s, msg| {
            let mut v = (msg.len() as u16).to_le_bytes().to_vec();
            v.extend_from_slice(&msg);
            let _ = s.send(v);
        });
        let server = builder(backend).length_prefixed(LengthWidth::U16, 1000).start(h.clone()).unwrap();
        let addr = server.local_addr();
        let mut good = connect(addr);
        let mut bad = connect(addr);
        // A packet split byte by byte comes back whole.
        let mut pkt = 5u16.to_le_bytes().to_vec();
        pkt.extend_from_slice(b"hello");
        for b in &pkt {
            good.write_all(&[*b]).unwrap();
            thread::sleep(Duration::from_millis(1));
        }
        let mut got = [0u8; 7];
        good.read_exact(&mut got).unwrap();
        assert_eq!(&got[..], &pkt[..]);
        // A packet declaring 5000 bytes ends its session before the bytes come.
        bad.write_all(&5000u16.to_le_bytes()).unwrap();
        let (_, _) = read_to_end_or_reset(&mut bad);
        assert!(eventually(LONG, || h.gone.lock().iter().any(|(_, k)| *k == ReasonKind::Frame)));
        good.write_all(&pkt).unwrap();
        good.read_exact(&mut got).unwrap();
        assert_eq!(&got[..], &pkt[..]);
    }

    fn a_frame_left_unfinished_is_cut_by_the_frame_timeout(backend: Backend) {
        let echo = Echo::lines();
        let server = builder(backend)
            .framing(Framing::Lines { max_line: 100 })
            .frame_timeout(Some(Duration::from_millis(300)))
            .start(echo.clone())
            .unwrap();
        let addr = server.local_addr();
        let mut loris = connect(addr);
        let mut quiet = connect(addr);
        let t0 = Instant::now();
        loris.write_all(b"GET / HT").unwrap();
        let (_, _) = read_to_end_or_reset(&mut loris);
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(3), "cut after {took:?}: {:?}", echo.gone.lock());
        assert!(eventually(LONG, || echo.gone.lock().iter().any(|(_, k)| *k == ReasonKind::FrameTimeout)));
        // A session with no partial frame is not affected.
        assert_eq!(round_trip(&mut quiet, b"still here\n", 11), b"still here\n");
    }

    fn idle_sessions_are_cut_and_busy_ones_are_not(backend: Backend) {
        let echo = Echo::default();
        let server = builder(backend).idle_timeout(Some(Duration::from_millis(500))).start(echo.clone()).unwrap();
        let addr = server.local_addr();
        let mut idle = connect(addr);
        let mut busy = connect(addr);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_millis(1500) {
            assert_eq!(round_trip(&mut busy, b"x", 1), b"x");
            thread::sleep(Duration::from_millis(50));
        }
        let (_, _) = read_to_end_or_reset(&mut idle);
        assert_eq!(echo.gone.lock().iter().filter(|(_, k)| *k == ReasonKind::IdleTimeout).count(), 1);
        assert_eq!(round_trip(&mut busy, b"y", 1), b"y");
    }

    fn close_flushes_what_is_queued_then_ends_the_stream(backend: Backend) {
        #[derive(Clone, Default)]
        struct Bulk(Disconnects);
        impl Handler for Bulk {
            type State = ();
            fn on_connect(&self, s: &Session) {
                for i in 0..64u8 {
                    s.send(vec![i; 32 * 1024]).unwrap();
                }
                s.close();
                assert_eq!(s.send(&b"late"[..]).unwrap_err().kind, SendErrorKind::Closed);
            }
            fn on_message(&self, _: &Session, _: &mut (), _: Message) {}
            fn on_disconnect(&self, s: &Session, _: (), reason: &DisconnectReason) {
                self.0.lock().push((s.id(), reason.kind()));
            }
        }
        let h = Bulk::default();
        let server = builder(backend).start(h.clone()).unwrap();
        let mut c = connect(server.local_addr());
        thread::sleep(Duration::from_millis(100)); // let the queue back up
        let (got, res) = read_to_end_or_reset(&mut c);
        res.unwrap();
        assert_eq!(got.len(), 64 * 32 * 1024);
        for (i, chunk) in got.chunks(32 * 1024).enumerate() {
            assert!(chunk.iter().all(|b| *b == i as u8), "chunk {i} out of order");
        }
        assert!(eventually(LONG, || h.0.lock().first().map(|x| x.1) == Some(ReasonKind::Closed)));
    }

    fn files_go_out_in_order_with_bytes(backend: Backend) {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let body = Rng(42).bytes(3 * 1024 * 1024 + 17);
        std::fs::write(tmp.path(), &body).unwrap();
        let file = Arc::new(File::open(tmp.path()).unwrap());
        drop(tmp); // unlinked; the open file stays readable
        let len = body.len() as u64;
        let files = on_message(move |s, _| {
            s.send(&b"head:"[..]).unwrap();
            s.send_file(file.clone(), 0, len).unwrap();
            s.send(&b":mid:"[..]).unwrap();
            s.send_file(file.clone(), 10, 20).unwrap();
            s.send(&b":tail"[..]).unwrap();
        });
        let server = builder(backend).start(files).unwrap();
        let mut c = connect(server.local_addr());
        c.write_all(b"get").unwrap();
        let mut want = b"head:".to_vec();
        want.extend_from_slice(&body);
        want.extend_from_slice(b":mid:");
        want.extend_from_slice(&body[10..30]);
        want.extend_from_slice(b":tail");
        let mut got = vec![0u8; want.len()];
        c.read_exact(&mut got).unwrap();
        assert!(got == want, "file range out of order or corrupted");
    }

    fn a_handle_goes_stale_when_its_session_ends(backend: Backend) {
        let keep = Keep::default();
        let server = builder(backend).start(keep.clone()).unwrap();
        let c = connect(server.local_addr());
        let s = session_of(&keep, &c);
        assert!(s.is_open());
        drop(c);
        assert!(eventually(LONG, || !s.is_open()));
        assert!(eventually(LONG, || keep.gone.lock().len() == 1));
        // A new session may take the same slot; the old handle never reaches it.
        let mut c2 = connect(server.local_addr());
        let s2 = session_of(&keep, &c2);
        assert_ne!(s.id(), s2.id());
        assert_eq!(s.send(&b"stale"[..]).unwrap_err().kind, SendErrorKind::Closed);
        s.close();
        s2.send(&b"fresh"[..]).unwrap();
        let mut got = [0u8; 5];
        c2.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"fresh");
    }

    fn broadcast_reaches_every_session_once(backend: Backend) {
        let keep = Keep::default();
        let server = builder(backend).start(keep.clone()).unwrap();
        let mut clients: Vec<_> = (0..20).map(|_| connect(server.local_addr())).collect();
        assert!(eventually(LONG, || keep.sessions.lock().len() == 20));
        let msg = Bytes::from_static(b"to everyone\n");
        // Through the server and through a handle to it (as a handler would).
        let handle = server.handle();
        for round in 0..3 {
            let all = server.sessions();
            let b = if round == 1 { handle.broadcast(&all, &msg) } else { server.broadcast(&all, &msg) };
            assert_eq!((b.queued, b.refused), (20, 0));
        }
        // Then one last line to each session alone: a fourth copy of the
        // broadcast would arrive before it.
        let end = Bytes::from_static(b"end\n");
        for s in server.sessions() {
            s.send(end.clone()).unwrap();
        }
        let mut want = msg.repeat(3);
        want.extend_from_slice(&end);
        for c in &mut clients {
            let mut got = vec![0u8; want.len()];
            c.read_exact(&mut got).unwrap();
            assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&want), "three copies, then the end line");
        }
        // The server's own counts: four messages queued per session, and
        // exactly their bytes sent.
        assert_eq!(server.stats().messages_out, 20 * 4);
        let bytes = (20 * want.len()) as u64;
        assert!(eventually(LONG, || server.stats().bytes_out == bytes), "{} bytes sent, want {bytes}", server.stats().bytes_out);
    }

    fn a_panicking_handler_ends_only_its_session(backend: Backend) {
        let h = on_message(|s, msg| {
            assert!(&msg[..] != b"boom", "the handler panics on purpose");
            let _ = s.send(msg);
        });
        let server = builder(backend).start(h.clone()).unwrap();
        let mut good = connect(server.local_addr());
        let mut bad = connect(server.local_addr());
        assert_eq!(round_trip(&mut good, b"ok", 2), b"ok");
        bad.write_all(b"boom").unwrap();
        let (_, _) = read_to_end_or_reset(&mut bad);
        assert!(eventually(LONG, || h.gone.lock().iter().any(|(_, k)| *k == ReasonKind::HandlerPanicked)));
        assert_eq!(round_trip(&mut good, b"still", 5), b"still", "the worker lives on");
    }
}
