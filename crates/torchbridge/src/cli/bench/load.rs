//! What every run shares, served or in process: the counters that start and stop the
//! workers, a tally per worker (an HDR histogram of latencies and errors by kind),
//! merged at the end, and the progress bar.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};

use super::args::Stop;

/// The counters the workers of one run share.
#[derive(Debug)]
pub struct Counters {
    warmup_left: AtomicU64,
    issued: AtomicU64,
    /// Requests answered in the timed part, for the progress bar.
    pub done: AtomicU64,
    stop: Stop,
}

impl Counters {
    pub fn new(warmup: u64, stop: Stop) -> Arc<Self> {
        Arc::new(Counters {
            warmup_left: AtomicU64::new(warmup),
            issued: AtomicU64::new(0),
            done: AtomicU64::new(0),
            stop,
        })
    }

    /// Takes one untimed warm-up request, if any is left.
    pub fn warm_up_one(&self) -> bool {
        self.warmup_left
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Whether to send one more timed request in a run that started at `start`.
    pub fn next(&self, start: Instant) -> bool {
        match self.stop {
            Stop::Requests(n) => self.issued.fetch_add(1, Relaxed) < n,
            Stop::After(d) => start.elapsed() < d,
        }
    }
}

/// One worker's record of its timed requests.
#[derive(Debug)]
pub struct Tally {
    /// Latencies of the successful requests, in nanoseconds.
    pub latency: Histogram<u64>,
    /// Latencies of the failed requests that got an answer (a 429 and the like).
    pub error_latency: Histogram<u64>,
    pub errors: BTreeMap<String, u64>,
}

impl Default for Tally {
    fn default() -> Self {
        // 1 ns to 1 h at 3 significant digits; larger values saturate.
        let histogram =
            || Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds");
        Tally {
            latency: histogram(),
            error_latency: histogram(),
            errors: BTreeMap::new(),
        }
    }
}

impl Tally {
    pub fn ok(&mut self, elapsed: Duration) {
        self.latency
            .saturating_record(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
    }

    pub fn error(&mut self, kind: String) {
        *self.errors.entry(kind).or_default() += 1;
    }

    /// A failure the server answered, after `elapsed`.
    pub fn answered_error(&mut self, kind: String, elapsed: Duration) {
        self.error_latency
            .saturating_record(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
        self.error(kind);
    }

    fn merge(&mut self, other: Tally) {
        self.latency
            .add(&other.latency)
            .expect("histograms of the same bounds add up");
        self.error_latency
            .add(&other.error_latency)
            .expect("histograms of the same bounds add up");
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
    }
}

/// A finished run: its wall time and every worker's tally merged.
#[derive(Debug)]
pub struct Measured {
    pub seconds: f64,
    pub tally: Tally,
    /// Open loop only: what the schedule asked for and how the generator kept up.
    pub open_loop: Option<OpenLoop>,
}

/// An open-loop run's own figures.
#[derive(Debug, Clone, Copy)]
pub struct OpenLoop {
    /// Requests per second the schedule asked for.
    pub rate: f64,
    /// The most requests in flight at once.
    pub peak_in_flight: usize,
    /// How far behind its schedule the generator fell at worst, in milliseconds (a
    /// generator that cannot keep up sends less than `rate`).
    pub max_lag_ms: f64,
}

impl Measured {
    pub fn new(started: Instant, tallies: impl IntoIterator<Item = Tally>) -> Self {
        let seconds = started.elapsed().as_secs_f64();
        let mut tally = Tally::default();
        for t in tallies {
            tally.merge(t);
        }
        Measured {
            seconds,
            tally,
            open_loop: None,
        }
    }

    pub fn ok(&self) -> u64 {
        self.tally.latency.len()
    }

    pub fn errors(&self) -> u64 {
        self.tally.errors.values().sum()
    }

    /// Milliseconds at quantile `q`.
    pub fn ms_at(&self, q: f64) -> f64 {
        if self.ok() == 0 {
            return 0.0;
        }
        self.tally.latency.value_at_quantile(q) as f64 / 1e6
    }

    pub fn max_ms(&self) -> f64 {
        self.tally.latency.max() as f64 / 1e6
    }

    pub fn mean_ms(&self) -> f64 {
        self.tally.latency.mean() / 1e6
    }
}

/// The progress bar of one run, redrawn by its own thread ten times a second from
/// `Counters::done`, so workers never touch it.
#[derive(Debug)]
pub struct Progress {
    finished: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    pub fn start(enabled: bool, label: String, counters: Arc<Counters>) -> Self {
        let finished = Arc::new(AtomicBool::new(false));
        if !enabled {
            return Progress {
                finished,
                thread: None,
            };
        }
        let (length, by_time) = match counters.stop {
            Stop::After(d) => (d.as_millis() as u64, true),
            Stop::Requests(n) => (n, false),
        };
        let bar = ProgressBar::new(length).with_style(
            ProgressStyle::with_template("{prefix} [{wide_bar}] {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(label);
        let done = finished.clone();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            while !done.load(Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                let answered = counters.done.load(Relaxed);
                let elapsed = started.elapsed();
                bar.set_position(if by_time {
                    elapsed.as_millis() as u64
                } else {
                    answered
                });
                let rate = answered as f64 / elapsed.as_secs_f64().max(1e-9);
                bar.set_message(format!("{answered} · {rate:.0}/s"));
            }
            bar.finish_and_clear();
        });
        Progress {
            finished,
            thread: Some(thread),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finished.store(true, Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
