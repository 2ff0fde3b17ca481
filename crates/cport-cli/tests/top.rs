//! `cport top` against a live `cport serve`: `--once` prints every server of
//! the process with its port, operations in flight, workers and busiest
//! sessions, parsed here record by record; the console, run under tmux,
//! shows its headings and quits on `q`.

use cport_testutil::cli as util;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use util::*;

/// `cport serve` with every server on a port of its own choosing.
fn serve() -> Cli {
    let any = "127.0.0.1:0";
    Cli::spawn(
        &["serve", "--echo", any, "--chat", any, "--http", any, "--game", any],
        &["echo", "chat", "http", "game"],
    )
}

/// One `--once` record: its name and its `key=value` fields.
fn records(text: &str) -> Vec<(String, HashMap<String, String>)> {
    text.lines()
        .map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next().unwrap_or_default().to_owned();
            let fields = words
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            (name, fields)
        })
        .collect()
}

#[test]
fn top_once_reports_every_server_with_its_sessions_and_ops() {
    let cli = serve();
    // One echo session that moved 5 bytes each way and now idles with a
    // receive pending.
    let mut e = LineClient::connect(cli.addr("echo"));
    e.send("ping\n");
    assert_eq!(e.line().unwrap(), "ping");
    let target = format!("http://{}", cli.addr("http"));
    let (mut cmd, _data) = command(&["top", "--target", &target, "--once", "--interval", "300ms"]);
    let out = cmd.output().expect("run cport top");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let recs = records(&text);
    let of = |name: &'static str| recs.iter().filter(move |(n, _)| n == name).map(|(_, f)| f);

    assert_eq!(of("cport").count(), 1, "{text}");
    let servers: HashMap<&str, _> = of("server").map(|f| (f["name"].as_str(), f)).collect();
    for name in ["echo", "chat", "http", "game"] {
        assert!(servers.contains_key(name), "{name} missing:\n{text}");
    }
    let echo = servers["echo"];
    assert_eq!(echo["sessions"], "1", "{text}");
    assert_eq!(
        (echo["bytes_in"].as_str(), echo["bytes_out"].as_str()),
        ("5", "5"),
        "{text}"
    );
    assert_eq!(echo["addr"], cli.addr("echo").to_string());
    let session = of("session")
        .find(|f| f["server"] == "echo")
        .expect("the echo session listed");
    assert_eq!(
        (session["bytes_in"].as_str(), session["bytes_out"].as_str()),
        ("5", "5")
    );

    // The echo server's port: its accept and the idle session's receive in
    // flight, a worker, and a rate from the two polls.
    let port = &echo["port"];
    let p = of("port").find(|f| &f["index"] == port).expect("echo's port");
    assert!(p["servers"].split(',').any(|s| s == "echo"), "{text}");
    assert_ne!(p["completions_per_s"], "-", "two polls give a rate");
    let kinds: Vec<&str> = of("in_flight")
        .filter(|f| &f["port"] == port)
        .map(|f| f["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"accept"), "{kinds:?}");
    assert!(
        kinds.iter().any(|k| k.starts_with("recv")),
        "the idle session's receive: {kinds:?}"
    );
    assert!(of("worker").any(|f| &f["port"] == port), "{text}");
    assert!(
        of("latency").any(|f| f["kind"].starts_with("send") && f["recent_p99_us"] != "-"),
        "the echo's send was timed, and counts as recent:\n{text}"
    );
}

/// Runs `tmux -L SOCKET ARGS`, a tmux server of this test's own.
fn tmux(socket: &str, args: &[&str]) -> std::process::Output {
    Command::new("tmux")
        .arg("-L")
        .arg(socket)
        .args(args)
        .output()
        .expect("tmux (installed by .ci/run)")
}

#[test]
fn top_console_under_tmux_shows_its_tables_and_quits_on_q() {
    let cli = serve();
    let mut e = LineClient::connect(cli.addr("echo"));
    e.send("ping\n");
    assert_eq!(e.line().unwrap(), "ping");
    let socket = format!("cport-top-test-{}", std::process::id());
    let cmd = format!(
        "RUST_LOG=warn {} top --target http://{}",
        cport_bin().display(),
        cli.addr("http")
    );
    let started = tmux(
        &socket,
        &["new-session", "-d", "-s", "top", "-x", "160", "-y", "50", &cmd],
    );
    assert!(started.status.success(), "{}", String::from_utf8_lossy(&started.stderr));
    let capture = || String::from_utf8_lossy(&tmux(&socket, &["capture-pane", "-p", "-t", "top"]).stdout).into_owned();
    let headings = [
        "Ports",
        "Completions/s",
        "In flight by kind",
        "Latency by kind",
        "Workers",
        "Servers",
        "Top sessions by bytes",
    ];
    let end = Instant::now() + LONG * 2;
    let mut screen = capture();
    // Two polls: the rate column and the servers filled in.
    while !(headings.iter().all(|h| screen.contains(h)) && screen.contains("echo") && screen.contains("game")) {
        if Instant::now() > end {
            tmux(&socket, &["kill-server"]);
            panic!("the console never showed its tables:\n{screen}");
        }
        std::thread::sleep(Duration::from_millis(200));
        screen = capture();
    }
    tmux(&socket, &["send-keys", "-t", "top", "q"]);
    let end = Instant::now() + LONG;
    while tmux(&socket, &["has-session", "-t", "top"]).status.success() {
        if Instant::now() > end {
            tmux(&socket, &["kill-server"]);
            panic!("q did not quit the console:\n{}", capture());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    tmux(&socket, &["kill-server"]);
}
