//! `cport models --block-every N`: "handlers that block" runs every server
//! under the blocking request/response load and reports each.

use cport_testutil::cli::run_json;

#[test]
fn handlers_that_block_reports_every_server() {
    let rows = run_json(&[
        "models",
        "--block-every",
        "4",
        "--block-ms",
        "1",
        "--conns",
        "4",
        "--duration",
        "400ms",
        "--json",
    ]);
    let rows = rows.as_array().expect("a JSON array");
    let names: Vec<&str> = rows.iter().map(|r| r["server"].as_str().unwrap()).collect();
    assert_eq!(names, ["blocking", "epoll", "cport-off", "cport-handoff"]);
    for r in rows {
        assert!(r["rate"].as_f64().unwrap() > 0.0, "{r}");
        assert_eq!(r["errors"].as_u64(), Some(0), "{r}");
    }
}
