use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use torchbridge_core::{Error, Registry, Result, ServedModel, Tensor};

use crate::request_metrics::RequestMetrics;
use crate::{Auth, IdlePoll, Limits, SharedMemory, TlsSettings, Tracer};

/// Settings every transport reads.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// What one request may hold (body size, tensors, shapes, JSON depth).
    pub limits: Limits,
    /// Bearer tokens every request must carry; `None`: no authentication.
    pub auth: Option<Arc<Auth>>,
    /// TLS for both listeners; `None`: plain TCP.
    pub tls: Option<Arc<TlsSettings>>,
    /// Default time a request may take before it is answered with a timeout.
    pub request_timeout: Duration,
    /// How long an HTTP client may take to send a request's headers (counted from when
    /// the server waits for them, so also how long a keep-alive connection may idle), and
    /// then its body; past it the connection is closed, or the request answered 408.
    pub client_timeout: Duration,
    /// Engine versions reported in server metadata, e.g. `("onnxruntime", "1.31.1")`.
    pub runtime_versions: Vec<(&'static str, String)>,
    /// How long after each request [`serve`](crate::serve) keeps the CPUs awake
    /// ([`IdlePoll`]); zero: never.
    pub idle_poll: Duration,
    /// Whether clients may register system shared-memory regions ([`SharedMemory`]).
    pub allow_client_shm: bool,
    /// Whether a load request may carry the model's files (Triton's `file:` parameters).
    /// Off by default: a python model's files are code the server runs.
    pub allow_model_upload: bool,
    /// Whether clients may load and unload models through the repository API (Triton's
    /// explicit model control); off: those calls are refused (model control `none`).
    pub model_control: bool,
    /// Triton's strict readiness (its default): the server is ready only while every
    /// model it was asked to load is available; off, once no model is still loading
    /// (a failed one is reported by the index and its own ready endpoint).
    pub strict_readiness: bool,
    /// The logger clients may read and change (Triton's logging extension); `None`: the
    /// extension answers that it cannot.
    pub log: Option<Arc<dyn crate::LogLevels>>,
    /// Request tracing at startup (Triton's trace extension); clients may change all of
    /// it but the file. Tracing without a file is never turned on.
    pub trace: crate::TraceSettings,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            limits: Limits::default(),
            auth: None,
            tls: None,
            request_timeout: Duration::from_secs(60),
            client_timeout: Duration::from_secs(60),
            runtime_versions: Vec::new(),
            idle_poll: Duration::ZERO,
            allow_client_shm: false,
            allow_model_upload: false,
            model_control: true,
            strict_readiness: true,
            log: None,
            trace: crate::TraceSettings::default(),
        }
    }
}

/// What a client that loads or unloads a model is told when model control is off.
pub(crate) const MODEL_CONTROL_OFF: &str = "loading and unloading models through the \
    repository API is turned off on this server (`torchbridge serve --model-control-mode \
    none`, or a Python `torchbridge.Server`, whose model is the callable it was given)";

/// What every handler shares; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub settings: Arc<ServerSettings>,
    /// The per-request metrics' handles.
    pub(crate) metrics: Arc<RequestMetrics>,
    /// The clients' registered shared-memory regions.
    pub shared_memory: Arc<SharedMemory>,
    /// Which requests are traced, and the traces not yet written.
    pub tracer: Arc<Tracer>,
    /// Turns true when the server starts to stop: long-lived calls (gRPC streams) stop
    /// taking requests, answer those they hold and end.
    stopping: Arc<tokio::sync::watch::Sender<bool>>,
    /// Set when a stop is coming ([`AppState::drain`]): the server reports not ready.
    draining: Arc<AtomicBool>,
    /// Set once the models named at startup have loaded or failed
    /// ([`AppState::started`]): without strict readiness, a model loading later (polled,
    /// or loaded through the API) leaves the server ready.
    started: Arc<AtomicBool>,
    /// Told of every inference request while [`serve`](crate::serve) runs with
    /// `settings.idle_poll`.
    idle_poll: Option<Arc<IdlePoll>>,
}

impl AppState {
    pub fn new(registry: Arc<Registry>, settings: ServerSettings) -> Self {
        AppState {
            registry,
            tracer: Arc::new(Tracer::new(settings.trace.clone())),
            stopping: Arc::new(tokio::sync::watch::Sender::new(false)),
            draining: Arc::default(),
            started: Arc::default(),
            shared_memory: Arc::new(SharedMemory::new(settings.allow_client_shm)),
            settings: Arc::new(settings),
            metrics: Arc::default(),
            idle_poll: None,
        }
    }

    /// From now on the server reports not ready (a stop is coming: a load balancer should
    /// send no more), while it still serves whatever it is sent.
    pub fn drain(&self) {
        self.draining.store(true, Relaxed);
    }

    /// Whether the server is ready: not about to stop, and its models available as
    /// [`ServerSettings::strict_readiness`] asks (every one, or no longer loading).
    pub fn server_ready(&self) -> bool {
        !self.draining.load(Relaxed)
            && match self.settings.strict_readiness {
                true => self.registry.all_available(),
                false => self.started.load(Relaxed) || self.registry.all_ready(),
            }
    }

    /// The models named at startup have each loaded or failed. Without strict readiness
    /// the server is ready from now on (until a stop): a model that appears later, loading
    /// for a minute, must not take every replica out of its load balancer at once.
    pub fn started(&self) {
        self.started.store(true, Relaxed);
    }

    /// Tells long-lived calls that the server is stopping.
    pub(crate) fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// Becomes true once [`AppState::stop`] is called.
    pub(crate) fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// This state with `idle_poll` told of each inference request from now on.
    pub fn with_idle_poll(self, idle_poll: Arc<IdlePoll>) -> Self {
        AppState {
            idle_poll: Some(idle_poll),
            ..self
        }
    }

    /// The one inference path: find the model, check the inputs, run, await. A request
    /// no instance has started within the server's `request_timeout` is answered
    /// `Error::Timeout` and never run. Returns the model too, so callers can read its
    /// metadata for the response.
    pub async fn infer(
        &self,
        model: &str,
        version: Option<u64>,
        inputs: Vec<Tensor>,
    ) -> Result<(Arc<ServedModel>, Vec<Tensor>)> {
        self.infer_within(model, version, inputs, None).await
    }

    /// As [`AppState::infer`], with the client's own time limit when it gives one
    /// (Triton's `timeout` parameter): a request not started by then is answered
    /// [`Error::Timeout`] at once and never run; one whose call has started is answered
    /// with the call's outcome, as in Triton. The server's `request_timeout` bounds both.
    /// As in Triton, only a model with dynamic batching (`[batching]`) honours the
    /// client's limit; for the others it is ignored.
    pub async fn infer_within(
        &self,
        model: &str,
        version: Option<u64>,
        inputs: Vec<Tensor>,
        timeout: Option<Duration>,
    ) -> Result<(Arc<ServedModel>, Vec<Tensor>)> {
        let arrived = Instant::now();
        let _in_flight = self.idle_poll.as_ref().map(|p| p.request());
        let server_limit = self.settings.request_timeout;
        let served = self.registry.get(model, version)?;
        // The client's limit, when it is the shorter: only then does it matter whether
        // the call has started when it passes, which the request's trace tells.
        let client_limit = timeout
            .filter(|t| *t < server_limit)
            .filter(|_| served.batching().is_some());
        let limit = client_limit.unwrap_or(server_limit);
        let deadline = arrived.checked_add(limit);
        let sampled = self.tracer.sample(model, arrived);
        let mut call = sampled.as_ref().map(|s| s.call.clone());
        if client_limit.is_some() {
            // A call that started in time is waited for to the server's limit: only past
            // it is an instance stuck.
            let trace = call.get_or_insert_default();
            if let Some(by) = arrived.checked_add(server_limit) {
                trace.wait_for_started_call_until(by);
            }
        }
        let run = async {
            let batch = served.metadata().prepare(inputs)?;
            let running = served.run_traced(batch, deadline, call.clone());
            tokio::pin!(running);
            let exceeded = |limit: Duration| Error::DeadlineExceeded {
                model: model.to_string(),
                limit_ms: u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
            };
            // A call that runs past the server's limit (a hung handler) is answered at
            // the limit all the same.
            match tokio::time::timeout(limit, &mut running).await {
                Ok(outputs) => outputs,
                // Started in time: its answer is the call's, within the server's limit.
                Err(_) if client_limit.is_some() && call.as_ref().is_some_and(|c| c.started()) => {
                    tokio::time::timeout(server_limit.saturating_sub(limit), running)
                        .await
                        .map_err(|_| exceeded(server_limit))?
                }
                // Still queued: it never runs (its job is skipped once its waiter is gone).
                Err(_) if client_limit.is_some() => Err(Error::Timeout {
                    model: model.to_string(),
                    waited_ms: u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
                }),
                Err(_) => Err(exceeded(limit)),
            }
        };
        let outputs = run.await;
        if let Some(sampled) = sampled {
            self.tracer
                .finish(sampled, model, served.metadata().version);
        }
        Ok((served, outputs?))
    }
}
