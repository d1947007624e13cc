//! `serve`'s request-tracing flags (Triton's `--trace-*`), checked before the server
//! starts so that a trace file that cannot be written is reported then, not at exit.

use std::path::PathBuf;

use anyhow::{Result, bail};
use torchbridge_server::TraceSettings;

/// Request tracing (Triton's trace extension): what is traced at startup. Clients may
/// change all of it but the file (tritonclient's `update_trace_settings`).
#[derive(Debug, clap::Args)]
pub struct TraceArgs {
    /// Write request traces (Triton's JSON trace format) here: every
    /// --trace-log-frequency traces into PATH.0, PATH.1, …, or with 0 all of them into
    /// PATH when the server stops. Without it, tracing cannot be turned on.
    #[arg(long, env = "TORCHBRIDGE_TRACE_FILE", value_name = "PATH")]
    trace_file: Option<PathBuf>,
    /// OFF, or TIMESTAMPS: trace when each sampled request arrived, was queued, its
    /// model call started, crossed into the engine and back, ended, and was answered.
    #[arg(long, env = "TORCHBRIDGE_TRACE_LEVEL", default_value = "OFF",
          value_parser = ["OFF", "TIMESTAMPS"])]
    trace_level: String,
    /// Trace one request in this many.
    #[arg(long, env = "TORCHBRIDGE_TRACE_RATE", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    trace_rate: u64,
    /// Trace this many requests, then stop; -1: no limit.
    #[arg(long, env = "TORCHBRIDGE_TRACE_COUNT", default_value_t = -1,
          value_parser = clap::value_parser!(i64).range(-1..), allow_negative_numbers = true)]
    trace_count: i64,
    /// Write the traces every this many; 0: all at once when the server stops (they are
    /// kept in memory until then).
    #[arg(long, env = "TORCHBRIDGE_TRACE_LOG_FREQUENCY", default_value_t = 0)]
    trace_log_frequency: u64,
}

impl TraceArgs {
    /// The startup settings; refuses a trace file whose directory does not exist, and
    /// tracing settings other than the defaults without a trace file (a setting at its
    /// default is fine: a deployment may spell every one out).
    pub fn settings(&self) -> Result<TraceSettings> {
        let file = match &self.trace_file {
            None => {
                let set = [
                    ("--trace-level", self.trace_level != "OFF"),
                    ("--trace-rate", self.trace_rate != 1000),
                    ("--trace-count", self.trace_count != -1),
                    ("--trace-log-frequency", self.trace_log_frequency != 0),
                ];
                if let Some((flag, _)) = set.iter().find(|(_, set)| *set) {
                    bail!("{flag} needs --trace-file (where the traces go)");
                }
                String::new()
            }
            Some(path) => {
                let dir = match path.parent() {
                    Some(dir) if !dir.as_os_str().is_empty() => dir,
                    _ => std::path::Path::new("."),
                };
                if !dir.is_dir() {
                    bail!(
                        "--trace-file {}: the directory {} does not exist",
                        path.display(),
                        dir.display()
                    );
                }
                path.display().to_string()
            }
        };
        Ok(TraceSettings {
            file,
            timestamps: self.trace_level == "TIMESTAMPS",
            rate: self.trace_rate,
            count: self.trace_count,
            log_frequency: self.trace_log_frequency,
        })
    }
}
