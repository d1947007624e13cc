"""Several versions of one model served side by side (`version_policy` in config.toml,
Triton's version policy). The model `ab` is built from two fixture networks that take `X`
and give `Y = X + 1`: version 1 in FP32, version 2 in FP64, so every answer shows which
version ran. Clients that name a version get it; those that do not get the highest. A
reload follows the config, and a failed reload leaves the loaded versions serving."""

import shutil

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import binary_bridges, require_models, start_server, stop_server

X = np.array([[1.5, -2.0, 0.25, 8.0]])
DTYPES = {"1": ("FP32", np.float32), "2": ("FP64", np.float64)}


def write_config(model_dir, policy: str) -> None:
    backend = "onnx" if "onnx" in binary_bridges() else "tract"
    (model_dir / "config.toml").write_text(
        f'backend = "{backend}"\nmax_batch_size = 8\nversion_policy = {policy}\n')


@pytest.fixture(scope="module")
def versions_server(repo, tmp_path_factory):
    require_models(repo, "dtypes_FP32", "dtypes_FP64")
    root = tmp_path_factory.mktemp("versions_repo")
    model = root / "ab"
    for version, source in [("1", "dtypes_FP32"), ("2", "dtypes_FP64")]:
        (model / version).mkdir(parents=True)
        shutil.copy(repo / source / "1" / "model.onnx", model / version / "model.onnx")
    write_config(model, "{ latest = 2 }")
    server = start_server(root, tmp_path_factory.mktemp("versions") / "serve.log")
    yield server, model
    assert stop_server(server) == 0, server.log_text()


def infer(client_module, client, version: str, target: str = ""):
    """Runs version `version`'s datatype through `ab`, naming `target` (or no version)."""
    datatype, dtype = DTYPES[version]
    tensor = client_module.InferInput("X", list(X.shape), datatype)
    tensor.set_data_from_numpy(X.astype(dtype))
    y = client.infer("ab", [tensor], model_version=target).as_numpy("Y")
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, (X + 1).astype(dtype))


def test_each_named_version_answers_and_the_highest_is_the_default(versions_server):
    server, _ = versions_server
    with httpclient.InferenceServerClient(server.http_url) as client:
        assert client.get_model_metadata("ab")["versions"] == ["1", "2"]
        assert client.get_model_metadata("ab", "1")["inputs"][0]["datatype"] == "FP32"
        assert client.get_model_metadata("ab")["inputs"][0]["datatype"] == "FP64"
        infer(httpclient, client, "1", "1")
        infer(httpclient, client, "2", "2")
        infer(httpclient, client, "2")
        assert client.is_model_ready("ab", "1") and not client.is_model_ready("ab", "3")
        with pytest.raises(InferenceServerException) as e:
            infer(httpclient, client, "1", "3")
        assert e.value.status() == "404" and "versions served: [1, 2]" in e.value.message()

        index = [(m["name"], m.get("version"), m["state"])
                 for m in client.get_model_repository_index()]
        assert index == [("ab", "1", "READY"), ("ab", "2", "READY")]
        stats = client.get_inference_statistics("ab")["model_stats"]
        assert [(s["version"], s["inference_count"]) for s in stats] == [("1", 1), ("2", 2)]
        policy = client.get_model_config("ab")["version_policy"]
        assert policy == {"latest": {"num_versions": 2}}

    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        infer(grpcclient, client, "1", "1")
        assert client.get_model_metadata("ab").versions == ["1", "2"]
        config = client.get_model_config("ab", as_json=True)["config"]
        assert config["version_policy"] == {"latest": {"num_versions": 2}}


def test_a_reload_follows_the_config_and_a_failed_one_changes_nothing(versions_server):
    server, model = versions_server
    with httpclient.InferenceServerClient(server.http_url) as client:
        try:
            write_config(model, "{ specific = [1, 9] }")
            with pytest.raises(InferenceServerException) as e:
                client.load_model("ab")
            assert "[9]" in e.value.message() and "versions present: [1, 2]" in e.value.message()
            assert client.get_model_metadata("ab")["versions"] == ["1", "2"]
            infer(httpclient, client, "2", "2")

            write_config(model, "{ specific = [1] }")
            client.load_model("ab")
            assert client.get_model_metadata("ab")["versions"] == ["1"]
            infer(httpclient, client, "1")
            with pytest.raises(InferenceServerException) as e:
                infer(httpclient, client, "2", "2")
            assert e.value.status() == "404"
        finally:
            write_config(model, "{ latest = 2 }")
            client.load_model("ab")
        assert client.get_model_metadata("ab")["versions"] == ["1", "2"]
