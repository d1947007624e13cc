//! What only the tract bridge does: refuse, at load, an operator it lacks.

use std::process::Command;

use torchbridge::{BackendKind, Model};

use crate::common::python;

#[test]
fn an_unimplemented_operator_is_named_with_its_node_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let version = dir.path().join("m/1");
    std::fs::create_dir_all(&version).unwrap();
    std::fs::write(dir.path().join("m/config.toml"), "backend = \"tract\"").unwrap();
    let script = r#"
import sys, onnx
from onnx import helper, TensorProto as T
x = helper.make_tensor_value_info("X", T.FLOAT, [2])
y = helper.make_tensor_value_info("Y", T.FLOAT, [2])
node = helper.make_node("Relu", ["X"], ["H"], name="fine")
odd = helper.make_node("NoSuchOp", ["H"], ["Y"], name="the_odd_one", domain="")
graph = helper.make_graph([node, odd], "g", [x], [y])
onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), sys.argv[1])
"#;
    let status = Command::new(python())
        .args(["-c", script])
        .arg(version.join("model.onnx"))
        .status()
        .unwrap();
    assert!(status.success());
    let e = Model::load_with(dir.path().join("m"), BackendKind::Tract)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("operator `NoSuchOp` (node `the_odd_one`)"),
        "{e}"
    );
}
