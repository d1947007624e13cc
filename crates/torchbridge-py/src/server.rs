//! `torchbridge._native.Server`: a Python callable served by torchbridge's own KServe v2
//! server, inside the interpreter that called it.
//!
//! The Python side writes a one-model repository (a `config.toml` and an empty version
//! directory, so the config and repository routes read what they read for
//! `torchbridge serve`); here a [`Registry`] loads it with a loader that wraps the
//! callable as the python bridge's backend, one per instance. The server runs on a
//! thread of its own with its own tokio runtime; the caller's thread only holds the GIL
//! between waits, so the instances can take it to run the callable.

use std::net::{SocketAddr, TcpListener as StdListener, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use torchbridge::{InstancePool, ModelDir, ModelMetadata, PoolThreads, Registry, ServedModel};
use torchbridge_server::{AppState, Auth, PemFile, ServerSettings, TlsSettings, TraceSettings};

use crate::error::PyResult;

/// How often a waiting caller looks at Python's signals (ctrl-c).
const SIGNAL_POLL: Duration = Duration::from_millis(100);
/// How long, after the server stops, its runtime waits for background tasks.
const RUNTIME_GRACE: Duration = Duration::from_secs(5);
/// How often `stop` looks whether the instances' threads have exited.
const THREADS_POLL: Duration = Duration::from_millis(10);

/// A running server. `stop` drains it (admission stops, admitted requests finish) and
/// joins its thread; dropping it unstopped only asks it to stop.
#[pyclass(name = "Server", module = "torchbridge._native", frozen)]
pub(crate) struct PyServer {
    http: SocketAddr,
    grpc: SocketAddr,
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    finished: Arc<Finished>,
    /// The instance threads of every pool the registry started: `stop` returns only once
    /// they have exited, so no call of the callable outlives it (a request that timed
    /// out may leave its call running; the interpreter must not finalize under it).
    pools: Arc<Mutex<Vec<PoolThreads>>>,
}

/// The server thread's outcome, once it has one.
#[derive(Default)]
struct Finished {
    outcome: Mutex<Option<Result<(), String>>>,
    changed: Condvar,
}

impl Finished {
    fn set(&self, outcome: Result<(), String>) {
        *self.outcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
        self.changed.notify_all();
    }

    /// Waits up to `limit` for the outcome; true once there is one.
    fn wait(&self, limit: Duration) -> bool {
        let outcome = self.outcome.lock().unwrap_or_else(|p| p.into_inner());
        let (outcome, _) = self
            .changed
            .wait_timeout_while(outcome, limit, |o| o.is_none())
            .unwrap_or_else(|p| p.into_inner());
        outcome.is_some()
    }

    fn outcome(&self) -> Option<Result<(), String>> {
        self.outcome
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[pymethods]
impl PyServer {
    /// Loads model `name` of `repository` with `callable` as each instance's code,
    /// listens on `host`:`http_port` and `host`:`grpc_port` (0: a free port), and
    /// starts serving in the background.
    #[new]
    /// `auth_tokens`: the bearer tokens accepted (None: none asked for); `tls`: the
    /// certificate chain, its key and the client CA (None: no client certificates), as
    /// `serve --tls-cert/--tls-key/--tls-client-ca` take them.
    #[pyo3(signature = (callable, repository, name, host, http_port, grpc_port, runtime_versions, request_timeout_ms = 60_000, idle_poll_us = 0, allow_client_shm = false, trace_file = None, auth_tokens = None, auth_allow_health = false, tls = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        callable: Py<PyAny>,
        repository: PathBuf,
        name: String,
        host: &str,
        http_port: u16,
        grpc_port: u16,
        runtime_versions: Vec<(String, String)>,
        request_timeout_ms: u64,
        idle_poll_us: u64,
        allow_client_shm: bool,
        trace_file: Option<String>,
        auth_tokens: Option<Vec<String>>,
        auth_allow_health: bool,
        tls: Option<(PathBuf, PathBuf, Option<PathBuf>)>,
    ) -> PyResult<Self> {
        let auth = auth_tokens
            .map(|tokens| Auth::new(tokens, auth_allow_health, "auth_tokens"))
            .transpose()
            .map_err(|e| PyValueError::new_err(e.0))?;
        let tls = tls
            .map(|(cert, key, client_ca)| {
                let file = |name, path| PemFile { name, path };
                TlsSettings::from_files(
                    file("tls_cert", &cert),
                    file("tls_key", &key),
                    client_ca.as_deref().map(|p| file("tls_client_ca", p)),
                )
            })
            .transpose()
            .map_err(|e| PyValueError::new_err(e.0))?;
        let http = listen(host, http_port, "HTTP")?;
        let grpc = listen(host, grpc_port, "gRPC")?;
        let (http_addr, grpc_addr) = (local_addr(&http)?, local_addr(&grpc)?);

        let callable = Arc::new(callable);
        let pools = Arc::new(Mutex::new(Vec::new()));
        let started = pools.clone();
        let registry = Arc::new(Registry::new(
            repository,
            Arc::new(move |dir: &ModelDir| start_callable(dir, &callable, &started)),
        ));
        py.detach(|| registry.load(&name))?;

        let settings = ServerSettings {
            request_timeout: Duration::from_millis(request_timeout_ms),
            idle_poll: Duration::from_micros(idle_poll_us),
            allow_client_shm,
            auth: auth.map(Arc::new),
            tls: tls.map(Arc::new),
            // The model is the callable: a client's load could only break it (another
            // config, another bridge named), an unload stop it.
            model_control: false,
            // Tracing starts off; with a file, clients may turn it on.
            trace: TraceSettings {
                file: trace_file.unwrap_or_default(),
                ..TraceSettings::default()
            },
            // Server metadata lists these; the names must be 'static, and a process
            // starts few servers.
            runtime_versions: runtime_versions
                .into_iter()
                .map(|(k, v)| (&*Box::leak(k.into_boxed_str()), v))
                .collect(),
            ..ServerSettings::default()
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("torchbridge-server")
            .enable_all()
            .build()
            .map_err(|e| PyRuntimeError::new_err(format!("cannot start the async runtime: {e}")))?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let finished = Arc::new(Finished::default());
        let state = AppState::new(registry, settings);
        state.started();
        let done = finished.clone();
        let thread = std::thread::Builder::new()
            .name("torchbridge-serve".into())
            .spawn(move || {
                let outcome = runtime.block_on(async move {
                    let http = tokio::net::TcpListener::from_std(http)?;
                    let grpc = tokio::net::TcpListener::from_std(grpc)?;
                    let shutdown = async move {
                        let _ = stop_rx.await;
                    };
                    torchbridge_server::serve(state, http, grpc, shutdown).await
                });
                runtime.shutdown_timeout(RUNTIME_GRACE);
                done.set(outcome.map_err(|e| format!("the server failed: {e}")));
            })
            .map_err(|e| PyRuntimeError::new_err(format!("cannot start the server thread: {e}")))?;
        Ok(PyServer {
            http: http_addr,
            grpc: grpc_addr,
            stop: Mutex::new(Some(stop_tx)),
            thread: Mutex::new(Some(thread)),
            finished,
            pools,
        })
    }

    /// Blocks until the server has stopped or `timeout` seconds have passed (None: no
    /// limit), without the GIL; Python's signal handlers run every 100 ms, so ctrl-c
    /// raises KeyboardInterrupt here. Returns whether the server has stopped.
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> pyo3::PyResult<bool> {
        let deadline = match timeout {
            Some(t) if !(t >= 0.0 && t.is_finite()) => {
                return Err(PyValueError::new_err(format!(
                    "timeout must be a finite number of seconds >= 0, got {t}"
                )));
            }
            Some(t) => Some(Instant::now() + Duration::from_secs_f64(t)),
            None => None,
        };
        loop {
            let slice = deadline.map_or(SIGNAL_POLL, |d| {
                d.saturating_duration_since(Instant::now()).min(SIGNAL_POLL)
            });
            if py.detach(|| self.finished.wait(slice)) {
                return Ok(true);
            }
            py.check_signals()?;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
        }
    }

    /// Stops admission, lets every admitted request finish, joins the server's thread
    /// and waits for the instances' threads to exit (without the GIL, so they can finish
    /// their calls; a call still running for a request that timed out is waited for;
    /// ctrl-c interrupts the wait). Raises if the server had failed. Calling it again
    /// does nothing.
    fn stop(&self, py: Python<'_>) -> pyo3::PyResult<()> {
        if let Some(stop) = self.stop.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = stop.send(());
        }
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread
            && py.detach(|| thread.join()).is_err()
        {
            return Err(PyRuntimeError::new_err("the server thread panicked"));
        }
        self.wait_for_instances(py)?;
        match self.finished.outcome() {
            Some(Err(message)) => Err(PyRuntimeError::new_err(message)),
            _ => Ok(()),
        }
    }

    /// Whether the server is still serving.
    #[getter]
    fn running(&self) -> bool {
        self.finished.outcome().is_none()
    }

    #[getter]
    fn http_port(&self) -> u16 {
        self.http.port()
    }

    #[getter]
    fn grpc_port(&self) -> u16 {
        self.grpc.port()
    }

    /// The address the server listens on (as bound: an IP address).
    #[getter]
    fn host(&self) -> String {
        self.http.ip().to_string()
    }
}

impl PyServer {
    /// Waits until every pool's instance threads have exited, looking at Python's
    /// signals between waits.
    fn wait_for_instances(&self, py: Python<'_>) -> pyo3::PyResult<()> {
        let running = || {
            let pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
            pools.iter().any(PoolThreads::running)
        };
        let mut since_signals = Duration::ZERO;
        while py.detach(|| {
            std::thread::sleep(THREADS_POLL);
            running()
        }) {
            since_signals += THREADS_POLL;
            if since_signals >= SIGNAL_POLL {
                since_signals = Duration::ZERO;
                py.check_signals()?;
            }
        }
        Ok(())
    }
}

impl Drop for PyServer {
    /// An unstopped server is asked to stop; its thread drains and exits on its own.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.get_mut().ok().and_then(Option::take) {
            let _ = stop.send(());
        }
    }
}

/// A listening socket on `host`:`port`, ready to hand to tokio.
fn listen(host: &str, port: u16, what: &str) -> pyo3::PyResult<StdListener> {
    let addr = (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| PyValueError::new_err(format!("host {host:?} is not an address")))?;
    let listener = StdListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| PyOSError::new_err(format!("cannot listen for {what} on {addr}: {e}")))?;
    Ok(listener)
}

fn local_addr(listener: &StdListener) -> pyo3::PyResult<SocketAddr> {
    listener
        .local_addr()
        .map_err(|e| PyOSError::new_err(format!("cannot read the bound address: {e}")))
}

/// The registry's loader: the model's instances, each the python bridge's backend over
/// the one callable, behind the batching scheduler when the config has `[batching]`.
fn start_callable(
    dir: &ModelDir,
    callable: &Arc<Py<PyAny>>,
    started: &Mutex<Vec<PoolThreads>>,
) -> torchbridge::Result<ServedModel> {
    let metadata = ModelMetadata {
        name: dir.name.clone(),
        version: dir.version,
        platform: "python".into(),
        max_batch_size: dir.config.max_batch_size,
        inputs: dir.config.inputs.iter().map(Into::into).collect(),
        outputs: dir.config.outputs.iter().map(Into::into).collect(),
    };
    let callable = callable.clone();
    let instances = dir.config.instances.max(1) as usize;
    let pool = InstancePool::start(&dir.name, instances, move |_| {
        torchbridge_python::callable_backend(metadata.clone(), &callable)
    })?;
    let mut pools = started.lock().unwrap_or_else(|p| p.into_inner());
    pools.retain(PoolThreads::running);
    pools.push(pool.threads());
    drop(pools);
    Ok(ServedModel::new(pool, dir.config.batching.as_ref())?.with_labels(dir.labels.clone()))
}

/// Whether the calling thread runs a model's instance (a served callable runs there).
#[pyfunction]
pub(crate) fn on_instance_thread() -> bool {
    torchbridge::on_instance_thread()
}

/// The package's `atexit` hook, after it has stopped every server: refuses calls into
/// the interpreter from now on and waits (without the GIL) up to `wait_s` seconds for
/// those in flight; returns whether they all ended. See `torchbridge_python`'s `exit`.
#[pyfunction]
pub(crate) fn close_for_exit(py: Python<'_>, wait_s: f64) -> bool {
    let wait = Duration::try_from_secs_f64(wait_s).unwrap_or(Duration::ZERO);
    py.detach(|| torchbridge_python::close_for_exit(wait))
}

/// Sends the server's log (tracing) to stderr at `filter` (e.g. `"warn"`,
/// `"torchbridge_server=info"`). The first call in a process wins; later ones do nothing.
#[pyfunction]
pub(crate) fn init_logging(filter: &str) -> pyo3::PyResult<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| PyValueError::new_err(format!("log filter {filter:?}: {e}")))?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    Ok(())
}
