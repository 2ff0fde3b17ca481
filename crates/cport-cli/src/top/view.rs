//! The console's screen: a header line, then tables for the ports, the
//! operations in flight and latencies by kind, the workers, the servers and
//! their busiest sessions.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table};
use ratatui::Frame;

use super::model::{human_bytes, human_us, rate, servers_on, Sample};

fn bold() -> Style {
    Style::default().add_modifier(Modifier::BOLD)
}

/// A titled table of `rows` under `header`.
fn table<'a>(title: &'a str, header: &[&'a str], rows: Vec<Row<'a>>, widths: &[Constraint]) -> Table<'a> {
    Table::new(rows, widths.to_vec())
        .header(Row::new(header.to_vec()).style(bold().fg(Color::Cyan)))
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(Line::from(title).style(bold())),
        )
}

/// Draws one frame.
pub fn draw(f: &mut Frame<'_>, url: &str, prev: Option<&Sample>, now: Option<&Sample>, error: Option<&str>) {
    // Ports and servers get a row each (plus borders and header).
    let rows_of = |n: usize| Constraint::Length(n.max(1) as u16 + 3);
    let n_ports = now.map_or(1, |s| s.doc.ports.len());
    let n_servers = now.map_or(1, |s| s.doc.servers.len());
    let [head, ports, ops, workers, servers, sessions, foot] = Layout::vertical([
        Constraint::Length(1),
        rows_of(n_ports),
        Constraint::Min(6),
        Constraint::Min(5),
        rows_of(n_servers),
        Constraint::Min(5),
        Constraint::Length(1),
    ])
    .areas(f.area());
    let title = match now {
        Some(s) => format!(
            "cport top  {url}  backend {}  up {:.0}s",
            s.doc.backend, s.doc.uptime_secs
        ),
        None => format!("cport top  {url}  waiting for the first poll"),
    };
    f.render_widget(Paragraph::new(title).style(bold()), head);
    let status = match error {
        Some(e) => Line::from(format!("poll failed: {e}")).style(Style::default().fg(Color::Red)),
        None => Line::from("q quits · polls once a second"),
    };
    f.render_widget(Paragraph::new(status), foot);
    let Some(now) = now else { return };
    let d = &now.doc;

    let port_rows = d
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let r = rate(prev, now, i).map_or("-".to_owned(), |r| format!("{r:.0}"));
            Row::new(vec![
                format!("{i} {}", servers_on(d, i)),
                r,
                p.in_flight_total.to_string(),
                p.queued.to_string(),
                format!("{}/{}", p.running, p.concurrency),
                p.handoffs.to_string(),
                p.stuck.to_string(),
            ])
        })
        .collect();
    let w = [
        Constraint::Fill(3),
        Constraint::Fill(2),
        Constraint::Fill(1),
        Constraint::Fill(1),
        Constraint::Fill(1),
        Constraint::Fill(1),
        Constraint::Fill(1),
    ];
    let hdr = [
        "Port (servers)",
        "Completions/s",
        "In flight",
        "Queue depth",
        "Running",
        "Hand-offs",
        "Stuck",
    ];
    f.render_widget(table("Ports", &hdr, port_rows, &w), ports);

    let [inflight, latency] = Layout::horizontal([Constraint::Fill(1), Constraint::Fill(1)]).areas(ops);
    let mut rows = Vec::new();
    let mut lat = Vec::new();
    for (i, p) in d.ports.iter().enumerate() {
        for (kind, x) in &p.in_flight {
            let oldest = x.oldest_us.map_or("-".to_owned(), human_us);
            rows.push(Row::new(vec![
                format!("{i}"),
                kind.clone(),
                x.count.to_string(),
                oldest,
            ]));
        }
        for (kind, l) in &p.latency {
            lat.push(Row::new(vec![
                format!("{i}"),
                kind.clone(),
                human_us(l.p50_us),
                human_us(l.p99_us),
                human_us(l.max_us),
                l.recent_p99_us.map_or("-".to_owned(), human_us),
                l.count.to_string(),
            ]));
        }
    }
    let w4 = [
        Constraint::Length(4),
        Constraint::Fill(2),
        Constraint::Fill(1),
        Constraint::Fill(1),
    ];
    f.render_widget(
        table("In flight by kind", &["Port", "Kind", "Count", "Oldest"], rows, &w4),
        inflight,
    );
    let w7 = [
        Constraint::Length(4),
        Constraint::Fill(2),
        Constraint::Fill(1),
        Constraint::Fill(1),
        Constraint::Fill(1),
        Constraint::Fill(1),
        Constraint::Fill(1),
    ];
    let hdr = ["Port", "Kind", "p50", "p99", "max", "p99 now", "Count"];
    f.render_widget(
        table("Latency by kind (since start; p99 now: last 1-2 min)", &hdr, lat, &w7),
        latency,
    );

    let worker_rows = d
        .ports
        .iter()
        .enumerate()
        .flat_map(|(i, p)| {
            p.workers.iter().map(move |w| {
                let color = match w.state.as_str() {
                    "running" => Color::Green,
                    "blocked" | "over_cap" => Color::Red,
                    _ => Color::Reset,
                };
                Row::new(vec![
                    format!("{i}"),
                    w.name.clone().unwrap_or_else(|| "-".into()),
                    w.state.clone(),
                    w.completions.to_string(),
                ])
                .style(Style::default().fg(color))
            })
        })
        .collect();
    let hdr = ["Port", "Thread", "State", "Completions"];
    f.render_widget(table("Workers", &hdr, worker_rows, &w4), workers);

    let server_rows = d
        .servers
        .iter()
        .map(|s| {
            Row::new(vec![
                s.name.clone(),
                s.addrs.first().cloned().unwrap_or_default(),
                s.port.to_string(),
                s.sessions.to_string(),
                human_bytes(s.bytes_in),
                human_bytes(s.bytes_out),
            ])
        })
        .collect();
    let hdr = ["Server", "Address", "Port", "Sessions", "Bytes in", "Bytes out"];
    let ws = [
        Constraint::Fill(1),
        Constraint::Fill(2),
        Constraint::Fill(1),
        Constraint::Fill(1),
        Constraint::Fill(1),
        Constraint::Fill(1),
    ];
    f.render_widget(table("Servers", &hdr, server_rows, &ws), servers);

    draw_sessions(f, now, sessions);
}

/// The busiest sessions of every server, most bytes first.
fn draw_sessions(f: &mut Frame<'_>, now: &Sample, area: Rect) {
    let mut all: Vec<_> = now
        .doc
        .servers
        .iter()
        .flat_map(|s| s.top_sessions.iter().map(move |t| (s.name.as_str(), t)))
        .collect();
    all.sort_by_key(|(_, t)| std::cmp::Reverse(t.bytes_in + t.bytes_out));
    let rows = all
        .iter()
        .map(|(name, t)| {
            Row::new(vec![
                (*name).to_owned(),
                t.id.to_string(),
                t.peer.clone().unwrap_or_default(),
                human_bytes(t.bytes_in),
                human_bytes(t.bytes_out),
            ])
        })
        .collect();
    let w = [
        Constraint::Fill(1),
        Constraint::Fill(1),
        Constraint::Fill(2),
        Constraint::Fill(1),
        Constraint::Fill(1),
    ];
    let hdr = ["Server", "Session", "Peer", "Bytes in", "Bytes out"];
    f.render_widget(table("Top sessions by bytes", &hdr, rows, &w), area);
}
