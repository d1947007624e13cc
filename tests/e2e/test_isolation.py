"""`isolation = "process"`: the fixture `py_crashing` runs in a worker process of its own,
and its handler ends that process on request (X[0, 0] = 201: `os._exit(3)`; 202: a
segfault) or hangs (205). The request that killed it is answered 500 naming the worker's
death; a hung worker is killed once stuck; the server stays up and the next request is
served by a new worker."""

import concurrent.futures
import os
import shutil
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import BINARY, require_models, start_server, stop_server

MODEL = "py_crashing"


def request(client_module, client, first, second=0.5):
    x = client_module.InferInput("X", [1, 2], "FP32")
    x.set_data_from_numpy(np.array([[first, second]], dtype=np.float32))
    return client.infer(MODEL, [x]).as_numpy("Y")


def worker_pid(client_module, client):
    return int(request(client_module, client, 204)[0, 0])


def children(pid):
    """(pid, state) of each child process of `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2:].split()
            if int(fields[1]) == pid:
                found.append((int(entry), fields[0]))
    return found


def wait_for_children(pid, done, timeout=60.0):
    """The pids of `pid`'s children once `done(pids)` holds; fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        found = [child for child, _ in children(pid)]
        if done(found):
            return found
        assert time.monotonic() < deadline, f"children of {pid} still {found}"
        time.sleep(0.05)


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.parametrize("mode, death", [(201, "exit code 3"), (202, "signal 11 (SIGSEGV)")])
def test_a_crash_fails_its_batch_and_the_worker_restarts(server, mode, death):
    require_models(server.repo, MODEL)
    client = httpclient.InferenceServerClient(server.http_url)
    np.testing.assert_array_equal(request(httpclient, client, 7.0), [[7.0, 0.5]])
    pid = worker_pid(httpclient, client)
    assert pid != server.process.pid
    fds = open_fds(server.process.pid)
    with open(f"/proc/{pid}/status") as status:
        assert f"PPid:\t{server.process.pid}" in status.read()

    with pytest.raises(InferenceServerException) as crashed:
        request(httpclient, client, mode)
    message = str(crashed.value)
    assert "500" in message or "Internal" in message, message
    assert f"worker process (pid {pid}) died while running this batch ({death})" in message

    # A new worker starts at once, before any request asks for it, and serves the next
    # batch; the server never went down.
    replacement = wait_for_children(server.process.pid, lambda found: found and pid not in found)
    np.testing.assert_array_equal(request(httpclient, client, 8.0), [[8.0, 0.5]])
    new_pid = worker_pid(httpclient, client)
    assert [new_pid] == replacement
    assert not os.path.exists(f"/proc/{pid}")
    assert server.process.poll() is None
    # The dead worker was reaped and its socket closed: one child, no zombie, no fd left.
    assert children(server.process.pid) == [(new_pid, "S")] or \
        children(server.process.pid) == [(new_pid, "R")], children(server.process.pid)
    # (At most as many: other tests' idle connections may close meanwhile.)
    assert open_fds(server.process.pid) <= fds


def test_python_errors_and_prints_cross_the_process_boundary(server):
    require_models(server.repo, MODEL)
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        pid = worker_pid(grpcclient, client)
        with pytest.raises(InferenceServerException) as raised:
            request(grpcclient, client, 101)
        assert raised.value.status() == "StatusCode.INTERNAL"
        assert "raised RuntimeError: the handler failed on purpose" in raised.value.message()
        # What the model prints goes to the server's log, not into the worker's stream.
        np.testing.assert_array_equal(request(grpcclient, client, 203), [[203.0, 0.5]])
        assert worker_pid(grpcclient, client) == pid, "an exception does not restart the worker"
    assert "a model that prints to stdout" in server.log_text()


@pytest.fixture(scope="module")
def short_timeout_server(repo, tmp_path_factory):
    require_models(repo, MODEL)
    small = tmp_path_factory.mktemp("isolation_repo")
    (small / MODEL).symlink_to(repo / MODEL, target_is_directory=True)
    server = start_server(small, tmp_path_factory.mktemp("isolation") / "serve.log",
                          "--request-timeout-ms", "1000")
    yield server
    assert stop_server(server) == 0, server.log_text()


def test_a_hung_worker_is_killed_once_stuck_and_replaced(short_timeout_server):
    server = short_timeout_server
    client = httpclient.InferenceServerClient(server.http_url)
    pid = worker_pid(httpclient, client)
    started = time.monotonic()
    with pytest.raises(InferenceServerException) as timed_out:
        request(httpclient, client, 205, 600.0)
    assert "504" in str(timed_out.value) or "did not answer" in str(timed_out.value)
    # Stuck past the deadline and the one-second floor: the watchdog kills the worker,
    # and the next request that gets through is served by a new one.
    while True:
        assert time.monotonic() - started < 60, f"never served again:\n{server.log_text()}"
        try:
            np.testing.assert_array_equal(request(httpclient, client, 9.0), [[9.0, 0.5]])
            break
        except InferenceServerException:
            time.sleep(0.2)
    assert time.monotonic() - started < 60
    assert worker_pid(httpclient, client) != pid
    assert not os.path.exists(f"/proc/{pid}")
    log = server.log_text()
    assert "is stuck" in log and "interrupting it" in log, log
    # Said as torchbridge's doing, not as a crash of the model.
    assert "was killed by torchbridge: its call ran past the deadline" in log, log
    assert "died while running this batch" not in log, log


def test_requests_around_a_crash_are_each_answered_once_and_correctly(server):
    """Clients keep sending while one request crashes the worker: every request is
    answered, each either with its own correct output or with the crash's 500."""
    require_models(server.repo, MODEL)

    def send(i):
        client = httpclient.InferenceServerClient(server.http_url)
        value = 201.0 if i == 20 else float(i % 50 + 1)
        try:
            return i, request(httpclient, client, value, 0.25), None
        except InferenceServerException as e:
            return i, None, str(e)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(send, range(60)))
    crashed = [i for i, _, error in results if error]
    for i, y, error in results:
        if error:
            assert "worker process" in error and "died while running this batch" in error, error
        else:
            np.testing.assert_array_equal(y, [[float(i % 50 + 1), 0.25]], err_msg=f"request {i}")
    # The model does not batch: only the request that crashed the worker fails; those
    # queued behind it wait for the new worker.
    assert crashed == [20], results
    client = httpclient.InferenceServerClient(server.http_url)
    np.testing.assert_array_equal(request(httpclient, client, 3.0), [[3.0, 0.5]])


def state_of(pid):
    """The process state letter, or None once it is gone."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()[0]


def test_a_worker_busy_in_a_call_ends_when_its_server_is_killed(repo, tmp_path):
    require_models(repo, MODEL)
    small = tmp_path / "repo"
    small.mkdir()
    (small / MODEL).symlink_to(repo / MODEL, target_is_directory=True)
    server = start_server(small, tmp_path / "serve.log")
    try:
        client = httpclient.InferenceServerClient(server.http_url, network_timeout=120)
        pid = worker_pid(httpclient, client)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            hung = pool.submit(request, httpclient, client, 205, 600.0)  # hangs in its call
            time.sleep(1.0)
            server.process.kill()  # no chance to stop its workers
            server.process.wait()
            deadline = time.monotonic() + 30
            while state_of(pid) not in (None, "Z"):
                assert time.monotonic() < deadline, f"worker {pid} outlived its server"
                time.sleep(0.1)
            with pytest.raises(Exception):
                hung.result(timeout=30)
    finally:
        if server.process.poll() is None:
            server.process.kill()


def test_workers_still_start_once_the_server_binary_was_replaced_on_disk(repo, tmp_path):
    """An upgrade or a rebuild replaces the binary's file under a running server: its
    workers are still this server's binary, not a file that is gone."""
    require_models(repo, MODEL)
    small = tmp_path / "repo"
    small.mkdir()
    (small / MODEL).symlink_to(repo / MODEL, target_is_directory=True)
    binary = tmp_path / "torchbridge"
    shutil.copy(BINARY, binary)
    server = start_server(small, tmp_path / "serve.log", binary=binary)
    try:
        shutil.copy(BINARY, tmp_path / "next")
        os.replace(tmp_path / "next", binary)  # the running server's file is now gone
        client = httpclient.InferenceServerClient(server.http_url)
        client.unload_model(MODEL)
        client.load_model(MODEL)
        np.testing.assert_array_equal(request(httpclient, client, 3.0), [[3.0, 0.5]])
        with open(f"/proc/{worker_pid(httpclient, client)}/cmdline") as cmdline:
            assert cmdline.read().split("\0")[:2] == ["torchbridge", "worker"]
    finally:
        stop_server(server)


def test_a_worker_that_cannot_be_restarted_makes_its_model_unready_until_one_starts(
        repo, tmp_path):
    """The worker dies, and its replacement fails to load: requests fail at once with the
    reason, and readiness and the index say so (the model no longer looks READY). Once
    the model can load again, the next request starts a worker and the model is ready."""
    require_models(repo, MODEL)
    shutil.copytree(repo / MODEL, tmp_path / "repo" / MODEL)
    refuse = tmp_path / "repo" / MODEL / "1" / "refuse_to_load"
    server = start_server(tmp_path / "repo", tmp_path / "serve.log")
    try:
        client = httpclient.InferenceServerClient(server.http_url)
        grpc = grpcclient.InferenceServerClient(server.grpc_url)
        assert client.is_model_ready(MODEL) and grpc.is_model_ready(MODEL)
        refuse.touch()
        with pytest.raises(InferenceServerException, match="died while running this batch"):
            request(httpclient, client, 201)
        with pytest.raises(InferenceServerException, match="could not be restarted") as failed:
            request(httpclient, client, 1.0)
        assert "refuse_to_load is in the model directory" in str(failed.value)
        assert not client.is_model_ready(MODEL)
        assert not grpc.is_model_ready(MODEL)
        [entry] = [m for m in client.get_model_repository_index() if m["name"] == MODEL]
        assert entry["state"] == "UNAVAILABLE", entry
        assert "could not be restarted" in entry["reason"], entry
        # Statistics still report the model, with the failures counted.
        [stats] = client.get_inference_statistics(MODEL)["model_stats"]
        assert int(stats["inference_stats"]["fail"]["count"]) == 2, stats

        refuse.unlink()
        time.sleep(1.1)  # the restart backoff
        np.testing.assert_array_equal(request(httpclient, client, 7.0), [[7.0, 0.5]])
        assert client.is_model_ready(MODEL) and grpc.is_model_ready(MODEL)
        [entry] = [m for m in client.get_model_repository_index() if m["name"] == MODEL]
        assert entry["state"] == "READY", entry
    finally:
        stop_server(server)


def test_a_model_whose_load_ends_its_worker_is_named_as_the_cause(repo, tmp_path):
    """os._exit in the model's __init__ under isolation: the load error blames the
    model's code (it named the worker binary, /proc/self/exe, as maybe no torchbridge)."""
    require_models(repo, MODEL)
    shutil.copytree(repo / MODEL, tmp_path / "repo" / MODEL)
    (tmp_path / "repo" / MODEL / "1" / "exit_at_load").touch()
    server = start_server(tmp_path / "repo", tmp_path / "serve.log")
    try:
        client = httpclient.InferenceServerClient(server.http_url)
        [entry] = [m for m in client.get_model_repository_index() if m["name"] == MODEL]
        assert entry["state"] == "UNAVAILABLE", entry
        assert "exit code 4" in entry["reason"], entry
        assert "the model's code ended it while loading" in entry["reason"], entry
        assert "no torchbridge binary" not in entry["reason"], entry
    finally:
        stop_server(server)
