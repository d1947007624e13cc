//! The command's logger, built so that `serve` can hand it to the server and clients can
//! change what it logs while it runs (Triton's logging extension). The `--log` filter
//! stays the base; torchbridge's own targets get the level the settings ask for, and the
//! info/warning/error switches drop whole levels for every target.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use tracing::Level;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// The installed logger.
#[derive(Debug)]
pub struct Logger {
    /// The `--log` filter, under whatever the settings add.
    base: String,
    filter: reload::Handle<EnvFilter, Registry>,
    switches: Arc<Switches>,
    /// What clients see, as last set (at first, what `--log` amounts to).
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    verbose_level: Mutex<u32>,
}

/// Whether each of the three switchable levels is logged.
#[derive(Debug)]
struct Switches {
    info: AtomicBool,
    warnings: AtomicBool,
    errors: AtomicBool,
}

impl Switches {
    fn allow(&self, level: &Level) -> bool {
        match *level {
            Level::INFO => self.info.load(Relaxed),
            Level::WARN => self.warnings.load(Relaxed),
            Level::ERROR => self.errors.load(Relaxed),
            _ => true,
        }
    }
}

impl Logger {
    /// Installs the logger: lines on standard error, as text or JSON, filtered by `filter`
    /// (an `EnvFilter` string such as `warn` or `torchbridge=debug`).
    pub fn install(filter: &str, json: bool) -> Arc<Logger> {
        let base = EnvFilter::new(filter);
        let most = base.max_level_hint().unwrap_or(LevelFilter::TRACE);
        let switches = Arc::new(Switches {
            info: AtomicBool::new(most >= LevelFilter::INFO),
            warnings: AtomicBool::new(most >= LevelFilter::WARN),
            errors: AtomicBool::new(most >= LevelFilter::ERROR),
        });
        let verbose_level = match most {
            LevelFilter::TRACE => 2,
            LevelFilter::DEBUG => 1,
            _ => 0,
        };
        let (filter_layer, handle) = reload::Layer::new(base);
        let allowed = switches.clone();
        // Colours only on a terminal: a log file or collector gets plain text.
        let lines = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal());
        let lines = match json {
            true => lines.json().boxed(),
            false => lines.boxed(),
        };
        tracing_subscriber::registry()
            .with(filter_layer)
            .with(lines.with_filter(filter_fn(move |meta| allowed.allow(meta.level()))))
            .init();
        Arc::new(Logger {
            base: filter.to_string(),
            filter: handle,
            switches,
            verbose_level: Mutex::new(verbose_level),
        })
    }
}

#[cfg(feature = "server")]
impl torchbridge_server::LogLevels for Logger {
    fn get(&self) -> torchbridge_server::LogSettings {
        torchbridge_server::LogSettings {
            info: self.switches.info.load(Relaxed),
            warnings: self.switches.warnings.load(Relaxed),
            errors: self.switches.errors.load(Relaxed),
            verbose_level: *self.verbose_level.lock().unwrap(),
        }
    }

    fn set(&self, s: torchbridge_server::LogSettings) -> Result<(), String> {
        let level = match s.verbose_level {
            2.. => "trace",
            1 => "debug",
            0 if s.info => "info",
            0 if s.warnings => "warn",
            0 if s.errors => "error",
            0 => "off",
        };
        let filter = EnvFilter::try_new(format!("{},torchbridge={level}", self.base))
            .map_err(|e| format!("cannot make the log filter: {e}"))?;
        self.filter
            .reload(filter)
            .map_err(|e| format!("cannot change the log filter: {e}"))?;
        self.switches.info.store(s.info, Relaxed);
        self.switches.warnings.store(s.warnings, Relaxed);
        self.switches.errors.store(s.errors, Relaxed);
        *self.verbose_level.lock().unwrap() = s.verbose_level;
        Ok(())
    }
}
