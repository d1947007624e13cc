"""torchbridge.serve / torchbridge.Server: a Python callable served by the Rust server in
this interpreter, driven by real clients on real sockets (tritonclient and perf_analyzer
from .venv-clients, plain HTTP from here)."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import torchbridge

ROOT = Path(__file__).resolve().parents[2]
CLIENTS_PYTHON = ROOT / ".venv-clients" / "bin" / "python"
PERF_ANALYZER = ROOT / ".venv-clients" / "bin" / "perf_analyzer"
IO = {"inputs": [("INPUT0", "FP32", [8])], "outputs": [("OUTPUT0", "FP32", [3])]}


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


def infer(server, rows, model=None):
    """POSTs a JSON infer request; returns (status, parsed body)."""
    rows = np.asarray(rows, np.float32)
    body = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": list(rows.shape),
                        "data": rows.reshape(-1).tolist()}]}
    request = urllib.request.Request(f"{server.url}/v2/models/{model or server.name}/infer",
                                     data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, json.load(reply)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def output(body):
    out = body["outputs"][0]
    return np.asarray(out["data"], np.float32).reshape(out["shape"])


def get_json(server, path):
    with urllib.request.urlopen(f"{server.url}{path}", timeout=60) as reply:
        return json.load(reply)


def port_is_free(port):
    """Whether a server could listen on it now (connections the server closed may linger
    in TIME_WAIT; SO_REUSEADDR, which servers set, lets a listener bind past them)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.skipif(not CLIENTS_PYTHON.exists(), reason=".venv-clients is missing")
def test_tritonclient_many_requests_at_once_are_batched_and_each_answered_as_alone(tmp_path):
    net = mlp()
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((1, 8)).astype(np.float32) for _ in range(48)]
    xs += [rng.standard_normal((rows, 8)).astype(np.float32) for rows in (2, 3, 5, 2)]
    np.savez(tmp_path / "requests.npz", **{f"x{i}": x for i, x in enumerate(xs)})
    # A long queue delay, so requests sent together are surely joined.
    with torchbridge.Server(net, name="mlp", **IO, max_batch_size=32,
                            max_queue_delay_us=50_000, http_port=0, grpc_port=0) as server:
        run = subprocess.run(
            [str(CLIENTS_PYTHON), str(Path(__file__).with_name("triton_driver.py")),
             server.http_address, server.grpc_address, "mlp", str(tmp_path / "requests.npz"),
             str(tmp_path / "replies.npz"), str(tmp_path / "stats.json")],
            capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout + run.stderr

    replies = np.load(tmp_path / "replies.npz")
    with torch.inference_mode():
        for i, x in enumerate(xs):
            alone = net(torch.from_numpy(x)).numpy()
            np.testing.assert_allclose(replies[f"y{i}"], alone, rtol=1e-5, atol=1e-6,
                                       err_msg=f"request {i}")
    stats = json.loads((tmp_path / "stats.json").read_text())
    model = stats["http"]["model_stats"][0]
    rows = sum(len(x) for x in xs)
    assert int(model["inference_count"]) == rows
    assert int(model["inference_stats"]["success"]["count"]) == len(xs)
    assert int(model["execution_count"]) < len(xs), model  # batched: fewer calls than requests
    assert int(stats["grpc"]["model_stats"][0]["execution_count"]) == int(model["execution_count"])
    config = stats["config"]
    assert config["max_batch_size"] == 32 and config["input"][0]["name"] == "INPUT0"
    assert int(config["dynamic_batching"]["max_queue_delay_microseconds"]) == 50_000


@pytest.mark.skipif(not PERF_ANALYZER.exists(), reason="perf_analyzer is missing")
def test_perf_analyzer_runs_against_a_served_callable():
    """It reads the model's config and statistics; a fixed request count, no timing."""
    env = dict(os.environ)
    cudart = sorted(PERF_ANALYZER.parents[1].glob("lib/python*/site-packages/nvidia/cuda_runtime/lib"))
    env["LD_LIBRARY_PATH"] = os.pathsep.join([*map(str, cudart), env.get("LD_LIBRARY_PATH", "")])
    with torchbridge.Server(mlp(), name="mlp", **IO, max_batch_size=8, max_queue_delay_us=1000,
                            http_port=0, grpc_port=0) as server:
        for protocol, address in (("http", server.http_address), ("grpc", server.grpc_address)):
            run = subprocess.run([str(PERF_ANALYZER), "-m", "mlp", "-u", address, "-i", protocol,
                                  "-b", "2", "--concurrency-range", "4", "--request-count", "200"],
                                 capture_output=True, text=True, timeout=180, env=env)
            if "error while loading shared libraries" in run.stderr:
                pytest.skip(f"perf_analyzer cannot start here: {run.stderr.strip()}")
            assert run.returncode == 0, run.stdout + run.stderr
            assert "Throughput" in run.stdout and "Server:" in run.stdout, run.stdout


def misbehaving(x):
    """Correct, except as the first element of the batch asks."""
    mode = int(x[0, 0])
    if mode == 1:
        raise ValueError("asked to fail")
    if mode == 2:
        return {"WRONG": x[:, :3]}
    if mode == 3:
        return x[:, :3].double()
    if mode == 4:
        return x[:1, :3]
    if mode == 5:
        return x[:, :3], x
    if mode == 6:
        return {"OUTPUT0": "not a tensor"}
    if mode == 7:  # a negative stride (the top-k idiom argsort()[:, ::-1])
        return {"OUTPUT0": (x[:, :3] * 2).numpy()[:, ::-1]}
    if mode == 8:  # big-endian
        return {"OUTPUT0": (x[:, :3] * 2).numpy().astype(">f4")}
    return {"OUTPUT0": (x[:, :3] * 2).numpy()}  # numpy is fine too


@pytest.fixture(scope="module")
def picky():
    with torchbridge.Server(misbehaving, name="picky", **IO, max_batch_size=4,
                            max_queue_delay_us=None, http_port=0, grpc_port=0,
                            log=None) as server:
        yield server


@pytest.mark.parametrize("mode, message", [
    (1, "model `picky` raised ValueError: asked to fail"),
    (2, "no output `OUTPUT0` (its keys: `WRONG`)"),
    (3, "output `OUTPUT0` is declared FP32 but the model returned torch.float64"),
    (4, "output `OUTPUT0` should have shape [2, 3], got [1, 3]"),
    (5, "returned 2 value(s), but the config declares 1 output(s) (`OUTPUT0`)"),
    (6, "output `OUTPUT0` is str, not a tensor or numpy array"),
])
def test_a_failing_call_is_a_500_naming_the_fault_and_the_server_stays_up(picky, mode, message):
    rows = np.zeros((2, 8), np.float32)
    rows[0, 0] = mode
    status, body = infer(picky, rows)
    assert status == 500 and message in body["error"], body
    status, body = infer(picky, np.ones((2, 8), np.float32) * 7)
    assert status == 200
    np.testing.assert_array_equal(output(body), np.full((2, 3), 14.0, np.float32))


def test_any_valid_numpy_array_is_an_output(picky):
    rows = np.arange(16, dtype=np.float32).reshape(2, 8)
    for mode, want in ((7, (rows[:, :3] * 2)[:, ::-1]), (8, rows[:, :3] * 2)):
        rows[0, 0] = mode
        want[0, 0 if mode == 8 else 2] = mode * 2
        status, body = infer(picky, rows)
        assert status == 200, (mode, body)
        np.testing.assert_array_equal(output(body), want)


def test_a_bad_request_is_refused_before_the_callable_runs(picky):
    status, body = infer(picky, np.zeros((2, 5), np.float32))
    assert status == 400 and "input `INPUT0` must have shape [-1, 8], got [2, 5]" in body["error"]
    status, _ = infer(picky, np.zeros((2, 8), np.float32), model="other")
    assert status == 404


def test_a_single_tensor_and_the_metadata_routes():
    calls = []

    def double(x):
        calls.append(tuple(x.shape))
        assert not torch.is_grad_enabled() and torch.is_inference_mode_enabled()
        return x * 2

    io = {"inputs": [("X", "FP32", [-1])], "outputs": [("Y", "FP32", [-1])]}
    with torchbridge.Server(double, **io, max_batch_size=0, http_port=0, grpc_port=0) as server:
        body = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [3], "data": [1, 2, 3]}]}
        request = urllib.request.Request(f"{server.url}/v2/models/model/infer",
                                         data=json.dumps(body).encode())
        with urllib.request.urlopen(request, timeout=60) as reply:
            assert json.load(reply)["outputs"][0]["data"] == [2.0, 4.0, 6.0]
        meta = get_json(server, "/v2/models/model")
        assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1]}]
        assert get_json(server, "/v2")["extensions"]
        assert get_json(server, "/v2/models/model/config")["max_batch_size"] == 0
    assert calls == [(3,)]


def post_json(server, path, body):
    request = urllib.request.Request(f"{server.url}{path}", data=json.dumps(body).encode())
    with urllib.request.urlopen(request, timeout=60) as reply:
        return reply.read()


def test_tensors_through_system_shared_memory_only_when_allowed():
    x = np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5
    io = {"inputs": [("X", "FP32", [3])], "outputs": [("Y", "FP32", [3])]}
    region = shared_memory.SharedMemory(create=True, size=2 * x.nbytes)
    try:
        np.ndarray(x.shape, np.float32, region.buf)[:] = x
        register = {"key": f"/{region.name}", "offset": 0, "byte_size": 2 * x.nbytes}
        placed = {"shared_memory_region": "io", "shared_memory_byte_size": x.nbytes}
        infer = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [2, 3],
                             "parameters": placed}],
                 "outputs": [{"name": "Y",
                              "parameters": {**placed, "shared_memory_offset": x.nbytes}}]}
        with torchbridge.Server(lambda t: t * 3, **io, max_batch_size=4, http_port=0,
                                grpc_port=0, allow_client_shm=True) as server:
            post_json(server, "/v2/systemsharedmemory/region/io/register", register)
            reply = json.loads(post_json(server, "/v2/models/model/infer", infer))
            assert reply["outputs"] == [{"name": "Y", "datatype": "FP32", "shape": [2, 3]}]
            written = np.ndarray(x.shape, np.float32, region.buf, offset=x.nbytes)
            np.testing.assert_array_equal(written, x * 3)
            assert "system_shared_memory" in get_json(server, "/v2")["extensions"]
        with torchbridge.Server(lambda t: t, **io, max_batch_size=4, http_port=0,
                                grpc_port=0) as server:
            with pytest.raises(urllib.error.HTTPError) as off:
                post_json(server, "/v2/systemsharedmemory/region/io/register", register)
            assert "--allow-client-shm" in json.load(off.value)["error"]
    finally:
        region.close()
        region.unlink()


def idle_poll_threads():
    """Thread id -> scheduling policy of this process's idle-poll spinners."""
    found = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            comm = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
            stat = Path(f"/proc/self/task/{tid}/stat").read_text()
        except FileNotFoundError:
            continue
        if comm.startswith("tb-idle-poll-"):
            found[tid] = int(stat[stat.rfind(")") + 2:].split()[38])  # field 41: policy
    return found


def test_idle_poll_runs_one_sched_idle_spinner_per_cpu_until_stop():
    assert idle_poll_threads() == {}
    with torchbridge.Server(mlp(), **IO, http_port=0, grpc_port=0, idle_poll_us=5_000) as server:
        status, body = infer(server, np.ones((1, 8)))
        assert status == 200 and output(body).shape == (1, 3)
        spinners = idle_poll_threads()
        assert len(spinners) == len(os.sched_getaffinity(0)), spinners
        assert set(spinners.values()) == {5}, spinners  # SCHED_IDLE
    assert idle_poll_threads() == {}


def halts_without_polling():
    """The haltpoll cpuidle driver with a window of 0, read here independently of the server."""
    try:
        driver = Path("/sys/devices/system/cpu/cpuidle/current_driver").read_text().strip()
        window = int(Path("/sys/module/haltpoll/parameters/guest_halt_poll_ns").read_text())
    except (OSError, ValueError):
        return False
    return driver == "haltpoll" and window == 0


def test_the_halt_polling_warning_reaches_stderr_exactly_when_the_machine_calls_for_it(capfd):
    for idle_poll_us in (0, 1_000):
        capfd.readouterr()
        with torchbridge.Server(mlp(), **IO, http_port=0, grpc_port=0, idle_poll_us=idle_poll_us):
            pass
        err = capfd.readouterr().err
        warned = "halt without polling" in err
        assert warned == (halts_without_polling() and idle_poll_us == 0), err


def test_two_inputs_arrive_positionally_and_two_outputs_leave_by_name():
    def two(a, b):
        return {"SUM": a + b.sum(dim=1, keepdim=True).to(a.dtype), "IDS": b * 10}

    io = {"inputs": [("A", "FP32", [2]), ("B", "INT64", [3])],
          "outputs": [("IDS", "INT64", [3]), ("SUM", "FP32", [2])]}
    with torchbridge.Server(two, name="two", **io, http_port=0, grpc_port=0) as server:
        body = {"inputs": [
            {"name": "A", "datatype": "FP32", "shape": [1, 2], "data": [0.5, 1.5]},
            {"name": "B", "datatype": "INT64", "shape": [1, 3], "data": [1, 2, 3]}]}
        request = urllib.request.Request(f"{server.url}/v2/models/two/infer",
                                         data=json.dumps(body).encode())
        with urllib.request.urlopen(request, timeout=60) as reply:
            outputs = {o["name"]: o["data"] for o in json.load(reply)["outputs"]}
    assert outputs == {"IDS": [10, 20, 30], "SUM": [6.5, 7.5]}


def test_stop_finishes_the_request_in_flight_joins_and_frees_the_ports():
    started, release = threading.Event(), threading.Event()

    def slow(x):
        started.set()
        release.wait(30)
        return x[:, :3]

    server = torchbridge.Server(slow, name="slow", **IO, http_port=0, grpc_port=0)
    ports = (server.http_port, server.grpc_port)
    assert server.running and not any(port_is_free(p) for p in ports)
    replies = []
    client = threading.Thread(target=lambda: replies.append(infer(server, np.ones((1, 8)))))
    client.start()
    assert started.wait(30)
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    release.set()  # the call in flight finishes after stop() began
    stopper.join(60)
    client.join(60)
    assert not stopper.is_alive() and not client.is_alive()
    assert replies[0][0] == 200 and output(replies[0][1]).tolist() == [[1.0, 1.0, 1.0]]
    assert not server.running and server.wait(0)
    assert all(port_is_free(p) for p in ports)
    server.stop()  # again: nothing to do


def test_stop_waits_for_a_call_whose_request_already_timed_out():
    finished = []

    def slow(x):
        time.sleep(1.5)
        finished.append(True)
        return x[:, :3]

    server = torchbridge.Server(slow, name="slow", **IO, http_port=0, grpc_port=0,
                                request_timeout_ms=200, max_queue_delay_us=None)
    status, body = infer(server, np.ones((1, 8)))
    assert status == 504 and "200 ms" in body["error"]
    assert not finished  # the call still runs: its caller gave up
    server.stop()
    assert finished  # stop() returned only after the call did


def test_leaving_the_with_block_stops_the_server():
    with torchbridge.Server(lambda x: x[:, :3], **IO, http_port=0, grpc_port=0) as server:
        assert infer(server, np.ones((2, 8)))[0] == 200
        assert not server.wait(0.2)  # still serving
    assert not server.running and port_is_free(server.http_port)
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{server.url}/v2/health/live", timeout=10)


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stops_a_blocking_serve_cleanly(stop_signal):
    # faulthandler: should the stop hang, SIGUSR1 makes the child print its Python stacks.
    script = ("import faulthandler, signal, torchbridge\n"
              "faulthandler.register(signal.SIGUSR1, all_threads=True)\n"
              "torchbridge.serve(lambda x: x[:, :3], name='net', "
              "inputs=[('INPUT0', 'FP32', [8])], outputs=[('OUTPUT0', 'FP32', [3])], "
              "http_port=0, grpc_port=0)\n")
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        first = process.stdout.readline()
        assert "serving `net` over HTTP at http://127.0.0.1:" in first, first + process.stderr.read()
        url = first.split(" at ")[1].split()[0]
        with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=30) as reply:
            assert reply.status == 200
        process.send_signal(stop_signal)
        try:
            out, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"no exit 60 s after {stop_signal!r}:\n{stacks_of(process)}")
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "torchbridge: stopped" in out and "Traceback" not in err, out + err


def stacks_of(process: subprocess.Popen) -> str:
    """What a hung child is doing: every native thread's stack (gdb, where installed) and
    its Python threads' stacks (faulthandler on SIGUSR1), then it is killed."""
    native = "gdb is not installed"
    if shutil.which("gdb"):
        native = subprocess.run(["gdb", "-batch", "-p", str(process.pid), "-ex",
                                 "thread apply all bt"], capture_output=True, text=True,
                                timeout=120).stdout
    process.send_signal(signal.SIGUSR1)
    time.sleep(1)
    process.kill()
    out, err = process.communicate()
    return f"native stacks:\n{native}\nstdout:\n{out}\nstderr (Python stacks):\n{err}"


@pytest.mark.parametrize("kwargs, error, message", [
    ({"inputs": [("X", "FP33", [4])]}, ValueError, "`X` has datatype 'FP33'"),
    ({"inputs": []}, ValueError, "inputs must be a non-empty list"),
    ({"outputs": [("Y", "FP32", "4")]}, ValueError, "`Y` has dims '4'"),
    ({"inputs": [("X", "FP32", [4]), ("X", "FP32", [4])]}, ValueError, "`X` is given twice"),
    ({"name": "a/b"}, ValueError, "name must be"),
    ({"max_batch_size": -1}, ValueError, "max_batch_size must be an integer >= 0"),
    ({"preferred_batch_sizes": [128]}, ValueError, "preferred_batch_sizes must be"),
    ({"http_port": 70000}, ValueError, "http_port must be an integer in 0..65535"),
    ({"idle_poll_us": -1}, ValueError, "idle_poll_us must be an integer >= 0"),
    ({"max_queue_delay_us": 10**12}, ValueError,
     "max_queue_delay_us must be an integer in 0..10000000"),
    ({"allow_client_shm": "yes"}, TypeError, "allow_client_shm must be True or False"),
    ({"fn": 3}, TypeError, "fn must be callable"),
    ({"trace_file": "/no/such/dir/t.json"}, ValueError, "the directory '/no/such/dir' does not"),
    ({"trace_file": 5}, TypeError, "trace_file must be a path or None, got int"),
])
def test_wrong_arguments_are_refused_naming_the_argument(kwargs, error, message):
    args = {"fn": lambda x: x, "inputs": [("X", "FP32", [4])], "outputs": [("Y", "FP32", [4])],
            "http_port": 0, "grpc_port": 0, **kwargs}
    with pytest.raises(error, match=re.escape(message)):
        torchbridge.Server(args.pop("fn"), **args)


def test_bytes_tensors_and_a_bare_numpy_output():
    def lengths(text):
        return np.array([[len(s)] for s in text[:, 0]], dtype=np.int64)

    with torchbridge.Server(lengths, name="lengths", inputs=[("TEXT", "BYTES", [1])],
                            outputs=[("N", "INT64", [1])], http_port=0,
                            grpc_port=0) as server:
        body = {"inputs": [{"name": "TEXT", "datatype": "BYTES", "shape": [2, 1],
                            "data": ["abc", "hello"]}]}
        status, answer = 0, None
        request = urllib.request.Request(f"{server.url}/v2/models/lengths/infer",
                                         data=json.dumps(body).encode())
        with urllib.request.urlopen(request, timeout=60) as reply:
            status, answer = reply.status, json.load(reply)
    assert status == 200 and answer["outputs"][0]["data"] == [3, 5], answer


def test_traces_go_to_the_trace_file_once_a_client_turns_tracing_on(tmp_path):
    trace_file = tmp_path / "traces.json"
    with torchbridge.Server(mlp(), name="mlp", **IO, http_port=0, grpc_port=0,
                            trace_file=trace_file) as server:
        settings = json.loads(post_json(server, "/v2/trace/setting", {}))
        assert settings["trace_file"] == str(trace_file) and settings["trace_level"] == ["OFF"]
        infer(server, np.zeros((1, 8)))  # not traced: tracing is off
        post_json(server, "/v2/trace/setting",
                  {"trace_level": ["TIMESTAMPS"], "trace_rate": "1"})
        for _ in range(3):
            assert infer(server, np.zeros((1, 8)))[0] == 200
    traces = json.loads(trace_file.read_text())
    assert [t["model_name"] for t in traces] == ["mlp"] * 3
    names = [ts["name"] for ts in traces[0]["timestamps"]]
    assert names[0] == "REQUEST_START" and names[-1] == "REQUEST_END", names


def test_without_a_trace_file_tracing_cannot_be_turned_on():
    with torchbridge.Server(mlp(), name="mlp", **IO, http_port=0, grpc_port=0) as server:
        with pytest.raises(urllib.error.HTTPError) as e:
            post_json(server, "/v2/trace/setting", {"trace_level": ["TIMESTAMPS"]})
        assert e.value.code == 400 and "trace_file" in json.load(e.value)["error"]


def test_a_port_in_use_is_an_os_error_naming_the_address():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen for HTTP on 127.0.0.1:{port}"):
            torchbridge.Server(lambda x: x, **IO, http_port=port, grpc_port=0)


def test_labels_name_the_classes_of_an_output_asked_for_as_classes():
    names = ["cat", "dog", "bird"]
    with torchbridge.Server(mlp(), **IO, labels={"OUTPUT0": names}, http_port=0,
                            grpc_port=0) as server:
        rows = np.random.default_rng(5).standard_normal((2, 8)).astype(np.float32)
        body = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [2, 8],
                            "data": rows.reshape(-1).tolist()}],
                "outputs": [{"name": "OUTPUT0", "parameters": {"classification": 2}}]}
        request = urllib.request.Request(f"{server.url}/v2/models/model/infer",
                                         data=json.dumps(body).encode())
        with urllib.request.urlopen(request, timeout=60) as reply:
            classes = json.load(reply)["outputs"][0]
        assert classes["datatype"] == "BYTES" and classes["shape"] == [2, 2]
        status, raw = infer(server, rows)
        assert status == 200
    logits = output(raw)
    for row, texts in zip(logits, np.reshape(classes["data"], (2, 2)), strict=True):
        top = np.argsort(-row, kind="stable")[:2]
        assert list(texts) == [f"{float(row[i]):.6f}:{i}:{names[i]}" for i in top]


def test_labels_for_an_output_the_server_does_not_have_are_refused():
    with pytest.raises(ValueError, match="labels name output 'LOGITS'"):
        torchbridge.Server(mlp(), **IO, labels={"LOGITS": ["a"]}, http_port=0, grpc_port=0)


def test_a_zero_dimensional_output_is_served_as_a_scalar():
    total = torchbridge.Server(lambda x: x.sum(), name="total", max_batch_size=0,
                               inputs=[("INPUT0", "FP32", [3])],
                               outputs=[("OUTPUT0", "FP32", [])], http_port=0, grpc_port=0)
    with total:
        body = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [3],
                            "data": [1.5, 2.0, 4.0]}]}
        reply = json.loads(post_json(total, "/v2/models/total/infer", body))
        assert reply["outputs"][0]["shape"] == [] and reply["outputs"][0]["data"] == [7.5]


def test_stop_gives_a_module_its_training_modes_back():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.Dropout(0.5), nn.Linear(16, 3))
    net.train()
    net[1].eval()  # frozen statistics, as fine-tuning does
    x = np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)
    with torchbridge.Server(net, name="net", **IO, http_port=0, grpc_port=0,
                            log=None) as server:
        assert not any(m.training for m in net.modules())  # served in eval mode
        status, body = infer(server, x)
        with torch.no_grad():
            want = net(torch.from_numpy(x)).numpy()
    assert status == 200
    np.testing.assert_allclose(output(body), want, rtol=1e-5, atol=1e-6)
    assert net.training and net[0].training and net[2].training and net[3].training
    assert not net[1].training


def test_a_call_that_raises_fails_every_request_batched_with_it_as_documented():
    calls = []

    def fails_on_a_negative_row(x):
        calls.append(x.shape[0])
        if (x < 0).any():
            raise ValueError("a negative row")
        return x[:, :3] * 2

    statuses = {}
    with torchbridge.Server(fails_on_a_negative_row, name="m", **IO, max_batch_size=4,
                            max_queue_delay_us=5_000_000, http_port=0, grpc_port=0,
                            log=None) as server:
        def send(i):  # the 4th row fills the batch, which then goes at once
            statuses[i] = infer(server, np.full((1, 8), -1.0 if i == 0 else 1.0, np.float32))

        threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert calls == [4]
    for status, body in statuses.values():
        assert status == 500 and "raised ValueError: a negative row" in body["error"], body
    # The docs say so (the docstring, and the README's "From Python" section).
    documented = "fails every request batched with it"
    assert documented in " ".join(torchbridge.Server.__doc__.split())
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## From Python\n"):readme.index("\n## The command line")]
    assert documented in " ".join(section.split())


EXIT_WHILE_CALLING = """
import sys, threading, time
import numpy as np
import torchbridge
model = torchbridge.Model.load(sys.argv[1], bridge="python")
def calls():
    while True:
        try:
            model.infer({"x": np.zeros((1, 4), np.float32)})
        except torchbridge.InferenceError:
            return  # the interpreter is exiting
threading.Thread(target=calls, daemon=True).start()
time.sleep(0.3)
"""


def test_the_interpreter_exits_cleanly_while_a_thread_still_calls_a_model(tmp_path):
    # A thread of torchbridge's that attached to the interpreter while it finalized was
    # ended mid-frame: the process aborted (SIGABRT) in about one exit in three.
    torchbridge.export(nn.Sequential(nn.Linear(4, 2)), (torch.zeros(2, 4),), tmp_path,
                       name="lin", input_names=["x"], bridges=["python"], trust_pickle=True)
    for run in range(8):
        done = subprocess.run([sys.executable, "-c", EXIT_WHILE_CALLING, str(tmp_path / "lin")],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (run, done.returncode, done.stderr[-2000:])


def test_clients_cannot_unload_or_reload_the_callable(picky):
    # The model is the callable: a load with another config (another bridge named, a
    # smaller max_batch_size) could only break it, an unload stop it.
    for action, body in (("unload", {}), ("load", {"parameters": {"config": "{\"max_batch_size\": 2}"}})):
        with pytest.raises(urllib.error.HTTPError) as refused:
            post_json(picky, f"/v2/repository/models/picky/{action}", body)
        assert refused.value.code == 403
        assert "torchbridge.Server" in json.loads(refused.value.read())["error"]
    status, body = infer(picky, np.full((4, 8), 9, np.float32))
    assert status == 200 and output(body).shape == (4, 3)


def test_stop_from_inside_the_served_callable_is_refused_not_a_deadlock():
    said = []

    def stops_itself(x):
        try:
            holder[0].stop()
        except RuntimeError as e:
            said.append(str(e))
        return x[:, :3]

    holder = []
    with torchbridge.Server(stops_itself, **IO, http_port=0, grpc_port=0) as server:
        holder.append(server)
        status, body = infer(server, np.ones((1, 8), np.float32))
        assert status == 200, body
        assert said and "from inside the served callable" in said[0], said
        assert server.running
    assert not server.running
