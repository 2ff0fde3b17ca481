//! Pipelining at volume: a client that writes 12,000 requests at once (about
//! 15 MB of answers) and reads the answers at full speed gets every answer,
//! in order (the server pauses reading its requests while the answers back
//! up, instead of cutting it off as a slow consumer). On both backends.

mod util;

use std::io::{BufReader, Write};
use std::net::Shutdown;

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
