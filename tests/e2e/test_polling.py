"""`serve --poll-repository-secs 1`: the server follows its repository on disk. A model
directory that appears is loaded, a new version directory goes live, a config that breaks
leaves the loaded version serving, and a directory that disappears leaves the index. The
models are two fixture networks taking `X` and giving `Y = X + 1`, in FP32 (`dtypes_FP32`)
and FP64 (`dtypes_FP64`), so each answer shows which one served."""

import shutil
import time

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import binary_bridges, require_models, start_server, stop_server

X = np.array([[1.5, -2.0, 0.25, 8.0]])


def place_model(repo, source_repo, name, sources: dict) -> None:
    """Writes model `name` ({version: fixture}) beside the repository and renames it in,
    as a deployment should: the server never sees it half written."""
    staging = repo.parent / f"staging-{name}"
    for version, source in sources.items():
        (staging / version).mkdir(parents=True)
        shutil.copy(source_repo / source / "1" / "model.onnx", staging / version / "model.onnx")
    backend = "onnx" if "onnx" in binary_bridges() else "tract"
    (staging / "config.toml").write_text(f'backend = "{backend}"\nmax_batch_size = 8\n')
    staging.rename(repo / name)


def wait_until(check, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except InferenceServerException:
            pass
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.2)


def answer(client, model: str, datatype: str, dtype) -> np.ndarray:
    tensor = httpclient.InferInput("X", list(X.shape), datatype)
    tensor.set_data_from_numpy(X.astype(dtype))
    return client.infer(model, [tensor]).as_numpy("Y")


@pytest.fixture
def polled(repo, tmp_path):
    require_models(repo, "dtypes_FP32", "dtypes_FP64")
    root = tmp_path / "repo"
    root.mkdir()
    place_model(root, repo, "a", {"1": "dtypes_FP32"})
    server = start_server(root, tmp_path / "serve.log", "--poll-repository-secs", "1")
    yield server, root, repo
    assert stop_server(server) == 0, server.log_text()


def test_the_server_follows_its_repository(polled):
    server, root, fixtures = polled
    client = httpclient.InferenceServerClient(server.http_url)
    np.testing.assert_array_equal(answer(client, "a", "FP32", np.float32), X + 1)

    # A new model appears (before the next poll sees it, it is named as one that will).
    place_model(root, fixtures, "b", {"1": "dtypes_FP64"})
    try:
        client.get_model_metadata("b")
    except InferenceServerException as early:
        said = early.message()
        assert "the next poll of the repository loads it" in said or "loading" in said, said
    wait_until(lambda: client.is_model_ready("b"), "model b loaded")
    np.testing.assert_array_equal(answer(client, "b", "FP64", np.float64), X + 1)

    # A new version of `a` goes live (the default policy serves the highest).
    staging = root.parent / "a-2"
    staging.mkdir()
    shutil.copy(fixtures / "dtypes_FP64" / "1" / "model.onnx", staging / "model.onnx")
    staging.rename(root / "a" / "2")
    wait_until(lambda: client.get_model_metadata("a")["versions"] == ["2"], "a's version 2")
    np.testing.assert_array_equal(answer(client, "a", "FP64", np.float64), X + 1)

    # A config that breaks: the reload fails, the loaded version serves on.
    (root / "a" / "config.toml").write_text('backend = "onnx"\nmax_batch_size = "eight"\n')
    wait_until(lambda: "model `a` changed, and its reload failed" in server.log_text(),
               "the failed reload reported")
    assert "max_batch_size" in server.log_text()
    np.testing.assert_array_equal(answer(client, "a", "FP64", np.float64), X + 1)
    # The index says so: still READY, with the failed reload as the reason.
    [entry] = [m for m in client.get_model_repository_index() if m["name"] == "a"]
    assert entry["state"] == "READY", entry
    assert "its reload failed" in entry["reason"] and "max_batch_size" in entry["reason"], entry

    # A model that disappears leaves the index; the others serve on.
    shutil.rmtree(root / "b")
    wait_until(lambda: [m["name"] for m in client.get_model_repository_index()] == ["a"],
               "b removed from the index")
    with pytest.raises(InferenceServerException) as gone:
        answer(client, "b", "FP64", np.float64)
    assert gone.value.status() == "404"
    assert client.is_server_live() and client.is_server_ready()
