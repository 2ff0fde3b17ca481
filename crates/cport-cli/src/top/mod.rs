//! `cport top`: a terminal console for a running cport process, polling its
//! `/_cport/stats` once a second (tokio-console's idea, for a completion
//! port): completions/s, operations in flight by kind and the oldest's age,
//! the ready queue, workers and their states, latency percentiles by kind,
//! sessions per server and the busiest sessions. `--once` prints one
//! snapshot as plain text, one record per line, for scripts.

mod model;
mod text;
mod view;

use std::io;
use std::time::{Duration, Instant};

use clap::Args;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

use model::{fetch, Sample};

/// `cport top` flags.
#[derive(Args, Clone, Debug)]
pub struct TopArgs {
    /// The stats endpoint to poll (a `cport serve` or `cport http` web port).
    #[arg(long, default_value = "http://127.0.0.1:8080/_cport/stats")]
    pub target: String,
    /// Print one snapshot as plain text and exit (two polls `--interval`
    /// apart, for the rates).
    #[arg(long)]
    pub once: bool,
    /// Time between polls.
    #[arg(long, default_value = "1s", value_parser = crate::args::parse_duration)]
    pub interval: Duration,
}

/// How long one poll may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs the console until `q`, or prints one snapshot with `--once`.
pub fn run(a: TopArgs) -> io::Result<()> {
    let url = target_url(&a.target);
    if a.once {
        let first = fetch(&url, FETCH_TIMEOUT).map_err(io::Error::other)?;
        std::thread::sleep(a.interval);
        let second = fetch(&url, FETCH_TIMEOUT).map_err(io::Error::other)?;
        print!("{}", text::render(&url, Some(&first), &second));
        return Ok(());
    }
    let mut terminal = ratatui::init();
    let r = console(&mut terminal, &url, a.interval.max(Duration::from_millis(100)));
    ratatui::restore();
    r
}

/// `--target` as given, or with `http://` and the stats path filled in
/// (`cport top --target 127.0.0.1:8080`).
fn target_url(t: &str) -> String {
    let with_scheme = if t.contains("://") {
        t.to_owned()
    } else {
        format!("http://{t}")
    };
    let after_host = with_scheme.split("://").nth(1).unwrap_or("");
    if after_host.contains('/') {
        with_scheme
    } else {
        format!("{with_scheme}{}", cport_http::STATS_PATH)
    }
}

/// The console's loop: a poll every `interval`, a redraw after each poll
/// and each key; `q`, Esc or Ctrl-C quits.
fn console(terminal: &mut ratatui::DefaultTerminal, url: &str, interval: Duration) -> io::Result<()> {
    let mut prev: Option<Sample> = None;
    let mut last: Option<Sample> = None;
    let mut error: Option<String> = None;
    let mut next_poll = Instant::now();
    loop {
        if Instant::now() >= next_poll {
            match fetch(url, FETCH_TIMEOUT) {
                Ok(s) => {
                    prev = last.take();
                    last = Some(s);
                    error = None;
                }
                Err(e) => error = Some(e),
            }
            next_poll = Instant::now() + interval;
        }
        terminal.draw(|f| view::draw(f, url, prev.as_ref(), last.as_ref(), error.as_deref()))?;
        let wait = next_poll.saturating_duration_since(Instant::now());
        if event::poll(wait)? {
            if let Event::Key(k) = event::read()? {
                let ctrl_c = k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                if k.kind == KeyEventKind::Press && (matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c) {
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod unit {
    use super::target_url;

    #[test]
    fn targets_get_a_scheme_and_the_stats_path() {
        assert_eq!(target_url("127.0.0.1:8080"), "http://127.0.0.1:8080/_cport/stats");
        assert_eq!(target_url("http://h:1"), "http://h:1/_cport/stats");
        assert_eq!(target_url("http://h:1/x/stats"), "http://h:1/x/stats");
    }
}
