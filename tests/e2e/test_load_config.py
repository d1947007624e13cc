"""Loading with a config (Triton's `config` load parameter, tritonclient's
`load_model(name, config=...)`): the usual round trip — read the model's config, edit it,
load with it — changes what serves without touching the repository; a load without one
goes back to config.toml. Isolated workers load with the same config as the server."""

import json
import textwrap
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import require_bridges, require_models, start_server, stop_server

# Multiplies by its `scale` parameter, in a worker process of its own.
SCALED = textwrap.dedent('''
    class Model:
        def __init__(self, model_dir, config):
            self.scale = float(config["scale"])

        def predict(self, inputs):
            return {"Y": inputs["X"] * self.scale}
''')

SCALED_CONFIG = textwrap.dedent('''
    backend = "python"
    max_batch_size = 4
    isolation = "process"
    [[input]]
    name = "X"
    datatype = "FP32"
    dims = [2]
    [[output]]
    name = "Y"
    datatype = "FP32"
    dims = [2]
    [parameters]
    scale = 2
''')


@pytest.fixture(scope="module")
def served(repo, tmp_path_factory):
    require_models(repo, "mlp_batched")
    root = tmp_path_factory.mktemp("load_config") / "repo"
    root.mkdir()
    (root / "mlp_batched").symlink_to(repo / "mlp_batched", target_is_directory=True)
    (root / "scaled" / "1").mkdir(parents=True)
    (root / "scaled" / "1" / "model.py").write_text(SCALED)
    (root / "scaled" / "config.toml").write_text(SCALED_CONFIG)
    server = start_server(root, root.parent / "serve.log")
    yield server
    assert stop_server(server) == 0, server.log_text()


def mlp_input(batch: int) -> httpclient.InferInput:
    x = httpclient.InferInput("INPUT0", [batch, 16], "FP32")
    x.set_data_from_numpy(np.linspace(-1, 1, batch * 16, dtype=np.float32).reshape(batch, 16))
    return x


def test_an_edited_model_config_loads_and_a_plain_load_restores_config_toml(served):
    with httpclient.InferenceServerClient(served.http_url) as client:
        before = client.infer("mlp_batched", [mlp_input(3)]).as_numpy("OUTPUT0")
        config = client.get_model_config("mlp_batched")
        preferred = config["dynamic_batching"]["preferred_batch_size"]
        assert config["instance_group"][0]["count"] == 2 and preferred != [2]
        config["instance_group"][0]["count"] = 3
        config["dynamic_batching"]["preferred_batch_size"] = [2]
        client.load_model("mlp_batched", config=json.dumps(config))

        shown = client.get_model_config("mlp_batched")
        assert shown["instance_group"][0]["count"] == 3
        assert shown["dynamic_batching"]["preferred_batch_size"] == [2]
        after = client.infer("mlp_batched", [mlp_input(3)]).as_numpy("OUTPUT0")
        np.testing.assert_array_equal(after, before)
        # The repository is as it was: a load without a config goes back to it.
        client.load_model("mlp_batched")
        shown = client.get_model_config("mlp_batched")
        assert shown["instance_group"][0]["count"] == 2
        assert shown["dynamic_batching"]["preferred_batch_size"] == preferred


def test_an_isolated_worker_loads_with_the_config_the_load_gave(served):
    require_bridges("python")
    x = grpcclient.InferInput("X", [1, 2], "FP32")
    x.set_data_from_numpy(np.array([[1.5, -2.0]], dtype=np.float32))
    with grpcclient.InferenceServerClient(served.grpc_url) as client:
        np.testing.assert_array_equal(client.infer("scaled", [x]).as_numpy("Y"), [[3.0, -4.0]])
        client.load_model("scaled", config=json.dumps(
            {"parameters": {"scale": {"string_value": "3"}}}))
        np.testing.assert_array_equal(client.infer("scaled", [x]).as_numpy("Y"), [[4.5, -6.0]])
        client.load_model("scaled")
        np.testing.assert_array_equal(client.infer("scaled", [x]).as_numpy("Y"), [[3.0, -4.0]])


def load(served, body: dict) -> tuple[int, str]:
    request = urllib.request.Request(
        f"http://{served.http_url}/v2/repository/models/mlp_batched/load",
        data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())["error"]


@pytest.mark.parametrize("parameters, message", [
    ({"config": json.dumps({"sequence_batching": {"max_sequence_idle_microseconds": 5}})},
     "`sequence_batching`: is not a setting torchbridge has"),
    ({"config": json.dumps({"max_batch_size": 1})}, "`batching.preferred_batch_sizes` holds"),
    ({"config": "{\"max_batch_size\": "}, "the `config` parameter is not valid JSON"),
    ({"config": {"max_batch_size": 4}}, "the `config` parameter must be a string"),
    ({"config": "{}", "file:1/model.onnx": "AAAA"}, "start the server with --allow-model-upload"),
    # A client may not read the server's files through labels, nor trust a pickle.
    ({"config": json.dumps({"output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32",
                                        "dims": [4], "label_filename": "/etc/passwd"}]})},
     "must be a path inside the model directory"),
    ({"config": json.dumps({"output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32",
                                        "dims": [4], "label_filename": "../../x"}]})},
     "must be a path inside the model directory"),
    ({"config": "trust_pickle = true\nbackend = \"onnx\""}, "`trust_pickle` is the operator's"),
    ({"config": "max_batch_size = 2"}, "is a config.toml that cannot serve"),
    ({"config": "backend = onnx"}, "is neither a JSON object (Triton's model config) nor TOML"),
])
def test_a_config_that_cannot_load_is_refused_and_the_model_serves_on(served, parameters,
                                                                      message):
    status, error = load(served, {"parameters": parameters})
    assert status == 400 and message in error, (status, error)
    assert "mlp_batched" in error, error
    with httpclient.InferenceServerClient(served.http_url) as client:
        assert client.get_model_config("mlp_batched")["instance_group"][0]["count"] == 2
        client.infer("mlp_batched", [mlp_input(1)])
        # The client's mistake leaves no mark on the model that serves on.
        [entry] = [m for m in client.get_model_repository_index()
                   if m["name"] == "mlp_batched"]
        assert entry["state"] == "READY" and entry.get("reason", "") == "", entry


def test_the_config_grpc_shows_loads_back(served):
    # Protobuf's JSON: 64-bit integers as strings (and MessageToJson's camelCase names).
    with grpcclient.InferenceServerClient(served.grpc_url) as client:
        config = client.get_model_config("mlp_batched", as_json=True)["config"]
        assert config["input"][0]["dims"] == ["16"]
        config["instance_group"][0]["count"] = 3
        client.load_model("mlp_batched", config=json.dumps(config))
        assert client.get_model_config("mlp_batched").config.instance_group[0].count == 3
        client.load_model("mlp_batched")
        assert client.get_model_config("mlp_batched").config.instance_group[0].count == 2


def test_grpc_refuses_a_config_it_cannot_load_by_name(served):
    with grpcclient.InferenceServerClient(served.grpc_url) as client:
        with pytest.raises(InferenceServerException) as e:
            client.load_model("mlp_batched", config=json.dumps({"name": "other"}))
        assert e.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert "the model loading is `mlp_batched`" in e.value.message()
        assert client.is_model_ready("mlp_batched")
