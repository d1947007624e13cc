//! One interpreter serves every python model: modules beside each model.py (a
//! `helpers.py`) must stay that model's, and not replace the process's own.

use std::path::Path;

use pyo3::types::{PyAnyMethods, PyDict, PyDictMethods};

use torchbridge_core::{Backend, BackendKind, Batch, LoadContext, ModelDir, Tensor};

const CONFIG: &str = "backend = \"python\"\nmax_batch_size = 4\n\
    [[input]]\nname = \"X\"\ndatatype = \"FP32\"\ndims = [1]\n\
    [[output]]\nname = \"Y\"\ndatatype = \"FP32\"\ndims = [1]\n";

/// `helpers.K` is imported when model.py loads, and again (lazily) at each call.
const HANDLER: &str = r#"from helpers import K


class Model:
    def __init__(self, model_dir, config):
        pass

    def predict(self, inputs):
        import helpers
        return {"Y": inputs["X"] * K + helpers.K}
"#;

/// Writes model version `version` of `model` under `root`, its helpers.py saying `k`.
fn write_model(root: &Path, model: &str, version: u64, k: f32) {
    let dir = root.join(model);
    std::fs::create_dir_all(dir.join(version.to_string())).unwrap();
    std::fs::write(dir.join("config.toml"), CONFIG).unwrap();
    let version_dir = dir.join(version.to_string());
    std::fs::write(version_dir.join("model.py"), HANDLER).unwrap();
    std::fs::write(version_dir.join("helpers.py"), format!("K = {k:?}\n")).unwrap();
}

fn load(root: &Path, model: &str, version: u64) -> Box<dyn Backend> {
    let dir = ModelDir::open(&root.join(model), Some(version)).unwrap();
    torchbridge_python::load(&LoadContext {
        model: model.to_string(),
        version: dir.version,
        form: dir.form_for(BackendKind::Python).unwrap(),
        version_dir: dir.version_dir,
        config: dir.config,
        instance: 0,
    })
    .unwrap()
}

/// X = 1: the model answers 2·K of its own helpers.
fn answer(model: &mut dyn Backend) -> f32 {
    let x = Tensor::from_slice("X", vec![1, 1], &[1.0f32]).unwrap();
    let out = model
        .infer(Batch {
            inputs: vec![x],
            rows: 1,
        })
        .unwrap();
    out[0].to_vec::<f32>().unwrap()[0]
}

#[test]
fn models_and_versions_each_import_their_own_helpers() {
    let repo = tempfile::tempdir().unwrap();
    write_model(repo.path(), "h1", 1, 1.0);
    write_model(repo.path(), "h2", 1, 2.0);
    write_model(repo.path(), "h1", 2, 3.0);
    let mut one = load(repo.path(), "h1", 1);
    let mut two = load(repo.path(), "h2", 1);
    let mut one_v2 = load(repo.path(), "h1", 2);
    assert_eq!(answer(one.as_mut()), 2.0);
    assert_eq!(answer(two.as_mut()), 4.0);
    assert_eq!(answer(one_v2.as_mut()), 6.0);
    assert_eq!(answer(one.as_mut()), 2.0, "after the others loaded");

    // The process's own module of that name is left as it was.
    let leaked: bool = pyo3::Python::attach(|py| {
        let globals = PyDict::new(py);
        py.run(
            c"import sys\nout = 'helpers' in sys.modules",
            Some(&globals),
            None,
        )
        .unwrap();
        globals.get_item("out").unwrap().unwrap().extract().unwrap()
    });
    assert!(!leaked, "a model's helpers leaked into sys.modules");
}

/// helpers.py of [`write_racy`]: its import lets go of the GIL halfway (a sleep), as
/// a real import does while it reads files or imports its own dependencies.
const RACY_HELPERS: &str = "import time\nimport email.mime.text\ntime.sleep(0.02)\nK = {k}\n";

/// Each call imports helpers again (lazily) and takes its K from there.
const LAZY_HANDLER: &str = r#"import helpers


class Model:
    def __init__(self, model_dir, config):
        self.k = helpers.K

    def predict(self, inputs):
        from helpers import K
        assert K == self.k, f"helpers.K is {K}, this model's is {self.k}"
        return {"Y": inputs["X"] * K + self.k}
"#;

fn write_racy(root: &Path, model: &str, k: f32) {
    write_model(root, model, 1, k);
    let version_dir = root.join(model).join("1");
    std::fs::write(version_dir.join("model.py"), LAZY_HANDLER).unwrap();
    let helpers = RACY_HELPERS.replace("{k}", &format!("{k:?}"));
    std::fs::write(version_dir.join("helpers.py"), helpers).unwrap();
}

#[test]
fn models_loaded_and_called_at_once_each_import_their_own_helpers() {
    // Found by a user: loads in parallel (--model-load-threads) failed with
    // KeyError: 'helpers' or took another model's, and calls importing lazily from
    // several threads switched a model to another's helpers for good.
    let repo = tempfile::tempdir().unwrap();
    let names: Vec<String> = (1..=6).map(|i| format!("race{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        write_racy(repo.path(), name, (i + 1) as f32);
    }
    let models: Vec<Box<dyn Backend>> = std::thread::scope(|s| {
        let loads: Vec<_> = names
            .iter()
            .map(|name| s.spawn(|| load(repo.path(), name, 1)))
            .collect();
        loads.into_iter().map(|l| l.join().unwrap()).collect()
    });
    std::thread::scope(|s| {
        for (i, mut model) in models.into_iter().enumerate() {
            s.spawn(move || {
                let k = (i + 1) as f32;
                for _ in 0..40 {
                    assert_eq!(answer(model.as_mut()), 2.0 * k, "model race{}", i + 1);
                }
            });
        }
    });
}

/// sys.modules keys holding `needle`.
fn modules_named(needle: &str) -> Vec<String> {
    torchbridge_python::torch_version().unwrap(); // starts the interpreter
    pyo3::Python::attach(|py| {
        let globals = PyDict::new(py);
        globals.set_item("needle", needle).unwrap();
        py.run(
            c"import sys\nout = [k for k in sys.modules if needle in k]",
            Some(&globals),
            None,
        )
        .unwrap();
        globals.get_item("out").unwrap().unwrap().extract().unwrap()
    })
}

#[test]
fn an_unloaded_model_leaves_no_module_behind() {
    // Every reload left the old model.py and its helpers (with the weights their
    // globals held) in sys.modules for good.
    let repo = tempfile::tempdir().unwrap();
    write_model(repo.path(), "gone", 1, 5.0);
    for _ in 0..2 {
        let mut model = load(repo.path(), "gone", 1);
        assert_eq!(answer(model.as_mut()), 10.0);
        assert!(!modules_named("model_gone_").is_empty());
        drop(model);
        assert_eq!(modules_named("model_gone_"), Vec::<String>::new());
    }
}

#[test]
fn a_pickled_module_naming_a_sibling_file_loads() {
    // torch.save(net) of a whole module records `net.Net`; unpickling in Model.__init__
    // must find net.py beside model.py under that name.
    let repo = tempfile::tempdir().unwrap();
    write_model(repo.path(), "pickled", 1, 0.0);
    let version_dir = repo.path().join("pickled/1");
    std::fs::write(
        version_dir.join("net.py"),
        "import torch\n\n\nclass Net(torch.nn.Module):\n    def forward(self, x):\n        \
         return x * 7\n",
    )
    .unwrap();
    std::fs::write(
        version_dir.join("model.py"),
        "import os\nimport torch\n\n\nclass Model:\n    def __init__(self, model_dir, config):\n        \
         self.net = torch.load(os.path.join(model_dir, 'net.pth'), weights_only=False)\n\n    \
         def predict(self, inputs):\n        return {'Y': self.net(inputs['X'])}\n",
    )
    .unwrap();
    torchbridge_python::torch_version().unwrap(); // starts the interpreter
    pyo3::Python::attach(|py| {
        let globals = PyDict::new(py);
        globals
            .set_item("d", version_dir.to_str().unwrap())
            .unwrap();
        py.run(
            c"import os, sys, torch\nsys.path.insert(0, d)\nimport net\n\
              torch.save(net.Net(), os.path.join(d, 'net.pth'))\n\
              del sys.modules['net']\nsys.path.remove(d)",
            Some(&globals),
            None,
        )
        .unwrap();
    });
    let mut model = load(repo.path(), "pickled", 1);
    assert_eq!(answer(model.as_mut()), 7.0);
    assert!(
        modules_named("net").iter().all(|k| k != "net"),
        "net leaked"
    );
}

/// Writes `files` (path, text) into version 1 of `model` under `root`, with [`CONFIG`].
fn write_files(root: &Path, model: &str, files: &[(&str, &str)]) {
    let version_dir = root.join(model).join("1");
    std::fs::create_dir_all(&version_dir).unwrap();
    std::fs::write(root.join(model).join("config.toml"), CONFIG).unwrap();
    for (path, text) in files {
        let path = version_dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

#[test]
fn a_sibling_package_imports_relatively_at_call_time() {
    // `from . import lazy` in a package model.py imported at load: it failed at call
    // time (No module named 'sub'), or took another model's `sub` while that loaded.
    let repo = tempfile::tempdir().unwrap();
    for (model, k) in [("rel1", "1.0"), ("rel2", "2.0")] {
        let lazy = format!("K = {k}\n");
        write_files(
            repo.path(),
            model,
            &[
                (
                    "model.py",
                    "from sub import lazy_k\nfrom . import sub as same\n\n\nclass Model:\n    \
                     def __init__(self, model_dir, config):\n        assert same.lazy_k is lazy_k\n\n    \
                     def predict(self, inputs):\n        return {'Y': inputs['X'] * lazy_k()}\n",
                ),
                (
                    "sub/__init__.py",
                    "def lazy_k():\n    from . import lazy\n    return lazy.K\n",
                ),
                ("sub/lazy.py", &lazy),
            ],
        );
    }
    let mut one = load(repo.path(), "rel1", 1);
    let mut two = load(repo.path(), "rel2", 1);
    assert_eq!(answer(one.as_mut()), 1.0);
    assert_eq!(answer(two.as_mut()), 2.0);
}

#[test]
fn a_pickle_naming_model_finds_the_loading_model_py_itself() {
    // A whole module pickled by a training script that was model.py records `model.Net`:
    // unpickling ran model.py a second time, and the object was no instance of its Net.
    let repo = tempfile::tempdir().unwrap();
    write_files(
        repo.path(),
        "selfpickle",
        &[(
            "model.py",
            "import io, torch\n\n\nclass Net(torch.nn.Module):\n    def forward(self, x):\n        \
             return x * 3\n\n\nclass Model:\n    def __init__(self, model_dir, config):\n        \
             buffer = io.BytesIO()\n        Net.__module__ = 'model'  # as training's model.py\n        \
             try:\n            torch.save(Net(), buffer)\n        finally:\n            \
             Net.__module__ = __name__\n        buffer.seek(0)\n        \
             self.net = torch.load(buffer, weights_only=False)\n        \
             assert isinstance(self.net, Net), type(self.net)\n\n    \
             def predict(self, inputs):\n        return {'Y': self.net(inputs['X'])}\n",
        )],
    );
    let mut model = load(repo.path(), "selfpickle", 1);
    assert_eq!(answer(model.as_mut()), 3.0);
}

#[test]
fn a_pickles_plain_name_during_one_load_is_not_another_models_import() {
    // While `p`'s Model(...) unpickles its `shared.Net` (the plain name `shared` stands for its
    // shared.py), `c`'s model.py imports its own shared.py: it got p's.
    let repo = tempfile::tempdir().unwrap();
    write_files(
        repo.path(),
        "p",
        &[
            (
                "shared.py",
                "import torch\nK = 'p'\n\n\nclass Net(torch.nn.Module):\n    def forward(self, x):\n        return x * 5\n",
            ),
            (
                "model.py",
                "import io, time, torch\nimport shared\n\n\nclass Model:\n    \
                 def __init__(self, model_dir, config):\n        buffer = io.BytesIO()\n        \
                 shared.Net.__module__ = 'shared'\n        try:\n            torch.save(shared.Net(), buffer)\n        \
                 finally:\n            shared.Net.__module__ = shared.__name__\n        buffer.seek(0)\n        \
                 self.net = torch.load(buffer, weights_only=False)\n        time.sleep(0.6)\n\n    \
                 def predict(self, inputs):\n        return {'Y': self.net(inputs['X'])}\n",
            ),
        ],
    );
    write_files(
        repo.path(),
        "c",
        &[
            ("shared.py", "K = 'c'\n"),
            (
                "model.py",
                "import time\ntime.sleep(0.3)\nimport shared\nassert shared.K == 'c', shared.K\n\n\n\
                 class Model:\n    def __init__(self, model_dir, config):\n        pass\n\n    \
                 def predict(self, inputs):\n        return {'Y': inputs['X'] * 0 + 7}\n",
            ),
        ],
    );
    let (mut p, mut c) = std::thread::scope(|s| {
        let p = s.spawn(|| load(repo.path(), "p", 1));
        let c = s.spawn(|| load(repo.path(), "c", 1));
        (p.join().unwrap(), c.join().unwrap())
    });
    assert_eq!(answer(p.as_mut()), 5.0);
    assert_eq!(answer(c.as_mut()), 7.0);
}

#[test]
fn pickle_load_in_model_py_and_import_module_find_the_siblings_while_loading() {
    // The stdlib unpickler called from model.py's own code, and importlib.import_module,
    // look the plain name up: they failed (KeyError: 'helpers', ModuleNotFoundError).
    let repo = tempfile::tempdir().unwrap();
    write_files(
        repo.path(),
        "plainly",
        &[
            (
                "helpers.py",
                "class Box:\n    def __init__(self, k):\n        self.k = k\n",
            ),
            ("lib/extra.py", "K = 4.0\n"),
            (
                "model.py",
                "import importlib, pickle\nimport helpers\nfrom lib import extra\n\
                 BOX = pickle.loads(pickle.dumps(helpers.Box(2.0), protocol=0).replace(\
                 helpers.__name__.encode(), b'helpers'))\n\n\nclass Model:\n    \
                 def __init__(self, model_dir, config):\n        \
                 assert isinstance(BOX, helpers.Box)\n        \
                 self.k = importlib.import_module('helpers').Box(BOX.k).k + extra.K\n\n    \
                 def predict(self, inputs):\n        return {'Y': inputs['X'] * self.k}\n",
            ),
        ],
    );
    let mut model = load(repo.path(), "plainly", 1);
    assert_eq!(answer(model.as_mut()), 6.0);
}
