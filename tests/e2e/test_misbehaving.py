"""A python model that raises, returns the wrong thing or hangs, through the real server:
each fault fails its own request with a status and a message naming it, a hung call's
instance is reported stuck (statistics, metrics, log), and the server serves on.

The fixture `py_misbehaving` (2 instances) picks its fault from the first element of X:
101 raises, 102/103/104 return a wrong output name/shape/datatype, 105 sleeps X[0, 1]
seconds. This module's server has a 1 s request timeout."""

import concurrent.futures
import json
import re
import time
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import require_models, start_server, stop_server

MODEL = "py_misbehaving"


@pytest.fixture(scope="module")
def short_timeout_server(repo, tmp_path_factory):
    require_models(repo, MODEL)
    log = tmp_path_factory.mktemp("misbehaving") / "serve.log"
    server = start_server(repo, log, "--request-timeout-ms", "1000")
    yield server
    assert stop_server(server) == 0, server.log_text()


def http_input(values, client_module=httpclient):
    x = client_module.InferInput("X", [1, 2], "FP32")
    x.set_data_from_numpy(np.array([values], dtype=np.float32))
    return x


def http_call(server, values):
    client = httpclient.InferenceServerClient(server.http_url, network_timeout=60)
    return client.infer(MODEL, [http_input(values)]).as_numpy("Y")


def grpc_call(server, values):
    client = grpcclient.InferenceServerClient(server.grpc_url)
    return client.infer(MODEL, [http_input(values, grpcclient)]).as_numpy("Y")


def http_error(server, values):
    with pytest.raises(InferenceServerException) as e:
        http_call(server, values)
    return e.value


def grpc_error(server, values):
    with pytest.raises(InferenceServerException) as e:
        grpc_call(server, values)
    return e.value


def assert_serves(server):
    np.testing.assert_array_equal(http_call(server, [1.5, 2.5]), [[1.5, 2.5]])
    np.testing.assert_array_equal(grpc_call(server, [3.0, 4.0]), [[3.0, 4.0]])


def stats(server):
    with urllib.request.urlopen(f"http://{server.http_url}/v2/models/{MODEL}/stats") as r:
        return json.load(r)["model_stats"][0]


def stuck_gauge(server):
    with urllib.request.urlopen(f"http://{server.metrics_url}/metrics") as r:
        text = r.read().decode()
    line = re.search(r'^torchbridge_instances_stuck\{[^}]*model="py_misbehaving"[^}]*\} (\S+)$',
                     text, re.M)
    return float(line.group(1)) if line else None


def wait_until(what, check, limit=60.0):
    began = time.monotonic()
    while not check():
        assert time.monotonic() - began < limit, f"waited {limit} s for {what}"
        time.sleep(0.05)


def test_an_exception_is_500_with_its_message_and_the_server_serves_on(short_timeout_server):
    server = short_timeout_server
    e = http_error(server, [101, 0])
    assert e.status() == "500", (e.status(), e.message())
    assert "model `py_misbehaving` raised RuntimeError: the handler failed on purpose" in \
        e.message(), e.message()
    e = grpc_error(server, [101, 0])
    assert e.status() == "StatusCode.INTERNAL", e.status()
    assert "RuntimeError: the handler failed on purpose" in e.message()
    assert "Traceback" not in e.message(), "the traceback goes to the log, not the client"
    assert_serves(server)


@pytest.mark.parametrize("mode, named", [
    (102, "predict() returned no output `Y` (its keys: `Z`)"),
    (103, "output `Y` should have shape [1, 2], got [1, 1]"),
    (104, "output `Y` is declared FP32 but the model returned torch.float64 (FP64)"),
])
def test_a_wrong_output_is_500_naming_the_mismatch(short_timeout_server, mode, named):
    server = short_timeout_server
    e = http_error(server, [mode, 0])
    assert e.status() == "500", (e.status(), e.message())
    assert named in e.message() and MODEL in e.message(), e.message()
    e = grpc_error(server, [mode, 0])
    assert e.status() == "StatusCode.INTERNAL", e.status()
    assert named in e.message(), e.message()
    assert_serves(server)


def test_a_hung_call_times_out_and_its_instance_is_reported_stuck(short_timeout_server):
    server = short_timeout_server
    assert stats(server)["stuck_instances"] == []
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        # The first call hangs 6 s: its caller gets 504 once the 1 s timeout passes, while
        # the instance is still busy.
        first = pool.submit(http_error, server, [105, 6])
        e = first.result()
        assert e.status() == "504", (e.status(), e.message())
        assert MODEL in e.message(), e.message()
        wait_until("one stuck instance", lambda: len(stats(server)["stuck_instances"]) == 1)
        wait_until("the stuck gauge", lambda: stuck_gauge(server) == 1.0)
        # The other instance serves.
        np.testing.assert_array_equal(http_call(server, [1.0, 2.0]), [[1.0, 2.0]])

        # The second hangs too (over gRPC: DEADLINE_EXCEEDED); then both are stuck, and a
        # new request is refused at once with 503 instead of queueing behind them.
        e = grpc_error(server, [105, 4])
        assert e.status() == "StatusCode.DEADLINE_EXCEEDED", (e.status(), e.message())
        wait_until("two stuck instances", lambda: stats(server)["stuck_instances"] == [0, 1])
        began = time.monotonic()
        e = http_error(server, [1.0, 2.0])
        assert e.status() == "503", (e.status(), e.message())
        assert "all 2 of its instances are stuck" in e.message(), e.message()
        assert time.monotonic() - began < 1.0, "refused at once, not after the timeout"
        assert server.process.poll() is None

    # Both calls return; the instances are healthy again and the model serves.
    wait_until("no stuck instance", lambda: stats(server)["stuck_instances"] == [])
    wait_until("the stuck gauge back at 0", lambda: stuck_gauge(server) == 0.0)
    assert_serves(server)
    log = server.log_text()
    for instance in (0, 1):
        stuck = f"instance {instance} of model `{MODEL}` is stuck"
        assert log.count(stuck) == 1, log
        assert f"instance {instance} of model `{MODEL}` returned after" in log, log


def test_a_call_that_started_within_the_clients_timeout_is_bounded_by_the_servers(
        short_timeout_server):
    # The call hangs 2 s; the client allows 300 ms (the `timeout` parameter, in µs), less
    # than the server's 1 s. The call starts at once, so as in Triton the client's limit
    # no longer applies: it is answered at the server's limit, named in the message.
    server = short_timeout_server
    executed = stats(server)["execution_count"]
    client = httpclient.InferenceServerClient(server.http_url, network_timeout=60)
    with pytest.raises(InferenceServerException) as e:
        client.infer(MODEL, [http_input([105, 2])], timeout=300_000)
    assert e.value.status() == "504", (e.value.status(), e.value.message())
    assert "within 1000 ms" in e.value.message(), e.value.message()
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    with pytest.raises(InferenceServerException) as e:
        grpc.infer(MODEL, [http_input([105, 2], grpcclient)], timeout=300_000)
    assert e.value.status() == "StatusCode.DEADLINE_EXCEEDED", e.value.message()
    assert "within 1000 ms" in e.value.message(), e.value.message()
    # Both hung calls run on to their end (2 s), then the instances serve again.
    wait_until("both hung calls returned", lambda: stats(server)["execution_count"] == executed + 2)
    assert_serves(server)
