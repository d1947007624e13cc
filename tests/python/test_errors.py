"""Errors from Rust arrive as exceptions of specific classes, with Rust's message."""

import os

import numpy as np
import pytest
import torch
from torch import nn

import torchbridge


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    torchbridge.export(nn.Linear(4, 2), torch.randn(2, 4), repo, name="lin", bridges=("onnx",))
    return torchbridge.Model.load(repo / "lin")


def test_the_classes_form_one_tree():
    for cls in (torchbridge.ConfigError, torchbridge.ModelError, torchbridge.InvalidInputError,
                torchbridge.ModelNotFoundError, torchbridge.UnavailableError,
                torchbridge.OverloadedError, torchbridge.DeadlineExceededError):
        assert issubclass(cls, torchbridge.TorchbridgeError)
    assert issubclass(torchbridge.InferenceError, torchbridge.ModelError)
    assert torchbridge.ConfigError.__module__ == "torchbridge"


def test_a_missing_model_directory_is_a_config_error_naming_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(torchbridge.ConfigError, match=str(missing)):
        torchbridge.Model.load(missing)


def test_an_unknown_bridge_is_a_config_error(tmp_path):
    with pytest.raises(torchbridge.ConfigError, match="unknown bridge `quantum`"):
        torchbridge.Model.load(tmp_path, bridge="quantum")


def test_a_wrong_shape_is_an_invalid_input_error_naming_the_input(model):
    with pytest.raises(torchbridge.InvalidInputError, match="INPUT0.*shape"):
        model.infer({"INPUT0": np.zeros((2, 5), np.float32)})


def test_a_wrong_datatype_or_name_is_an_invalid_input_error(model):
    with pytest.raises(torchbridge.InvalidInputError, match="INPUT0"):
        model.infer({"INPUT0": np.zeros((2, 4), np.float64)})
    with pytest.raises(torchbridge.InvalidInputError):
        model.infer({"WRONG": np.zeros((2, 4), np.float32)})


@pytest.mark.parametrize("value, why", [
    (None, "input `INPUT0` is None"),
    ([[0.0, 1.0], [2.0]], "input `INPUT0` cannot be read as FP32 array"),
    ("text", "input `INPUT0` cannot be read as FP32 array"),
])
def test_values_that_are_no_array_are_invalid_input_errors_naming_the_input(model, value, why):
    with pytest.raises(torchbridge.InvalidInputError, match=why):
        model.infer({"INPUT0": value})


def test_inputs_must_be_a_dict(model):
    with pytest.raises(TypeError, match="inputs must be a dict of input name to array, got list"):
        model.infer([np.zeros((1, 4), np.float32)])


def test_lists_take_the_declared_datatype(model):
    out = model.infer({"INPUT0": [[0.0, 1.0, 2.0, 3.0]]})["OUTPUT0"]
    assert out.shape == (1, 2) and out.dtype == np.float32


def test_a_form_missing_for_the_bridge_is_a_config_error(tmp_path):
    torchbridge.export(nn.Linear(4, 2), torch.randn(2, 4), tmp_path, name="only_onnx",
                       bridges=("onnx",))
    with pytest.raises(torchbridge.ConfigError, match="torchscript bridge"):
        torchbridge.Model.load(tmp_path / "only_onnx", bridge="torchscript")


class Fails(nn.Module):
    def forward(self, x):
        if x.sum() > 1e9:
            raise RuntimeError("too big")
        return x


def test_a_python_exception_in_the_model_is_an_inference_error(tmp_path):
    torchbridge.export(Fails(), torch.zeros(1, 2), tmp_path, name="fails", bridges=("python",))
    model = torchbridge.Model.load(tmp_path / "fails")
    with pytest.raises(torchbridge.InferenceError, match="too big"):
        model.infer({"INPUT0": np.full((1, 2), 1e10, np.float32)})


def test_an_isolated_model_needs_the_torchbridge_binary_as_its_worker(tmp_path, monkeypatch):
    monkeypatch.delenv("TORCHBRIDGE_WORKER", raising=False)
    torchbridge.export(nn.Linear(4, 2), torch.randn(2, 4), tmp_path, name="lin",
                       bridges=("onnx",))
    config = tmp_path / "lin" / "config.toml"
    config.write_text('isolation = "process"\n' + config.read_text())
    with pytest.raises(torchbridge.TorchbridgeError, match="set TORCHBRIDGE_WORKER"):
        torchbridge.Model.load(tmp_path / "lin")


ECHO = '''
import numpy as np


class Model:
    def __init__(self, model_dir, config):
        pass

    def predict(self, inputs):
        return {"ECHO": np.array([[item.upper()] for item in inputs["TEXT"][:, 0]],
                                 dtype=object)}
'''


@pytest.fixture(scope="module")
def echo(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("repo") / "echo"
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "1" / "model.py").write_text(ECHO)
    (model_dir / "config.toml").write_text(
        'backend = "python"\nmax_batch_size = 4\n'
        '[[input]]\nname = "TEXT"\ndatatype = "BYTES"\ndims = [1]\n'
        '[[output]]\nname = "ECHO"\ndatatype = "BYTES"\ndims = [1]\n')
    return torchbridge.Model.load(model_dir)


def test_bytes_inputs_take_bytes_and_str(echo):
    got = echo.infer({"TEXT": [[b"ab"], ["cd"], [np.bytes_(b"ef")], [bytearray(b"gh")]]})
    assert got["ECHO"].tolist() == [[b"AB"], [b"CD"], [b"EF"], [b"GH"]]
    got = echo.infer({"TEXT": np.array([["x"], ["yz"]])})  # numpy's own string array
    assert got["ECHO"].tolist() == [[b"X"], [b"YZ"]]


@pytest.mark.parametrize("value, kind", [([[5]], "int"), ([[1.5]], "float"),
                                         (np.array([[b"a"], [300]], dtype=object), "int"),
                                         ([[None]], "NoneType")])
def test_a_bytes_input_holding_no_bytes_is_an_invalid_input_error_naming_it(echo, value, kind):
    with pytest.raises(torchbridge.InvalidInputError,
                       match=f"input `TEXT` is BYTES, but holds an element of type {kind}; "
                             f"give bytes or str"):
        echo.infer({"TEXT": value})


def _infer_in_child(model, said):
    try:
        model.infer({"INPUT0": np.zeros((1, 4), np.float32)})
        said.put("answered")
    except torchbridge.UnavailableError as e:
        said.put(str(e))


def test_a_forked_child_is_told_to_load_its_own_model(tmp_path):
    # A fork copies the model but not its instance threads: the call waited for ever.
    import multiprocessing
    torchbridge.export(nn.Linear(4, 2), torch.randn(2, 4), tmp_path, name="lin",
                       bridges=("torchscript",))
    model = torchbridge.Model.load(tmp_path / "lin")
    fork = multiprocessing.get_context("fork")
    said = fork.Queue()
    child = fork.Process(target=_infer_in_child, args=(model, said))
    child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
    assert child.exitcode == 0
    message = said.get(timeout=10)
    assert "load the model in the child" in message and str(os.getpid()) in message, message
    assert model.infer({"INPUT0": np.zeros((1, 4), np.float32)})["OUTPUT0"].shape == (1, 2)
