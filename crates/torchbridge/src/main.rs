//! The `torchbridge` command: run a model once, compare its bridges, serve it.
//!
//! Flags become a validated value per verb before any model loads; each verb lives in
//! its own module under `cli/`.

mod cli;

use clap::{Parser, Subcommand};

/// Run PyTorch models from Rust through the python, torchscript or onnx bridge.
#[derive(Debug, Parser)]
#[command(name = "torchbridge", version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
    /// Log filter, e.g. `info` or `torchbridge=debug`.
    #[arg(long, env = "TORCHBRIDGE_LOG", default_value = "warn", global = true)]
    log: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    Infer(cli::infer::InferArgs),
    Check(cli::check::CheckArgs),
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log))
        .with_writer(std::io::stderr)
        .init();
    let result = match args.command {
        Command::Infer(a) => cli::infer::run(a),
        Command::Check(a) => cli::check::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
