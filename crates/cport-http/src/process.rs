//! The process-wide part of the stats endpoint: every server of the process
//! (from `cport_server::running_servers`) and a snapshot of each distinct
//! completion port, and `/_cport/ops`, the oldest operations in flight.

use cport::{Port, Snapshot};
use cport_server::{running_servers, ServerInfo};
use serde_json::{json, Map, Value};

/// Top sessions listed per server.
const TOP_SESSIONS: usize = 10;

/// Operations listed by `/_cport/ops`.
pub(crate) const OPS_LISTED: usize = 50;

/// Every running server, and the distinct ports they run on.
struct Process {
    servers: Vec<ServerInfo>,
    ports: Vec<Port>,
    /// For each server, the index of its port in `ports`.
    port_of: Vec<usize>,
}

fn process() -> Process {
    let servers = running_servers(TOP_SESSIONS);
    let mut ports: Vec<Port> = Vec::new();
    let port_of = servers
        .iter()
        .map(|s| match ports.iter().position(|p| p.same_port(&s.port)) {
            Some(i) => i,
            None => {
                ports.push(s.port.clone());
                ports.len() - 1
            }
        })
        .collect();
    Process {
        servers,
        ports,
        port_of,
    }
}

/// `"servers"` and `"ports"` of the stats document.
pub(crate) fn servers_and_ports() -> (Value, Value) {
    let p = process();
    let servers = p
        .servers
        .iter()
        .zip(&p.port_of)
        .map(|(s, port)| {
            let st = &s.stats;
            let top: Vec<Value> = s
                .top_sessions
                .iter()
                .map(|t| {
                    json!({
                        "id": t.id,
                        "peer": t.peer.map(|a| a.to_string()),
                        "bytes_in": t.bytes_in,
                        "bytes_out": t.bytes_out,
                    })
                })
                .collect();
            json!({
                "name": s.name,
                "addrs": s.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                "threads": s.threads,
                "port": port,
                "sessions": st.sessions,
                "accepted": st.accepted,
                "messages_in": st.messages_in,
                "messages_out": st.messages_out,
                "bytes_in": st.bytes_in,
                "bytes_out": st.bytes_out,
                "top_sessions": top,
            })
        })
        .collect::<Vec<_>>();
    let ports = p.ports.iter().map(port_json).collect::<Vec<_>>();
    (Value::Array(servers), Value::Array(ports))
}

fn micros(d: std::time::Duration) -> u64 {
    d.as_micros() as u64
}

/// One port's snapshot as JSON (ages and latencies in microseconds).
fn port_json(port: &Port) -> Value {
    let s: Snapshot = port.snapshot();
    let in_flight: Map<String, Value> = s
        .in_flight
        .iter()
        .map(|k| {
            let v = json!({ "count": k.count, "oldest_us": k.oldest.map(micros) });
            (k.kind.name().to_owned(), v)
        })
        .collect();
    let latency: Map<String, Value> = s
        .latency
        .iter()
        .map(|l| {
            let v = json!({
                "count": l.count,
                "p50_us": micros(l.p50),
                "p99_us": micros(l.p99),
                "max_us": micros(l.max),
                "recent_count": l.recent_count,
                "recent_p99_us": l.recent_p99.map(micros),
            });
            (l.kind.name().to_owned(), v)
        })
        .collect();
    let workers: Vec<Value> = s
        .workers
        .iter()
        .map(|w| {
            json!({
                "name": w.name,
                "tid": w.tid,
                "state": w.state.name(),
                "completions": w.completions,
                "busy_ms": w.busy.as_millis() as u64,
            })
        })
        .collect();
    json!({
        "backend": port.backend().name(),
        "introspection": s.enabled,
        "in_flight": in_flight,
        "in_flight_total": s.in_flight_total(),
        "queued": s.queued,
        "running": s.running,
        "concurrency": s.concurrency,
        "workers": workers,
        "handoffs": s.handoffs,
        "completed": s.completed,
        "latency": latency,
        "stuck": s.stuck,
        "stuck_after_ms": s.stuck_after.as_millis() as u64,
    })
}

/// The document of `/_cport/ops`: the oldest operations in flight on every
/// port of the process, oldest first, each with the server(s) of its port.
pub(crate) fn ops_json(limit: usize) -> String {
    let p = process();
    let mut ops: Vec<(usize, cport::InFlightOp)> = p
        .ports
        .iter()
        .enumerate()
        .flat_map(|(i, port)| port.in_flight_ops(limit).into_iter().map(move |o| (i, o)))
        .collect();
    ops.sort_by_key(|o| std::cmp::Reverse(o.1.age));
    ops.truncate(limit);
    let names = |i: usize| -> Vec<&str> {
        p.servers
            .iter()
            .zip(&p.port_of)
            .filter(|(_, port)| **port == i)
            .map(|(s, _)| s.name.as_str())
            .collect()
    };
    let list: Vec<Value> = ops
        .iter()
        .map(|(i, o)| {
            json!({
                "servers": names(*i),
                "port": i,
                "kind": o.kind.name(),
                "key": o.key.0,
                "age_us": micros(o.age),
                "multishot": o.multishot,
            })
        })
        .collect();
    let mut text = json!({ "ops": list }).to_string();
    text.push('\n');
    text
}
