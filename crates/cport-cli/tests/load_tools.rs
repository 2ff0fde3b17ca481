//! `cport models` and `cport bench`, run for real at a tiny size so they
//! cannot rot: every model serves, the table and chart come out, and the load
//! generator's counts agree with what the server saw.

use cport_testutil::cli as util;

use util::{run_json, Cli};

#[test]
fn models_shootout_runs_every_model_and_draws_the_chart() {
    let scratch = tempfile::tempdir().unwrap();
    let chart = scratch.path().join("models.svg");
    let rows = run_json(&[
        "models",
        "--conns",
        "2,8",
        "--duration",
        "300ms",
        "--chart",
        chart.to_str().unwrap(),
        "--json",
    ]);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 10, "5 models x 2 connection counts");
    for model in ["blocking", "select", "poll", "epoll", "cport"] {
        let mine: Vec<_> = rows.iter().filter(|r| r["model"] == model).collect();
        assert_eq!(mine.len(), 2, "{model}");
        for r in mine {
            assert!(r["rate"].as_f64().unwrap() > 100.0, "{model} echoed: {r}");
            assert_eq!(r["errors"], 0, "{model}: {r}");
        }
    }
    let svg = std::fs::read_to_string(&chart).expect("chart written");
    assert!(svg.starts_with("<svg"), "an SVG");
    for model in ["blocking", "select", "poll", "epoll", "cport"] {
        assert!(svg.contains(model), "legend names {model}");
    }
}

#[test]
fn select_model_reports_fd_setsize_instead_of_crashing() {
    // 1,100 connections need descriptors above FD_SETSIZE (1024) in the
    // select server's own process.
    let rows = run_json(&[
        "models",
        "--models",
        "select",
        "--conns",
        "1100",
        "--duration",
        "300ms",
        "--json",
    ]);
    let r = &rows[0];
    assert!(r["refused"].as_u64().unwrap() > 0, "{r}");
    assert!(r["note"].as_str().unwrap().contains("FD_SETSIZE"), "{r}");
}

/// The echo server of `cport echo`, in this process so its counters can be read.
struct Echo;

impl cport_server::Handler for Echo {
    type State = ();
    fn on_connect(&self, _: &cport_server::Session) {}
    fn on_message(&self, session: &cport_server::Session, _: &mut (), msg: cport_server::Message) {
        let _ = session.send(msg);
    }
}

#[test]
fn bench_echo_counts_what_the_server_echoed() {
    let server = cport_server::Server::builder()
        .name("echo")
        .bind("127.0.0.1:0".parse().unwrap())
        .start(Echo)
        .unwrap();
    let target = server.local_addr().to_string();
    let r = run_json(&[
        "bench",
        "echo",
        "--target",
        &target,
        "--conns",
        "4",
        "--size",
        "100",
        "--duration",
        "300ms",
        "--warmup",
        "0ms",
        "--json",
    ]);
    let msgs = r["messages"].as_u64().unwrap();
    assert!(msgs > 10, "{r}");
    assert_eq!(r["bytes"].as_u64().unwrap(), msgs * 100, "{r}");
    assert_eq!(r["errors"], 0);
    assert!(r["p50_us"].as_u64().unwrap() <= r["p99_us"].as_u64().unwrap());
    assert!(r["p99_us"].as_u64().unwrap() <= r["max_us"].as_u64().unwrap());
    // With no warm-up every echo counts, so the server's own count agrees:
    // the client counted each echo it received, and at the end each of the
    // 4 closed-loop connections has at most one message the server echoed
    // (or received) that the client did not count.
    let start = std::time::Instant::now();
    let stats = loop {
        let s = server.stats();
        if s.bytes_in == s.bytes_out || start.elapsed() > std::time::Duration::from_secs(5) {
            break s;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let counted = msgs * 100;
    assert!(
        (counted..=counted + 4 * 100).contains(&stats.bytes_out),
        "the client counted {counted} bytes, the server echoed {}: {r}",
        stats.bytes_out
    );
    assert!(
        (stats.bytes_out..=stats.bytes_out + 4 * 100).contains(&stats.bytes_in),
        "the server received {} bytes and echoed {}",
        stats.bytes_in,
        stats.bytes_out
    );
    server.shutdown(std::time::Duration::from_secs(1));
}

#[test]
fn bench_chat_measures_fan_out_to_every_room_member() {
    let server = Cli::spawn(&["chat", "--listen", "127.0.0.1:0"], &["chat"]);
    let target = server.addr("chat").to_string();
    let r = run_json(&[
        "bench",
        "chat",
        "--target",
        &target,
        "--conns",
        "20",
        "--rooms",
        "2",
        "--rate",
        "20",
        "--duration",
        "500ms",
        "--warmup",
        "300ms",
        "--json",
    ]);
    // 20 clients x 20 msg/s x 0.5 s = 200 messages (one more at most, at
    // the window's edge), each delivered to the 10 members of its room: 2,000
    // deliveries. Those still in flight when the window closes are not
    // counted; more than 2,010 would mean a message reached another room.
    let deliveries = r["messages"].as_u64().unwrap();
    assert!(
        (1_600..=2_010).contains(&deliveries),
        "{deliveries} deliveries, want about 2,000: {r}"
    );
    assert_eq!(r["errors"], 0, "{r}");
}

#[test]
fn bench_idle_holds_connections_that_still_answer() {
    let server = Cli::spawn(&["echo", "--listen", "127.0.0.1:0"], &["echo"]);
    let target = server.addr("echo").to_string();
    let pid = server.pid().to_string();
    let r = run_json(&[
        "bench",
        "idle",
        "--target",
        &target,
        "--conns",
        "500",
        "--hold",
        "200ms",
        "--server-pid",
        &pid,
        "--json",
    ]);
    assert_eq!(r["connected"], 500, "{r}");
    assert_eq!(r["answered"], 500, "{r}");
    assert!(r["rss_per_conn_bytes"].as_f64().is_some(), "{r}");
}

/// `cport blocking` answers every request; at concurrency 1 a handler
/// blocked for a second does not hold up another connection's requests
/// (the port hands its slot off); `cport bench blocking` counts both kinds.
#[test]
fn blocking_server_answers_around_a_blocked_handler() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};
    let request = |seq: u64, blocks: bool| {
        let mut r = [0u8; 16];
        r[..8].copy_from_slice(&seq.to_le_bytes());
        r[8] = u8::from(blocks);
        r
    };
    let server = Cli::spawn(
        &[
            "blocking",
            "--listen",
            "127.0.0.1:0",
            "--threads",
            "4",
            "--concurrency",
            "1",
            "--block-time",
            "1s",
        ],
        &["blocking"],
    );
    let addr = server.addr("blocking");
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    slow.write_all(&request(1, true)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let mut fast = TcpStream::connect(addr).unwrap();
    fast.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let start = Instant::now();
    for seq in 0..20 {
        fast.write_all(&request(seq, false)).unwrap();
        let mut answer = [0u8; 16];
        fast.read_exact(&mut answer).unwrap();
        assert_eq!(answer, request(seq, false));
    }
    assert!(
        start.elapsed() < Duration::from_millis(700),
        "fast requests waited {:?}",
        start.elapsed()
    );
    let mut answer = [0u8; 16];
    slow.read_exact(&mut answer).unwrap();
    assert_eq!(answer, request(1, true));

    let target = addr.to_string();
    let r = run_json(&[
        "bench",
        "blocking",
        "--target",
        &target,
        "--conns",
        "4",
        "--block-every",
        "10",
        "--duration",
        "3s",
        "--warmup",
        "100ms",
        "--json",
    ]);
    assert!(r["all"]["messages"].as_u64().unwrap() > 10, "{r}");
    assert_eq!(r["all"]["errors"], 0, "{r}");
    assert!(r["blocking_p50_us"].as_u64().unwrap() >= 1_000_000, "{r}");
    assert!(r["fast_p50_us"].as_u64().unwrap() < 1_000_000, "{r}");
}
