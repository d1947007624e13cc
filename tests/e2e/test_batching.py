"""Dynamic batching, admission control and request timeouts through the real server."""

import concurrent.futures
import json
import time
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import require_bridges, require_models, start_server, stop_server


def counted(server, model, outcome, protocol):
    """torchbridge_inference_requests_total for `model` (version 1) so far."""
    key = (f'torchbridge_inference_requests_total{{model="{model}",version="1",'
           f'outcome="{outcome}",protocol="{protocol}"}} ')
    with urllib.request.urlopen(f"http://{server.metrics_url}/metrics", timeout=10) as r:
        lines = [line for line in r.read().decode().splitlines() if line.startswith(key)]
    return float(lines[0].split()[-1]) if lines else 0.0


def stats(server, model):
    with urllib.request.urlopen(f"http://{server.http_url}/v2/models/{model}/stats") as r:
        return json.load(r)["model_stats"][0]


def test_concurrent_requests_are_batched_and_each_gets_its_own_rows(server):
    inputs = np.load(server.repo / "mlp_batched" / "ref" / "inputs" / "INPUT0.npy")
    expected = np.load(server.repo / "mlp_batched" / "ref" / "outputs" / "OUTPUT0.npy")
    before = stats(server, "mlp_batched")

    def call(i):
        client = httpclient.InferenceServerClient(server.http_url)
        row = i % len(inputs)
        x = httpclient.InferInput("INPUT0", [1, 16], "FP32")
        x.set_data_from_numpy(inputs[row:row + 1])
        return row, client.infer("mlp_batched", [x]).as_numpy("OUTPUT0")

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        results = list(pool.map(call, range(640)))
    for row, y in results:
        np.testing.assert_allclose(y, expected[row:row + 1], rtol=1e-5, atol=1e-6)
    after = stats(server, "mlp_batched")
    rows = after["inference_count"] - before["inference_count"]
    calls = after["execution_count"] - before["execution_count"]
    assert rows == 640
    assert calls < rows, f"{calls} backend calls for {rows} rows: nothing was batched"
    assert any(b["batch_size"] > 1 for b in after["batch_stats"]), after["batch_stats"]


def test_a_full_queue_refuses_at_once_with_429_and_loses_nothing(server):
    # slow_batched: one instance, 400 ms a call, at most 2 requests queued.
    require_models(server.repo, "slow_batched")

    def call(i):
        client = httpclient.InferenceServerClient(server.http_url, network_timeout=30)
        x = httpclient.InferInput("X", [1, 2], "FP32")
        x.set_data_from_numpy(np.full((1, 2), i, dtype=np.float32))
        try:
            return i, client.infer("slow_batched", [x]).as_numpy("Y"), None
        except InferenceServerException as e:
            return i, None, e

    before = {outcome: counted(server, "slow_batched", outcome, "http")
              for outcome in ("rejected", "invalid")}
    with concurrent.futures.ThreadPoolExecutor(24) as pool:
        results = list(pool.map(call, range(24)))
    # A request refused before it reaches the model (an unknown output) counts too.
    with pytest.raises(InferenceServerException, match="NOPE"):
        x = httpclient.InferInput("X", [1, 2], "FP32")
        x.set_data_from_numpy(np.zeros((1, 2), np.float32))
        httpclient.InferenceServerClient(server.http_url).infer(
            "slow_batched", [x], outputs=[httpclient.InferRequestedOutput("NOPE")])
    answered = [(i, y) for i, y, e in results if e is None]
    refused = [e for _, _, e in results if e is not None]
    assert answered and refused, "expected some answers and some refusals"
    for i, y in answered:
        np.testing.assert_array_equal(y, np.full((1, 2), i, dtype=np.float32))
    for e in refused:
        assert e.status() == "429", (e.status(), e.message())
        assert "slow_batched" in e.message() and "queue" in e.message()
    assert counted(server, "slow_batched", "rejected", "http") - before["rejected"] == len(refused)
    assert counted(server, "slow_batched", "invalid", "http") - before["invalid"] == 1


def both_clients(server):
    """An HTTP and a gRPC client of `server`, each with its tritonclient module."""
    return ((httpclient.InferenceServerClient(server.http_url), httpclient),
            (grpcclient.InferenceServerClient(server.grpc_url), grpcclient))


def row(module, value):
    """Input `X`: one row of two `value`s."""
    x = module.InferInput("X", [1, 2], "FP32")
    x.set_data_from_numpy(np.full((1, 2), value, dtype=np.float32))
    return x


def test_a_request_started_before_its_timeout_gets_its_answer(server):
    # slow: 400 ms a call, idle: a 100 ms timeout bounds the wait for an instance, not
    # the call (as in Triton).
    require_models(server.repo, "slow")
    for client, module in both_clients(server):
        started = time.monotonic()
        y = client.infer("slow", [row(module, 3)], timeout=100_000).as_numpy("Y")
        np.testing.assert_array_equal(y, np.full((1, 2), 3, dtype=np.float32))
        assert time.monotonic() - started >= 0.35


def test_a_request_not_started_by_its_timeout_gets_504_and_is_not_run(server):
    # slow: 4 instances, 400 ms a call. Four requests sent 50 ms apart take an instance
    # each (alone: the queue has no delay); four more with a 100 ms timeout, sent while
    # every instance is busy for at least 250 ms more, time out without running.
    require_models(server.repo, "slow")

    def call(i, timeout=None):
        client = httpclient.InferenceServerClient(server.http_url, network_timeout=30)
        x = httpclient.InferInput("X", [1, 2], "FP32")
        x.set_data_from_numpy(np.full((1, 2), i, dtype=np.float32))
        try:
            client.infer("slow", [x], timeout=timeout)
            return None
        except InferenceServerException as e:
            return e

    def timeouts_counted():
        # Shed load, not a fault: the outcome is "timeout", never "failure".
        with urllib.request.urlopen(f"http://{server.metrics_url}/metrics") as reply:
            lines = reply.read().decode().splitlines()
        counted = [line for line in lines if line.startswith("torchbridge_inference_requests_total")
                   and 'model="slow"' in line]
        assert not any('outcome="failure"' in line for line in counted), counted
        return sum(float(line.rsplit(" ", 1)[1]) for line in counted
                   if 'outcome="timeout"' in line)

    for attempt in range(3):
        before, timeouts_before = stats(server, "slow"), timeouts_counted()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            busy = []
            for i in range(4):
                busy.append(pool.submit(call, i))
                time.sleep(0.05)
            late = [pool.submit(call, 10 + i, 100_000) for i in range(4)]
            assert [f.result() for f in busy] == [None] * 4
            errors = [f.result() for f in late]
        after = stats(server, "slow")
        calls = after["execution_count"] - before["execution_count"]
        ran = after["inference_count"] - before["inference_count"]
        if None in errors and calls < ran:
            continue  # a loaded machine joined two "busy" requests into one call: again
        break
    for e in errors:
        assert e is not None, "a request ran though every instance was busy past its deadline"
        assert e.status() == "504", (e.status(), e.message())
        assert "did not start the request before its deadline" in e.message(), e.message()
    assert ran == 4
    assert timeouts_counted() - timeouts_before == 4


def test_a_model_without_batching_ignores_the_timeout_parameter(server):
    # As in Triton: only a model with dynamic batching honours `timeout`. A microsecond
    # would otherwise pass before any instance could start the request.
    require_models(server.repo, "py_error")
    for client, module in both_clients(server):
        for _ in range(5):
            y = client.infer("py_error", [row(module, 2)], timeout=1).as_numpy("Y")
            np.testing.assert_array_equal(y, np.full((1, 2), 2, dtype=np.float32))


def test_grpc_overload_is_resource_exhausted(server):
    require_models(server.repo, "slow_batched")
    client = grpcclient.InferenceServerClient(server.grpc_url)

    def call(i):
        x = grpcclient.InferInput("X", [1, 2], "FP32")
        x.set_data_from_numpy(np.full((1, 2), i, dtype=np.float32))
        try:
            client.infer("slow_batched", [x])
            return None
        except InferenceServerException as e:
            return e.status()

    before = counted(server, "slow_batched", "rejected", "grpc")
    with concurrent.futures.ThreadPoolExecutor(24) as pool:
        codes = [c for c in pool.map(call, range(24)) if c is not None]
    assert codes and set(codes) == {"StatusCode.RESOURCE_EXHAUSTED"}, codes
    assert counted(server, "slow_batched", "rejected", "grpc") - before == len(codes)


def test_scheduler_metrics_are_exported(server):
    with urllib.request.urlopen(f"http://{server.metrics_url}/metrics") as r:
        text = r.read().decode()
    for name in ["torchbridge_queue_duration_seconds", "torchbridge_compute_duration_seconds",
                 "torchbridge_batch_size", "torchbridge_inflight_requests",
                 "torchbridge_queue_depth"]:
        assert f'{name}' in text and 'model="mlp_batched"' in text, name
    # Only a model with [batching] has a queue to report (mlp has none).
    depths = [line for line in text.splitlines() if line.startswith("torchbridge_queue_depth{")]
    assert any('model="mlp_batched"' in line for line in depths), depths
    assert not any('model="mlp"' in line for line in depths), depths


def test_a_grpc_request_whose_client_gave_up_is_counted_abandoned(server):
    # slow: 400 ms a call; the client waits 100 ms.
    require_models(server.repo, "slow")
    client = grpcclient.InferenceServerClient(server.grpc_url)
    before = counted(server, "slow", "abandoned", "grpc")
    for i in range(3):
        x = grpcclient.InferInput("X", [1, 2], "FP32")
        x.set_data_from_numpy(np.full((1, 2), i, dtype=np.float32))
        with pytest.raises(InferenceServerException):
            client.infer("slow", [x], client_timeout=0.1)
    deadline = time.monotonic() + 10
    while counted(server, "slow", "abandoned", "grpc") - before < 3:
        assert time.monotonic() < deadline, "abandoned gRPC requests were not counted"
        time.sleep(0.05)


SLEEPER = """
import time


class Model:
    def __init__(self, model_dir, config):
        pass

    def predict(self, inputs):
        time.sleep(2.0)
        return {"Y": inputs["X"]}
"""


def test_a_started_call_past_its_clients_timeout_is_not_taken_for_stuck(tmp_path):
    """A call that started before its request's `timeout` is waited for (to the server's
    limit): the watchdog must not count its instance stuck at the client's deadline and
    refuse everyone else meanwhile."""
    require_bridges("python")
    model = tmp_path / "repo" / "sleeper"
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.py").write_text(SLEEPER)
    (model / "config.toml").write_text(
        'backend = "python"\nmax_batch_size = 4\n[[input]]\nname = "X"\ndatatype = "FP32"\n'
        'dims = [2]\n[[output]]\nname = "Y"\ndatatype = "FP32"\ndims = [2]\n')
    server = start_server(tmp_path / "repo", tmp_path / "serve.log")
    try:
        def call(timeout_us):
            client = httpclient.InferenceServerClient(server.http_url, network_timeout=60)
            x = httpclient.InferInput("X", [1, 2], "FP32")
            x.set_data_from_numpy(np.ones((1, 2), dtype=np.float32))
            try:
                return client.infer("sleeper", [x], timeout=timeout_us).as_numpy("Y"), None
            except InferenceServerException as e:
                return None, e

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            first = pool.submit(call, 200_000)  # starts at once, runs 2 s
            time.sleep(1.4)  # past the client's deadline and the 1 s stuck floor
            second = pool.submit(call, None)  # waits its turn: not refused
            for future in (first, second):
                y, error = future.result(timeout=60)
                assert error is None, error
                np.testing.assert_array_equal(y, np.ones((1, 2), dtype=np.float32))
        assert "is stuck" not in server.log_text(), server.log_text()
    finally:
        assert stop_server(server) == 0, server.log_text()
