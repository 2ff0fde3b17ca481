//! `cport models`: every I/O model under the same echo load, side by side.
//!
//! Each model serves from a child process of its own (`cport models --serve`)
//! pinned to core 0, so its CPU time and its descriptor numbers are its own
//! (select's FD_SETSIZE limit is reached by the server's sockets, not the
//! client's). The load comes from cport's own generator, on the completion
//! port, pinned to core 1. The result is a table and an SVG chart of
//! throughput against connection count.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cport_bench::echo::{self, EchoConfig};

use super::{spawn, Model, ModelReport};
use crate::args::parse_duration;

/// Arguments of `cport models`.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelsArgs {
    /// Connection counts to run each model at.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000,5000")]
    pub conns: Vec<usize>,
    /// Measured time per run (e.g. 3s, 500ms).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Message size in bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Models to run (blocking, select, poll, epoll, cport); all by default.
    #[arg(long, value_delimiter = ',')]
    pub models: Option<Vec<String>>,
    /// Where to write the chart (SVG).
    #[arg(long, default_value = "models.svg")]
    pub chart: PathBuf,
    /// Print the table as JSON instead.
    #[arg(long)]
    pub json: bool,
    /// Internal: serve one model in this process (the shootout's children).
    #[arg(long, hide = true)]
    pub serve: Option<String>,
    /// "Handlers that block": one request in this many makes the server's
    /// handler block for --block-ms (a database call, a disk read), under
    /// `cport bench blocking`'s request/response load. Compares a thread
    /// per connection, epoll, and the completion port without and with
    /// its hand-off (8 workers, concurrency = CPUs). 0: the echo shootout.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub block_every: u64,
    /// How long a blocking handler blocks, in milliseconds.
    #[arg(long, default_value_t = 2, value_name = "MS")]
    pub block_ms: u64,
}

/// The servers of "handlers that block": two of the I/O models, and the
/// completion port (`cport blocking`) without and with the hand-off.
const BLOCKING_SERVERS: [&str; 4] = ["blocking", "epoll", "cport-off", "cport-handoff"];

/// One cell of the table.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Row {
    /// Model name.
    pub model: String,
    /// Connections asked for.
    pub conns: usize,
    /// Echoed messages per second.
    pub rate: f64,
    /// 99th percentile latency, µs.
    pub p99_us: u64,
    /// Server CPU per echoed message, µs.
    pub cpu_us_per_msg: Option<f64>,
    /// Connections the model refused, and why.
    pub refused: u64,
    /// Client-side errors (connect failures, closed connections).
    pub errors: u64,
    /// Why the model could not take this count, if it could not.
    pub note: Option<String>,
}

/// Runs `cport models`.
///
/// # Errors
/// When a child server cannot be started or the chart cannot be written.
pub fn main(args: ModelsArgs) -> io::Result<()> {
    if let Some(name) = &args.serve {
        return serve_child(name, args.block_ms);
    }
    if args.block_every > 0 {
        return handlers_that_block(&args);
    }
    let models: Vec<Model> = match &args.models {
        Some(names) => names
            .iter()
            .map(|n| {
                Model::from_name(n).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("no model {n}")))
            })
            .collect::<io::Result<_>>()?,
        None => Model::ALL.to_vec(),
    };
    pin_to_cpu(1);
    let mut rows = Vec::new();
    for &conns in &args.conns {
        for &m in &models {
            let row = run_one(m, conns, &args)?;
            if !args.json {
                print_row(&row, rows.is_empty());
            }
            rows.push(row);
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows).map_err(io::Error::other)?);
    }
    chart(&rows, &models, &args.conns, &args.chart)?;
    if !args.json {
        println!("chart: {}", args.chart.display());
    }
    Ok(())
}

fn run_one(m: Model, conns: usize, args: &ModelsArgs) -> io::Result<Row> {
    let mut child = spawn_child(m)?;
    let addr = read_addr(&mut child)?;
    let pid = child.id();
    let cpu0 = proc_cpu(pid);
    let cfg = EchoConfig {
        target: addr,
        conns,
        size: args.size,
        duration: args.duration,
        warmup: Duration::from_millis(300).min(args.duration),
        ..EchoConfig::default()
    };
    let rep = echo::run(&cfg);
    let cpu1 = proc_cpu(pid);
    let report = stop_child(child)?;
    let rep = rep?;
    let total_msgs = rep.messages.max(1) as f64;
    let cpu_us = match (cpu0, cpu1) {
        (Some(a), Some(b)) if rep.messages > 0 => Some((b - a) * 1e6 / total_msgs),
        _ => None,
    };
    let note = match (report.refusal_reason, rep.connect_errors) {
        (Some(r), _) => Some(r.to_string()),
        (None, n) if n > 0 => Some(format!("{n} connections failed")),
        _ if rep.messages == 0 => Some("no echo completed".into()),
        _ => None,
    };
    Ok(Row {
        model: m.name().into(),
        conns,
        rate: rep.rate,
        p99_us: rep.p99_us,
        cpu_us_per_msg: cpu_us,
        refused: report.refused,
        errors: rep.errors + rep.connect_errors,
        note,
    })
}

fn print_row(r: &Row, header: bool) {
    if header {
        println!(
            "{:<9}{:>7}{:>12}{:>10}{:>12}  note",
            "model", "conns", "msg/s", "p99 µs", "CPU µs/msg"
        );
    }
    let cpu = r.cpu_us_per_msg.map_or("-".into(), |c| format!("{c:.2}"));
    let note = r
        .note
        .clone()
        .map(|n| format!("refused {}: {n}", r.refused))
        .unwrap_or_default();
    println!(
        "{:<9}{:>7}{:>12.0}{:>10}{:>12}  {note}",
        r.model, r.conns, r.rate, r.p99_us, cpu
    );
}

/// The child side: serve `name` on a fresh port, print it, stop at stdin EOF,
/// print the model's report.
fn serve_child(name: &str, block_ms: u64) -> io::Result<()> {
    pin_to_cpu(0);
    if block_ms > 0 {
        super::echo::set_handler_block(Duration::from_millis(block_ms));
    }
    let handoff = match name {
        "cport-off" => Some(crate::apps::blocking::HandoffMode::Off),
        "cport-handoff" => Some(crate::apps::blocking::HandoffMode::Auto),
        _ => None,
    };
    if let Some(mode) = handoff {
        // Prints "cport blocking: listening on ADDR ..." and serves until killed.
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        let a = crate::apps::blocking::BlockingArgs::sleeping(addr, 8, mode, Duration::from_millis(block_ms));
        return crate::apps::blocking::run(a);
    }
    let model = Model::from_name(name).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "unknown model"))?;
    // std's bind listens with a backlog of 128: thousands of connects at once
    // would overflow it and wait a second per retry, whatever the model.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    sock.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    sock.listen(8192)?;
    let listener: TcpListener = sock.into();
    let server = spawn(model, listener)?;
    println!("{}", server.addr());
    io::stdout().flush()?;
    // The parent closes our stdin to say "stop".
    let mut sink = Vec::new();
    let _ = io::stdin().read_to_end(&mut sink);
    let r = server.stop()?;
    println!(
        "report {} {} {} {}",
        r.accepted,
        r.refused,
        r.bytes_echoed,
        r.refusal_reason.unwrap_or("").replace(' ', "_")
    );
    Ok(())
}

fn spawn_child(m: Model) -> io::Result<Child> {
    spawn_named(m.name(), 0)
}

fn spawn_named(name: &str, block_ms: u64) -> io::Result<Child> {
    Command::new(std::env::current_exe()?)
        .args(["models", "--serve", name, "--block-ms", &block_ms.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
}

fn read_addr(child: &mut Child) -> io::Result<SocketAddr> {
    let out = child
        .stdout
        .as_mut()
        .ok_or_else(|| io::Error::other("child has no stdout"))?;
    let mut line = String::new();
    let mut rd = BufReader::new(out);
    rd.read_line(&mut line)?;
    // A model prints its address; `cport blocking` a listening line.
    let addr = match line.split_once("listening on ") {
        Some((_, rest)) => rest.split_whitespace().next().unwrap_or(""),
        None => line.trim(),
    };
    addr.parse()
        .map_err(|_| io::Error::other(format!("child did not say its address: {line:?}")))
}

fn stop_child(mut child: Child) -> io::Result<ModelReport> {
    drop(child.stdin.take());
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut r = ModelReport::default();
    if let Some(line) = text.lines().find(|l| l.starts_with("report ")) {
        let f: Vec<&str> = line.split(' ').collect();
        r.accepted = f.get(1).and_then(|x| x.parse().ok()).unwrap_or(0);
        r.refused = f.get(2).and_then(|x| x.parse().ok()).unwrap_or(0);
        r.bytes_echoed = f.get(3).and_then(|x| x.parse().ok()).unwrap_or(0);
        r.refusal_reason = match f.get(4).copied().unwrap_or("") {
            "" => None,
            s if s.contains("FD_SETSIZE") => Some("fd above FD_SETSIZE"),
            _ => Some("the model's limit"),
        };
    }
    Ok(r)
}

/// One row of "handlers that block".
#[derive(Clone, Debug, serde::Serialize)]
pub struct BlockRow {
    /// Server: an I/O model, or the completion port with or without hand-off.
    pub server: String,
    /// Connections.
    pub conns: usize,
    /// Requests per second, all kinds.
    pub rate: f64,
    /// 99th percentile latency of the requests that did not block, µs.
    pub fast_p99_us: u64,
    /// Server CPU per request, µs.
    pub cpu_us_per_req: Option<f64>,
    /// Client-side errors.
    pub errors: u64,
}

/// `cport models --block-every N`: each server under the same blocking load.
fn handlers_that_block(args: &ModelsArgs) -> io::Result<()> {
    pin_to_cpu(1);
    let servers: Vec<&str> = match &args.models {
        Some(names) => BLOCKING_SERVERS
            .into_iter()
            .filter(|s| names.iter().any(|n| n == s))
            .collect(),
        None => BLOCKING_SERVERS.to_vec(),
    };
    if !args.json {
        println!(
            "handlers that block: 1 request in {} blocks {} ms; server on core 0, load on core 1",
            args.block_every, args.block_ms
        );
        println!(
            "{:<14}{:>7}{:>12}{:>16}{:>12}",
            "server", "conns", "req/s", "fast p99 µs", "CPU µs/req"
        );
    }
    let mut rows = Vec::new();
    for &conns in &args.conns {
        for &name in &servers {
            let mut child = spawn_named(name, args.block_ms.max(1))?;
            let addr = read_addr(&mut child);
            let pid = child.id();
            let cpu0 = proc_cpu(pid);
            let rep = addr.and_then(|target| {
                cport_bench::blocking::run(&cport_bench::blocking::BlockingConfig {
                    target,
                    conns,
                    block_every: args.block_every,
                    duration: args.duration,
                    warmup: Duration::from_millis(300).min(args.duration),
                    backend: cport::Backend::Auto,
                })
            });
            let cpu1 = proc_cpu(pid);
            let _ = child.kill();
            let _ = child.wait();
            let rep = rep?;
            let n = rep.all.messages;
            let row = BlockRow {
                server: name.to_string(),
                conns,
                rate: rep.all.rate,
                fast_p99_us: rep.fast_p99_us,
                cpu_us_per_req: match (cpu0, cpu1) {
                    (Some(a), Some(b)) if n > 0 => Some((b - a) * 1e6 / n as f64),
                    _ => None,
                },
                errors: rep.all.errors + rep.all.connect_errors,
            };
            if !args.json {
                let cpu = row.cpu_us_per_req.map_or("-".into(), |c| format!("{c:.2}"));
                println!(
                    "{:<14}{:>7}{:>12.0}{:>16}{:>12}",
                    row.server, row.conns, row.rate, row.fast_p99_us, cpu
                );
            }
            rows.push(row);
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows).map_err(io::Error::other)?);
    }
    Ok(())
}

/// CPU seconds (user + system) of a process, from /proc.
fn proc_cpu(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // /proc reports in USER_HZ, which Linux fixes at 100 for user space.
    Some(ticks / 100.0)
}

/// Pins the calling thread (and threads it creates later) to one CPU, when
/// the machine has more than one.
fn pin_to_cpu(cpu: usize) {
    use rustix::thread::{sched_setaffinity, CpuSet};
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 || cpu >= CpuSet::MAX_CPU {
        return;
    }
    let mut set = CpuSet::new();
    set.set(cpu);
    let _ = sched_setaffinity(None, &set);
}

/// Draws throughput against connection count, one line per model.
fn chart(rows: &[Row], models: &[Model], conns: &[usize], path: &PathBuf) -> io::Result<()> {
    use plotters::prelude::*;
    let max_rate = rows.iter().map(|r| r.rate).fold(1.0, f64::max) * 1.1;
    let (lo, hi) = (
        *conns.iter().min().unwrap_or(&1) as f64,
        (*conns.iter().max().unwrap_or(&10) as f64).max(2.0),
    );
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| io::Error::other(e.to_string());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut ch = ChartBuilder::on(&root)
        .caption(
            "Echo throughput by I/O model (runs where a model refused connections are left out)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((lo.max(1.0)..hi).log_scale(), 0.0..max_rate)
        .map_err(|e| err(&e))?;
    ch.configure_mesh()
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .x_desc("connections")
        .y_desc("messages / s")
        .draw()
        .map_err(|e| err(&e))?;
    for (i, m) in models.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let pts: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r.model == m.name() && r.refused == 0)
            .map(|r| (r.conns.max(1) as f64, r.rate))
            .collect();
        ch.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(m.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        ch.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
            .map_err(|e| err(&e))?;
    }
    ch.configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
