//! Pipelining at volume: a client that writes 12,000 requests at once (about
//! 15 MB of answers) and reads the answers at full speed gets every answer,
//! in order (the server pauses reading its requests while the answers back
//! up, instead of cutting it off as a slow consumer). On both backends.

use cport_testutil::http as util;

use std::io::{BufReader, Write};
use std::net::Shutdown;
use std::time::Duration;

use util::*;

backend_tests! {
    fn twelve_thousand_pipelined_gets_in_one_write_all_get_answers(backend: Backend) {
        let site = site();
        let server = serve(backend, site.path());
        let body = std::fs::read(site.path().join("one.bin")).unwrap();
        let n = 12_000;
        let one = b"GET /one.bin HTTP/1.1\r\nHost: x\r\n\r\n";
        let all: Vec<u8> = one.iter().copied().cycle().take(one.len() * n).collect();
        let s = connect(server.local_addr());
        let mut w = s.try_clone().unwrap();
        let reader = std::thread::spawn(move || {
            let body = body;
            let mut r = BufReader::with_capacity(1 << 16, s);
            let mut answered = 0;
            while answered < n {
                match read_response(&mut r, false) {
                    Ok(resp) => {
                        assert_eq!(resp.status, 200, "answer {answered}");
                        assert!(resp.body == body, "answer {answered}: body differs");
                        answered += 1;
                    }
                    Err(e) => panic!("after {answered} answers: {e}"),
                }
            }
            answered
        });
        w.write_all(&all).unwrap();
        assert_eq!(reader.join().unwrap(), n);
        w.shutdown(Shutdown::Write).unwrap();
        let stats = server.server_stats();
        assert_eq!(stats.disconnects_of(cport_server::ReasonKind::SlowConsumer), 0);
    }
}

backend_tests! {
    fn a_request_head_left_unread_by_back_pressure_is_not_a_408(backend: Backend) {
        let site = site();
        site.write("big.bin", vec![7u8; 256 << 10]);
        let server = serve_with(backend, site.path(), |c| c.request_timeout(Duration::from_millis(300)));
        let n = 200;
        let one = b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n";
        let all: Vec<u8> = one.iter().copied().cycle().take(one.len() * n).collect();
        let s = connect(server.local_addr());
        (&s).write_all(&all).unwrap();
        // The first chunk of requests queues far more than the high-water
        // mark and ends in the middle of a head; the client reads nothing
        // for longer than the request timeout.
        std::thread::sleep(Duration::from_millis(1000));
        let mut r = BufReader::with_capacity(1 << 16, s);
        for i in 0..n {
            let resp = read_response(&mut r, false).unwrap_or_else(|e| panic!("answer {i}: {e}"));
            assert_eq!((resp.status, resp.body.len()), (200, 256 << 10), "answer {i}");
        }
        assert_eq!(server.stats().timeouts, 0);
        assert!(server.server_stats().receive_pauses > 0, "back-pressure never engaged");
    }
}
