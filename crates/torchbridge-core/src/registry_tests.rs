//! The registry's unit tests: loading, readiness, versions, overrides and uploads.

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
        err.contains(
            "model `bad` is not ready: model `bad` failed to load through the python bridge: broken"
        ),
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
    let e = registry
        .load_with("m", Some(python))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("broken") && e.contains("with the `config` sent in the load request"),
        "{e}"
    );
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
    std::fs::create_dir_all(root.join("config_is_a_dir/config.toml")).unwrap();
    std::fs::create_dir_all(root.join("back\\slash/1")).unwrap();
    std::fs::copy(
        root.join("good/config.toml"),
        root.join("back\\slash/config.toml"),
    )
    .unwrap();
    let registry = Registry::new(root, loader());
    assert_eq!(registry.scan().unwrap(), ["bad", "good"]);
    let strays = registry.strays().unwrap();
    let names: Vec<&str> = strays.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["back\\slash", "config_is_a_dir", "no_config"]);
    assert!(
        strays[0].1.contains("a name no model may have"),
        "{strays:?}"
    );
    assert_eq!(strays[2].1, "holds no config.toml");

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

    // Not in the repository: a load without files says to send them again.
    let e = registry.load("sent").unwrap_err().to_string();
    assert!(e.contains("send its files again"), "{e}");
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
    let e = registry.load("sent").unwrap_err().to_string();
    assert!(
        e.contains("it is listed because it was loaded before"),
        "{e}"
    );
    let e = registry.load_files(
        "a/b",
        ConfigOverride::parse("backend = \"onnx\"").unwrap(),
        &files,
    );
    assert!(e.unwrap_err().to_string().contains("cannot name a model"));
}

#[test]
fn a_relative_repository_is_held_as_an_absolute_path() {
    // A python model's `os.chdir` would otherwise move the repository under the
    // server: later loads looked for their models relative to the model's directory.
    let registry = Registry::new("some/repo", loader());
    assert!(
        registry.root().is_absolute(),
        "{}",
        registry.root().display()
    );
    assert!(registry.root().ends_with("some/repo"));
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    std::fs::create_dir_all(model.join("1")).unwrap();
    std::fs::write(model.join("config.toml"), "backend = \"onnx\"\n").unwrap();
    let relative = pathdiff(&model);
    let opened = ModelDir::open(&relative, Some(1)).unwrap();
    assert!(opened.version_dir.is_absolute(), "{:?}", opened.version_dir);
}

/// `path` relative to the working directory (`../..` up to the root, then down).
fn pathdiff(path: &std::path::Path) -> std::path::PathBuf {
    let cwd = std::env::current_dir().unwrap();
    let mut up = std::path::PathBuf::new();
    for _ in cwd.components().skip(1) {
        up.push("..");
    }
    up.join(path.strip_prefix("/").unwrap())
}

#[test]
fn an_unload_during_a_load_wins_and_the_loading_model_shows_loading() {
    // An unload answered while a load ran was undone when the load finished; and an
    // unloaded model being loaded again read "unloaded" instead of LOADING meanwhile.
    let repo = good_and_bad();
    let (entered, release) = (
        Arc::new(std::sync::Barrier::new(2)),
        Arc::new(std::sync::Barrier::new(2)),
    );
    let (gate_in, gate_out, plain) = (entered.clone(), release.clone(), loader());
    let registry = Arc::new(Registry::new(
        repo.path(),
        Arc::new(move |dir: &ModelDir| {
            gate_in.wait();
            gate_out.wait();
            plain(dir)
        }),
    ));
    let state = |r: &Registry| {
        let entry = r.index().into_iter().find(|e| e.name == "good").unwrap();
        (entry.state, entry.reason)
    };
    for round in 0..2 {
        let loading = registry.clone();
        let load = std::thread::spawn(move || loading.load("good"));
        entered.wait();
        assert_eq!(state(&registry).0, "LOADING", "round {round}");
        registry.unload("good").unwrap();
        release.wait();
        load.join().unwrap().unwrap();
        assert_eq!(
            state(&registry),
            ("UNAVAILABLE", "unloaded".into()),
            "round {round}"
        );
        assert!(registry.get("good", None).is_err());
    }
}
