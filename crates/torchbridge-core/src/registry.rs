use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
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
    /// Failed to load, with why.
    Unavailable(String),
    /// Unloaded through the repository API (or told to, before it loaded).
    Unloaded,
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
    /// Why the latest reload of a model that serves on failed (for the index).
    reload_failures: Mutex<BTreeMap<String, String>>,
    /// A [`RepositoryWatch`](crate::RepositoryWatch) loads models as they appear.
    followed: AtomicBool,
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
        let root = root.into();
        Registry {
            // Absolute (symlinks kept): a python model's code may change the working
            // directory, which must not move the repository.
            root: std::path::absolute(&root).unwrap_or(root),
            loader,
            models: RwLock::default(),
            stamps: Mutex::default(),
            overrides: Mutex::default(),
            uploads: Uploads::default(),
            reload_failures: Mutex::default(),
            followed: AtomicBool::new(false),
        }
    }

    /// Says that a repository watch follows this repository: a model directory not loaded
    /// yet is one the next poll loads (not one to load through the repository API).
    pub(crate) fn set_followed(&self) {
        self.followed.store(true, Relaxed);
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
            .filter(|name| {
                is_model_name(name) && self.root.join(name).join("config.toml").is_file()
            })
            .collect())
    }

    /// Directories of the repository that are not models, each with why (no
    /// `config.toml`, or a name no model may have), for a warning: a model copied without
    /// its config is otherwise silently absent.
    pub fn strays(&self) -> Result<Vec<(String, &'static str)>> {
        Ok(self
            .directories()?
            .into_iter()
            .filter_map(|name| {
                let why = if !is_model_name(&name) {
                    "has a name no model may have (one path component, without '\\')"
                } else if !self.root.join(&name).join("config.toml").is_file() {
                    "holds no config.toml"
                } else {
                    return None;
                };
                Some((name, why))
            })
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
        if !is_model_name(name) {
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

    /// Whether a version of `name` that serves loaded while its files changed (which
    /// files it read is unknown): the next reload loads it again.
    pub(crate) fn changed_while_loading(&self, name: &str) -> bool {
        self.stamps
            .lock()
            .unwrap()
            .iter()
            .any(|((model, _), stamp)| model == name && stamp.is_empty())
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
        if !is_model_name(name) || !path.join("config.toml").is_file() {
            let mut models = self.models.write().unwrap();
            return Err(match models.get(name) {
                Some(ModelState::Ready(_)) if self.uploads.dir(name).is_some() => {
                    Error::InvalidInput(format!(
                        "model `{name}` serves from files sent with an earlier load and is not \
                         in the repository: send its files again (with `config`) to reload it; \
                         the loaded versions serve on"
                    ))
                }
                Some(ModelState::Ready(_)) => Error::config(
                    path,
                    "is no longer a model directory (it holds no config.toml); the loaded \
                     versions serve on until the model is unloaded",
                ),
                Some(ModelState::Unavailable(_) | ModelState::Unloaded) => Error::config(
                    path,
                    format!(
                        "holds no config.toml, so model `{name}` cannot load from the \
                         repository (it is listed because it was loaded before, from files \
                         sent with a load or a directory since removed)"
                    ),
                ),
                // A name marked loading that is not a model must not hold readiness back.
                Some(ModelState::Loading) => {
                    models.remove(name);
                    Error::ModelNotFound(name.to_string())
                }
                _ => Error::ModelNotFound(name.to_string()),
            });
        }
        // A model that serves serves on while it reloads; any other is loading now (an
        // unloaded or failed one too: its index row says so).
        let loaded_now: BTreeMap<u64, Arc<ServedModel>> = match self
            .models
            .write()
            .unwrap()
            .entry(name.to_string())
            .or_insert(ModelState::Loading)
        {
            ModelState::Ready(versions) if keep_unchanged => versions.clone(),
            ModelState::Ready(_) => BTreeMap::new(),
            other => {
                *other = ModelState::Loading;
                BTreeMap::new()
            }
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
                        Ok(model) => {
                            // Changed while it loaded: which files it read is unknown, so
                            // no stamp matches, and the next reload loads it again.
                            let stamp = match version_stamp(path, &dir.version_dir) == stamp {
                                true => stamp,
                                false => Vec::new(),
                            };
                            Ok((dir.version, (Arc::new(model), stamp)))
                        }
                        Err(e) if several => Err(in_version(e, dir.version)),
                        Err(e) => Err(e),
                    }
                })
                .collect::<Result<BTreeMap<_, _>>>()
        });
        // A bridge names the config it was given "config.toml"; say it came with the load.
        let loaded = loaded.map_err(|e| match (&config_override, e) {
            (
                Some(_),
                Error::Load {
                    model,
                    bridge,
                    message,
                },
            ) => Error::Load {
                model,
                bridge,
                message: format!(
                    "{message} (the model was loading with the `config` sent in the load \
                     request in place of config.toml's settings)"
                ),
            },
            (_, e) => e,
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
        // A config sent with the load that is wrong is the client's mistake (a 400), not
        // the server's: logged at info, and it does not mark the loaded versions.
        let clients_mistake = |e: &Error| {
            config_override.is_some() && matches!(e, Error::Config { .. } | Error::InvalidInput(_))
        };
        let mut models = self.models.write().unwrap();
        // Unloaded while it loaded: the unload came last and wins (as if the two had
        // taken turns); what loaded is dropped.
        if matches!(models.get(name), Some(ModelState::Unloaded)) {
            tracing::info!(
                model = name,
                "unloaded while it loaded: the load is dropped"
            );
            return loaded.map(drop);
        }
        match loaded {
            Ok(versions) => {
                models.insert(name.to_string(), ModelState::Ready(versions));
                self.reload_failures.lock().unwrap().remove(name);
                let mut overrides = self.overrides.lock().unwrap();
                match config_override {
                    Some(o) => overrides.insert(name.to_string(), o),
                    None => overrides.remove(name),
                };
                Ok(())
            }
            // As in Triton, a failed reload leaves the loaded versions serving.
            Err(e) if matches!(models.get(name), Some(ModelState::Ready(_))) => {
                if clients_mistake(&e) {
                    tracing::info!(model = name, "a load request's config was refused: {e}");
                    return Err(e);
                }
                tracing::error!(
                    model = name,
                    "reload failed, the loaded versions serve on: {e}"
                );
                self.reload_failures.lock().unwrap().insert(
                    name.to_string(),
                    format!("serving the versions loaded before: its reload failed: {e}"),
                );
                Err(e)
            }
            Err(e) => {
                match clients_mistake(&e) {
                    true => tracing::info!(model = name, "failed to load: {e}"),
                    false => tracing::error!(model = name, "failed to load: {e}"),
                }
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
                *state = ModelState::Unloaded;
                self.overrides.lock().unwrap().remove(name);
                self.reload_failures.lock().unwrap().remove(name);
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
        self.reload_failures.lock().unwrap().remove(name);
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
            None if self.on_disk(name) => Err(Error::NotReady {
                model: name.into(),
                reason: if self.followed.load(Relaxed) {
                    "new in the repository, not loaded yet: the next poll of the repository \
                     loads it"
                        .into()
                } else {
                    "not loaded; load it through the repository API \
                     (POST /v2/repository/models/{name}/load)"
                        .replace("{name}", name)
                },
            }),
            None => Err(Error::ModelNotFound(name.to_string())),
            Some(ModelState::Loading) => Err(Error::NotReady {
                model: name.into(),
                reason: "loading".into(),
            }),
            Some(ModelState::Unavailable(reason)) => Err(Error::NotReady {
                model: name.into(),
                reason: reason.clone(),
            }),
            Some(ModelState::Unloaded) => Err(Error::NotReady {
                model: name.into(),
                reason: UNLOADED.into(),
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

    /// `Ok` when `name` (at `version`) is loaded and can serve: not when every one of its
    /// instances is broken (see [`ServedModel::broken`]), although requests still reach it.
    pub fn ready(&self, name: &str, version: Option<u64>) -> Result<()> {
        match self.get(name, version)?.broken() {
            None => Ok(()),
            Some(reason) => Err(Error::NotReady {
                model: name.into(),
                reason,
            }),
        }
    }

    /// Whether `name` is a model directory of the repository (for an unknown model's
    /// error only: it reads the disk).
    fn on_disk(&self, name: &str) -> bool {
        is_model_name(name) && self.root.join(name).join("config.toml").is_file()
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
        let reload_failures = self.reload_failures.lock().unwrap();
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
                Some(ModelState::Ready(versions)) => {
                    let reason = reload_failures.get(name).cloned().unwrap_or_default();
                    entries.extend(versions.iter().map(|(&v, model)| match model.broken() {
                        None => entry(Some(v), "READY", reason.clone()),
                        Some(broken) => entry(Some(v), "UNAVAILABLE", broken),
                    }));
                }
                Some(ModelState::Loading) => entries.push(entry(None, "LOADING", String::new())),
                Some(ModelState::Unloaded) => {
                    entries.push(entry(None, "UNAVAILABLE", UNLOADED.into()));
                }
                Some(ModelState::Unavailable(r)) => {
                    entries.push(entry(None, "UNAVAILABLE", r.clone()));
                }
                None => entries.push(entry(None, "UNAVAILABLE", "not loaded".into())),
            }
        }
        entries
    }

    /// True when no model is still loading and none failed to load (an unloaded one
    /// does not hold readiness back): Triton's strict readiness. Nor does a loaded model
    /// whose instances are all broken (see [`ServedModel::broken`]): it recovers only
    /// through a request, which a server reported not ready would never get.
    pub fn all_available(&self) -> bool {
        self.models
            .read()
            .unwrap()
            .values()
            .all(|state| matches!(state, ModelState::Ready(_) | ModelState::Unloaded))
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

/// The reason an unloaded model is unavailable, as clients read it.
const UNLOADED: &str = "unloaded";

/// Whether `name` can name a model directory of the repository: not empty, not hidden,
/// and one path component.
fn is_model_name(name: &str) -> bool {
    !(name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.'))
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
#[path = "registry_tests.rs"]
pub(crate) mod tests;
