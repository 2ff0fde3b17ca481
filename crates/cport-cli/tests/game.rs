//! `cport game` and `cport bench game` as a user runs them: the bots log in,
//! walk, reconcile without a single desync, and read the server's counters.

use cport_testutil::cli as util;

use util::{run_json, Cli};

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
