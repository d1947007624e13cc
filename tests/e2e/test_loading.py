"""What loads at startup. Models load side by side (`--model-load-threads`, 4 by default):
two python models whose loads each wait for the other to have started (a rendezvous through
files) can only both load if their loads overlap; one at a time, the first would give up
waiting and fail. With `--load-model`, only the named models load; the others wait for the
repository API."""

import subprocess
import urllib.error
import urllib.request
import textwrap

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import BINARY, require_bridges, require_models, start_server, stop_server

# Arrives (a file named after this model), then waits for the other model to arrive.
HANDLER = textwrap.dedent('''
    import os
    import time


    class Model:
        def __init__(self, model_dir, config):
            me, other = config["me"], config["other"]
            meeting = os.path.join(model_dir, "..", "..")
            open(os.path.join(meeting, me + ".arrived"), "w").close()
            deadline = time.monotonic() + float(config["wait_s"])
            while not os.path.exists(os.path.join(meeting, other + ".arrived")):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{me} waited for {other}, which never started loading")
                time.sleep(0.05)

        def predict(self, inputs):
            return {"Y": inputs["X"] * 2}
''')


def write_pair(root, wait_s: float) -> None:
    for me, other in [("left", "right"), ("right", "left")]:
        (root / me / "1").mkdir(parents=True)
        (root / me / "1" / "model.py").write_text(HANDLER)
        (root / me / "config.toml").write_text(textwrap.dedent(f'''
            backend = "python"
            max_batch_size = 4
            [[input]]
            name = "X"
            datatype = "FP32"
            dims = [2]
            [[output]]
            name = "Y"
            datatype = "FP32"
            dims = [2]
            [parameters]
            me = "{me}"
            other = "{other}"
            wait_s = {wait_s}
        '''))


def index(server) -> dict:
    with httpclient.InferenceServerClient(server.http_url) as client:
        return {m["name"]: m for m in client.get_model_repository_index()}


@pytest.mark.parametrize("threads", ["4", "1"])
def test_models_load_side_by_side(tmp_path, threads):
    require_bridges("python")
    root = tmp_path / "repo"
    write_pair(root, wait_s=60 if threads != "1" else 3)
    server = start_server(root, tmp_path / "serve.log", "--model-load-threads", threads)
    try:
        models = index(server)
        if threads == "1":
            # One at a time: the first to load waited for the other in vain.
            failed = [m for m in models.values() if m["state"] == "UNAVAILABLE"]
            assert len(failed) == 1, models
            assert "which never started loading" in failed[0]["reason"]
            return
        assert {m["state"] for m in models.values()} == {"READY"}, models
        with httpclient.InferenceServerClient(server.http_url) as client:
            x = httpclient.InferInput("X", [1, 2], "FP32")
            x.set_data_from_numpy(np.array([[1.0, -3.0]], dtype=np.float32))
            np.testing.assert_array_equal(client.infer("left", [x]).as_numpy("Y"), [[2.0, -6.0]])
    finally:
        assert stop_server(server) == 0, server.log_text()


def linked_repo(repo, tmp_path, *names):
    """A repository of its own under `tmp_path` holding `names` of the fixtures (links)."""
    root = tmp_path / "repo"
    root.mkdir()
    for name in names:
        (root / name).symlink_to(repo / name, target_is_directory=True)
    return root


def test_load_model_loads_only_the_named_models(repo, tmp_path):
    require_models(repo, "mlp", "no_batch")
    root = linked_repo(repo, tmp_path, "mlp", "no_batch")
    server = start_server(root, tmp_path / "serve.log", "--load-model", "no_batch")
    try:
        models = index(server)
        assert models["no_batch"]["state"] == "READY"
        assert (models["mlp"]["state"], models["mlp"]["reason"]) == ("UNAVAILABLE", "not loaded")
        with httpclient.InferenceServerClient(server.http_url) as client:
            assert client.is_server_ready() and not client.is_model_ready("mlp")
            with pytest.raises(InferenceServerException) as e:
                client.get_model_metadata("mlp")
            assert e.value.status() == "503", e.value
            assert "not loaded; load it through the repository API" in e.value.message()
            client.load_model("mlp")
            assert client.is_model_ready("mlp")
    finally:
        assert stop_server(server) == 0, server.log_text()

    run = subprocess.run([str(BINARY), "serve", "--model-repository", str(root),
                          "--load-model", "nope", "--http-port", "0", "--grpc-port", "0",
                          "--metrics-port", "0"], capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert "--load-model nope: the repository has no model `nope`" in run.stderr, run.stderr


def test_with_model_control_none_clients_cannot_load_or_unload(repo, tmp_path):
    require_models(repo, "mlp")
    root = linked_repo(repo, tmp_path, "mlp")
    server = start_server(root, tmp_path / "serve.log", "--model-control-mode", "none")
    try:
        with httpclient.InferenceServerClient(server.http_url) as client:
            with pytest.raises(InferenceServerException) as e:
                client.unload_model("mlp")
            assert e.value.status() == "403" and "--model-control-mode none" in e.value.message()
            with pytest.raises(InferenceServerException) as e:
                client.load_model("mlp", config='{"max_batch_size": 2}')
            assert e.value.status() == "403", e.value
            assert client.is_model_ready("mlp")
            assert index(server)["mlp"]["state"] == "READY"
        grpc = grpcclient.InferenceServerClient(server.grpc_url)
        with pytest.raises(InferenceServerException) as e:
            grpc.unload_model("mlp")
        assert e.value.status() == "StatusCode.PERMISSION_DENIED", e.value
        assert grpc.is_model_ready("mlp")
    finally:
        assert stop_server(server) == 0, server.log_text()
    # What --load-model leaves out could never load.
    run = subprocess.run([str(BINARY), "serve", "--model-repository", str(root),
                          "--model-control-mode", "none", "--load-model", "mlp",
                          "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert "--load-model needs --model-control-mode explicit" in run.stderr, run.stderr


def test_what_is_not_a_model_is_named_or_left_alone(repo, tmp_path):
    require_models(repo, "mlp")
    root = linked_repo(repo, tmp_path, "mlp")
    # A hidden copy (a backup) is not a model; one without config.toml is warned about.
    (root / ".mlp.bak").symlink_to(repo / "mlp", target_is_directory=True)
    (root / "unconfigured" / "1").mkdir(parents=True)
    server = start_server(root, tmp_path / "serve.log")
    try:
        assert set(index(server)) == {"mlp"}
        assert "`unconfigured/` in the model repository holds no config.toml" in server.log_text()
    finally:
        assert stop_server(server) == 0, server.log_text()

    run = subprocess.run([str(BINARY), "serve", "--model-repository", str(root / "mlp"),
                          "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert "this is a model directory (it holds config.toml)" in run.stderr, run.stderr


def test_metrics_listen_on_their_own_address_when_given(repo, tmp_path):
    require_models(repo, "mlp")
    root = linked_repo(repo, tmp_path, "mlp")
    server = start_server(root, tmp_path / "serve.log", "--metrics-host", "127.0.0.2")
    try:
        port = server.metrics_url.rsplit(":", 1)[1]
        with urllib.request.urlopen(f"http://127.0.0.2:{port}/metrics", timeout=10) as r:
            assert "torchbridge_" in r.read().decode()
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10)
    finally:
        assert stop_server(server) == 0, server.log_text()


def test_with_strict_readiness_a_model_that_failed_keeps_the_server_not_ready(repo, tmp_path):
    # As in Triton (its default): ready only while every model it loaded is available.
    # `pickled` fails to load (a pickle the config does not trust).
    require_models(repo, "mlp", "pickled")
    root = linked_repo(repo, tmp_path, "mlp", "pickled")
    server = start_server(root, tmp_path / "serve.log", "--strict-readiness", "true")
    try:
        with httpclient.InferenceServerClient(server.http_url) as client, \
                grpcclient.InferenceServerClient(server.grpc_url) as grpc:
            assert index(server)["pickled"]["state"] == "UNAVAILABLE"
            assert client.is_model_ready("mlp")
            assert not client.is_server_ready() and not grpc.is_server_ready()
            # A request for it is answered 503 and counted `unavailable`, not `failure`.
            x = httpclient.InferInput("X", [1, 2], "FP32")
            x.set_data_from_numpy(np.zeros((1, 2), np.float32))
            with pytest.raises(InferenceServerException) as refused:
                client.infer("pickled", [x])
            assert refused.value.status() == "503", refused.value
            with urllib.request.urlopen(f"http://{server.metrics_url}/metrics") as reply:
                metrics = reply.read().decode()
            counted = [line for line in metrics.splitlines()
                       if line.startswith("torchbridge_inference_requests_total{")
                       and 'model="pickled"' in line]
            assert any('outcome="unavailable"' in line for line in counted), counted
            # An unloaded model no longer counts.
            client.unload_model("pickled")
            assert client.is_server_ready() and grpc.is_server_ready()
    finally:
        assert stop_server(server) == 0, server.log_text()
