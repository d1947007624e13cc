//! Checking a virtualenv against the embedded Python before it is used.

use std::path::{Path, PathBuf};

/// A virtualenv (or a plain prefix with site-packages) fit for the embedded Python.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Venv {
    pub(crate) path: PathBuf,
    pub(crate) site_packages: PathBuf,
    /// `bin/python` of a real virtualenv (one with a pyvenv.cfg): the interpreter is
    /// started as this program, so CPython sets itself up exactly as that venv's python.
    pub(crate) python: Option<PathBuf>,
}

impl Venv {
    /// Checks that `path` is a virtualenv (or prefix) for Python `embedded` (major,
    /// minor): its pyvenv.cfg names that version, and it has `lib/pythonX.Y/site-packages`.
    pub(crate) fn check(path: &Path, embedded: (u8, u8)) -> Result<Venv, String> {
        let path = path
            .canonicalize()
            .map_err(|e| format!("the virtualenv {} cannot be opened: {e}", path.display()))?;
        let (major, minor) = embedded;
        let cfg = std::fs::read_to_string(path.join("pyvenv.cfg")).ok();
        if let Some(made_for) = cfg.as_deref().and_then(venv_python_version) {
            let mut parts = made_for.split('.').map(|p| p.parse::<u8>().ok());
            if (parts.next().flatten(), parts.next().flatten()) != (Some(major), Some(minor)) {
                return Err(format!(
                    "the virtualenv {} was made for Python {made_for} (its pyvenv.cfg says so), \
                     but this torchbridge embeds Python {major}.{minor}; make the virtualenv \
                     with python{major}.{minor}, or rebuild torchbridge with PYO3_PYTHON \
                     pointing at that virtualenv's python",
                    path.display()
                ));
            }
        }
        let site_packages = path.join(format!("lib/python{major}.{minor}/site-packages"));
        if !site_packages.is_dir() {
            let what = if cfg.is_some() {
                "the virtualenv"
            } else {
                "the directory (it has no pyvenv.cfg, so it is not a virtualenv)"
            };
            return Err(format!(
                "{what} {} has no lib/python{major}.{minor}/site-packages",
                path.display()
            ));
        }
        let python = Some(path.join("bin/python")).filter(|p| cfg.is_some() && p.exists());
        Ok(Venv {
            path,
            site_packages,
            python,
        })
    }
}

/// The Python version a pyvenv.cfg names: `version` (venv) or `version_info`
/// (virtualenv, uv).
fn venv_python_version(cfg: &str) -> Option<&str> {
    cfg_value(cfg, "version").or_else(|| cfg_value(cfg, "version_info"))
}

fn cfg_value<'a>(cfg: &'a str, key: &str) -> Option<&'a str> {
    cfg.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make_venv(cfg: Option<&str>, lib: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        if let Some(cfg) = cfg {
            std::fs::write(dir.path().join("pyvenv.cfg"), cfg).unwrap();
        }
        std::fs::create_dir_all(dir.path().join(lib)).unwrap();
        dir
    }

    #[test]
    fn a_venv_for_another_python_is_refused_naming_both_versions_and_the_path() {
        let dir = make_venv(
            Some("home = /usr/bin\nversion = 3.10.12\n"),
            "lib/python3.10/site-packages",
        );
        let err = Venv::check(dir.path(), (3, 11)).unwrap_err();
        let path = dir.path().canonicalize().unwrap();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(
            err.contains("Python 3.10.12") && err.contains("embeds Python 3.11"),
            "{err}"
        );
    }

    #[test]
    fn a_matching_venv_is_found_with_its_site_packages_and_python() {
        let cfg =
            "home = /x/bin\ninclude-system-site-packages = false\nversion_info = 3.11.7.final.0\n";
        let dir = make_venv(Some(cfg), "lib/python3.11/site-packages");
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        std::fs::write(dir.path().join("bin/python"), "").unwrap();
        let venv = Venv::check(dir.path(), (3, 11)).unwrap();
        assert!(venv.site_packages.ends_with("lib/python3.11/site-packages"));
        assert!(venv.python.unwrap().ends_with("bin/python"));
        // Python 3.1 is not 3.11.
        let dir = make_venv(Some("version = 3.1.5\n"), "lib/python3.11/site-packages");
        assert!(Venv::check(dir.path(), (3, 11)).is_err());
    }

    #[test]
    fn a_prefix_without_pyvenv_cfg_is_used_for_its_site_packages_only() {
        let dir = make_venv(None, "lib/python3.11/site-packages");
        assert_eq!(Venv::check(dir.path(), (3, 11)).unwrap().python, None);
        let dir = make_venv(None, "lib");
        let err = Venv::check(dir.path(), (3, 11)).unwrap_err();
        assert!(err.contains("no pyvenv.cfg") && err.contains("lib/python3.11/site-packages"));
        let err = Venv::check(&dir.path().join("missing"), (3, 11)).unwrap_err();
        assert!(err.contains("cannot be opened"), "{err}");
    }
}
