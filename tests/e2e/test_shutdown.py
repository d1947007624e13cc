"""SIGTERM under load: every request the server admitted is answered, then it exits 0."""

import concurrent.futures
import signal
import time

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import start_server


def infer_slow(url, value):
    client = httpclient.InferenceServerClient(url, network_timeout=30)
    x = httpclient.InferInput("X", [1, 2], "FP32")
    x.set_data_from_numpy(np.full((1, 2), value, dtype=np.float32))
    return client.infer("slow", [x]).as_numpy("Y")


def test_sigterm_finishes_admitted_requests_and_exits_0(repo, tmp_path):
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
