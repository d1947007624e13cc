//! `torchbridge worker`: the child side of `isolation = "process"`. Loads one instance
//! as the server would have, says so, then runs each batch it reads until its input
//! ends.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use torchbridge_core::{BackendKind, ConfigOverride, Error, ModelDir, Result};

use super::wire::{self, Decoder, Encoder, Reply};

/// Run one instance of a model for a torchbridge server (started by the server for
/// `isolation = "process"`; its standard input is the server's socket).
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// The model's directory (holding config.toml).
    #[arg(long)]
    model_dir: PathBuf,
    /// The model's name, as the server serves it.
    #[arg(long)]
    name: String,
    #[arg(long)]
    version: u64,
    #[arg(long)]
    bridge: BackendKind,
    /// Which instance of the model this is (0-based).
    #[arg(long)]
    instance: usize,
    /// Intra-op threads, as the server shared them out.
    #[arg(long)]
    threads: u32,
    /// The config the model's load request gave, applied to config.toml as the server
    /// applied it.
    #[arg(long)]
    config_override: Option<String>,
}

pub fn run(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    exit_with_the_server();
    let mut socket = UnixStream::from(std::io::stdin().as_fd().try_clone_to_owned()?);
    let mut backend = match load(&args) {
        Ok(backend) => backend,
        Err(e) => {
            wire::write_frame(&mut socket, &Encoder::reply(&Reply::Failed(e)))?;
            return Ok(ExitCode::FAILURE);
        }
    };
    let ready = Reply::Ready(backend.metadata().clone());
    wire::write_frame(&mut socket, &Encoder::reply(&ready))?;
    while let Some(body) = wire::read_frame(&mut socket)? {
        let batch = Decoder::new(&body).batch()?;
        let reply = match backend.infer(batch) {
            Ok(tensors) => Reply::Outputs {
                tensors,
                timing: backend.last_timing(),
            },
            Err(e) => Reply::Failed(e),
        };
        wire::write_frame(&mut socket, &Encoder::reply(&reply))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// How often a worker looks for its server.
const PARENT_POLL: Duration = Duration::from_millis(250);

/// Ends this process once its server has gone (stopped, crashed, killed): a worker busy
/// in a model call (a hung one, a long load) never reads the socket's end, and would
/// run on, orphaned, for as long as the call does. The server is the parent; when it
/// exits the worker is handed to another process, so the parent's pid changes.
fn exit_with_the_server() {
    // SAFETY: getppid has no preconditions and cannot fail.
    let server = unsafe { libc::getppid() };
    let watch = move || {
        loop {
            std::thread::sleep(PARENT_POLL);
            // SAFETY: as above.
            if unsafe { libc::getppid() } != server {
                // Not exit(): that runs the model's atexit hooks and destructors,
                // which may be what is hung.
                // SAFETY: _exit ends the process at once, which is the intent.
                unsafe { libc::_exit(1) };
            }
        }
    };
    let _ = std::thread::Builder::new()
        .name("server-watch".into())
        .spawn(watch);
}

fn load(args: &WorkerArgs) -> Result<Box<dyn torchbridge_core::Backend>> {
    let config_override = match &args.config_override {
        Some(text) => Some(ConfigOverride::parse(text).map_err(Error::InvalidInput)?),
        None => None,
    };
    let dir = ModelDir::open_with(
        &args.model_dir,
        Some(args.version),
        config_override.as_ref(),
    )?;
    let mut ctx = crate::load_context(&dir, args.bridge)?;
    ctx.model.clone_from(&args.name);
    ctx.instance = args.instance;
    ctx.config.threads = args.threads;
    let backend = crate::bridges::load_backend(&ctx, args.bridge)?;
    let mut backend = crate::bridges::with_tokenizer(&ctx, backend)?;
    crate::warm_up(&ctx, backend.as_mut(), args.bridge)?;
    Ok(backend)
}
