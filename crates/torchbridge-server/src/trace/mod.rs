//! Triton's trace extension: one request in `trace_rate` (per model, or for the whole
//! server) is traced — when it arrived, was queued, its backend call started, crossed
//! into the engine, came back out, ended, and when the request was answered — and the
//! traces are written as Triton's JSON trace files, so its tools read them.
//!
//! Built so an untraced server pays one atomic load per request: [`Tracer::sample`]
//! looks at nothing else while every level is `OFF`. The core records a traced
//! request's call into a [`CallTrace`] handed along with it; everything else happens
//! here, after the request is answered. Traces are kept in memory until written: every
//! `log_frequency` traces into `trace_file.N`, or (0) all of them into `trace_file` when
//! the server stops, as Triton does. The file is set at startup only (`--trace-file`):
//! a client that could name it could write anywhere the server may.

mod settings;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use torchbridge_core::{CallTimes, CallTrace, Result};

pub use settings::{Change, TraceSettings};

/// Traces kept in memory at most (a few KiB each) before they are written.
const MAX_KEPT: usize = 10_000;

/// The server's trace settings and the traces not yet written.
#[derive(Debug)]
pub struct Tracer {
    /// Whether any scope traces: all an untraced request looks at.
    on: AtomicBool,
    inner: Mutex<Inner>,
    /// Instants become wall-clock nanoseconds through this pair, read together.
    clock: (Instant, SystemTime),
}

#[derive(Debug)]
struct Inner {
    startup: TraceSettings,
    global: Scope,
    /// Models with settings of their own: what they set, and the scope that results.
    models: HashMap<String, (OwnSettings, Scope)>,
    next_id: u64,
    /// Whether the "traces kept are at their bound" warning has been logged.
    warned_full: bool,
    pending: Vec<Value>,
    /// The next `trace_file.N` to write.
    file_index: u64,
}

/// The settings a model sets itself, as a client sent them.
type OwnSettings = Vec<(String, Vec<String>)>;

/// Settings in force for the server or one model, and the requests counted under them.
#[derive(Debug)]
struct Scope {
    settings: TraceSettings,
    seen: u64,
}

/// A request picked for tracing: its id and when it arrived.
#[derive(Debug)]
pub struct Sampled {
    id: u64,
    arrived: Instant,
    /// Handed to the model, which records the call that carried the request.
    pub call: Arc<CallTrace>,
}

impl Tracer {
    /// A tracer with the server's startup settings (tracing stays off without a file).
    pub fn new(mut startup: TraceSettings) -> Self {
        startup.timestamps &= !startup.file.is_empty();
        Tracer {
            on: AtomicBool::new(startup.timestamps),
            inner: Mutex::new(Inner {
                global: Scope::new(startup.clone()),
                startup,
                models: HashMap::new(),
                next_id: 1,
                warned_full: false,
                pending: Vec::new(),
                file_index: 0,
            }),
            clock: (Instant::now(), SystemTime::now()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The settings in force for `model`, or for the server.
    pub fn settings(&self, model: Option<&str>) -> TraceSettings {
        let inner = self.lock();
        inner.scope(model).settings.clone()
    }

    /// Applies a client's `changes` to `model`'s settings (a model with no changes goes
    /// back to the server's) or to the server's, and returns the settings now in force.
    /// A change that cannot be made fails the whole request, naming the setting.
    pub fn update(&self, model: Option<&str>, changes: Vec<Change>) -> Result<TraceSettings> {
        let mut inner = self.lock();
        let settings = match model {
            None => {
                let mut settings = inner.global.settings.clone();
                for (key, values) in &changes {
                    settings.set(key, values.as_deref(), &inner.startup)?;
                }
                settings.check()?;
                // Models follow the server in what they do not set themselves; a count a
                // model set keeps counting down where it is.
                let mut models = HashMap::with_capacity(inner.models.len());
                for (name, (own, scope)) in &inner.models {
                    let mut resolved = resolve(&settings, own)?;
                    if own.iter().any(|(key, _)| key == "trace_count") {
                        resolved.count = scope.settings.count;
                    }
                    let scope = Scope {
                        settings: resolved,
                        seen: scope.seen,
                    };
                    models.insert(name.clone(), (own.clone(), scope));
                }
                inner.global.settings = settings.clone();
                inner.models = models;
                settings
            }
            Some(model) if changes.is_empty() => {
                inner.models.remove(model);
                inner.global.settings.clone()
            }
            Some(model) => {
                let mut own = inner
                    .models
                    .get(model)
                    .map(|(own, _)| own.clone())
                    .unwrap_or_default();
                for (key, values) in changes {
                    own.retain(|(k, _)| *k != key);
                    if let Some(values) = values {
                        own.push((key, values));
                    }
                }
                let settings = resolve(&inner.global.settings, &own)?;
                settings.check()?;
                inner
                    .models
                    .insert(model.to_string(), (own, Scope::new(settings.clone())));
                settings
            }
        };
        let on = inner.global.settings.timestamps
            || inner.models.values().any(|(_, s)| s.settings.timestamps);
        self.on.store(on, Relaxed);
        Ok(settings)
    }

    /// Whether to trace this request to `model`, which arrived at `arrived`.
    pub fn sample(&self, model: &str, arrived: Instant) -> Option<Sampled> {
        if !self.on.load(Relaxed) {
            return None;
        }
        let mut inner = self.lock();
        if inner.pending.len() >= MAX_KEPT {
            // Settings are a client's to make: memory for traces is bounded.
            if !inner.warned_full {
                inner.warned_full = true;
                tracing::warn!(
                    "{MAX_KEPT} request traces are kept unwritten (log_frequency 0 keeps them \
                     until the server stops): no more are taken until they are written"
                );
            }
            return None;
        }
        let scope = inner.scope_mut(model);
        let s = &mut scope.settings;
        if !s.timestamps || s.count == 0 {
            return None;
        }
        scope.seen += 1;
        if !scope.seen.is_multiple_of(s.rate) {
            return None;
        }
        if s.count > 0 {
            s.count -= 1;
        }
        let id = inner.next_id;
        inner.next_id += 1;
        Some(Sampled {
            id,
            arrived,
            call: Arc::default(),
        })
    }

    /// Keeps the trace of a request that has been answered; writes the traces once
    /// `log_frequency` of them are kept.
    pub fn finish(&self, sampled: Sampled, model: &str, version: u64) {
        let answered = Instant::now();
        let mut stamps = vec![("REQUEST_START", sampled.arrived)];
        if let Some(CallTimes { queued, call }) = sampled.call.times() {
            stamps.push(("QUEUE_START", queued));
            if let Some(call) = call {
                stamps.push(("COMPUTE_START", call.started));
                if let Some(timing) = call.timing {
                    let input_end = call.started + timing.input;
                    stamps.push(("COMPUTE_INPUT_END", input_end));
                    stamps.push(("COMPUTE_OUTPUT_START", input_end + timing.compute));
                }
                stamps.push(("COMPUTE_END", call.ended));
            }
        }
        stamps.push(("REQUEST_END", answered));
        let timestamps: Vec<Value> = stamps
            .into_iter()
            .map(|(name, at)| json!({"name": name, "ns": self.nanos(at)}))
            .collect();
        let record = json!({
            "id": sampled.id,
            "model_name": model,
            "model_version": version,
            "timestamps": timestamps,
        });
        let mut inner = self.lock();
        inner.pending.push(record);
        let frequency = inner.global.settings.log_frequency as usize;
        if frequency > 0 && inner.pending.len() >= frequency {
            let (path, traces) = inner.take_numbered();
            drop(inner);
            write(&path, &traces);
        }
    }

    /// Writes the traces not yet written: into `trace_file` when `log_frequency` is 0,
    /// else into the next `trace_file.N`. For the server's end.
    pub fn flush(&self) {
        let mut inner = self.lock();
        if inner.pending.is_empty() {
            return;
        }
        let (path, traces) = match inner.global.settings.log_frequency {
            0 => (
                inner.global.settings.file.clone(),
                std::mem::take(&mut inner.pending),
            ),
            _ => inner.take_numbered(),
        };
        drop(inner);
        write(&path, &traces);
    }

    /// Nanoseconds since the Unix epoch.
    fn nanos(&self, at: Instant) -> u64 {
        let (instant, system) = self.clock;
        let since_epoch = system.duration_since(UNIX_EPOCH).unwrap_or_default();
        let wall = match at.checked_duration_since(instant) {
            Some(after) => since_epoch + after,
            None => since_epoch.saturating_sub(instant - at),
        };
        u64::try_from(wall.as_nanos()).unwrap_or(u64::MAX)
    }
}

impl Inner {
    fn scope(&self, model: Option<&str>) -> &Scope {
        model
            .and_then(|m| self.models.get(m))
            .map_or(&self.global, |(_, scope)| scope)
    }

    fn scope_mut(&mut self, model: &str) -> &mut Scope {
        match self.models.get_mut(model) {
            Some((_, scope)) => scope,
            None => &mut self.global,
        }
    }

    fn take_numbered(&mut self) -> (String, Vec<Value>) {
        let path = format!("{}.{}", self.global.settings.file, self.file_index);
        self.file_index += 1;
        (path, std::mem::take(&mut self.pending))
    }
}

impl Scope {
    fn new(settings: TraceSettings) -> Self {
        Scope { settings, seen: 0 }
    }
}

/// The server's settings with a model's own applied.
fn resolve(follows: &TraceSettings, own: &[(String, Vec<String>)]) -> Result<TraceSettings> {
    let mut settings = follows.clone();
    for (key, values) in own {
        settings.set(key, Some(values), follows)?;
    }
    Ok(settings)
}

/// Writes one JSON array of traces; a failure is logged, naming the file.
fn write(path: &str, traces: &[Value]) {
    let text = serde_json::to_string(traces).expect("traces are JSON values");
    if let Err(e) = std::fs::write(path, text) {
        tracing::error!(
            file = path,
            "could not write {} request traces to {path}: {e}",
            traces.len()
        );
    }
}

#[cfg(test)]
mod tests;
