//! The per-request metrics, through handles registered once per label set.
//!
//! `metrics::counter!` with labels builds a key (allocating every label value) and finds
//! its series in the recorder's registry (hashing and comparing those labels) on each
//! call. Per request that was about 4 % of the server's CPU under load. The label sets
//! are few — routes × methods × statuses, models × versions × outcomes — so each is
//! registered on first use and its handles are kept here; a request then costs a map
//! lookup under a read lock and the atomic updates of the handles themselves.
//!
//! Handles bind to the recorder installed when they are registered: install it before
//! serving (the binary does).

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use axum::http::Method;
use metrics::{Counter, Histogram};

/// How an inference request ended, as the `outcome` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Outcome {
    Success,
    /// The client's fault (a bad tensor, an unknown model).
    Invalid,
    /// Refused at once by admission control (the model's queue is full: 429 /
    /// RESOURCE_EXHAUSTED).
    Rejected,
    /// The model was not ready (loading, failed to load, unloaded, stopping): 503 /
    /// UNAVAILABLE, expected while a rollout or a reload goes on, not a fault.
    Unavailable,
    /// Past its deadline (its `timeout` parameter, or the server's request timeout):
    /// 504 / DEADLINE_EXCEEDED, load shed or a tight client deadline, not a fault.
    Timeout,
    Failure,
    /// The client went away before its answer (the handler was dropped mid-request).
    Abandoned,
}

impl Outcome {
    /// How an HTTP error status ended the request.
    pub fn of_status(status: axum::http::StatusCode) -> Outcome {
        if status == axum::http::StatusCode::TOO_MANY_REQUESTS {
            Outcome::Rejected
        } else if status == axum::http::StatusCode::SERVICE_UNAVAILABLE {
            Outcome::Unavailable
        } else if status == axum::http::StatusCode::GATEWAY_TIMEOUT {
            Outcome::Timeout
        } else if status.is_client_error() {
            Outcome::Invalid
        } else {
            Outcome::Failure
        }
    }

    fn label(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Invalid => "invalid",
            Outcome::Rejected => "rejected",
            Outcome::Unavailable => "unavailable",
            Outcome::Timeout => "timeout",
            Outcome::Failure => "failure",
            Outcome::Abandoned => "abandoned",
        }
    }
}

/// An inference request on its way: counted when [`InFlight::answered`], or as
/// `abandoned` if it is dropped first — a client that disconnects drops the handler's
/// future mid-await, and the work it asked for would otherwise count nowhere.
#[must_use]
pub(crate) struct InFlight<'a> {
    metrics: &'a RequestMetrics,
    model: &'a str,
    version: Option<u64>,
    protocol: Protocol,
    started: Instant,
}

impl InFlight<'_> {
    pub fn answered(self, id: &str, outcome: Outcome) {
        let elapsed = self.started.elapsed();
        self.metrics.inference(
            self.model,
            self.version,
            id,
            outcome,
            self.protocol,
            elapsed,
        );
        std::mem::forget(self);
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let elapsed = self.started.elapsed();
        let (model, version) = (self.model, self.version);
        self.metrics.inference(
            model,
            version,
            "",
            Outcome::Abandoned,
            self.protocol,
            elapsed,
        );
    }
}

/// Which transport an inference request came over: the `protocol` label, `http` or
/// `grpc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Protocol {
    Http,
    Grpc,
}

#[derive(Debug, Clone)]
struct RouteHandles {
    requests: Counter,
    duration: Histogram,
}

type OutcomeKey = (Option<u64>, Outcome, Protocol);

/// One route's handles, by method and status.
type RouteSeries = HashMap<(Method, u16), RouteHandles>;

#[derive(Debug)]
struct ModelHandles {
    duration: Histogram,
    requests: HashMap<OutcomeKey, Counter>,
}

/// The handles of every label set seen so far; one per server, in [`crate::AppState`].
#[derive(Debug, Default)]
pub(crate) struct RequestMetrics {
    /// By matched route, then method and status.
    routes: RwLock<HashMap<String, RouteSeries>>,
    /// By model name (`""`: a model the server does not have).
    models: RwLock<HashMap<String, ModelHandles>>,
}

impl RequestMetrics {
    /// Counts and times one HTTP request (`torchbridge_http_requests_total`,
    /// `torchbridge_http_request_duration_seconds`).
    pub fn http_request(&self, route: &str, method: &Method, status: u16, elapsed: Duration) {
        // Methods are client-chosen: label the standard ones, not every made-up verb.
        let method = match standard(method) {
            true => method.clone(),
            false => Method::from_bytes(b"OTHER").expect("a valid method"),
        };
        let key = (method, status);
        let found = read(&self.routes)
            .get(route)
            .and_then(|by_key| by_key.get(&key).cloned());
        let handles = found.unwrap_or_else(|| {
            let mut routes = write(&self.routes);
            let by_key = routes.entry(route.to_string()).or_default();
            by_key
                .entry(key.clone())
                .or_insert_with(|| route_handles(route, &key.0, key.1))
                .clone()
        });
        handles.requests.increment(1);
        handles.duration.record(elapsed.as_secs_f64());
    }

    /// A request of `model` starting now, counted once it is answered or dropped.
    pub fn in_flight<'a>(
        &'a self,
        model: &'a str,
        version: Option<u64>,
        protocol: Protocol,
    ) -> InFlight<'a> {
        InFlight {
            metrics: self,
            model,
            version,
            protocol,
            started: Instant::now(),
        }
    }

    /// Counts one inference request (`torchbridge_inference_requests_total`) and records
    /// its time (`torchbridge_inference_duration_seconds`): one lookup. At verbose log
    /// levels (debug), each request is a log line too, with the client's request `id`
    /// where it sent one.
    pub fn inference(
        &self,
        model: &str,
        version: Option<u64>,
        id: &str,
        outcome: Outcome,
        protocol: Protocol,
        elapsed: Duration,
    ) {
        tracing::debug!(
            model,
            version,
            id = (!id.is_empty()).then_some(id),
            outcome = outcome.label(),
            protocol = ?protocol,
            micros = elapsed.as_micros() as u64,
            "inference request"
        );
        let key = (version, outcome, protocol);
        let found = read(&self.models)
            .get(model)
            .and_then(|m| Some((m.requests.get(&key)?.clone(), m.duration.clone())));
        let (counter, duration) = found.unwrap_or_else(|| {
            let mut models = write(&self.models);
            let handles = models
                .entry(model.to_string())
                .or_insert_with(|| model_handles(model));
            let counter = handles
                .requests
                .entry(key)
                .or_insert_with(|| outcome_counter(model, key));
            (counter.clone(), handles.duration.clone())
        });
        counter.increment(1);
        duration.record(elapsed.as_secs_f64());
    }
}

fn standard(method: &Method) -> bool {
    [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::PATCH,
        Method::CONNECT,
        Method::TRACE,
    ]
    .contains(method)
}

fn route_handles(route: &str, method: &Method, status: u16) -> RouteHandles {
    let labels = [
        ("route", route.to_string()),
        ("method", method.to_string()),
        ("status", status.to_string()),
    ];
    RouteHandles {
        requests: metrics::counter!("torchbridge_http_requests_total", &labels),
        duration: metrics::histogram!("torchbridge_http_request_duration_seconds", &labels),
    }
}

fn model_handles(model: &str) -> ModelHandles {
    ModelHandles {
        duration: metrics::histogram!(
            "torchbridge_inference_duration_seconds",
            "model" => model.to_string()
        ),
        requests: HashMap::new(),
    }
}

fn outcome_counter(model: &str, (version, outcome, protocol): OutcomeKey) -> Counter {
    let version = version.map_or_else(String::new, |v| v.to_string());
    let name = "torchbridge_inference_requests_total";
    let (model, outcome) = (model.to_string(), outcome.label());
    let protocol = match protocol {
        Protocol::Http => "http",
        Protocol::Grpc => "grpc",
    };
    metrics::counter!(
        name, "model" => model, "version" => version, "outcome" => outcome,
        "protocol" => protocol,
    )
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use metrics_exporter_prometheus::PrometheusBuilder;

    use super::*;

    /// Every label set lands on its own series with the counts it was given, and
    /// made-up methods share one.
    #[test]
    fn each_label_set_counts_on_its_own_series() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let metrics = Arc::new(RequestMetrics::default());
        metrics::with_local_recorder(&recorder, || {
            let ms = Duration::from_millis(1);
            for _ in 0..3 {
                metrics.http_request("/v2/models/{model}/infer", &Method::POST, 200, ms);
            }
            metrics.http_request("/v2/models/{model}/infer", &Method::POST, 400, ms);
            metrics.http_request("unmatched", &Method::from_bytes(b"BREW").unwrap(), 404, ms);
            metrics.http_request("unmatched", &Method::from_bytes(b"WHEN").unwrap(), 404, ms);
            for _ in 0..2 {
                metrics.inference("mlp", Some(1), "", Outcome::Success, Protocol::Http, ms);
            }
            metrics.inference("mlp", Some(1), "", Outcome::Success, Protocol::Grpc, ms);
            metrics.inference("", None, "r1", Outcome::Invalid, Protocol::Grpc, ms);
            drop(metrics.in_flight("mlp", Some(1), Protocol::Http));
            metrics
                .in_flight("mlp", Some(1), Protocol::Http)
                .answered("", Outcome::Success);
        });
        let text = handle.render();
        let value = |series: &str| -> Option<String> {
            text.lines()
                .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
                .map(|l| l[series.len() + 1..].to_string())
        };
        let route = "route=\"/v2/models/{model}/infer\"";
        assert_eq!(
            value(&format!(
                "torchbridge_http_requests_total{{{route},method=\"POST\",status=\"200\"}}"
            )),
            Some("3".into()),
            "{text}"
        );
        assert_eq!(
            value(&format!(
                "torchbridge_http_requests_total{{{route},method=\"POST\",status=\"400\"}}"
            )),
            Some("1".into())
        );
        assert_eq!(
            value(
                "torchbridge_http_requests_total{route=\"unmatched\",method=\"OTHER\",status=\"404\"}"
            ),
            Some("2".into()),
            "{text}"
        );
        assert_eq!(
            value(
                "torchbridge_inference_requests_total{model=\"mlp\",version=\"1\",outcome=\"success\",protocol=\"http\"}"
            ),
            Some("3".into())
        );
        // Dropped before its answer: the client went away.
        assert_eq!(
            value(
                "torchbridge_inference_requests_total{model=\"mlp\",version=\"1\",outcome=\"abandoned\",protocol=\"http\"}"
            ),
            Some("1".into()),
            "{text}"
        );
        assert_eq!(
            value(
                "torchbridge_inference_requests_total{model=\"mlp\",version=\"1\",outcome=\"success\",protocol=\"grpc\"}"
            ),
            Some("1".into())
        );
        assert_eq!(
            value(
                "torchbridge_inference_requests_total{model=\"\",version=\"\",outcome=\"invalid\",protocol=\"grpc\"}"
            ),
            Some("1".into())
        );
        // HTTP and gRPC requests alike, by model.
        assert_eq!(
            value("torchbridge_inference_duration_seconds_count{model=\"mlp\"}"),
            Some("5".into()),
            "{text}"
        );
    }
}
