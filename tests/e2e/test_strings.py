"""Strings in, embeddings out, over tritonclient: all-MiniLM-L6-v2 behind the `[tokenizer]`
stage, served through candle (from its published files) and, from a model.onnx export of
the same network, through onnx (tract cannot optimise that export). Every embedding must
equal what sentence-transformers computes in process (tests/fixtures/make_minilm.py)
within 1e-4.

This module's server is its own, over the MiniLM repository only, so it also runs
against the pure-Rust binary (TORCHBRIDGE_BIN), where the onnx model is skipped."""

import json
import subprocess

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from conftest import ROOT, binary_bridges, start_server, stop_server

TOLERANCE = 1e-4
# model in the repository -> the bridge that serves it
MODELS = {"minilm": "candle", "minilm_onnx": "onnx"}


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    out = tmp_path_factory.mktemp("minilm")
    # Reference and exports need torch and sentence-transformers: the project venv.
    python = ROOT / ".venv" / "bin" / "python"
    subprocess.run([str(python), str(ROOT / "tests" / "fixtures" / "make_minilm.py"), str(out),
                    "--onnx"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    expected = json.loads((out / "expected.json").read_text())
    server = start_server(out, out / "serve.log")
    yield server, expected
    assert stop_server(server) == 0, server.log_text()


def served(model: str) -> str:
    bridge = MODELS[model]
    if bridge not in binary_bridges():
        pytest.skip(f"this binary has no {bridge} bridge")
    return model


def texts(expected) -> np.ndarray:
    """One sentence per row: BYTES [n, 1], as Triton's string models take them."""
    return np.array([[s.encode()] for s in expected["sentences"]], dtype=np.object_)


def assert_embeddings(got: np.ndarray, expected) -> None:
    want = np.array(expected["embeddings"], dtype=np.float32)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_http(minilm, model, binary):
    server, expected = minilm
    client = httpclient.InferenceServerClient(server.http_url, network_timeout=120)
    x = texts(expected)
    text = httpclient.InferInput("TEXT", list(x.shape), "BYTES")
    text.set_data_from_numpy(x, binary_data=binary)
    out = httpclient.InferRequestedOutput("embedding", binary_data=binary)
    result = client.infer(served(model), [text], outputs=[out])
    assert_embeddings(result.as_numpy("embedding"), expected)


@pytest.mark.parametrize("model", MODELS)
def test_grpc(minilm, model):
    server, expected = minilm
    client = grpcclient.InferenceServerClient(server.grpc_url)
    x = texts(expected)
    text = grpcclient.InferInput("TEXT", list(x.shape), "BYTES")
    text.set_data_from_numpy(x)
    result = client.infer(served(model), [text], client_timeout=120)
    assert_embeddings(result.as_numpy("embedding"), expected)


@pytest.mark.parametrize("model", MODELS)
def test_metadata_shows_the_text_input_and_the_bridge(minilm, model):
    server, _ = minilm
    meta = httpclient.InferenceServerClient(server.http_url).get_model_metadata(served(model))
    assert meta["platform"] == MODELS[model]
    assert meta["inputs"] == [{"name": "TEXT", "datatype": "BYTES", "shape": [-1, 1]}]
    assert meta["outputs"] == [{"name": "embedding", "datatype": "FP32", "shape": [-1, 384]}]
    grpc_meta = grpcclient.InferenceServerClient(server.grpc_url).get_model_metadata(model)
    assert grpc_meta.platform == MODELS[model]


def test_one_sentence_per_request_gives_the_same_embedding(minilm):
    """Unpadded, alone: padding in a batch must not have changed anything."""
    server, expected = minilm
    client = httpclient.InferenceServerClient(server.http_url)
    for i, sentence in enumerate(expected["sentences"][:3]):
        text = httpclient.InferInput("TEXT", [1, 1], "BYTES")
        text.set_data_from_numpy(np.array([[sentence.encode()]], dtype=np.object_))
        got = client.infer(served("minilm"), [text]).as_numpy("embedding")
        np.testing.assert_allclose(got[0], expected["embeddings"][i], rtol=0, atol=TOLERANCE)
