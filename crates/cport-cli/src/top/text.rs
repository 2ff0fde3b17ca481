//! `cport top --once`: one snapshot as plain text, one record per line: a
//! record name, then `key=value` fields (values never contain spaces), so a
//! script splits on whitespace and `=`.

use std::fmt::Write;

use super::model::{rate, servers_on, Sample};

/// The text of one snapshot (`prev` gives the rates).
pub fn render(url: &str, prev: Option<&Sample>, now: &Sample) -> String {
    let d = &now.doc;
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "cport target={url} backend={} uptime_s={:.0}",
        d.backend, d.uptime_secs
    );
    for (i, p) in d.ports.iter().enumerate() {
        let r = rate(prev, now, i).map_or("-".to_owned(), |r| format!("{r:.1}"));
        let _ = writeln!(
            w,
            "port index={i} servers={} backend={} completions_per_s={r} completed={} in_flight={} queued={} running={} concurrency={} handoffs={} stuck={}",
            servers_on(d, i), p.backend, p.completed, p.in_flight_total, p.queued, p.running, p.concurrency, p.handoffs, p.stuck
        );
        for (kind, f) in &p.in_flight {
            let oldest = f.oldest_us.map_or("-".to_owned(), |u| u.to_string());
            let _ = writeln!(w, "in_flight port={i} kind={kind} count={} oldest_us={oldest}", f.count);
        }
        for (kind, l) in &p.latency {
            let _ = writeln!(
                w,
                "latency port={i} kind={kind} count={} p50_us={} p99_us={} max_us={} recent_p99_us={}",
                l.count,
                l.p50_us,
                l.p99_us,
                l.max_us,
                l.recent_p99_us.map_or("-".to_owned(), |u| u.to_string())
            );
        }
        for wk in &p.workers {
            let name = wk.name.as_deref().unwrap_or("-").replace(' ', "_");
            let _ = writeln!(
                w,
                "worker port={i} name={name} state={} completions={}",
                wk.state, wk.completions
            );
        }
    }
    for s in &d.servers {
        let addr = s.addrs.first().map_or("-", String::as_str);
        let _ = writeln!(
            w,
            "server name={} addr={addr} port={} sessions={} bytes_in={} bytes_out={}",
            s.name, s.port, s.sessions, s.bytes_in, s.bytes_out
        );
        for t in &s.top_sessions {
            let peer = t.peer.as_deref().unwrap_or("-");
            let _ = writeln!(
                w,
                "session server={} id={} peer={peer} bytes_in={} bytes_out={}",
                s.name, t.id, t.bytes_in, t.bytes_out
            );
        }
    }
    out
}
