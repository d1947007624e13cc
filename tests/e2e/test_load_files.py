"""Deploying a model through the API (Triton's `file:` load parameters, tritonclient's
`load_model(name, config=..., files=...)`), on a server started with --allow-model-upload:
the model serves from the files the request carried, named as the request says, and a
path outside the model directory is refused."""

import json
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import binary_bridges, require_models, start_server, stop_server


@pytest.fixture(scope="module")
def served(repo, tmp_path_factory):
    require_models(repo, "mlp")
    root = tmp_path_factory.mktemp("load_files") / "repo"
    root.mkdir()
    server = start_server(root, root.parent / "serve.log", "--allow-model-upload")
    yield server
    assert stop_server(server) == 0, server.log_text()


def mlp_config(repo: Path) -> dict:
    """Triton's model config for the fixture mlp's ONNX file, by whichever bridge reads it."""
    return {
        "backend": "onnx" if "onnx" in binary_bridges() else "tract",
        "max_batch_size": 8,
        "input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [16]}],
        "output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [4]}],
    }


def mlp_files(repo: Path) -> dict:
    return {"file:1/model.onnx": (repo / "mlp" / "1" / "model.onnx").read_bytes()}


def reference(repo: Path):
    refs = repo / "mlp" / "ref"
    return np.load(refs / "inputs" / "INPUT0.npy"), np.load(refs / "outputs" / "OUTPUT0.npy")


@pytest.mark.parametrize("client_module", [httpclient, grpcclient], ids=["http", "grpc"])
def test_a_model_sent_with_its_files_serves(served, repo, client_module):
    x, want = reference(repo)
    url = served.http_url if client_module is httpclient else served.grpc_url
    name = f"sent_{client_module.__name__.split('.')[-1]}"
    with client_module.InferenceServerClient(url) as client:
        assert not client.is_model_ready(name)
        client.load_model(name, config=json.dumps(mlp_config(repo)), files=mlp_files(repo))
        assert client.is_model_ready(name)
        tensor = client_module.InferInput("INPUT0", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        got = client.infer(name, [tensor]).as_numpy("OUTPUT0")
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        config = (client.get_model_config(name) if client_module is httpclient
                  else client.get_model_config(name, as_json=True)["config"])
        assert config["max_batch_size"] == 8
    assert not (served.repo / name).exists(), "the repository is not written to"


@pytest.mark.parametrize("files, config, message", [
    ({"file:../escaped.onnx": b"x"}, True, "file `../escaped.onnx`: an uploaded file is named"),
    ({"file:1/model.onnx": b"x"}, False, "needs the `config` parameter too"),
    ({"file:1/model.onnx": b"not onnx"}, True, "sent_bad"),
])
def test_files_that_cannot_load_are_refused_by_name(served, repo, files, config, message):
    with httpclient.InferenceServerClient(served.http_url) as client:
        with pytest.raises(InferenceServerException) as e:
            client.load_model("sent_bad", config=json.dumps(mlp_config(repo)) if config else None,
                              files=files)
        assert message in e.value.message()
        assert not client.is_model_ready("sent_bad")
