//! `isolation = "process"`: each instance of a model runs in a child process of its own
//! (`torchbridge worker`), so that a crash in the model's code — a segfault in an
//! extension, `os._exit`, an abort — fails the batch it was running instead of the
//! server.
//!
//! The child is this same binary (or the one [`set_program`] or `TORCHBRIDGE_WORKER`
//! names) with the `worker` verb: it
//! loads the instance through the configured bridge exactly as the server would, then
//! answers batches on its standard input, which is one end of a Unix socket pair. Its
//! standard output goes to the server's standard error, so a model that prints cannot
//! corrupt the stream. Tensors cross the socket with one copy each way (`wire`).
//!
//! A dead child is found by the call it was running: the socket reads end-of-file, the
//! child is reaped, and that batch is answered `Error::Inference` naming the exit status
//! or signal. A new child is started at once and loads the model while no batch waits for
//! it; the next batch waits only for what is left of that load. A child that fails to
//! start is not retried for a second, so a model that crashes on load does not reload on
//! every request. A child whose call runs past every deadline of its requests
//! (the pool's "stuck") is killed by the pool's watchdog through [`Backend::interrupter`],
//! which ends that call the same way. When the backend is dropped (unload, shutdown) the
//! socket closes and the child exits on its own; it is killed if it has not within 5 s.

mod child;
mod wire;

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use torchbridge_core::{
    Backend, BackendKind, Batch, CallTiming, ConfigOverride, Error, Interrupt, LoadContext,
    ModelMetadata, Result, Tensor,
};

pub use child::{WorkerArgs, run as run_worker};
use wire::{Decoder, Encoder, Reply};

/// How long a child that failed to start keeps the instance down before the next try.
const RESTART_BACKOFF: Duration = Duration::from_secs(1);

/// One instance served by a child process.
pub(crate) struct WorkerBackend {
    command: WorkerCommand,
    metadata: ModelMetadata,
    running: Option<Running>,
    /// A child started after a crash, still loading: it becomes `running` at the next
    /// batch, once it says it is ready.
    starting: Option<Running>,
    /// When the last start failed, and why: repeated within the backoff.
    failed_start: Option<(Instant, Error)>,
    timing: Option<CallTiming>,
    /// The running child's pid, for the watchdog; cleared (under the lock) before the
    /// child is reaped, so a kill never reaches a reused pid.
    pid: Arc<Mutex<Option<u32>>>,
    /// Set when the watchdog killed the child (a stuck call), so that its death is
    /// reported as torchbridge's doing, not as a crash.
    killed_when_stuck: Arc<AtomicBool>,
}

struct Running {
    child: Child,
    socket: UnixStream,
}

/// What starts a child for one instance.
struct WorkerCommand {
    program: PathBuf,
    ctx: LoadContext,
    bridge: BackendKind,
    /// The config the load request gave instead of config.toml, for the child to apply.
    config_override: Option<ConfigOverride>,
}

static PROGRAM: OnceLock<PathBuf> = OnceLock::new();

/// Names the `torchbridge` binary that runs isolated instances, for a program that loads
/// models through this library (the `torchbridge` binary itself needs nothing). Returns
/// `false` if a program was already set.
pub fn set_program(path: impl Into<PathBuf>) -> bool {
    PROGRAM.set(path.into()).is_ok()
}

/// The program that serves as a worker: the one [`set_program`] named, else
/// `TORCHBRIDGE_WORKER`, else this executable.
fn worker_program() -> std::io::Result<PathBuf> {
    if let Some(path) = PROGRAM.get() {
        return Ok(path.clone());
    }
    if let Some(path) = std::env::var_os("TORCHBRIDGE_WORKER") {
        return Ok(path.into());
    }
    let exe = std::env::current_exe()?;
    // The Python package: the interpreter is no worker, and it ships no binary.
    let python = exe
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("python"));
    if python {
        return Err(std::io::Error::other(format!(
            "isolation = \"process\" runs each instance in a torchbridge binary, and this \
             process is {}: set TORCHBRIDGE_WORKER to the path of a torchbridge binary (or \
             load the model without isolation)",
            exe.display()
        )));
    }
    // This very binary even once its file was replaced (an upgrade, a rebuild): the
    // kernel keeps the link, while `exe` would then name a file that is gone.
    let this_binary = Path::new("/proc/self/exe");
    Ok(if this_binary.exists() {
        this_binary.into()
    } else {
        exe
    })
}

impl WorkerBackend {
    /// Starts the child for instance `ctx.instance` and waits until it has loaded.
    pub fn start(
        ctx: &LoadContext,
        bridge: BackendKind,
        config_override: Option<&ConfigOverride>,
    ) -> Result<Self> {
        let program = worker_program().map_err(|e| load_error(ctx, bridge, e.to_string()))?;
        let command = WorkerCommand {
            program,
            ctx: ctx.clone(),
            bridge,
            config_override: config_override.cloned(),
        };
        let (running, metadata) = command.ready(command.launch()?)?;
        Ok(WorkerBackend {
            command,
            metadata,
            pid: Arc::new(Mutex::new(Some(running.child.id()))),
            killed_when_stuck: Arc::default(),
            running: Some(running),
            starting: None,
            failed_start: None,
            timing: None,
        })
    }

    fn model(&self) -> &str {
        &self.command.ctx.model
    }

    /// The running child: the one started after the last died once it has loaded, or a
    /// new one.
    fn running(&mut self) -> Result<&mut Running> {
        self.reap_if_exited();
        if self.running.is_none() {
            let starting = match self.starting.take() {
                Some(starting) => Ok(starting),
                None => {
                    if let Some((at, error)) = &self.failed_start
                        && at.elapsed() < RESTART_BACKOFF
                    {
                        return Err(error.clone());
                    }
                    self.command.launch()
                }
            };
            match starting.and_then(|s| self.command.ready(s)) {
                Ok((running, _)) => {
                    tracing::info!(
                        model = self.model(),
                        instance = self.command.ctx.instance,
                        pid = running.child.id(),
                        "worker process restarted"
                    );
                    *lock(&self.pid) = Some(running.child.id());
                    self.running = Some(running);
                    self.failed_start = None;
                }
                Err(e) => {
                    *lock(&self.pid) = None;
                    // Killed while starting, or not: the next death is its own.
                    self.killed_when_stuck.store(false, Relaxed);
                    // The request did nothing wrong: a server error, not the load's 400.
                    let e = Error::Inference {
                        model: self.command.ctx.model.clone(),
                        message: format!("its worker process could not be restarted: {e}"),
                    };
                    self.failed_start = Some((Instant::now(), e.clone()));
                    return Err(e);
                }
            }
        }
        Ok(self.running.as_mut().expect("started above"))
    }

    /// Reaps the child if it has exited since its last batch (killed while idle, by
    /// the OOM killer say), so that the next batch goes to a new one instead of failing.
    fn reap_if_exited(&mut self) {
        let Some(running) = &mut self.running else {
            return;
        };
        let Ok(Some(status)) = running.child.try_wait() else {
            return;
        };
        tracing::error!(
            model = self.command.ctx.model,
            instance = self.command.ctx.instance,
            pid = running.child.id(),
            "the worker process died while idle ({}); starting a new one",
            describe(status)
        );
        *lock(&self.pid) = None;
        self.running = None;
    }

    /// Sends `batch` and reads the reply; an I/O error means the child is gone.
    fn call(&mut self, batch: &Batch) -> Result<Vec<Tensor>> {
        let (model, bridge) = (self.command.ctx.model.clone(), self.command.bridge.as_str());
        let request = Encoder::batch(batch);
        let running = self.running()?;
        let started = Instant::now();
        let sent = wire::write_frame(&mut running.socket, &request);
        let sent_at = Instant::now();
        let reply = sent.and_then(|()| wire::read_frame(&mut running.socket));
        let reply = match reply {
            Ok(Some(body)) => Decoder::new(&body).reply(&model, bridge),
            Ok(None) => Err(std::io::ErrorKind::UnexpectedEof.into()),
            Err(e) => Err(e),
        };
        match reply {
            Ok(Reply::Outputs { tensors, timing }) => {
                let total = started.elapsed();
                self.timing = timing.map(|t| {
                    let input = t.input + (sent_at - started);
                    CallTiming {
                        input,
                        compute: t.compute,
                        output: total.saturating_sub(input + t.compute),
                    }
                });
                Ok(tensors)
            }
            Ok(Reply::Failed(error)) => Err(error),
            Ok(Reply::Ready(_)) => Err(self.died("it answered a batch with a second hello")),
            Err(e) => Err(self.died(&e.to_string())),
        }
    }

    /// Reaps the child after a failed exchange; the error for the batch it was running.
    fn died(&mut self, io_error: &str) -> Error {
        let Some(mut running) = self.running.take() else {
            return inference_error(self.model(), io_error.to_string());
        };
        let pid = running.child.id();
        // The socket failed: the child is dead or past saving.
        let status = {
            let mut watched = lock(&self.pid);
            *watched = None;
            let _ = running.child.kill();
            running
                .child
                .wait()
                .map_or_else(|e| format!("unknown: {e}"), describe)
        };
        let message = match self.killed_when_stuck.swap(false, Relaxed) {
            true => format!(
                "instance {}'s worker process (pid {pid}) was killed by torchbridge: its call \
                 ran past the deadline of every request it held (stuck); a new one is starting",
                self.command.ctx.instance
            ),
            false => format!(
                "instance {}'s worker process (pid {pid}) died while running this batch \
                 ({status}); a new one is starting",
                self.command.ctx.instance
            ),
        };
        tracing::error!(model = self.model(), "{message} [{io_error}]");
        // Start the replacement now, so it loads while no batch waits for it. The watchdog
        // may kill it (a next batch stuck waiting for its load), so it is watched.
        match self.command.launch() {
            Ok(starting) => {
                *lock(&self.pid) = Some(starting.child.id());
                self.starting = Some(starting);
            }
            Err(e) => self.failed_start = Some((Instant::now(), e)),
        }
        inference_error(self.model(), message)
    }
}

impl Backend for WorkerBackend {
    fn metadata(&self) -> &ModelMetadata {
        &self.metadata
    }

    fn infer(&mut self, batch: Batch) -> Result<Vec<Tensor>> {
        self.timing = None;
        self.call(&batch)
    }

    fn last_timing(&self) -> Option<CallTiming> {
        self.timing
    }

    fn broken(&self) -> Option<String> {
        let why = match &self.failed_start.as_ref()?.1 {
            Error::Inference { message, .. } => message.clone(),
            other => format!("its worker process could not be restarted: {other}"),
        };
        Some(format!(
            "{why} (a request at least {}s after the last attempt starts one again)",
            RESTART_BACKOFF.as_secs()
        ))
    }

    fn interrupter(&self) -> Option<Interrupt> {
        let (pid, killed) = (self.pid.clone(), self.killed_when_stuck.clone());
        Some(Arc::new(move || {
            let watched = lock(&pid);
            if let Some(pid) = *watched
                && let Ok(pid) = libc::pid_t::try_from(pid)
            {
                killed.store(true, Relaxed);
                // SAFETY: kill(2) has no memory effects. The pid is our child's and is
                // not reaped while the lock is held (see `died`), so it names no other
                // process.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Drop for WorkerBackend {
    fn drop(&mut self) {
        *lock(&self.pid) = None;
        // A replacement still loading has nothing to finish: it would only notice the end
        // of its input once loaded.
        if let Some(Running { mut child, .. }) = self.starting.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(Running { mut child, socket }) = self.running.take() {
            // End of input: the child returns from its loop and exits.
            drop(socket);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl WorkerCommand {
    /// Starts a child, which begins loading the model; [`WorkerCommand::ready`] waits for it.
    fn launch(&self) -> Result<Running> {
        let ctx = &self.ctx;
        let fail = |message: String| load_error(ctx, self.bridge, message);
        let (socket, theirs) =
            UnixStream::pair().map_err(|e| fail(format!("cannot make a socket pair: {e}")))?;
        // The child's stdout is our stderr: a model's prints land in the server's log.
        let stdout = std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| fail(format!("cannot pass stderr to the worker: {e}")))?;
        let model_dir = ctx.version_dir.parent().unwrap_or(&ctx.version_dir);
        let mut command = Command::new(&self.program);
        if self.program == Path::new("/proc/self/exe") {
            command.arg0("torchbridge"); // what `ps` shows
        }
        command
            .arg("worker")
            .arg("--model-dir")
            .arg(model_dir)
            .args(["--name", &ctx.model])
            .args(["--version", &ctx.version.to_string()])
            .args(["--bridge", self.bridge.as_str()])
            .args(["--instance", &ctx.instance.to_string()])
            .args(["--threads", &ctx.config.threads.to_string()]);
        if let Some(o) = &self.config_override {
            command.args(["--config-override", o.text()]);
        }
        let child = command
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::from(stdout))
            .spawn()
            .map_err(|e| {
                fail(format!(
                    "cannot start the worker process `{}`: {e}",
                    self.program.display()
                ))
            })?;
        Ok(Running { child, socket })
    }

    /// Waits until a launched child has loaded; returns it with its model's metadata.
    fn ready(&self, launched: Running) -> Result<(Running, ModelMetadata)> {
        let ctx = &self.ctx;
        let fail = |message: String| load_error(ctx, self.bridge, message);
        let Running {
            mut child,
            mut socket,
        } = launched;
        let hello = wire::read_frame(&mut socket).and_then(|frame| match frame {
            Some(body) => Decoder::new(&body).reply(&ctx.model, self.bridge.as_str()),
            None => Err(std::io::ErrorKind::UnexpectedEof.into()),
        });
        match hello {
            Ok(Reply::Ready(metadata)) => Ok((Running { child, socket }, metadata)),
            Ok(Reply::Failed(error)) => {
                let _ = child.wait();
                Err(error)
            }
            Ok(Reply::Outputs { .. }) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(fail(
                    "the worker process answered before it was asked".into(),
                ))
            }
            Err(e) => {
                let _ = child.kill();
                let status = child.wait();
                // A signal is the model's load crashing. An exit code is the model's code
                // exiting (os._exit, sys.exit in a native extension) or, when the worker
                // is another program than this one, maybe no torchbridge worker at all.
                let this_binary = self.program == Path::new("/proc/self/exe");
                let hint = match &status {
                    Ok(s) if s.signal().is_some() => "the model's load crashed it".to_string(),
                    _ if this_binary => "the model's code ended it while loading (os._exit, \
                                         sys.exit, or a native library exiting)"
                        .to_string(),
                    _ => format!(
                        "the model's code ended it while loading, or `{}` is no torchbridge \
                         binary with this bridge (`worker::set_program` or TORCHBRIDGE_WORKER \
                         names it)",
                        self.program.display()
                    ),
                };
                let status = status.map_or_else(|e| e.to_string(), describe);
                Err(fail(format!(
                    "its worker process ended before the model loaded ({status}; {e}): {hint}"
                )))
            }
        }
    }
}

/// "exit code 3", "signal 11 (SIGSEGV)".
fn describe(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit code {code}");
    }
    match status.signal() {
        Some(signal) => {
            let name = match signal {
                4 => " (SIGILL)",
                6 => " (SIGABRT)",
                7 => " (SIGBUS)",
                8 => " (SIGFPE)",
                9 => " (SIGKILL)",
                11 => " (SIGSEGV)",
                15 => " (SIGTERM)",
                _ => "",
            };
            format!("signal {signal}{name}")
        }
        None => status.to_string(),
    }
}

fn load_error(ctx: &LoadContext, bridge: BackendKind, message: String) -> Error {
    Error::Load {
        model: ctx.model.clone(),
        bridge: bridge.as_str(),
        message,
    }
}

fn inference_error(model: &str, message: String) -> Error {
    Error::Inference {
        model: model.to_string(),
        message,
    }
}
