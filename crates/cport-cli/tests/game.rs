//! `cport game` and `cport bench game` as a user runs them: the bots log in,
//! walk, reconcile without a single desync, and read the server's counters.

use cport_testutil::cli as util;

use util::{run_json, Cli, SERVE};

#[test]
fn bench_game_bots_play_without_desyncs() {
    let server = Cli::spawn(&["game", "--listen", "127.0.0.1:0"], &["game"]);
    let target = server.addr("game").to_string();
    let r = run_json(&[
        "bench",
        "game",
        "--target",
        &target,
        "--bots",
        "40",
        "--input-rate",
        "10",
        "--whole-world-share",
        "0.25",
        "--duration",
        "1500ms",
        "--warmup",
        "500ms",
        "--json",
    ]);
    assert_eq!(r["logged_in"], 40, "{r}");
    assert_eq!(r["desyncs"], 0, "{r}");
    assert_eq!(r["disconnects"], 0, "{r}");
    assert_eq!(r["kicks"], 0, "{r}");
    assert!(r["inputs"].as_u64().unwrap() > 300, "{r}");
    assert!(r["ticks"].as_u64().unwrap() >= 10, "{r}");
    assert!(r["own_p50_us"].as_u64().unwrap() > 0, "{r}");
    assert!(
        r["own_p50_us"].as_u64().unwrap() <= r["own_p99_us"].as_u64().unwrap(),
        "{r}"
    );
    assert_eq!(r["whole_world_bots"], 10, "{r}");
    // The whole world costs more than the area of interest.
    let aoi = r["down_bytes_per_bot"].as_f64().unwrap();
    let whole = r["down_bytes_per_whole_world_bot"].as_f64().unwrap();
    assert!(aoi > 0.0 && whole > aoi, "{r}");
}

/// One HTTP/1.1 request on a fresh connection; the answer as text.
fn http(addr: std::net::SocketAddr, head: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    // Read until the peer closes or (for an upgrade) the head is complete.
    while let Ok(n) = s.read(&mut chunk) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..n]);
        if out.starts_with(b"HTTP/1.1 101") && out.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn serve_and_game_web_serve_the_viewer_and_its_socket() {
    let serve = Cli::spawn(&SERVE, &["game", "http"]);
    let game = Cli::spawn(
        &["game", "--listen", "127.0.0.1:0", "--web", "127.0.0.1:0"],
        &["game", "game-web"],
    );
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    for (addr, dir) in [(serve.addr("http"), "/game/"), (game.addr("game-web"), "/")] {
        let page = http(
            addr,
            &format!("GET {dir} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        );
        assert!(
            page.starts_with("HTTP/1.1 200") && page.contains("game.js"),
            "{dir}: {page}"
        );
        let ws = http(addr, &format!("GET {dir}ws HTTP/1.1\r\nHost: x\r\n{upgrade}"));
        assert!(ws.starts_with("HTTP/1.1 101"), "{dir}ws: {ws}");
    }
}
