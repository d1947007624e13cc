"""`serve --idle-poll-us`: one lowest-priority spinner per CPU the server may use; they
spin while requests keep coming and stop spending CPU once the window has closed."""

import os
import time

import numpy as np
import tritonclient.http as httpclient

from conftest import require_models, start_server, stop_server

SCHED_IDLE = 5
TICK = os.sysconf("SC_CLK_TCK")


def spinners(pid: int) -> dict:
    """Thread id → (scheduling policy, CPU seconds) of the server's idle-poll threads."""
    found = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            comm = open(f"/proc/{pid}/task/{tid}/comm").read().strip()
            stat = open(f"/proc/{pid}/task/{tid}/stat").read()
        except FileNotFoundError:
            continue
        if comm.startswith("tb-idle-poll-"):
            # Fields from the third on, after the parenthesised name: utime and stime are
            # fields 14 and 15, the policy field 41.
            fields = stat[stat.rfind(")") + 2:].split()
            found[tid] = (int(fields[38]), (int(fields[11]) + int(fields[12])) / TICK)
    return found


def cpu_seconds(pid: int) -> float:
    return sum(seconds for _, seconds in spinners(pid).values())


def test_spinners_spin_under_requests_and_rest_when_idle(repo, tmp_path):
    require_models(repo, "mlp")
    small = tmp_path / "repo"
    small.mkdir()
    (small / "mlp").symlink_to(repo / "mlp", target_is_directory=True)
    server = start_server(small, tmp_path / "serve.log", "--idle-poll-us", "50000")
    pid = server.process.pid
    try:
        found = spinners(pid)
        assert len(found) == len(os.sched_getaffinity(pid)), found
        assert all(policy == SCHED_IDLE for policy, _ in found.values()), found

        client = httpclient.InferenceServerClient(server.http_url)
        x = np.arange(16, dtype=np.float32).reshape(1, 16) / 16
        tensor = httpclient.InferInput("INPUT0", [1, 16], "FP32")
        tensor.set_data_from_numpy(x)
        first = client.infer("mlp", [tensor]).as_numpy("OUTPUT0")
        before = cpu_seconds(pid)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            np.testing.assert_array_equal(client.infer("mlp", [tensor]).as_numpy("OUTPUT0"), first)
        busy = cpu_seconds(pid) - before
        # One client leaves most of a CPU idle between its requests: the spinners fill it.
        assert busy >= 0.15, f"the spinners used {busy:.2f} s of CPU during 1 s of requests"

        time.sleep(0.3)  # the 50 ms window closes
        before = cpu_seconds(pid)
        time.sleep(1.0)
        idle = cpu_seconds(pid) - before
        assert idle <= 0.05, f"the spinners used {idle:.2f} s of CPU in 1 s without requests"
    finally:
        assert stop_server(server) == 0, server.log_text()


def halts_without_polling() -> bool:
    """What the server's start-up check should find: the haltpoll cpuidle driver with a
    polling window of 0 (as on this project's VM), read here independently."""
    try:
        driver = open("/sys/devices/system/cpu/cpuidle/current_driver").read().strip()
        window = int(open("/sys/module/haltpoll/parameters/guest_halt_poll_ns").read())
    except (OSError, ValueError):
        return False
    return driver == "haltpoll" and window == 0


def test_halt_polling_warning_matches_the_machine(tmp_path):
    expected = halts_without_polling()
    empty = tmp_path / "repo"
    empty.mkdir()
    for extra in ((), ("--idle-poll-us", "1000")):
        log = tmp_path / f"serve{len(extra)}.log"
        server = start_server(empty, log, *extra)
        assert stop_server(server) == 0, server.log_text()
        warned = "halt without polling" in server.log_text()
        # With --idle-poll-us the user has already chosen the remedy: no warning.
        assert warned == (expected and not extra), server.log_text()
        if warned:
            assert "--idle-poll-us" in server.log_text()
