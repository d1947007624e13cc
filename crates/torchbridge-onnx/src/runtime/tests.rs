use super::*;

#[test]
fn versions_from_the_minimum_on_are_accepted() {
    check_version(&format!("1.{MINIMUM_MINOR}.0")).unwrap();
    check_version("1.31.1").unwrap();
    let e = check_version(&format!("1.{}.2", MINIMUM_MINOR - 1)).unwrap_err();
    assert!(
        e.contains(&format!(
            "needs ONNX Runtime 1.{MINIMUM_MINOR} or a newer 1.x"
        )),
        "{e}"
    );
    assert!(check_version("0.99.0").is_err());
    assert!(check_version("2.0.0").is_err());
    assert!(
        check_version("one.two")
            .unwrap_err()
            .contains("not a version number")
    );
    assert!(check_version("").is_err());
}

fn touch(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"not a library").unwrap();
}

#[test]
fn finds_the_wheel_library_in_the_first_venv_that_has_one() {
    let dir = tempfile::tempdir().unwrap();
    let (empty, venv) = (dir.path().join("empty"), dir.path().join("venv"));
    std::fs::create_dir_all(&empty).unwrap();
    let capi = venv.join("lib/python3.11/site-packages/onnxruntime/capi");
    let library = capi.join(format!(
        "{}onnxruntime.{}.1.31.1",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX.trim_start_matches('.')
    ));
    touch(&capi.join(format!(
        "{}onnxruntime_providers_shared{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )));
    touch(&library);
    let search = LibrarySearch {
        dylib_path: None,
        venvs: vec![("first", empty.clone()), ("second", venv.clone())],
    };
    assert_eq!(search.find().unwrap(), library);

    let search = LibrarySearch {
        dylib_path: None,
        venvs: vec![("`python_env` in config.toml", empty.clone())],
    };
    let e = search.find().unwrap_err();
    assert!(e.contains("ORT_DYLIB_PATH is not set"), "{e}");
    assert!(
        e.contains(&capi_pattern(&empty).display().to_string()),
        "{e}"
    );
    assert!(
        e.contains("(`python_env` in config.toml)") && e.contains("pip install onnxruntime"),
        "{e}"
    );
    let e = LibrarySearch::default().find().unwrap_err();
    assert!(e.contains("no virtualenv was named"), "{e}");
}

#[test]
fn ort_dylib_path_wins_and_must_be_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("libonnxruntime.so");
    touch(&file);
    let search = LibrarySearch {
        dylib_path: Some(file.clone()),
        venvs: vec![("VIRTUAL_ENV", dir.path().to_path_buf())],
    };
    assert_eq!(search.find().unwrap(), file.canonicalize().unwrap());
    let missing = dir.path().join("missing.so");
    let e = LibrarySearch {
        dylib_path: Some(missing.clone()),
        venvs: vec![],
    }
    .find()
    .unwrap_err();
    assert!(
        e.contains(&format!(
            "ORT_DYLIB_PATH is `{}`, which is not a file",
            missing.display()
        )),
        "{e}"
    );
    let e = LibrarySearch {
        dylib_path: Some(dir.path().to_path_buf()),
        venvs: vec![],
    }
    .find()
    .unwrap_err();
    assert!(e.contains("which is not a file"), "{e}");
}

#[test]
fn a_file_that_is_not_onnx_runtime_is_refused_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("libonnxruntime.so");
    touch(&text);
    let e = check_library(&text).unwrap_err();
    assert!(
        e.contains("cannot load")
            && e.contains("libonnxruntime.so")
            && e.contains("ORT_DYLIB_PATH"),
        "{e}"
    );
    let e = check_library(&dir.path().join("missing.so")).unwrap_err();
    assert!(e.contains("cannot load") && e.contains("missing.so"), "{e}");
}

#[cfg(target_os = "linux")]
#[test]
fn a_library_without_the_api_is_refused() {
    let Some(libm) = [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/lib64/libm.so.6",
        "/usr/lib/libm.so.6",
        "/lib/aarch64-linux-gnu/libm.so.6",
    ]
    .into_iter()
    .map(Path::new)
    .find(|p| p.is_file()) else {
        eprintln!("skipped: no libm.so.6 found");
        return;
    };
    let e = check_library(libm).unwrap_err();
    assert!(e.contains("exports no `OrtGetApiBase`"), "{e}");
}
