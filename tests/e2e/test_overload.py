"""Overload through the real server, driven by `torchbridge bench --rate` (an open loop: requests
keep coming whether or not replies do): the excess is refused with 429 / RESOURCE_EXHAUSTED, never
left to time out or dropped, and the server answers normally afterwards. Nothing here is timed:
bench/overload.sh measures the latencies."""

import json
import subprocess
import urllib.request

import numpy as np
import pytest
import tritonclient.http as httpclient

from conftest import BINARY, require_models


def bench(server, *flags):
    args = [str(BINARY), "bench", "--url", server.http_url, "--grpc-url", server.grpc_url, "--json",
            *flags]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def assert_still_serving(server):
    with urllib.request.urlopen(f"http://{server.http_url}/v2/health/ready", timeout=10) as r:
        assert r.status == 200
    inputs = np.load(server.repo / "mlp" / "ref" / "inputs" / "INPUT0.npy")
    expected = np.load(server.repo / "mlp" / "ref" / "outputs" / "OUTPUT0.npy")
    client = httpclient.InferenceServerClient(server.http_url)
    x = httpclient.InferInput("INPUT0", list(inputs.shape), "FP32")
    x.set_data_from_numpy(inputs)
    np.testing.assert_allclose(client.infer("mlp", [x]).as_numpy("OUTPUT0"), expected,
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("protocol, refused", [("http-binary", "HTTP 429"),
                                               ("grpc", "gRPC RESOURCE_EXHAUSTED")])
def test_an_open_loop_past_capacity_is_refused_with_429_and_the_server_stays_up(
        server, protocol, refused):
    # slow_batched: one instance, 400 ms a call of up to 8 rows (about 20 rows/s), at most 2
    # requests queued; 150 requests offered at 100/s are far past it.
    require_models(server.repo, "slow_batched")
    report = bench(server, "--model", "slow_batched", "--protocol", protocol, "--rate", "100",
                   "--requests", "150", "--warmup-requests", "0", "--request-timeout", "60s")
    [run] = report["server"]
    assert run["offered_per_s"] == 100
    assert run["requests"] == 150, run
    assert set(run["errors_by_kind"]) == {refused}, run["errors_by_kind"]
    assert 0 < run["errors"] < 150, run
    assert run["requests"] - run["errors"] == run["rows"], run
    assert run["error_latency_ms"]["max"] > 0, run
    assert server.process.poll() is None, "the server exited under overload"
    assert_still_serving(server)


def test_an_open_loop_within_capacity_answers_every_request(server):
    report = bench(server, "--model", "mlp", "--protocol", "http-json", "--rate", "200",
                   "--requests", "100", "--warmup-requests", "5")
    [run] = report["server"]
    assert run["requests"] == 100 and run["errors"] == 0, run
    assert run["errors_by_kind"] == {}, run
    assert "error_latency_ms" not in run
    assert 1 <= run["concurrency"] <= 100, run
    assert run["latency_ms"]["p50"] <= run["latency_ms"]["p99"] <= run["latency_ms"]["max"], run
