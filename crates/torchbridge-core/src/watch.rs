//! Following a model repository as it changes on disk (`serve --poll-repository-secs`,
//! Triton's poll mode): a model directory that appears is loaded, one whose files change
//! is reloaded (its loaded versions serve on if that fails, or while its config.toml is
//! missing), one whose directory disappears is removed. A change is seen through each file's size and modification time, so a
//! repository of large weights costs one `stat` a file per poll.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::{Error, Registry};

/// Deepest directory level looked into below a model directory (symlink loops end here).
const MAX_DEPTH: usize = 8;

/// What one file looked like: its path in the model directory, size, mtime and
/// permission bits (a `chmod` that makes a file readable is a change: the model that
/// failed on it is tried again).
pub(crate) type FileStamp = (PathBuf, u64, Option<SystemTime>, u32);

/// The repository as last seen.
#[derive(Debug, Default)]
pub struct RepositoryWatch {
    seen: BTreeMap<String, Vec<FileStamp>>,
    /// Why the repository itself could not be read at the last poll, if it could not.
    unreadable: Option<String>,
}

/// What a poll did to one model.
#[derive(Debug)]
pub enum Change {
    Loaded(String),
    /// Its files changed and it reloaded; `Err` if that failed (the loaded versions, if
    /// any, still serve).
    Reloaded(String, Result<(), Error>),
    /// New on disk, and it failed to load.
    Failed(String, Error),
    /// Its directory is gone: it no longer serves.
    Removed(String),
    /// The repository cannot be read (moved away, made unreadable): nothing changes
    /// until it can. Reported once, with why.
    Unreadable(String),
    /// The repository can be read again.
    Readable,
}

impl RepositoryWatch {
    /// Takes the repository as it is now: later polls act on what changes after this.
    pub fn new(registry: &Registry) -> Self {
        registry.set_followed();
        let mut watch = RepositoryWatch::default();
        for name in registry.scan().unwrap_or_default() {
            let stamps = stamps(&registry.root().join(&name), MAX_DEPTH);
            watch.seen.insert(name, stamps);
        }
        watch
    }

    /// Looks at the repository once and loads, reloads or removes what changed since the
    /// last look. Blocks while models load.
    pub fn poll(&mut self, registry: &Registry) -> Vec<Change> {
        let mut changes = Vec::new();
        let names = match registry.scan() {
            Ok(names) => {
                if self.unreadable.take().is_some() {
                    changes.push(Change::Readable);
                }
                names
            }
            Err(e) => {
                let why = e.to_string();
                if self.unreadable.as_ref() == Some(&why) {
                    return vec![];
                }
                self.unreadable = Some(why.clone());
                return vec![Change::Unreadable(why)];
            }
        };
        // Gone means its directory is gone. A directory whose config.toml is missing for a
        // moment (a deploy that deletes, then writes) serves on as it was, as a broken
        // config.toml does; the config's return is a change like any other.
        let gone: Vec<String> = self
            .seen
            .keys()
            .filter(|name| !names.contains(name) && !registry.root().join(name).is_dir())
            .cloned()
            .collect();
        for name in gone {
            self.seen.remove(&name);
            registry.remove(&name);
            changes.push(Change::Removed(name));
        }
        for name in names {
            let dir = registry.root().join(&name);
            let now = stamps(&dir, MAX_DEPTH);
            let change = match self.seen.get(&name) {
                Some(before) if *before == now => continue,
                Some(_) => Change::Reloaded(name.clone(), registry.load(&name)),
                None => match registry.load(&name) {
                    Ok(()) => Change::Loaded(name.clone()),
                    Err(e) => Change::Failed(name.clone(), e),
                },
            };
            // Recorded either way: a model that fails is tried again once it changes. If
            // the files changed while it loaded (a rollback: A, then B, then A again,
            // with a version loaded from B), nothing is recorded, so the next poll loads
            // it again.
            // (After a failed reload nothing new serves: the files were tried as they
            // are, and a version still marked waits for the next change.)
            let loaded = matches!(change, Change::Loaded(_) | Change::Reloaded(_, Ok(())));
            let settled = stamps(&dir, MAX_DEPTH) == now
                && !(loaded && registry.changed_while_loading(&name));
            self.seen
                .insert(name, if settled { now } else { Vec::new() });
            changes.push(change);
        }
        changes
    }
}

/// What one version of a model looked like: the files beside its config.toml and those
/// under its version directory.
pub(crate) fn version_stamp(model_root: &Path, version_dir: &Path) -> Vec<FileStamp> {
    let mut stamp = stamps(model_root, 0);
    stamp.extend(
        stamps(version_dir, MAX_DEPTH)
            .into_iter()
            .map(|(path, len, mtime, mode)| (version_dir.join(path), len, mtime, mode)),
    );
    stamp
}

/// Every file and directory under `dir` (following symlinks, `max_depth` directory levels
/// down; at 0, the files in `dir` only), sorted by path.
fn stamps(dir: &Path, max_depth: usize) -> Vec<FileStamp> {
    let mut found = Vec::new();
    let mut pending = vec![(dir.to_path_buf(), 0)];
    while let Some((at, depth)) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&at) else {
            continue;
        };
        for entry in entries.flatten() {
            // Python's bytecode caches (written when a handler is imported: a change
            // that loading itself makes) and hidden files (editors' swap files) are not
            // the model.
            let name = entry.file_name();
            if name == "__pycache__" || name.to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            // A directory counts as a file too (an empty new version directory is a
            // change), where it is looked into at all.
            if meta.is_dir() {
                if depth >= max_depth {
                    continue;
                }
                pending.push((path.clone(), depth + 1));
            }
            let relative = path.strip_prefix(dir).unwrap_or(&path).to_path_buf();
            // A directory by its presence (and mode) only: its mtime moves with ignored
            // entries too.
            let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions());
            match meta.is_dir() {
                true => found.push((relative, 0, None, mode)),
                false => found.push((relative, meta.len(), meta.modified().ok(), mode)),
            }
        }
    }
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::registry::tests::loader;

    fn write_model(root: &Path, name: &str, backend: &str, versions: &[&str]) {
        for v in versions {
            std::fs::create_dir_all(root.join(name).join(v)).unwrap();
        }
        let config = format!("backend = \"{backend}\"");
        std::fs::write(root.join(name).join("config.toml"), config).unwrap();
    }

    fn summary(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                Change::Loaded(n) => format!("loaded {n}"),
                Change::Reloaded(n, Ok(())) => format!("reloaded {n}"),
                Change::Reloaded(n, Err(_)) => format!("reload of {n} failed"),
                Change::Failed(n, _) => format!("{n} failed"),
                Change::Removed(n) => format!("removed {n}"),
                Change::Unreadable(_) => "unreadable".into(),
                Change::Readable => "readable".into(),
            })
            .collect()
    }

    #[test]
    fn new_changed_and_removed_models_are_followed() {
        let repo = tempfile::tempdir().unwrap();
        let root = repo.path();
        write_model(root, "a", "onnx", &["1"]);
        let registry = Registry::new(root, loader());
        registry.load_all().unwrap();
        let mut watch = RepositoryWatch::new(&registry);
        assert!(watch.poll(&registry).is_empty(), "nothing changed");

        write_model(root, "b", "onnx", &["1"]);
        write_model(root, "c", "python", &["1"]);
        assert_eq!(summary(&watch.poll(&registry)), ["loaded b", "c failed"]);
        assert!(
            watch.poll(&registry).is_empty(),
            "a failed model waits for a change"
        );
        // A chmod is a change (a file the server could not read becomes readable).
        use std::os::unix::fs::PermissionsExt;
        let config = root.join("c/config.toml");
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(summary(&watch.poll(&registry)), ["reload of c failed"]);

        // A new version directory (holding a file) is a change: the highest now serves.
        std::fs::create_dir_all(root.join("a/2")).unwrap();
        std::fs::write(root.join("a/2/model.onnx"), b"v2").unwrap();
        assert_eq!(summary(&watch.poll(&registry)), ["reloaded a"]);
        assert_eq!(registry.versions("a"), [2]);

        // A config that breaks: the reload fails and version 2 serves on.
        std::fs::write(root.join("a/config.toml"), "backend = 3").unwrap();
        assert_eq!(summary(&watch.poll(&registry)), ["reload of a failed"]);
        assert_eq!(registry.versions("a"), [2]);

        std::fs::create_dir_all(root.join("b/1/__pycache__")).unwrap();
        std::fs::write(root.join("b/1/.model.py.swp"), b"x").unwrap();
        assert!(
            watch.poll(&registry).is_empty(),
            "bytecode caches and hidden files are not the model"
        );

        // Without its config.toml for a while, b serves on; back, it reloads.
        std::fs::remove_file(root.join("b/config.toml")).unwrap();
        assert!(watch.poll(&registry).is_empty());
        assert!(registry.get("b", None).is_ok());
        std::fs::write(root.join("b/config.toml"), "backend = \"onnx\"\n").unwrap();
        assert_eq!(summary(&watch.poll(&registry)), ["reloaded b"]);

        // The repository moved away for a while: said once, nothing removed.
        let aside = root.with_extension("aside");
        std::fs::rename(root, &aside).unwrap();
        assert_eq!(summary(&watch.poll(&registry)), ["unreadable"]);
        assert!(watch.poll(&registry).is_empty(), "said once");
        std::fs::rename(&aside, root).unwrap();
        assert_eq!(summary(&watch.poll(&registry)), ["readable"]);
        assert!(registry.get("b", None).is_ok());

        std::fs::remove_dir_all(root.join("b")).unwrap();
        assert_eq!(summary(&watch.poll(&registry)), ["removed b"]);
        assert!(matches!(
            registry.get("b", None),
            Err(Error::ModelNotFound(_))
        ));
        assert!(registry.index().iter().all(|e| e.name != "b"));
    }

    #[test]
    fn a_new_version_loads_beside_the_unchanged_ones_and_a_config_change_reloads_all() {
        let repo = tempfile::tempdir().unwrap();
        let root = repo.path();
        write_model(root, "m", "onnx", &["1", "2"]);
        let policy = |latest: u32| {
            let config = format!("backend = \"onnx\"\nversion_policy = {{ latest = {latest} }}");
            std::fs::write(root.join("m/config.toml"), config).unwrap();
        };
        policy(2);
        let registry = Registry::new(root, loader());
        registry.load_all().unwrap();
        let mut watch = RepositoryWatch::new(&registry);
        let two = registry.get("m", Some(2)).unwrap();

        std::fs::create_dir_all(root.join("m/3")).unwrap();
        assert_eq!(summary(&watch.poll(&registry)), ["reloaded m"]);
        assert_eq!(registry.versions("m"), [2, 3]);
        let kept = registry.get("m", Some(2)).unwrap();
        assert!(
            Arc::ptr_eq(&two, &kept),
            "version 2 did not change: it serves as it was"
        );

        policy(3);
        assert_eq!(summary(&watch.poll(&registry)), ["reloaded m"]);
        assert_eq!(registry.versions("m"), [1, 2, 3]);
        let reloaded = registry.get("m", Some(2)).unwrap();
        assert!(
            !Arc::ptr_eq(&kept, &reloaded),
            "a new config.toml reloads every version"
        );

        // Asked for through the API with nothing changed, a load keeps what serves.
        registry.load("m").unwrap();
        assert!(Arc::ptr_eq(&reloaded, &registry.get("m", Some(2)).unwrap()));
    }

    #[test]
    fn files_that_change_while_their_model_loads_are_loaded_again_next_poll() {
        // A rollback mid-load: the version loaded from files that are gone again, while
        // the directory now looks as it did when the poll began. It stayed served.
        let repo = tempfile::tempdir().unwrap();
        let root = repo.path().to_path_buf();
        write_model(&root, "m", "onnx", &["1"]);
        std::fs::write(root.join("m/1/model.onnx"), b"a").unwrap();
        let loads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let flip_again = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (counted, plain, counted_flip) = (loads.clone(), loader(), flip_again.clone());
        let flip = root.join("m/1/model.onnx");
        let registry = Registry::new(
            &root,
            Arc::new(move |dir: &crate::ModelDir| {
                // The second load (the poll's) sees its file replaced while it loads.
                let n = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if n == 1 || flip_again.swap(false, std::sync::atomic::Ordering::SeqCst) {
                    std::fs::write(&flip, b"rolled back while loading").unwrap();
                }
                plain(dir)
            }),
        );
        registry.load_all().unwrap();
        let mut watch = RepositoryWatch::new(&registry);
        std::fs::write(root.join("m/1/model.onnx"), b"b").unwrap();
        assert_eq!(summary(&watch.poll(&registry)), ["reloaded m"]);
        assert_eq!(
            summary(&watch.poll(&registry)),
            ["reloaded m"],
            "loaded again: what the last load read is unknown"
        );
        assert!(watch.poll(&registry).is_empty(), "then settled");
        assert_eq!(loads.load(std::sync::atomic::Ordering::SeqCst), 3);

        // Marked again (files changed while it loaded), then the files break: the failed
        // reload is said once, not retried at every poll.
        std::fs::write(root.join("m/1/model.onnx"), b"c").unwrap();
        counted_flip.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(summary(&watch.poll(&registry)), ["reloaded m"]);
        std::fs::write(root.join("m/config.toml"), "backend = 3").unwrap();
        assert_eq!(summary(&watch.poll(&registry)), ["reload of m failed"]);
        assert!(
            watch.poll(&registry).is_empty(),
            "a failed reload waits for a change"
        );
    }
}
