//! One endpoint for every server of the process: `/_cport/stats` lists each
//! running server (from cport-server's registry) and a snapshot of each
//! port, `/_cport/ops` the oldest operations in flight.

use cport_testutil::http as util;

use std::io::Write;
use std::time::Duration;

use serde_json::Value;
use util::*;

fn json(addr: std::net::SocketAddr, path: &str) -> Value {
    let r = get(addr, path, &[]);
    assert_eq!(r.status(), 200, "{path}");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    serde_json::from_slice(&body(r)).unwrap()
}

/// Whether the stats document lists a server listening on `addr`.
fn lists(doc: &Value, addr: std::net::SocketAddr) -> Option<Value> {
    let a = Value::String(addr.to_string());
    doc["servers"]
        .as_array()?
        .iter()
        .find(|s| s["addrs"].as_array().is_some_and(|v| v.contains(&a)))
        .cloned()
}

cport::backend_tests! {
    fn stats_cover_every_server_and_ops_list_the_oldest(backend: Backend) {
        let site = site();
        let front = serve(backend, site.path());
        let other = serve_with(backend, site.path(), |c| c.stats_endpoint(false));
        let (addr, other_addr) = (front.local_addr(), other.local_addr());
        // A session on the other server that sent half a request and waits.
        let mut idle = connect(other_addr);
        idle.write_all(b"GET /hello.txt HTTP/1.1\r\n").unwrap();
        wait_until("the other server counts the session", || {
            lists(&json(addr, "/_cport/stats"), other_addr).is_some_and(|s| s["sessions"] == 1)
        });
        let doc = json(addr, "/_cport/stats");
        let me = lists(&doc, addr).expect("the server answering is listed");
        let them = lists(&doc, other_addr).expect("another server of the process is listed");
        assert_eq!((me["name"].as_str(), them["name"].as_str()), (Some("http"), Some("http")));
        assert_ne!(me["port"], them["port"], "each on its own port");
        let port = &doc["ports"][them["port"].as_u64().unwrap() as usize];
        assert_eq!(port["backend"], backend.name());
        assert_eq!(port["introspection"], true);
        assert!(port["in_flight"]["accept"]["count"].as_u64().unwrap() >= 1, "{port}");
        assert!(port["workers"].as_array().is_some_and(|w| !w.is_empty()), "{port}");
        let top = &them["top_sessions"][0];
        assert_eq!(top["bytes_in"], 25, "the half request: {them}");

        // The ops list: oldest first, each with its server.
        let ops = json(addr, "/_cport/ops");
        let ops = ops["ops"].as_array().unwrap();
        assert!(!ops.is_empty());
        let ages: Vec<u64> = ops.iter().map(|o| o["age_us"].as_u64().unwrap()).collect();
        assert!(ages.windows(2).all(|w| w[0] >= w[1]), "{ages:?}");
        assert!(ops.iter().any(|o| o["kind"] == "accept" && o["servers"][0] == "http"), "{ops:?}");

        // A server that shut down leaves the list.
        drop(idle);
        other.shutdown(Duration::from_secs(2));
        assert!(lists(&json(addr, "/_cport/stats"), other_addr).is_none());
    }
}
