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
    /// Lines as JSON objects (`--log-format json`), status lines included.
    json: bool,
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
        let lines = tracing_subscriber::fmt::layer().with_ansi(std::io::stderr().is_terminal());
        let lines = match json {
            true => lines.with_writer(std::io::stderr).json().boxed(),
            false => lines.with_writer(|| IndentedStderr).boxed(),
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
            json,
        })
    }

    /// A status line the user should see whatever `--log` filters (where the server
    /// listens, that it stopped): on standard output, `torchbridge: <text>`, or with
    /// `--log-format json` one JSON object like the log's own lines.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub fn status(&self, text: &str) {
        println!("{}", self.status_line("INFO", text));
    }

    /// As [`Logger::status`], for something that went wrong, on standard error.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub fn problem(&self, text: &str) {
        eprintln!("{}", self.status_line("WARN", text));
    }

    /// The error that ends the command, on standard error: `error: <text>`, or a JSON
    /// line with `--log-format json`.
    pub fn fatal(&self, text: &str) {
        match self.json {
            true => eprintln!("{}", self.status_line("ERROR", text)),
            false => eprintln!("error: {text}"),
        }
    }

    fn status_line(&self, level: &str, text: &str) -> String {
        if !self.json {
            return format!("torchbridge: {text}");
        }
        serde_json::json!({
            "timestamp": rfc3339(std::time::SystemTime::now()),
            "level": level,
            "fields": { "message": text },
            "target": "torchbridge",
        })
        .to_string()
    }
}

/// Standard error for text lines, with each line of an event after its first indented:
/// a message holding a newline (a model name or config a client sent, a traceback) then
/// cannot pass for a log line of its own; a carriage return is written `\r`. The
/// formatter writes each event in one call.
struct IndentedStderr;

impl std::io::Write for IndentedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let body = buf.strip_suffix(b"\n").unwrap_or(buf);
        if !body.iter().any(|&b| b == b'\n' || b == b'\r') {
            std::io::stderr().write_all(buf)?;
            return Ok(buf.len());
        }
        let mut out = Vec::with_capacity(buf.len() + 64);
        for &b in body {
            match b {
                b'\n' => out.extend_from_slice(b"\n    "),
                b'\r' => out.extend_from_slice(b"\\r"),
                b => out.push(b),
            }
        }
        out.extend_from_slice(&buf[body.len()..]);
        std::io::stderr().write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// `at` as RFC 3339 in UTC with microseconds, e.g. `2026-12-07T21:37:29.381305Z` (the
/// form the log's JSON lines use).
fn rfc3339(at: std::time::SystemTime) -> String {
    let since = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let (days, secs) = ((since.as_secs() / 86_400) as i64, since.as_secs() % 86_400);
    // The civil date of a day count: years of 365.2425 days in 400-year eras, with the
    // year starting in March so that the leap day ends it.
    let era_day = days + 719_468;
    let era = era_day.div_euclid(146_097);
    let day_of_era = era_day.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        since.subsec_micros()
    )
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

    fn format(&self) -> &'static str {
        if self.json { "json" } else { "default" }
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::rfc3339;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let at = |secs: u64, micros: u64| {
            rfc3339(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros))
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.000005Z");
        assert_eq!(at(1_796_679_449, 381_305), "2026-12-07T21:37:29.381305Z");
        assert_eq!(at(4_107_542_399, 0), "2100-02-28T23:59:59.000000Z");
    }
}
