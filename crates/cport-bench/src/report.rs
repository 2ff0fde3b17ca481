//! Counting and latency histograms, shared by every load kind.

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use cport::{Completion, GetError, Port};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Records latencies in microseconds, 1 µs to 60 s, 3 significant digits.
pub struct LatencyRecorder {
    hist: Histogram<u64>,
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        LatencyRecorder {
            hist: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds"),
        }
    }
}

impl LatencyRecorder {
    /// Records one latency (clamped to the histogram's range).
    pub fn record(&mut self, d: Duration) {
        let us = (d.as_micros() as u64).clamp(1, 60_000_000);
        self.hist.saturating_record(us);
    }
    /// How many latencies were recorded.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }
    /// The latency at quantile `q` (0.0..=1.0), in microseconds.
    pub fn quantile_us(&self, q: f64) -> u64 {
        if self.hist.is_empty() {
            0
        } else {
            self.hist.value_at_quantile(q)
        }
    }
    /// The largest recorded latency, in microseconds.
    pub fn max_us(&self) -> u64 {
        // hdrhistogram's `max` is 0 when nothing was recorded.
        self.hist.max()
    }
}

/// The outcome of one load run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// What was measured (`echo`, `http`, ...).
    pub kind: String,
    /// The target address or URL.
    pub target: String,
    /// Connections opened.
    pub conns: usize,
    /// Message (or request) size in bytes.
    pub size: usize,
    /// Measured seconds (after warm-up).
    pub seconds: f64,
    /// Messages (or responses) completed in the measured window.
    pub messages: u64,
    /// Payload bytes received in the measured window.
    pub bytes: u64,
    /// Messages per second.
    pub rate: f64,
    /// Payload bytes per second.
    pub bytes_per_sec: f64,
    /// Latency percentiles in microseconds.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest latency seen.
    pub max_us: u64,
    /// Errors (failed connects, resets, bad responses), never hidden.
    pub errors: u64,
    /// Connections that failed to open.
    pub connect_errors: u64,
    /// Share of the measured window the client's own thread was on a CPU.
    pub client_cpu: f64,
    /// `true` when the client was busy ≥ 90% of the time: the figures may
    /// measure the client, not the server.
    pub client_saturated: bool,
}

impl Report {
    /// Fills the latency and rate fields from a recorder and the window.
    pub fn finish(&mut self, lat: &LatencyRecorder, window: Duration, client_cpu: Duration) {
        self.seconds = window.as_secs_f64();
        let secs = self.seconds.max(1e-9);
        self.rate = self.messages as f64 / secs;
        self.bytes_per_sec = self.bytes as f64 / secs;
        self.p50_us = lat.quantile_us(0.50);
        self.p90_us = lat.quantile_us(0.90);
        self.p99_us = lat.quantile_us(0.99);
        self.p999_us = lat.quantile_us(0.999);
        self.max_us = lat.max_us();
        self.client_cpu = client_cpu.as_secs_f64() / secs;
        self.client_saturated = self.client_cpu >= 0.9;
    }

    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("report serializes")
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} {}  conns={} size={}B  {:.1}s",
            self.kind, self.target, self.conns, self.size, self.seconds
        )?;
        writeln!(
            f,
            "  {:.0} msg/s  {:.1} MiB/s  errors={} connect_errors={}",
            self.rate,
            self.bytes_per_sec / (1024.0 * 1024.0),
            self.errors,
            self.connect_errors
        )?;
        write!(
            f,
            "  latency µs: p50={} p90={} p99={} p99.9={} max={}",
            self.p50_us, self.p90_us, self.p99_us, self.p999_us, self.max_us
        )?;
        if self.client_saturated {
            write!(
                f,
                "\n  warning: the client's own CPU was {:.0}% busy: it may be the bottleneck",
                self.client_cpu * 100.0
            )?;
        }
        Ok(())
    }
}

/// The time a load runs: a warm-up, then the measured window. Dequeues
/// completions until the window ends and samples the client's own CPU time
/// over the window, so every load kind measures the same way.
pub struct Window {
    /// Where measuring starts (after the warm-up).
    pub from: Instant,
    end: Instant,
    cpu_at_from: Option<Duration>,
}

impl Window {
    /// Starts now: `warmup`, then `duration` measured.
    pub fn start(warmup: Duration, duration: Duration) -> Window {
        let from = Instant::now() + warmup;
        Window {
            from,
            end: from + duration,
            cpu_at_from: None,
        }
    }

    /// Whether `t` falls in the measured window.
    pub fn measures(&self, t: Instant) -> bool {
        t >= self.from
    }

    /// The next completion, or `None` once the window is over.
    ///
    /// # Errors
    /// When the port fails while waiting.
    pub fn next(&mut self, port: &Port) -> io::Result<Option<Completion>> {
        let now = Instant::now();
        let Some(left) = self.end.checked_duration_since(now).filter(|d| !d.is_zero()) else {
            return Ok(None);
        };
        if self.cpu_at_from.is_none() && now >= self.from {
            self.cpu_at_from = Some(thread_cpu_time());
        }
        match port.get(Some(left)) {
            Ok(c) => Ok(Some(c)),
            Err(GetError::Timeout) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Fills `rep`'s rates and percentiles for the window that just ended.
    pub fn finish(&self, rep: &mut Report, lat: &LatencyRecorder) {
        let window = Instant::now().saturating_duration_since(self.from);
        let cpu = thread_cpu_time().saturating_sub(self.cpu_at_from.unwrap_or_default());
        rep.finish(lat, window, cpu);
    }
}

/// CPU time (user + system) of the calling thread.
pub fn thread_cpu_time() -> Duration {
    use rustix::time::{clock_gettime, ClockId};
    let t = clock_gettime(ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_recorded_samples() {
        let mut r = LatencyRecorder::default();
        for us in 1..=1000u64 {
            r.record(Duration::from_micros(us));
        }
        assert_eq!(r.count(), 1000);
        let p50 = r.quantile_us(0.5);
        assert!((495..=505).contains(&p50), "p50 {p50}");
        let p99 = r.quantile_us(0.99);
        assert!((985..=995).contains(&p99), "p99 {p99}");
        assert!((999..=1001).contains(&r.max_us()));
    }

    #[test]
    fn empty_recorder_reports_zero() {
        let r = LatencyRecorder::default();
        assert_eq!((r.quantile_us(0.99), r.max_us()), (0, 0));
    }

    #[test]
    fn rates_divide_by_the_window_and_flag_saturation() {
        let mut rep = Report {
            messages: 5000,
            bytes: 320_000,
            ..Report::default()
        };
        rep.finish(
            &LatencyRecorder::default(),
            Duration::from_secs(2),
            Duration::from_millis(1900),
        );
        assert_eq!(rep.rate, 2500.0);
        assert_eq!(rep.bytes_per_sec, 160_000.0);
        assert!(rep.client_saturated);
        let json: serde_json::Value = serde_json::from_str(&rep.to_json()).unwrap();
        assert_eq!(json["messages"], 5000);
    }
}
