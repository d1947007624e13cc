//! Runs as figures: the JSON document (field names documented in the module above) and
//! the tables.

use std::collections::BTreeMap;

use serde::Serialize;
use torchbridge::BackendKind;

use super::args::{Plan, Protocol, Stop};
use super::load::Measured;

/// What a run measured: a protocol against a server, or a bridge in process.
#[derive(Debug, Clone, Copy)]
pub enum Subject {
    Protocol(Protocol),
    Bridge(BackendKind),
}

#[derive(Debug, Serialize)]
pub struct Run {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bridge: Option<&'static str>,
    pub batch: usize,
    pub concurrency: usize,
    pub seconds: f64,
    pub requests: u64,
    pub errors: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    pub rows: u64,
    pub requests_per_s: f64,
    pub rows_per_s: f64,
    /// Latency of the requests that succeeded; `None` (null) when none did.
    pub latency_ms: Option<Latency>,
    /// Latency of the failures the server answered (how fast a 429 comes back).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_latency_ms: Option<Latency>,
    /// Open loop: the requests per second asked for (`concurrency` is then the most
    /// requests that were in flight at once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offered_per_s: Option<f64>,
    /// Open loop: how far behind its schedule the generator fell at worst.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generator_lag_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fraction_of_in_process: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

/// The in-process run with the most rows/s.
#[derive(Debug, Serialize)]
pub struct Best {
    pub bridge: &'static str,
    pub batch: usize,
    pub concurrency: usize,
    pub rows_per_s: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub model: String,
    pub url: Option<String>,
    pub grpc_url: Option<String>,
    pub server: Vec<Run>,
    pub in_process: Vec<Run>,
    pub in_process_best: Option<Best>,
}

impl Run {
    pub fn new(subject: Subject, rows: usize, concurrency: usize, m: &Measured) -> Self {
        let ok = m.ok();
        let errors = m.errors();
        let seconds = m.seconds.max(1e-9);
        let (protocol, bridge) = match subject {
            Subject::Protocol(p) => (Some(p.as_str()), None),
            Subject::Bridge(b) => (None, Some(b.as_str())),
        };
        Run {
            protocol,
            bridge,
            batch: rows,
            concurrency,
            seconds: m.seconds,
            requests: ok + errors,
            errors,
            errors_by_kind: m.tally.errors.clone(),
            rows: ok * rows as u64,
            requests_per_s: ok as f64 / seconds,
            rows_per_s: (ok * rows as u64) as f64 / seconds,
            latency_ms: (ok > 0).then(|| Latency {
                p50: m.ms_at(0.5),
                p90: m.ms_at(0.9),
                p99: m.ms_at(0.99),
                max: m.max_ms(),
                mean: m.mean_ms(),
            }),
            error_latency_ms: (!m.tally.error_latency.is_empty()).then(|| {
                let h = &m.tally.error_latency;
                let ms = |q: f64| h.value_at_quantile(q) as f64 / 1e6;
                Latency {
                    p50: ms(0.5),
                    p90: ms(0.9),
                    p99: ms(0.99),
                    max: h.max() as f64 / 1e6,
                    mean: h.mean() / 1e6,
                }
            }),
            offered_per_s: m.open_loop.map(|o| o.rate),
            generator_lag_ms: m.open_loop.map(|o| o.max_lag_ms),
            fraction_of_in_process: None,
        }
    }

    pub(super) fn name(&self) -> &'static str {
        self.protocol.or(self.bridge).unwrap_or_default()
    }
}

impl Report {
    pub fn new(plan: &Plan) -> Self {
        let dir_name = plan.in_process.as_ref().map(|p| p.dir.name.clone());
        Report {
            model: plan
                .server
                .as_ref()
                .map(|t| t.model.clone())
                .or(dir_name)
                .unwrap_or_default(),
            url: plan.server.as_ref().map(|t| t.http.clone()),
            grpc_url: plan.server.as_ref().map(|t| t.grpc.clone()),
            server: Vec::new(),
            in_process: Vec::new(),
            in_process_best: None,
        }
    }

    /// Finds the best in-process run and sets each server run's fraction of it. A run
    /// with errors is no limit (a failed call is quick), so it is never the best.
    pub fn finish(&mut self) {
        self.in_process_best = self
            .in_process
            .iter()
            .filter(|r| r.errors == 0)
            .max_by(|a, b| a.rows_per_s.total_cmp(&b.rows_per_s))
            .map(|r| Best {
                bridge: r.name(),
                batch: r.batch,
                concurrency: r.concurrency,
                rows_per_s: r.rows_per_s,
            });
        if let Some(best) = &self.in_process_best {
            for run in &mut self.server {
                run.fraction_of_in_process =
                    (best.rows_per_s > 0.0).then(|| run.rows_per_s / best.rows_per_s);
            }
        }
    }

    pub fn print(&self, plan: &Plan) {
        let per_run = match plan.stop {
            Stop::After(d) => format!("{:.3} s per run", d.as_secs_f64()),
            Stop::Requests(n) => format!("{n} requests per run"),
        };
        if !self.in_process.is_empty() {
            let dir = plan
                .in_process
                .as_ref()
                .map(|p| p.dir.version_dir.display());
            println!(
                "in process: {} ({}), {per_run}",
                self.model,
                dir.expect("in-process runs have a directory")
            );
            table(&self.in_process, "bridge", "threads", "calls/s", |run| {
                let rivals = self.in_process.iter().filter(|o| {
                    o.batch == run.batch && o.concurrency == run.concurrency && o.errors == 0
                });
                let best = rivals
                    .clone()
                    .max_by(|a, b| a.rows_per_s.total_cmp(&b.rows_per_s));
                if rivals.count() > 1 && best.is_some_and(|b| std::ptr::eq(b, run)) {
                    "  ← fastest".into()
                } else {
                    String::new()
                }
            });
            let failed = self.in_process.iter().filter(|r| r.errors > 0);
            if failed.clone().next().is_some() {
                let overloaded = failed
                    .clone()
                    .any(|r| r.errors_by_kind.contains_key("overloaded"));
                println!(
                    "runs with errors are not ranked{}",
                    match overloaded {
                        true =>
                            " (overloaded: more callers than the config's [batching] \
                                 max_queue_size admits; lower --concurrency or raise it)",
                        false => "",
                    }
                );
            }
            if let Some(b) = &self.in_process_best {
                println!(
                    "in-process limit: {} at batch {} with {} thread(s): {} rows/s\n",
                    b.bridge,
                    b.batch,
                    b.concurrency,
                    thousands(b.rows_per_s)
                );
            }
        }
        if !self.server.is_empty() {
            let target = plan.server.as_ref().expect("server runs have a target");
            let grpc = if target.protocols.contains(&Protocol::Grpc) {
                format!(", gRPC {}", target.grpc)
            } else {
                String::new()
            };
            println!("served: {} at {}{grpc}, {per_run}", self.model, target.http);
            table(&self.server, "protocol", "clients", "req/s", |run| {
                let mut note = match run.fraction_of_in_process {
                    Some(f) => format!("  {:>5.1}% of in-process", f * 100.0),
                    None => String::new(),
                };
                if let Some(rate) = run.offered_per_s {
                    note += &format!(
                        "  open loop at {}/s (clients = most in flight)",
                        thousands(rate)
                    );
                }
                if let Some(e) = &run.error_latency_ms {
                    note += &format!(
                        "  errors answered in p50 {:.3} / p99 {:.3} ms",
                        e.p50, e.p99
                    );
                }
                note
            });
        }
    }
}

/// One line per run, then the errors of the runs that had any.
fn table(runs: &[Run], what: &str, who: &str, rate: &str, note: impl Fn(&Run) -> String) {
    println!(
        "{what:<12} {:>5} {who:>8} {rate:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>7}",
        "batch", "rows/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors"
    );
    for r in runs {
        // No request succeeded: no latency to show.
        let ms = |pick: fn(&Latency) -> f64| {
            r.latency_ms
                .as_ref()
                .map_or("–".to_string(), |l| format!("{:.3}", pick(l)))
        };
        println!(
            "{:<12} {:>5} {:>8} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>7}{}",
            r.name(),
            r.batch,
            r.concurrency,
            thousands(r.requests_per_s),
            thousands(r.rows_per_s),
            ms(|l| l.p50),
            ms(|l| l.p90),
            ms(|l| l.p99),
            ms(|l| l.max),
            r.errors,
            note(r)
        );
    }
    for r in runs.iter().filter(|r| r.errors > 0) {
        let kinds: Vec<String> = r
            .errors_by_kind
            .iter()
            .map(|(k, n)| format!("{k} ×{n}"))
            .collect();
        println!(
            "  errors of {} batch {} × {}: {}",
            r.name(),
            r.batch,
            r.concurrency,
            kinds.join(", ")
        );
    }
    println!();
}

/// `12,345` (rounded).
pub fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands() {
        assert_eq!(super::thousands(0.4), "0");
        assert_eq!(super::thousands(999.0), "999");
        assert_eq!(super::thousands(12_345.6), "12,346");
        assert_eq!(super::thousands(1_234_567.0), "1,234,567");
    }
}
