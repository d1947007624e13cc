//! Model directories written from a load request's files (Triton's `file:` load
//! parameters): a client deploys a model to a server whose file system it cannot reach.
//! Each load writes a directory of its own under the system's temporary directory, named
//! `<n>/<model>/` so that the model directory bears the model's name; it lasts while that
//! load's model may serve (until the model is loaded again, or the registry is dropped).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::{Error, Result};

/// Upload directories made by this process, so that two registries never share one.
static MADE: AtomicU64 = AtomicU64::new(0);

/// The upload directories of one registry, by model.
#[derive(Debug, Default)]
pub(crate) struct Uploads {
    dirs: Mutex<BTreeMap<String, PathBuf>>,
}

impl Uploads {
    /// Writes `files` (paths relative to the model directory) and `config_toml` as a new
    /// directory for model `name`; returns the model directory. Nothing is kept on error.
    pub(crate) fn write(
        &self,
        name: &str,
        files: &[(String, Vec<u8>)],
        config_toml: &str,
    ) -> Result<PathBuf> {
        let top = fresh_directory()?;
        let dir = top.join(name);
        let written = (|| {
            for (relative, content) in files {
                let path = dir.join(checked(relative)?);
                // The server's disk, not the request, is at fault.
                let fail = |e: std::io::Error| {
                    Error::Internal(format!(
                        "cannot write the uploaded file {}: {e}",
                        path.display()
                    ))
                };
                std::fs::create_dir_all(path.parent().unwrap_or(&dir)).map_err(fail)?;
                std::fs::write(&path, content).map_err(fail)?;
            }
            let config = dir.join("config.toml");
            std::fs::create_dir_all(&dir)
                .and_then(|()| std::fs::write(&config, config_toml))
                .map_err(|e| Error::Internal(format!("cannot write {}: {e}", config.display())))
        })();
        match written {
            Ok(()) => Ok(dir),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&top);
                Err(e)
            }
        }
    }

    /// Where `name` was last loaded from, if from an upload.
    pub(crate) fn dir(&self, name: &str) -> Option<PathBuf> {
        self.dirs.lock().unwrap().get(name).cloned()
    }

    /// Records that `name` now serves from `dir` (`None`: from the repository), and
    /// removes the upload it served from before.
    pub(crate) fn serve_from(&self, name: &str, dir: Option<PathBuf>) {
        let before = match dir {
            Some(dir) => self
                .dirs
                .lock()
                .unwrap()
                .insert(name.to_string(), dir.clone())
                .filter(|b| *b != dir),
            None => self.dirs.lock().unwrap().remove(name),
        };
        if let Some(before) = before {
            discard(&before);
        }
    }
}

impl Drop for Uploads {
    fn drop(&mut self) {
        for dir in self.dirs.get_mut().unwrap().values() {
            discard(dir);
        }
    }
}

/// A new directory under the system's temporary directory that only this user may
/// enter. Made with `mkdir` itself, so a directory (or a link) already there under the
/// name, left by an earlier process with the same pid or planted by another user, is
/// never used: another name is tried. The name has a random part all the same.
fn fresh_directory() -> Result<PathBuf> {
    use std::hash::{BuildHasher, Hasher};
    use std::os::unix::fs::DirBuilderExt;
    let mut last = None;
    for _ in 0..16 {
        let n = MADE.fetch_add(1, Relaxed);
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let top = std::env::temp_dir().join(format!(
            "torchbridge-{}-upload-{n}-{random:016x}",
            std::process::id()
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&top) {
            Ok(()) => return Ok(top),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(top),
            Err(e) => {
                return Err(Error::Internal(format!(
                    "cannot make a directory for uploaded files in {}: {e}",
                    std::env::temp_dir().display()
                )));
            }
        }
    }
    Err(Error::Internal(format!(
        "cannot make a directory for uploaded files: {} and others already exist",
        last.map(|p| p.display().to_string()).unwrap_or_default()
    )))
}

/// Removes an upload's model directory and the directory made for it.
pub(crate) fn discard(model_dir: &Path) {
    let _ = std::fs::remove_dir_all(model_dir.parent().unwrap_or(model_dir));
}

/// `relative` as a path inside the model directory: plain names only (no `..`, no root,
/// nothing hidden), and not `config.toml`, which the load's `config` writes.
fn checked(relative: &str) -> Result<PathBuf> {
    let path = Path::new(relative);
    let plain = path.components().all(|c| match c {
        Component::Normal(part) => !part.to_string_lossy().starts_with('.'),
        _ => false,
    });
    if relative.is_empty() || !plain {
        return Err(Error::InvalidInput(format!(
            "file `{relative}`: an uploaded file is named by a path inside the model directory \
             (such as `1/model.onnx`), without `..`, a leading `/` or hidden names"
        )));
    }
    if path == Path::new("config.toml") {
        return Err(Error::InvalidInput(
            "file `config.toml`: the model's config comes from the load's `config` parameter"
                .into(),
        ));
    }
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_land_in_a_directory_named_for_the_model_and_go_when_replaced() {
        let uploads = Uploads::default();
        let files = vec![("1/model.onnx".to_string(), b"onnx".to_vec())];
        let dir = uploads.write("m", &files, "backend = \"onnx\"").unwrap();
        assert_eq!(dir.file_name().unwrap(), "m");
        assert_eq!(std::fs::read(dir.join("1/model.onnx")).unwrap(), b"onnx");
        assert_eq!(
            std::fs::read_to_string(dir.join("config.toml")).unwrap(),
            "backend = \"onnx\""
        );
        uploads.serve_from("m", Some(dir.clone()));
        assert_eq!(uploads.dir("m"), Some(dir.clone()));

        // Only the server's user may enter it (an upload may be code).
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);

        let again = uploads.write("m", &files, "backend = \"onnx\"").unwrap();
        assert_ne!(again, dir);
        uploads.serve_from("m", Some(again.clone()));
        assert!(
            !dir.exists() && again.exists(),
            "the replaced upload is removed"
        );
        uploads.serve_from("m", None);
        assert!(!again.exists() && uploads.dir("m").is_none());
    }

    #[test]
    fn paths_outside_the_model_directory_are_refused() {
        let uploads = Uploads::default();
        for bad in [
            "../x",
            "/etc/passwd",
            "1/../../x",
            ".hidden",
            "",
            "config.toml",
        ] {
            let files = vec![
                ("1/model.onnx".to_string(), vec![]),
                (bad.to_string(), vec![]),
            ];
            let e = uploads.write("m", &files, "").unwrap_err().to_string();
            assert!(e.contains(&format!("file `{bad}`")), "{bad}: {e}");
        }
    }
}
