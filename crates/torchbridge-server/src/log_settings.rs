//! Triton's logging extension (`GET`/`POST v2/logging`, gRPC `LogSettings`): a client reads
//! and changes which levels the server logs while it runs — turn on verbose logging to
//! look at a problem, turn it off again, no restart. The server does not own the logger
//! (the `torchbridge` binary installs it); it is handed a [`LogLevels`] that can change it.

use std::fmt;

use torchbridge_core::{Error, Result};

/// Which levels are logged, in Triton's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSettings {
    pub info: bool,
    pub warnings: bool,
    pub errors: bool,
    /// 0: no verbose messages; 1: debug; 2 and above: trace.
    pub verbose_level: u32,
}

/// The server's logger, as far as clients may change it.
pub trait LogLevels: Send + Sync + fmt::Debug {
    fn get(&self) -> LogSettings;
    /// Applies `settings`; the error says why it could not.
    fn set(&self, settings: LogSettings) -> std::result::Result<(), String>;
    /// How lines are written (`log_format`), fixed at startup: Triton's `"default"`, or
    /// `"json"`.
    fn format(&self) -> &'static str {
        "default"
    }
}

/// One setting's value as a client sent it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SettingValue {
    Bool(bool),
    Uint(u32),
    Text(String),
}

impl fmt::Display for SettingValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingValue::Bool(b) => write!(f, "{b}"),
            SettingValue::Uint(n) => write!(f, "{n}"),
            SettingValue::Text(t) => write!(f, "{t:?}"),
        }
    }
}

const KEYS: &str = "log_file, log_info, log_warnings, log_errors, log_verbose_level, log_format";

/// Applies `changes` (none: only reads) and returns every setting as it now stands. A
/// change that cannot be made fails the whole request, naming the setting.
pub(crate) fn update(
    levels: Option<&dyn LogLevels>,
    changes: Vec<(String, SettingValue)>,
) -> Result<Vec<(&'static str, SettingValue)>> {
    let levels = levels.ok_or_else(|| {
        Error::InvalidInput(
            "this server's log settings cannot be read or changed: it was not started by \
             `torchbridge serve`"
                .into(),
        )
    })?;
    let mut s = levels.get();
    let invalid = |message: String| Error::InvalidInput(message);
    for (key, value) in &changes {
        let wrong =
            |kind: &str| invalid(format!("log setting `{key}` must be {kind}, got {value}"));
        match (key.as_str(), value) {
            ("log_info", SettingValue::Bool(b)) => s.info = *b,
            ("log_warnings", SettingValue::Bool(b)) => s.warnings = *b,
            ("log_errors", SettingValue::Bool(b)) => s.errors = *b,
            ("log_verbose_level", SettingValue::Uint(n)) => s.verbose_level = *n,
            ("log_info" | "log_warnings" | "log_errors", _) => return Err(wrong("true or false")),
            ("log_verbose_level", _) => return Err(wrong("a whole number ≥ 0")),
            ("log_file", SettingValue::Text(f)) if f.is_empty() => {}
            ("log_file", _) => {
                return Err(invalid(
                    "log setting `log_file` can only be \"\": torchbridge logs to standard \
                     error (redirect it, or collect it with --log-format json)"
                        .into(),
                ));
            }
            ("log_format", SettingValue::Text(f)) if f == levels.format() => {}
            ("log_format", _) => {
                return Err(invalid(format!(
                    "log setting `log_format` can only be {:?} while the server runs (the \
                     format is chosen at startup: --log-format text or json)",
                    levels.format()
                )));
            }
            _ => {
                return Err(invalid(format!(
                    "unknown log setting `{key}`; there are {KEYS}"
                )));
            }
        }
    }
    if !changes.is_empty() {
        levels.set(s).map_err(invalid)?;
        tracing::warn!(
            log_info = s.info,
            log_warning = s.warnings,
            log_error = s.errors,
            log_verbose_level = s.verbose_level,
            "log settings changed by a client"
        );
    }
    Ok(vec![
        ("log_file", SettingValue::Text(String::new())),
        ("log_info", SettingValue::Bool(s.info)),
        ("log_warnings", SettingValue::Bool(s.warnings)),
        ("log_errors", SettingValue::Bool(s.errors)),
        ("log_verbose_level", SettingValue::Uint(s.verbose_level)),
        ("log_format", SettingValue::Text(levels.format().into())),
    ])
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Debug)]
    struct Recorded(Mutex<LogSettings>);

    impl LogLevels for Recorded {
        fn get(&self) -> LogSettings {
            *self.0.lock().unwrap()
        }
        fn set(&self, settings: LogSettings) -> std::result::Result<(), String> {
            *self.0.lock().unwrap() = settings;
            Ok(())
        }
    }

    fn levels() -> Recorded {
        Recorded(Mutex::new(LogSettings {
            info: false,
            warnings: true,
            errors: true,
            verbose_level: 0,
        }))
    }

    #[test]
    fn only_the_settings_named_change_and_all_are_answered() {
        let l = levels();
        let all = update(
            Some(&l),
            vec![
                ("log_verbose_level".into(), SettingValue::Uint(1)),
                ("log_info".into(), SettingValue::Bool(true)),
                ("log_file".into(), SettingValue::Text(String::new())),
            ],
        )
        .unwrap();
        assert_eq!(
            l.get(),
            LogSettings {
                info: true,
                warnings: true,
                errors: true,
                verbose_level: 1
            }
        );
        let keys: Vec<_> = all.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys.join(", "), KEYS);
        assert_eq!(all[4].1, SettingValue::Uint(1));
    }

    #[test]
    fn a_setting_that_cannot_be_made_fails_the_request_naming_it() {
        let l = levels();
        for (key, value, says) in [
            (
                "log_info",
                SettingValue::Uint(1),
                "`log_info` must be true or false, got 1",
            ),
            (
                "log_verbose_level",
                SettingValue::Bool(true),
                "`log_verbose_level` must be a whole number",
            ),
            (
                "log_file",
                SettingValue::Text("/tmp/x".into()),
                "`log_file` can only be \"\"",
            ),
            (
                "log_format",
                SettingValue::Text("ISO8601".into()),
                "`log_format` can only be",
            ),
            (
                "log_level",
                SettingValue::Uint(1),
                "unknown log setting `log_level`",
            ),
        ] {
            let changes = vec![
                ("log_errors".into(), SettingValue::Bool(false)),
                (key.into(), value),
            ];
            let e = update(Some(&l), changes).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
            assert!(
                l.get().errors,
                "nothing changes when one setting is refused"
            );
        }
        let e = update(None, vec![]).unwrap_err().to_string();
        assert!(e.contains("cannot be read or changed"), "{e}");
    }
}
