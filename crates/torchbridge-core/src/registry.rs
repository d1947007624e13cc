use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use crate::uploads::{Uploads, discard};
use crate::watch::{FileStamp, version_stamp};
use crate::{ConfigOverride, Error, ModelDir, Result, ServedModel};

/// Starts an opened model directory: its instance pool, and its batching scheduler when
/// configured (the facade supplies it, knowing which bridges were compiled in).
pub type Loader = Arc<dyn Fn(&ModelDir) -> Result<ServedModel> + Send + Sync>;

/// Where a model of the repository stands.
#[derive(Debug, Clone)]
pub enum ModelState {
    Loading,
    /// Its served versions (never none), by version.
    Ready(BTreeMap<u64, Arc<ServedModel>>),
    /// Failed to load, or unloaded; the reason says which.
    Unavailable(String),
}

/// One row of the repository index.
#[derive(Debug, Clone)]
pub struct IndexEntry {
    pub name: String,
    pub version: Option<u64>,
    /// `"READY"`, `"LOADING"` or `"UNAVAILABLE"`, as Triton names them.
    pub state: &'static str,
    pub reason: String,
}

/// The models of one repository directory and their states. A model that fails to load
/// is recorded with its reason and never affects the others.
pub struct Registry {
    root: PathBuf,
    loader: Loader,
    models: RwLock<BTreeMap<String, ModelState>>,
    /// What each loaded version's files looked like when it loaded, for reloads that
    /// keep the versions that did not change.
    stamps: Mutex<BTreeMap<(String, u64), Vec<FileStamp>>>,
    /// The config each served model was loaded with instead of its `config.toml`.
    overrides: Mutex<BTreeMap<String, ConfigOverride>>,
    /// The models that serve from files a load request carried, not from the repository.
    uploads: Uploads,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("root", &self.root)
            .finish()
    }
}

impl Registry {
    pub fn new(root: impl Into<PathBuf>, loader: Loader) -> Self {
        Registry {
            root: root.into(),
            loader,
            models: RwLock::default(),
            stamps: Mutex::default(),
            overrides: Mutex::default(),
            uploads: Uploads::default(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Model names in the repository: directories that hold a `config.toml`, but for
    /// hidden ones (`.old/`: a backup, an editor's or a copy tool's scratch).
    pub fn scan(&self) -> Result<Vec<String>> {
        Ok(self
            .directories()?
            .into_iter()
            .filter(|name| self.root.join(name).join("config.toml").is_file())
            .collect())
    }

    /// Directories of the repository that are not models for want of a `config.toml`,
    /// for a warning: a model copied without its config is otherwise silently absent.
    pub fn strays(&self) -> Result<Vec<String>> {
        Ok(self
            .directories()?
            .into_iter()
            .filter(|name| !self.root.join(name).join("config.toml").exists())
            .collect())
    }

    /// The repository's directories that are not hidden, by name.
    fn directories(&self) -> Result<Vec<String>> {
        let entries = std::fs::read_dir(&self.root).map_err(|e| Error::Config {
            path: self.root.clone(),
            message: format!("cannot read the model repository: {e}"),
        })?;
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|name| !name.starts_with('.'))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Loads every model found; returns how many are ready. Blocks while models load.
    pub fn load_all(&self) -> Result<usize> {
        let names = self.scan()?;
        self.mark_loading(&names);
        let failed = self.load_each(&names, 1);
        Ok(names.len() - failed.len())
    }

    /// Loads `names`, up to `threads` at once (models load independently of each other,
    /// and a load is mostly reading files and waiting on engines); returns those that
    /// failed, with why, in the order they failed. Blocks until every one is done.
    pub fn load_each(&self, names: &[String], threads: usize) -> Vec<(String, Error)> {
        let next = Mutex::new(names.iter());
        let failed = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..threads.clamp(1, names.len().max(1)) {
                scope.spawn(|| {
                    loop {
                        // Its own statement: the lock must not be held while loading.
                        let Some(name) = next.lock().unwrap().next() else {
                            break;
                        };
                        if let Err(e) = self.load(name) {
                            failed.lock().unwrap().push((name.clone(), e));
                        }
                    }
                });
            }
        });
        failed.into_inner().unwrap()
    }

    /// Records `names` as loading before any of them starts, so that readiness
    /// ([`all_ready`](Self::all_ready)) waits for the last of them, not just the one
    /// loading at the moment, and a request for one not reached yet hears "loading".
    pub fn mark_loading(&self, names: &[String]) {
        let mut models = self.models.write().unwrap();
        for name in names {
            models.entry(name.clone()).or_insert(ModelState::Loading);
        }
    }

    /// Loads (or reloads) `name`: every version its `version_policy` serves. The loaded
    /// versions keep serving until the new ones are ready, and on if the reload fails. As
    /// in Triton, a loaded version whose files (its directory, and the files beside
    /// config.toml) did not change keeps serving as it is instead of loading again.
    pub fn load(&self, name: &str) -> Result<()> {
        self.load_with(name, None)
    }

    /// As [`Registry::load`], with the config `config_override` makes of the model's
    /// `config.toml` (Triton's `config` load parameter); it holds until the model is next
    /// loaded without one. Every version loads again when the config changes this way.
    pub fn load_with(&self, name: &str, config_override: Option<ConfigOverride>) -> Result<()> {
        let keep_unchanged = config_override.is_none()
            && !self.overrides.lock().unwrap().contains_key(name)
            && self.uploads.dir(name).is_none();
        let path = self.root.join(name);
        self.load_versions(name, &path, keep_unchanged, config_override)?;
        self.uploads.serve_from(name, None);
        Ok(())
    }

    /// Loads `name` from `files` (paths inside the model directory, such as
    /// `1/model.onnx`, with their contents) and `config`, written to a directory of the
    /// server's own rather than the repository (Triton's `file:` load parameters, with its
    /// `config`): a model deploys to a server whose file system its client cannot reach.
    /// It serves from there until it is loaded again without files.
    pub fn load_files(
        &self,
        name: &str,
        config: ConfigOverride,
        files: &[(String, Vec<u8>)],
    ) -> Result<()> {
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(Error::InvalidInput(format!(
                "`{name}` cannot name a model: no '/' or '\\', and no leading '.'"
            )));
        }
        let (config_toml, config_override) = config.for_files().map_err(|e| {
            Error::InvalidInput(format!("model `{name}`: the config given with files {e}"))
        })?;
        let dir = self.uploads.write(name, files, &config_toml)?;
        match self.load_versions(name, &dir, false, config_override) {
            Ok(()) => {
                self.uploads.serve_from(name, Some(dir));
                Ok(())
            }
            Err(e) => {
                discard(&dir);
                Err(e)
            }
        }
    }

    /// The directory `name` loads from: its upload's, if it was loaded from files, else
    /// its directory in the repository.
    pub fn model_path(&self, name: &str) -> PathBuf {
        self.uploads
            .dir(name)
            .unwrap_or_else(|| self.root.join(name))
    }

    /// The config `name` was loaded with instead of its `config.toml`, if any.
    pub fn config_override(&self, name: &str) -> Option<ConfigOverride> {
        self.overrides.lock().unwrap().get(name).cloned()
    }

    fn load_versions(
        &self,
        name: &str,
        path: &Path,
        keep_unchanged: bool,
        config_override: Option<ConfigOverride>,
    ) -> Result<()> {
        let valid = !(name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.'));
        if !valid || !path.join("config.toml").is_file() {
            let mut models = self.models.write().unwrap();
            return Err(match models.get(name) {
                Some(ModelState::Ready(_)) => Error::config(
                    path,
                    "is no longer a model directory (it holds no config.toml); the loaded \
                     versions serve on until the model is unloaded",
                ),
                // A name marked loading that is not a model must not hold readiness back.
                Some(ModelState::Loading) => {
                    models.remove(name);
                    Error::ModelNotFound(name.to_string())
                }
                _ => Error::ModelNotFound(name.to_string()),
            });
        }
        let loaded_now: BTreeMap<u64, Arc<ServedModel>> = match self
            .models
            .write()
            .unwrap()
            .entry(name.to_string())
            .or_insert(ModelState::Loading)
        {
            ModelState::Ready(versions) if keep_unchanged => versions.clone(),
            _ => BTreeMap::new(),
        };
        let loaded = ModelDir::open_served(path, config_override.as_ref()).and_then(|dirs| {
            let several = dirs.len() > 1;
            dirs.iter()
                .map(|dir| {
                    // Taken before loading, so a change made meanwhile is seen next time.
                    let stamp = version_stamp(path, &dir.version_dir);
                    let key = (name.to_string(), dir.version);
                    let unchanged = self.stamps.lock().unwrap().get(&key) == Some(&stamp);
                    if let Some(model) = loaded_now.get(&dir.version).filter(|_| unchanged) {
                        return Ok((dir.version, (model.clone(), stamp)));
                    }
                    match (self.loader)(dir) {
                        Ok(model) => Ok((dir.version, (Arc::new(model), stamp))),
                        Err(e) if several => Err(in_version(e, dir.version)),
                        Err(e) => Err(e),
                    }
                })
                .collect::<Result<BTreeMap<_, _>>>()
        });
        // Stamps are kept only for the versions that serve: after a failed reload the
        // loaded versions serve on, with the stamps they loaded with.
        let loaded = loaded.map(|versions| {
            let mut stamps = self.stamps.lock().unwrap();
            stamps.retain(|(model, _), _| model != name);
            versions
                .into_iter()
                .map(|(version, (model, stamp))| {
                    stamps.insert((name.to_string(), version), stamp);
                    (version, model)
                })
                .collect::<BTreeMap<_, _>>()
        });
        let mut models = self.models.write().unwrap();
        match loaded {
            Ok(versions) => {
                models.insert(name.to_string(), ModelState::Ready(versions));
                let mut overrides = self.overrides.lock().unwrap();
                match config_override {
                    Some(o) => overrides.insert(name.to_string(), o),
                    None => overrides.remove(name),
                };
                Ok(())
            }
            // As in Triton, a failed reload leaves the loaded versions serving.
            Err(e) if matches!(models.get(name), Some(ModelState::Ready(_))) => {
                tracing::error!(
                    model = name,
                    "reload failed, the loaded versions serve on: {e}"
                );
                Err(e)
            }
            Err(e) => {
                tracing::error!(model = name, "failed to load: {e}");
                models.insert(name.to_string(), ModelState::Unavailable(e.to_string()));
                Err(e)
            }
        }
    }

    /// Unloads `name`: new requests are refused; requests already queued finish.
    pub fn unload(&self, name: &str) -> Result<()> {
        let mut models = self.models.write().unwrap();
        match models.get_mut(name) {
            Some(state) => {
                *state = ModelState::Unavailable("unloaded".into());
                self.overrides.lock().unwrap().remove(name);
                self.uploads.serve_from(name, None);
                Ok(())
            }
            None => Err(Error::ModelNotFound(name.to_string())),
        }
    }

    /// Forgets `name` (its directory is gone): it leaves the index; requests already
    /// queued finish.
    pub fn remove(&self, name: &str) {
        self.models.write().unwrap().remove(name);
        self.overrides.lock().unwrap().remove(name);
        self.uploads.serve_from(name, None);
        self.stamps
            .lock()
            .unwrap()
            .retain(|(model, _), _| model != name);
    }

    /// The ready model `name`, at `version` if one is asked for.
    pub fn get(&self, name: &str, version: Option<u64>) -> Result<Arc<ServedModel>> {
        let models = self.models.read().unwrap();
        match models.get(name) {
            None => Err(Error::ModelNotFound(name.to_string())),
            Some(ModelState::Loading) => Err(Error::NotReady {
                model: name.into(),
                reason: "loading".into(),
            }),
            Some(ModelState::Unavailable(reason)) => Err(Error::NotReady {
                model: name.into(),
                reason: reason.clone(),
            }),
            Some(ModelState::Ready(versions)) => {
                let found = match version {
                    None => versions.last_key_value().map(|(_, model)| model),
                    Some(v) => versions.get(&v),
                };
                found.cloned().ok_or_else(|| Error::VersionNotFound {
                    model: name.into(),
                    version: version.unwrap_or_default(),
                    served: versions.keys().copied().collect(),
                })
            }
        }
    }

    /// Version `version` of `name`, or every version being served when `None`
    /// (ascending): what statistics report.
    pub fn served(&self, name: &str, version: Option<u64>) -> Result<Vec<Arc<ServedModel>>> {
        if version.is_some() {
            return Ok(vec![self.get(name, version)?]);
        }
        let all = match self.models.read().unwrap().get(name) {
            Some(ModelState::Ready(versions)) => Some(versions.values().cloned().collect()),
            _ => None,
        };
        // The lock is released: `get` takes it again for the error.
        match all {
            Some(all) => Ok(all),
            None => Ok(vec![self.get(name, None)?]),
        }
    }

    /// The versions of `name` being served, ascending (none unless it is ready).
    pub fn versions(&self, name: &str) -> Vec<u64> {
        match self.models.read().unwrap().get(name) {
            Some(ModelState::Ready(versions)) => versions.keys().copied().collect(),
            _ => vec![],
        }
    }

    /// Every model known: each served version of the loaded ones, failed ones, and those
    /// on disk not yet loaded.
    pub fn index(&self) -> Vec<IndexEntry> {
        let models = self.models.read().unwrap();
        let on_disk = self.scan().unwrap_or_default();
        let mut names: Vec<&String> = models.keys().chain(on_disk.iter()).collect();
        names.sort();
        names.dedup();
        let mut entries = Vec::with_capacity(names.len());
        for name in names {
            let entry = |version, state, reason| IndexEntry {
                name: name.clone(),
                version,
                state,
                reason,
            };
            match models.get(name) {
                Some(ModelState::Ready(versions)) => entries.extend(
                    versions
                        .keys()
                        .map(|&v| entry(Some(v), "READY", String::new())),
                ),
                Some(ModelState::Loading) => entries.push(entry(None, "LOADING", String::new())),
                Some(ModelState::Unavailable(r)) => {
                    entries.push(entry(None, "UNAVAILABLE", r.clone()));
                }
                None => entries.push(entry(None, "UNAVAILABLE", "not loaded".into())),
            }
        }
        entries
    }

    /// True when no model is still loading (failed models are in the index, with reasons).
    pub fn all_ready(&self) -> bool {
        !self
            .models
            .read()
            .unwrap()
            .values()
            .any(|s| matches!(s, ModelState::Loading))
    }
}

/// A load error of one of several versions, naming the version.
fn in_version(e: Error, version: u64) -> Error {
    match e {
        Error::Load {
            model,
            bridge,
            message,
        } => Error::Load {
            model,
            bridge,
            message: format!("version {version}: {message}"),
        },
        other => other,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{Backend, Batch, InstancePool, ModelMetadata, Tensor};

    struct Empty(ModelMetadata);

    impl Backend for Empty {
        fn metadata(&self) -> &ModelMetadata {
            &self.0
        }
        fn infer(&mut self, _: Batch) -> Result<Vec<Tensor>> {
            Ok(vec![])
        }
    }

    /// Loads models whose config says `backend = "onnx"`; fails the others.
    pub(crate) fn loader() -> Loader {
        Arc::new(|dir: &ModelDir| {
            if dir.config.backend != crate::BackendKind::Onnx {
                return Err(Error::Load {
                    model: dir.name.clone(),
                    bridge: "python",
                    message: "broken".into(),
                });
            }
            let meta = ModelMetadata {
                name: dir.name.clone(),
                version: dir.version,
                platform: "test".into(),
                max_batch_size: 0,
                inputs: vec![],
                outputs: vec![],
            };
            let pool = InstancePool::start(&dir.name, 1, move |_| {
                Ok(Box::new(Empty(meta.clone())) as Box<dyn Backend>)
            })?;
            Ok(pool.into())
        })
    }

    /// A repository with the models `good` (loads, version 3) and `bad` (fails).
    fn good_and_bad() -> tempfile::TempDir {
        let repo = tempfile::tempdir().unwrap();
        for (name, backend) in [("good", "onnx"), ("bad", "python")] {
            std::fs::create_dir_all(repo.path().join(name).join("3")).unwrap();
            std::fs::write(
                repo.path().join(name).join("config.toml"),
                format!("backend = \"{backend}\""),
            )
            .unwrap();
        }
        repo
    }

    #[test]
    fn not_ready_until_the_last_model_marked_loading_has_loaded_or_failed() {
        let repo = good_and_bad();
        let registry = Registry::new(repo.path(), loader());
        registry.mark_loading(&registry.scan().unwrap());
        assert!(!registry.all_ready());
        // Between two loads the server must stay unready, and a model not reached yet is
        // "loading", not unknown.
        registry.load("bad").unwrap_err();
        assert!(!registry.all_ready());
        let err = registry.get("good", None).unwrap_err().to_string();
        assert!(err.contains("model `good` is not ready: loading"), "{err}");
        registry.load("good").unwrap();
        assert!(registry.all_ready());
    }

    #[test]
    fn a_failed_model_is_reported_and_the_others_serve() {
        let repo = good_and_bad();
        let registry = Registry::new(repo.path(), loader());
        assert_eq!(registry.load_all().unwrap(), 1);
        assert!(registry.all_ready());
        assert_eq!(registry.get("good", None).unwrap().metadata().version, 3);
        assert!(registry.get("good", Some(2)).is_err());
        let err = registry.get("bad", None).unwrap_err().to_string();
        assert!(
            err.contains("model `bad` is not ready: model `bad` failed to load through the python bridge: broken"),
            "{err}"
        );
        let index = registry.index();
        assert_eq!(
            index
                .iter()
                .map(|e| (e.name.as_str(), e.state))
                .collect::<Vec<_>>(),
            vec![("bad", "UNAVAILABLE"), ("good", "READY")]
        );
        registry.unload("good").unwrap();
        assert!(
            registry
                .get("good", None)
                .unwrap_err()
                .to_string()
                .contains("unloaded")
        );
        registry.load("good").unwrap();
        assert!(registry.get("good", None).is_ok());
        assert!(matches!(
            registry.get("nope", None),
            Err(Error::ModelNotFound(_))
        ));
        assert!(matches!(
            registry.load("../etc"),
            Err(Error::ModelNotFound(_))
        ));
    }

    #[test]
    fn the_version_policy_serves_several_versions_side_by_side() {
        let repo = tempfile::tempdir().unwrap();
        let model = repo.path().join("m");
        for v in ["1", "2", "7"] {
            std::fs::create_dir_all(model.join(v)).unwrap();
        }
        let config = |policy: &str| {
            std::fs::write(
                model.join("config.toml"),
                format!("backend = \"onnx\"\nversion_policy = {policy}"),
            )
            .unwrap();
        };
        config("{ latest = 2 }");
        let registry = Registry::new(repo.path(), loader());
        registry.load("m").unwrap();
        assert_eq!(registry.versions("m"), [2, 7]);
        assert_eq!(registry.get("m", None).unwrap().metadata().version, 7);
        assert_eq!(registry.get("m", Some(2)).unwrap().metadata().version, 2);
        let served: Vec<_> = registry
            .served("m", None)
            .unwrap()
            .iter()
            .map(|m| m.metadata().version)
            .collect();
        assert_eq!(served, [2, 7]);
        let e = registry.get("m", Some(1)).unwrap_err().to_string();
        assert_eq!(e, "model `m` has no version 1 (versions served: [2, 7])");
        let index: Vec<_> = registry
            .index()
            .iter()
            .map(|e| (e.version, e.state))
            .collect();
        assert_eq!(index, [(Some(2), "READY"), (Some(7), "READY")]);

        // A reload follows the config; the old versions serve until the new ones are ready.
        config("{ specific = [1] }");
        registry.load("m").unwrap();
        assert_eq!(registry.versions("m"), [1]);
        config("{ specific = [1, 3] }");
        let e = registry.load("m").unwrap_err().to_string();
        assert!(e.contains("[3]") && e.contains("present: [1, 2, 7]"), "{e}");
        assert_eq!(
            registry.versions("m"),
            [1],
            "a failed reload leaves the loaded ones"
        );
        assert_eq!(registry.get("m", None).unwrap().metadata().version, 1);
    }

    #[test]
    fn a_config_given_with_the_load_holds_until_a_load_without_one() {
        let repo = tempfile::tempdir().unwrap();
        let root = repo.path();
        for version in ["1", "2", "3"] {
            std::fs::create_dir_all(root.join("m").join(version)).unwrap();
        }
        std::fs::write(root.join("m/config.toml"), "backend = \"onnx\"").unwrap();
        let registry = Registry::new(root, loader());
        registry.load("m").unwrap();
        assert_eq!(registry.versions("m"), [3]);
        let all = ConfigOverride::parse(r#"{"version_policy": {"all": {}}}"#).unwrap();
        registry.load_with("m", Some(all)).unwrap();
        assert_eq!(registry.versions("m"), [1, 2, 3]);
        assert!(registry.config_override("m").is_some());
        let three = registry.get("m", Some(3)).unwrap();

        // One the loader refuses: the reload fails, what was loaded serves on, as it was.
        let python = ConfigOverride::parse(r#"{"backend": "python"}"#).unwrap();
        let e = registry.load_with("m", Some(python)).unwrap_err();
        assert!(e.to_string().contains("broken"), "{e}");
        assert_eq!(registry.versions("m"), [1, 2, 3]);
        let o = registry.config_override("m").unwrap();
        assert_eq!(o.text(), r#"{"version_policy": {"all": {}}}"#);

        // Malformed for this model: refused naming the load's config.
        let bad = ConfigOverride::parse(r#"{"name": "n"}"#).unwrap();
        let e = registry.load_with("m", Some(bad)).unwrap_err();
        assert!(matches!(e, Error::InvalidInput(_)), "{e:?}");
        assert!(
            e.to_string()
                .contains("the config given with the load request"),
            "{e}"
        );

        // Without one, config.toml again: every version reloads.
        registry.load("m").unwrap();
        assert_eq!(registry.versions("m"), [3]);
        assert!(registry.config_override("m").is_none());
        assert!(!Arc::ptr_eq(&three, &registry.get("m", Some(3)).unwrap()));
    }

    #[test]
    fn hidden_and_configless_directories_are_not_models_and_never_hold_readiness_back() {
        let repo = good_and_bad();
        let root = repo.path();
        std::fs::create_dir_all(root.join(".good.bak/3")).unwrap();
        std::fs::copy(
            root.join("good/config.toml"),
            root.join(".good.bak/config.toml"),
        )
        .unwrap();
        std::fs::create_dir_all(root.join("no_config/1")).unwrap();
        let registry = Registry::new(root, loader());
        assert_eq!(registry.scan().unwrap(), ["bad", "good"]);
        assert_eq!(registry.strays().unwrap(), ["no_config"]);

        // A name marked loading that turns out not to be a model is forgotten.
        registry.mark_loading(&["good".into(), "no_config".into()]);
        assert!(matches!(
            registry.load("no_config"),
            Err(Error::ModelNotFound(_))
        ));
        registry.load("good").unwrap();
        assert!(registry.all_ready());

        // A served model whose directory went away serves on, and a load says why.
        std::fs::remove_file(root.join("good/config.toml")).unwrap();
        let e = registry.load("good").unwrap_err().to_string();
        assert!(
            e.contains("is no longer a model directory") && e.contains("serve on"),
            "{e}"
        );
        registry.get("good", None).unwrap();
    }

    #[test]
    fn a_model_loads_from_the_files_a_load_carried_until_loaded_without_them() {
        let repo = good_and_bad();
        let registry = Registry::new(repo.path(), loader());
        let files = vec![("1/model.onnx".to_string(), b"weights".to_vec())];
        let onnx = ConfigOverride::parse("backend = \"onnx\"").unwrap();
        registry.load_files("sent", onnx.clone(), &files).unwrap();
        let dir = registry.model_path("sent");
        assert_eq!(std::fs::read(dir.join("1/model.onnx")).unwrap(), b"weights");
        assert_eq!(registry.versions("sent"), [1]);
        assert!(
            registry
                .index()
                .iter()
                .any(|e| e.name == "sent" && e.state == "READY")
        );

        // A load the loader refuses leaves nothing behind and the upload serving.
        let python = ConfigOverride::parse("backend = \"python\"").unwrap();
        registry.load_files("sent", python, &files).unwrap_err();
        assert_eq!(registry.model_path("sent"), dir);
        registry.get("sent", Some(1)).unwrap();

        // The same name in the repository: a load without files goes back to it.
        registry.load_files("good", onnx, &files).unwrap();
        let uploaded = registry.model_path("good");
        registry.load("good").unwrap();
        assert_eq!(registry.versions("good"), [3]);
        assert_eq!(registry.model_path("good"), repo.path().join("good"));
        assert!(
            !uploaded.exists(),
            "the upload it no longer serves from is removed"
        );

        registry.unload("sent").unwrap();
        assert!(!dir.exists());
        let e = registry.load_files(
            "a/b",
            ConfigOverride::parse("backend = \"onnx\"").unwrap(),
            &files,
        );
        assert!(e.unwrap_err().to_string().contains("cannot name a model"));
    }
}
