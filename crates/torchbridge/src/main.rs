//! The `torchbridge` command: run a model once, compare its bridges, serve it, measure it.
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
    /// Log lines as text, or as JSON for log collectors.
    #[arg(
        long,
        env = "TORCHBRIDGE_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    Infer(cli::infer::InferArgs),
    Check(cli::check::CheckArgs),
    #[cfg(feature = "server")]
    Serve(cli::serve::ServeArgs),
    #[cfg(feature = "server")]
    Bench(cli::bench::BenchArgs),
    /// Serves one model instance to a torchbridge server over standard input
    /// (`isolation = "process"`); started by the server, not by hand.
    #[command(hide = true)]
    Worker(torchbridge::worker::WorkerArgs),
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let logger =
        cli::logger::Logger::install(&args.log, matches!(args.log_format, LogFormat::Json));
    let result = match args.command {
        Command::Infer(a) => cli::infer::run(a),
        Command::Check(a) => cli::check::run(a),
        #[cfg(feature = "server")]
        Command::Serve(a) => cli::serve::run(a, logger.clone()),
        #[cfg(feature = "server")]
        Command::Bench(a) => cli::bench::run(a),
        Command::Worker(a) => torchbridge::worker::run_worker(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            logger.fatal(&format!("{e:#}"));
            std::process::ExitCode::from(2)
        }
    }
}
