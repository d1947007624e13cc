//! What only the tract bridge does: refuse, at load, an operator it lacks; run each call
//! on a clean state (tract keeps state between the runs of one plan).

use std::process::Command;

use torchbridge::{BackendKind, Model, Tensor};

use crate::common::python;

#[test]
fn an_unimplemented_operator_is_named_with_its_node_at_load() {
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
    let dir = tract_model_dir(script, "backend = \"tract\"");
    let e = Model::load_with(dir.path().join("m"), BackendKind::Tract)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("operator `NoSuchOp` (node `the_odd_one`)"),
        "{e}"
    );
}

/// A model directory `m` for tract, its model.onnx written by `script` (which gets the
/// path as its argument), with `config` as config.toml.
fn tract_model_dir(script: &str, config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let version = dir.path().join("m/1");
    std::fs::create_dir_all(&version).unwrap();
    std::fs::write(dir.path().join("m/config.toml"), config).unwrap();
    let status = Command::new(python())
        .args(["-c", script])
        .arg(version.join("model.onnx"))
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

/// [`tract_model_dir`]'s model, loaded.
fn tract_model(script: &str, config: &str) -> (tempfile::TempDir, Model) {
    let dir = tract_model_dir(script, config);
    let model = Model::load_with(dir.path().join("m"), BackendKind::Tract).unwrap();
    (dir, model)
}

fn run(model: &Model, rows: usize, seq: usize) -> torchbridge::Result<Vec<f32>> {
    let x: Vec<f32> = (0..rows * seq * 8).map(|i| (i % 7) as f32 * 0.1).collect();
    let x = Tensor::from_slice("X", vec![rows as i64, seq as i64, 8], &x)?;
    model.infer(vec![x])?[0].to_vec::<f32>()
}

#[test]
fn a_recurrent_model_answers_each_call_afresh_whatever_came_before() {
    let script = r#"
import sys, torch
class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(8, 4, batch_first=True)
    def forward(self, x):
        return self.lstm(x)[0][:, -1]
torch.manual_seed(0)
torch.onnx.export(M().eval(), (torch.randn(1, 3, 8),), sys.argv[1], dynamo=False,
                  input_names=["X"], output_names=["Y"],
                  dynamic_axes={"X": {0: "batch", 1: "seq"}, "Y": {0: "batch"}})
"#;
    let config = "backend = \"tract\"\nmax_batch_size = 4\n";
    let (_dir, model) = tract_model(script, config);
    let first = run(&model, 1, 3).unwrap();
    assert_eq!(
        run(&model, 1, 3).unwrap(),
        first,
        "the hidden state carried over"
    );
    // Other batch sizes and lengths, then the first call again.
    let two = run(&model, 2, 5).unwrap();
    assert_eq!(two.len(), 8);
    assert_eq!(run(&model, 1, 3).unwrap(), first);
}

#[test]
fn a_call_that_fails_leaves_no_trace_on_the_next() {
    // Two inputs whose variable lengths must match: a request where they differ fails,
    // and must not bind the lengths for the calls after it.
    let script = r#"
import sys, onnx
from onnx import helper, TensorProto as T
a = helper.make_tensor_value_info("A", T.FLOAT, ["batch", "len"])
b = helper.make_tensor_value_info("B", T.FLOAT, ["batch", "len"])
y = helper.make_tensor_value_info("Y", T.FLOAT, ["batch", "len"])
graph = helper.make_graph([helper.make_node("Add", ["A", "B"], ["Y"])], "g", [a, b], [y])
onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), sys.argv[1])
"#;
    let config = "backend = \"tract\"\nmax_batch_size = 4\n";
    let (_dir, model) = tract_model(script, config);
    let pair = |a: usize, b: usize| {
        let t = |name: &str, n: usize| Tensor::from_slice(name, vec![1, n as i64], &vec![1f32; n]);
        model.infer(vec![t("A", a).unwrap(), t("B", b).unwrap()])
    };
    assert!(pair(3, 4).is_err());
    assert_eq!(pair(4, 4).unwrap()[0].to_vec::<f32>().unwrap(), [2.0; 4]);
    assert_eq!(pair(3, 3).unwrap()[0].to_vec::<f32>().unwrap(), [2.0; 3]);
}

#[test]
fn a_panic_inside_tract_is_an_error_and_the_model_serves_on() {
    // An embedding lookup: ids past the table's 10 rows make tract panic.
    let script = r#"
import sys, numpy as np, onnx
from onnx import helper, numpy_helper, TensorProto as T
ids = helper.make_tensor_value_info("IDS", T.INT64, ["batch", 3])
y = helper.make_tensor_value_info("Y", T.FLOAT, ["batch", 3, 4])
table = numpy_helper.from_array(np.arange(40, dtype=np.float32).reshape(10, 4), "table")
node = helper.make_node("Gather", ["table", "IDS"], ["Y"])
graph = helper.make_graph([node], "g", [ids], [y], initializer=[table])
onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), sys.argv[1])
"#;
    let config = "backend = \"tract\"\nmax_batch_size = 4\n";
    let (_dir, model) = tract_model(script, config);
    let ids = |v: [i64; 3]| Tensor::from_slice("IDS", vec![1, 3], &v).unwrap();
    let e = model.infer(vec![ids([1, 99, 2])]).unwrap_err().to_string();
    assert!(e.contains("tract panicked running the model"), "{e}");
    assert!(e.contains("a token id past an embedding table"), "{e}");
    let y = model.infer(vec![ids([0, 1, 9])]).unwrap()[0]
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(&y[..4], &[0.0, 1.0, 2.0, 3.0]);
    assert_eq!(&y[8..], &[36.0, 37.0, 38.0, 39.0]);
}

#[test]
fn integers_wrap_as_in_onnx_runtime_in_debug_builds_too() {
    // INT8 127 + 1: ONNX Runtime and libtorch wrap to -128; so does tract in a release
    // build, and in a debug one only because the workspace turns its overflow checks off
    // (it panicked: a 500 for a valid request).
    let script = r#"
import sys, numpy as np, onnx
from onnx import helper, numpy_helper, TensorProto as T
x = helper.make_tensor_value_info("X", T.INT8, ["batch", 2])
y = helper.make_tensor_value_info("Y", T.INT8, ["batch", 2])
one = numpy_helper.from_array(np.array([1], dtype=np.int8), "one")
graph = helper.make_graph([helper.make_node("Add", ["X", "one"], ["Y"])], "g", [x], [y],
                          initializer=[one])
onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), sys.argv[1])
"#;
    let (_dir, model) = tract_model(script, "backend = \"tract\"\nmax_batch_size = 4\n");
    let x = Tensor::from_slice("X", vec![1, 2], &[127i8, -5]).unwrap();
    let y = model.infer(vec![x]).unwrap()[0].to_vec::<i8>().unwrap();
    assert_eq!(y, [-128, -4]);
}

#[test]
fn a_count_tract_computes_as_dimensions_is_an_int64_output() {
    // `(x > 0).sum(-1)` of a torch export: tract makes the count a dimension (TDim) and
    // the model failed to load ("holds TDim elements, which the tract bridge cannot
    // exchange") though onnx and torchscript serve it.
    let script = r#"
import sys, torch
class Count(torch.nn.Module):
    def forward(self, x):
        return (x > 0).sum(-1)
torch.onnx.export(Count(), (torch.randn(2, 5),), sys.argv[1], dynamo=False,
                  input_names=["X"], output_names=["N"], dynamic_axes={"X": {0: "b"}, "N": {0: "b"}})
"#;
    let config = "backend = \"tract\"\nmax_batch_size = 4\n\
        [[input]]\nname = \"X\"\ndatatype = \"FP32\"\ndims = [5]\n\
        [[output]]\nname = \"N\"\ndatatype = \"INT64\"\ndims = []\n";
    let (_dir, model) = tract_model(script, config);
    let x = Tensor::from_slice(
        "X",
        vec![2, 5],
        &[1.0f32, -1., 2., 0., 3., -1., -2., 5., 0., 0.],
    )
    .unwrap();
    let n = model.infer(vec![x]).unwrap()[0].to_vec::<i64>().unwrap();
    assert_eq!(n, [3, 1]);
}
