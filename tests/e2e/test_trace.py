"""Triton's trace extension: tritonclient's get_trace_settings / update_trace_settings over
HTTP and gRPC turn request tracing on and off, for the server or one model, and the traced
requests land in Triton's JSON trace files."""

import json
import subprocess

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import BINARY, require_models, start_server, stop_server

STAMPS = ["REQUEST_START", "QUEUE_START", "COMPUTE_START", "COMPUTE_INPUT_END",
          "COMPUTE_OUTPUT_START", "COMPUTE_END", "REQUEST_END"]


@pytest.fixture
def traced(repo, tmp_path):
    require_models(repo, "mlp")
    root = tmp_path / "repo"
    root.mkdir()
    (root / "mlp").symlink_to(repo / "mlp", target_is_directory=True)
    trace_file = tmp_path / "trace.json"
    server = start_server(root, tmp_path / "serve.log", "--trace-file", str(trace_file))
    yield server, trace_file
    if server.process.poll() is None:
        stop_server(server)


def infer(client, n: int):
    x = httpclient.InferInput("INPUT0", [1, 16], "FP32")
    x.set_data_from_numpy(np.ones((1, 16), dtype=np.float32))
    for _ in range(n):
        client.infer("mlp", [x])


def test_sampled_requests_are_written_with_every_timestamp(traced):
    server, trace_file = traced
    with httpclient.InferenceServerClient(server.http_url) as client:
        assert "trace" in client.get_server_metadata()["extensions"]
        assert client.get_trace_settings() == {
            "trace_file": str(trace_file), "trace_level": ["OFF"], "trace_rate": "1000",
            "trace_count": "-1", "log_frequency": "0", "trace_mode": "triton"}
        infer(client, 3)
        answer = client.update_trace_settings(settings={
            "trace_level": ["TIMESTAMPS"], "trace_rate": "1", "log_frequency": "2"})
        assert answer["trace_level"] == ["TIMESTAMPS"] and answer["log_frequency"] == "2"
        infer(client, 3)
        client.update_trace_settings(settings={"trace_level": ["OFF"]})
        infer(client, 2)

    # Two traces make a file at once; the third waits for the server's end.
    first = json.loads((trace_file.parent / "trace.json.0").read_text())
    assert not (trace_file.parent / "trace.json.1").exists()
    assert stop_server(server) == 0, server.log_text()
    rest = json.loads((trace_file.parent / "trace.json.1").read_text())
    traces = first + rest
    assert [t["id"] for t in traces] == [1, 2, 3]
    for t in traces:
        assert (t["model_name"], t["model_version"]) == ("mlp", 1)
        names = [s["name"] for s in t["timestamps"]]
        assert names == STAMPS, names
        ns = [s["ns"] for s in t["timestamps"]]
        assert ns == sorted(ns) and ns[-1] - ns[0] < 10e9, ns


def test_a_model_is_traced_on_its_own_settings_over_grpc(traced):
    server, trace_file = traced
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        got = client.update_trace_settings(
            model_name="mlp", settings={"trace_level": ["TIMESTAMPS"], "trace_rate": "2",
                                        "trace_count": "2"}, as_json=True)["settings"]
        assert got["trace_rate"] == {"value": ["2"]} and got["trace_count"] == {"value": ["2"]}
        # The server's own settings are untouched; the model's count goes down as it traces.
        assert client.get_trace_settings(as_json=True)["settings"]["trace_level"] == {
            "value": ["OFF"]}
        with httpclient.InferenceServerClient(server.http_url) as http:
            infer(http, 7)  # traces the 2nd and the 4th, then the count is spent
            assert http.get_trace_settings(model_name="mlp")["trace_count"] == "0"
            # A model posted no settings follows the server's again.
            assert http.update_trace_settings(model_name="mlp")["trace_level"] == ["OFF"]
    assert stop_server(server) == 0, server.log_text()
    traces = json.loads(trace_file.read_text())
    assert [t["id"] for t in traces] == [1, 2]


@pytest.mark.parametrize("settings, message", [
    ({"trace_file": "/tmp/elsewhere.json"}, "`trace_file` cannot be changed by a client"),
    ({"trace_level": ["TENSORS"]}, "TENSORS is not supported"),
    ({"trace_rate": "0"}, "`trace_rate` must be a whole number ≥ 1"),
    ({"trace_rate": {"a": 1}}, "`trace_rate` must be a string, a number"),
    ({"trace_sampling": "1"}, "unknown trace setting `trace_sampling`"),
])
def test_settings_that_cannot_be_made_are_refused_by_name(traced, settings, message):
    server, _ = traced
    with httpclient.InferenceServerClient(server.http_url) as client:
        with pytest.raises(InferenceServerException) as e:
            client.update_trace_settings(settings=settings)
        assert message in str(e.value) and e.value.status() == "400"
        with pytest.raises(InferenceServerException) as e:
            client.get_trace_settings(model_name="nope")
        assert "nope" in str(e.value) and e.value.status() == "404"
        assert client.get_trace_settings()["trace_level"] == ["OFF"]


def test_trace_flags_at_their_defaults_need_no_trace_file(tmp_path):
    # A deployment may spell out every setting, the defaults included.
    server = start_server(tmp_path, tmp_path / "serve.log", "--trace-level", "OFF",
                          "--trace-rate", "1000", "--trace-count", "-1")
    assert stop_server(server) == 0, server.log_text()


@pytest.mark.parametrize("flags, message", [
    (["--trace-level", "TIMESTAMPS"], "--trace-file"),
    (["--trace-file", "/no/such/dir/trace.json"], "the directory /no/such/dir does not exist"),
    (["--trace-file", "t.json", "--trace-rate", "0"], "--trace-rate"),
])
def test_serve_refuses_trace_flags_it_cannot_follow(tmp_path, flags, message):
    run = subprocess.run([str(BINARY), "serve", "--model-repository", str(tmp_path),
                          "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0",
                          *flags], capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and message in run.stderr, run.stderr
