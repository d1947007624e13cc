//! Trace settings as Triton names them (`trace_level`, `trace_rate`, `trace_count`,
//! `log_frequency`, `trace_file`, `trace_mode`), each answered as a string or a list of
//! strings, and a client's changes to them checked one by one.

use torchbridge_core::{Error, Result};

/// What is traced, for the whole server or one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceSettings {
    /// Where traces are written; empty: nowhere, so tracing cannot be turned on.
    pub file: String,
    /// Whether requests' timestamps are traced (Triton's level `TIMESTAMPS`).
    pub timestamps: bool,
    /// One request in this many is traced (≥ 1).
    pub rate: u64,
    /// How many more requests are traced; -1: no limit.
    pub count: i64,
    /// Traces are written in files of this many (`file.0`, `file.1`, …); 0: all into
    /// `file` when the server stops.
    pub log_frequency: u64,
}

impl Default for TraceSettings {
    fn default() -> Self {
        TraceSettings {
            file: String::new(),
            timestamps: false,
            rate: 1000,
            count: -1,
            log_frequency: 0,
        }
    }
}

/// One setting a client changes; `None`: back to what it follows (a model's setting to
/// the server's, the server's to its value at startup).
pub type Change = (String, Option<Vec<String>>);

const KEYS: &str = "trace_level, trace_rate, trace_count, log_frequency, trace_file, trace_mode";

impl TraceSettings {
    /// Every setting, as the extension answers it.
    pub fn answer(&self) -> Vec<(&'static str, Vec<String>)> {
        let level = if self.timestamps { "TIMESTAMPS" } else { "OFF" };
        vec![
            ("trace_file", vec![self.file.clone()]),
            ("trace_level", vec![level.to_string()]),
            ("trace_rate", vec![self.rate.to_string()]),
            ("trace_count", vec![self.count.to_string()]),
            ("log_frequency", vec![self.log_frequency.to_string()]),
            ("trace_mode", vec!["triton".to_string()]),
        ]
    }

    /// Sets `key` from a client's `values`, or from `fallback` when `values` is `None`.
    pub fn set(&mut self, key: &str, values: Option<&[String]>, fallback: &Self) -> Result<()> {
        let Some(values) = values else {
            match key {
                "trace_level" => self.timestamps = fallback.timestamps,
                "trace_rate" => self.rate = fallback.rate,
                "trace_count" => self.count = fallback.count,
                "log_frequency" => self.log_frequency = fallback.log_frequency,
                "trace_file" | "trace_mode" => {}
                _ => return Err(unknown(key)),
            }
            return Ok(());
        };
        let one = || match values {
            [value] => Ok(value.trim()),
            _ => Err(invalid(format!(
                "trace setting `{key}` takes one value, got {values:?}"
            ))),
        };
        match key {
            "trace_level" => self.timestamps = level(values)?,
            "trace_rate" => match one()?.parse::<u64>() {
                Ok(rate) if rate >= 1 => self.rate = rate,
                _ => return Err(whole(key, "≥ 1", values)),
            },
            "trace_count" => match one()?.parse::<i64>() {
                Ok(count) if count >= -1 => self.count = count,
                _ => return Err(whole(key, "≥ -1 (-1: no limit)", values)),
            },
            "log_frequency" => match one()?.parse::<u64>() {
                Ok(frequency) => self.log_frequency = frequency,
                _ => return Err(whole(key, "≥ 0", values)),
            },
            "trace_file" if one()? == self.file => {}
            "trace_file" => {
                return Err(invalid(
                    "trace setting `trace_file` cannot be changed by a client (it would let \
                     any client write files on the server): start the server with \
                     --trace-file (Python: `Server(..., trace_file=...)`)"
                        .into(),
                ));
            }
            "trace_mode" if one()? == "triton" => {}
            "trace_mode" => {
                return Err(invalid(format!(
                    "trace setting `trace_mode` can only be \"triton\", got {values:?}"
                )));
            }
            _ => return Err(unknown(key)),
        }
        Ok(())
    }

    /// Refuses settings that trace while there is no file to write to.
    pub fn check(&self) -> Result<()> {
        if self.timestamps && self.file.is_empty() {
            return Err(invalid(
                "trace_level TIMESTAMPS needs a trace file: start the server with \
                 --trace-file PATH (Python: `Server(..., trace_file=PATH)`)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// `["TIMESTAMPS"]` traces, `["OFF"]` does not; Triton's `TENSORS` is not implemented.
fn level(values: &[String]) -> Result<bool> {
    let mut timestamps = false;
    let mut off = false;
    for value in values {
        match value.trim().to_ascii_uppercase().as_str() {
            "TIMESTAMPS" => timestamps = true,
            "OFF" => off = true,
            "TENSORS" => {
                return Err(invalid(
                    "trace level TENSORS is not supported: torchbridge traces TIMESTAMPS only"
                        .into(),
                ));
            }
            _ => {
                return Err(invalid(format!(
                    "trace setting `trace_level` must be OFF or TIMESTAMPS, got {value:?}"
                )));
            }
        }
    }
    match (timestamps, off) {
        (true, true) => Err(invalid(
            "trace setting `trace_level` cannot be both OFF and TIMESTAMPS".into(),
        )),
        (false, false) => Err(invalid(
            "trace setting `trace_level` needs a level: OFF or TIMESTAMPS".into(),
        )),
        (timestamps, _) => Ok(timestamps),
    }
}

fn whole(key: &str, range: &str, values: &[String]) -> Error {
    invalid(format!(
        "trace setting `{key}` must be a whole number {range}, got {values:?}"
    ))
}

fn unknown(key: &str) -> Error {
    invalid(format!("unknown trace setting `{key}` (known: {KEYS})"))
}

fn invalid(message: String) -> Error {
    Error::InvalidInput(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(key: &str, values: &[&str]) -> Result<TraceSettings> {
        let mut s = TraceSettings {
            file: "/tmp/t.json".into(),
            ..TraceSettings::default()
        };
        let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        s.set(key, Some(&values), &TraceSettings::default())?;
        Ok(s)
    }

    fn message(e: Error) -> String {
        e.to_string()
    }

    #[test]
    fn values_are_read_as_triton_writes_them() {
        assert!(set("trace_level", &["TIMESTAMPS"]).unwrap().timestamps);
        assert!(!set("trace_level", &["OFF"]).unwrap().timestamps);
        assert_eq!(set("trace_rate", &["1"]).unwrap().rate, 1);
        assert_eq!(set("trace_count", &["-1"]).unwrap().count, -1);
        assert_eq!(set("trace_count", &["5"]).unwrap().count, 5);
        assert_eq!(set("log_frequency", &["0"]).unwrap().log_frequency, 0);
        assert!(set("trace_file", &["/tmp/t.json"]).is_ok());
        assert!(set("trace_mode", &["triton"]).is_ok());
    }

    #[test]
    fn a_value_that_cannot_be_set_is_refused_naming_the_setting() {
        for (key, values, expected) in [
            (
                "trace_rate",
                &["0"][..],
                "`trace_rate` must be a whole number ≥ 1",
            ),
            (
                "trace_rate",
                &["many"],
                "`trace_rate` must be a whole number ≥ 1",
            ),
            (
                "trace_count",
                &["-2"],
                "`trace_count` must be a whole number ≥ -1",
            ),
            (
                "log_frequency",
                &["-1"],
                "`log_frequency` must be a whole number ≥ 0",
            ),
            ("trace_rate", &["1", "2"], "`trace_rate` takes one value"),
            ("trace_level", &["TENSORS"], "TENSORS is not supported"),
            (
                "trace_level",
                &["LOUD"],
                "must be OFF or TIMESTAMPS, got \"LOUD\"",
            ),
            (
                "trace_level",
                &["OFF", "TIMESTAMPS"],
                "both OFF and TIMESTAMPS",
            ),
            ("trace_level", &[], "needs a level"),
            (
                "trace_file",
                &["/etc/passwd"],
                "`trace_file` cannot be changed by a client",
            ),
            ("trace_mode", &["opentelemetry"], "can only be \"triton\""),
            (
                "trace_colour",
                &["blue"],
                "unknown trace setting `trace_colour`",
            ),
        ] {
            let got = message(set(key, values).unwrap_err());
            assert!(got.contains(expected), "{key} {values:?}: {got}");
        }
    }

    #[test]
    fn a_cleared_setting_takes_the_value_it_follows() {
        let fallback = TraceSettings {
            rate: 7,
            ..TraceSettings::default()
        };
        let mut s = set("trace_rate", &["1"]).unwrap();
        s.set("trace_rate", None, &fallback).unwrap();
        assert_eq!(s.rate, 7);
    }

    #[test]
    fn tracing_needs_a_file() {
        let s = TraceSettings {
            timestamps: true,
            ..TraceSettings::default()
        };
        assert!(message(s.check().unwrap_err()).contains("--trace-file"));
    }
}
