"""SIGTERM under load: every request the server admitted is answered, then it exits 0."""

import concurrent.futures
import queue
import signal
import subprocess
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import BINARY, free_ports, require_bridges, require_models, start_server


def infer_slow(url, value):
    client = httpclient.InferenceServerClient(url, network_timeout=30)
    x = httpclient.InferInput("X", [1, 2], "FP32")
    x.set_data_from_numpy(np.full((1, 2), value, dtype=np.float32))
    return client.infer("slow", [x]).as_numpy("Y")


def test_sigterm_finishes_admitted_requests_and_exits_0(repo, tmp_path):
    require_models(repo, "slow")
    server = start_server(repo, tmp_path / "serve.log")
    try:
        # `slow` takes 400 ms a call on 4 instances: 8 requests are all in flight (or
        # queued) when the signal arrives.
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(infer_slow, server.http_url, float(i)) for i in range(8)]
            time.sleep(0.2)
            server.process.send_signal(signal.SIGTERM)
            results = [f.result() for f in futures]
        for i, y in enumerate(results):
            np.testing.assert_array_equal(y, np.full((1, 2), float(i), dtype=np.float32))
        assert server.process.wait(timeout=30) == 0, server.log_text()
        # Gone: a new request is refused, not half-answered.
        with pytest.raises((InferenceServerException, ConnectionError, OSError)):
            infer_slow(server.http_url, 0.0)
    finally:
        if server.process.poll() is None:
            server.process.kill()
    assert "stopped" in server.log_text()


def test_sigterm_under_continuous_load_answers_every_admitted_request(repo, tmp_path):
    """Eight clients send without pause until the server is gone. Every request sent
    well before the signal (so surely read by the server) is answered with its own
    values; a request is only ever refused at the connection, never answered with an
    error status or half an answer."""
    require_models(repo, "slow")
    server = start_server(repo, tmp_path / "serve.log")
    signalled = []

    def client_loop(worker):
        outcomes = []
        for n in range(10_000):
            value = float(worker * 10_000 + n)
            sent = time.monotonic()
            try:
                y = infer_slow(server.http_url, value)
                outcomes.append(("ok", sent, value, y))
            except InferenceServerException as e:
                kind = "status" if e.status() else "refused"
                outcomes.append((kind, sent, value, e))
                break
            except (ConnectionError, OSError) as e:
                outcomes.append(("refused", sent, value, e))
                break
        return outcomes

    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(client_loop, w) for w in range(8)]
            time.sleep(1.5)  # several rounds of 400 ms calls on 4 instances
            signalled.append(time.monotonic())
            server.process.send_signal(signal.SIGTERM)
            outcomes = [o for f in futures for o in f.result()]
        assert server.process.wait(timeout=30) == 0, server.log_text()
    finally:
        if server.process.poll() is None:
            server.process.kill()
    answered = [o for o in outcomes if o[0] == "ok"]
    for _, _, value, y in answered:
        np.testing.assert_array_equal(y, np.full((1, 2), value, dtype=np.float32))
    statuses = [(o[2], str(o[3])) for o in outcomes if o[0] == "status"]
    assert not statuses, f"requests answered with an error status: {statuses}"
    surely_admitted = [o for o in outcomes if o[1] < signalled[0] - 0.1]
    lost = [(o[2], str(o[3])) for o in surely_admitted if o[0] != "ok"]
    assert not lost, f"requests sent before the signal and not answered: {lost}"
    assert len(answered) >= 16, f"only {len(answered)} answered: the load did not run"


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_ends_an_open_grpc_stream_after_answering_it(repo, tmp_path, stop_signal):
    """A client that keeps a stream open (as tritonclient's start_stream does) must not
    hold the server up: the stream's requests are answered, then it ends. SIGHUP (its
    terminal closed) stops it the same way."""
    require_models(repo, "slow")
    server = start_server(repo, tmp_path / "serve.log")
    client, replies, x = open_stream(server)
    try:
        client.async_stream_infer("slow", [x], request_id="first")
        assert replies.get(timeout=30)[1] is None
        client.async_stream_infer("slow", [x], request_id="in flight")
        time.sleep(0.1)
        server.process.send_signal(stop_signal)
        result, error = replies.get(timeout=30)
        assert error is None and result.get_response().id == "in flight"
        # Then the stream ends saying that the server stopped reading it.
        result, error = replies.get(timeout=30)
        assert result is None and "shutting down" in str(error), error
        assert server.process.wait(timeout=30) == 0, server.log_text()
    finally:
        client.close()
        if server.process.poll() is None:
            server.process.kill()


def test_an_unreadable_stream_message_ends_the_stream_after_the_earlier_replies(repo, tmp_path):
    require_models(repo, "slow")
    server = start_server(repo, tmp_path / "serve.log", "--max-body-bytes", "100000")
    client, replies, x = open_stream(server)
    try:
        for i in range(3):
            client.async_stream_infer("slow", [x], request_id=f"r{i}")
        big = grpcclient.InferInput("X", [1, 50_000], "FP32")
        big.set_data_from_numpy(np.zeros((1, 50_000), dtype=np.float32))
        client.async_stream_infer("slow", [big], request_id="too big")
        got = [replies.get(timeout=30) for _ in range(4)]
        assert [r.get_response().id for r, e in got[:3] if e is None] == ["r0", "r1", "r2"]
        error = got[3][1]
        assert error is not None and error.status() == "StatusCode.RESOURCE_EXHAUSTED"
        assert "over the limit of 100000 bytes (--max-body-bytes)" in error.message()
        assert client.is_server_live()
    finally:
        client.stop_stream()
        client.close()
        stop_server_quietly(server)


def open_stream(server):
    """A gRPC client with a stream open, the queue its replies go to, and an input for
    `slow`."""
    replies = queue.Queue()
    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.start_stream(callback=lambda result, error: replies.put((result, error)))
    x = grpcclient.InferInput("X", [1, 2], "FP32")
    x.set_data_from_numpy(np.full((1, 2), 5.0, dtype=np.float32))
    return client, replies, x


def stop_server_quietly(server):
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(timeout=30)
    except Exception:
        server.process.kill()


SLEEPY_CONFIG = """backend = "python"
[[input]]
name = "X"
datatype = "FP32"
dims = [1]
[[output]]
name = "Y"
datatype = "FP32"
dims = [1]
"""

SLEEPY_HANDLER = """import time


class Model:
    def __init__(self, model_dir, config):
        time.sleep(600)  # a load far longer than any supervisor's grace period

    def predict(self, inputs):
        return {"Y": inputs["X"]}
"""


@pytest.mark.parametrize("half_sent", [False, True])
def test_sigterm_while_a_model_loads_stops_without_waiting_for_the_load(tmp_path, half_sent):
    # half_sent: a client holds a request open, so the server's end waits for it, but
    # the exit timeout still ends the process (it waited for the load).
    require_bridges("python")
    model = tmp_path / "repo" / "sleepy"
    (model / "1").mkdir(parents=True)
    (model / "config.toml").write_text(SLEEPY_CONFIG)
    (model / "1" / "model.py").write_text(SLEEPY_HANDLER)
    http, grpc, metrics = free_ports(3)
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(BINARY), "serve", "--model-repository", str(tmp_path / "repo"), "--host",
             "127.0.0.1", "--http-port", str(http), "--grpc-port", str(grpc),
             "--metrics-port", str(metrics), "--exit-timeout-secs", "2"],
            stdout=out, stderr=subprocess.STDOUT)
    conn = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/live",
                                            timeout=5) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail(f"never live:\n{log.read_text()}")
        if half_sent:
            conn = half_sent_request(f"127.0.0.1:{http}")
        time.sleep(1)  # the load has begun
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        # Status 1 when the exit timeout cut the half-sent request off.
        assert process.wait(timeout=60) == (1 if half_sent else 0), log.read_text()
        assert time.monotonic() - signalled < 20, log.read_text()
    finally:
        if conn is not None:
            conn.close()
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "stopped while models were still loading" in log.read_text(), log.read_text()


def ready_status(server):
    try:
        with urllib.request.urlopen(f"http://{server.http_url}/v2/health/ready", timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_with_a_shutdown_delay_the_server_reports_not_ready_and_serves_on_first(repo, tmp_path):
    """The load balancer's window: after SIGTERM, readiness is 503 at once while requests
    are still served, until the delay ends and the server stops."""
    require_models(repo, "mlp")
    root = tmp_path / "repo"
    root.mkdir()
    (root / "mlp").symlink_to(repo / "mlp", target_is_directory=True)
    server = start_server(root, tmp_path / "serve.log", "--shutdown-delay-secs", "3")
    try:
        client = httpclient.InferenceServerClient(server.http_url)
        x = httpclient.InferInput("INPUT0", [1, 16], "FP32")
        x.set_data_from_numpy(np.ones((1, 16), dtype=np.float32))
        assert ready_status(server) == 200
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert ready_status(server) == 503
        with grpcclient.InferenceServerClient(server.grpc_url) as grpc:
            assert not grpc.is_server_ready()
        assert client.infer("mlp", [x]).as_numpy("OUTPUT0").shape == (1, 4)
        assert server.process.wait(timeout=30) == 0, server.log_text()
        assert time.monotonic() - signalled >= 2.5
    finally:
        if server.process.poll() is None:
            server.process.kill()
    log = server.log_text()
    assert "SIGTERM: stopping; reporting not ready and serving on for 3s" in log, log


def half_sent_request(http_url):
    """A connection whose request promised a body it never finishes sending."""
    import socket
    host, port = http_url.split(":")
    conn = socket.create_connection((host, int(port)), timeout=30)
    conn.sendall(b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
                 b"\r\n{\"inputs\": [")
    return conn


@pytest.mark.parametrize("how", ["exit timeout", "second signal", "second signal in the delay"])
def test_a_half_sent_request_does_not_hold_the_stop_for_long(repo, tmp_path, how):
    # The client timeout (60 s by default) would otherwise hold the stop: a supervisor's
    # grace period (Kubernetes: 30 s) runs out first.
    require_models(repo, "mlp")
    root = tmp_path / "repo"
    root.mkdir()
    (root / "mlp").symlink_to(repo / "mlp", target_is_directory=True)
    flags = {"exit timeout": ["--exit-timeout-secs", "2"],
             "second signal in the delay": ["--shutdown-delay-secs", "60"]}.get(how, [])
    server = start_server(root, tmp_path / "serve.log", *flags)
    conn = half_sent_request(server.http_url)
    try:
        time.sleep(0.5)
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        if how.startswith("second signal"):
            time.sleep(1.0)
            assert server.process.poll() is None, "the body is still on its way"
            server.process.send_signal(signal.SIGTERM)
        status = server.process.wait(timeout=20)
        assert time.monotonic() - signalled < 10, server.log_text()
        assert status == 1, f"the request was cut off, yet status {status}"
    finally:
        conn.close()
        if server.process.poll() is None:
            server.process.kill()
    log = server.log_text()
    said = ("after the listeners closed (--exit-timeout-secs)" if how == "exit timeout"
            else "SIGTERM again")  # in the delay too: it exits, not only closes
    assert said in log and "stopped without waiting for the requests in flight" in log, log


def test_a_second_signal_with_nothing_in_flight_is_a_clean_stop(repo, tmp_path):
    # Status 1 means requests were cut off; with none in flight, a second signal (an
    # impatient supervisor, a double ctrl-c) still ends the process at once, with 0.
    require_models(repo, "mlp")
    root = tmp_path / "repo"
    root.mkdir()
    (root / "mlp").symlink_to(repo / "mlp", target_is_directory=True)
    server = start_server(root, tmp_path / "serve.log", "--shutdown-delay-secs", "30")
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    status = server.process.wait(timeout=20)
    assert time.monotonic() - signalled < 5, server.log_text()
    assert status == 0, server.log_text()
    assert "without waiting for the requests in flight" not in server.log_text()
