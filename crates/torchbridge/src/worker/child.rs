//! `torchbridge worker`: the child side of `isolation = "process"`. Loads one instance
//! as the server would have, says so, then runs each batch it reads until its input
//! ends.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;

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
    crate::bridges::with_tokenizer(&ctx, backend)
}
