"""Triton's logging extension: tritonclient's get_log_settings / update_log_settings over
HTTP and gRPC read and change what the running server logs."""

import json
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import require_models, start_server, stop_server


@pytest.fixture(scope="module")
def served(repo, tmp_path_factory):
    require_models(repo, "mlp")
    root = tmp_path_factory.mktemp("logging") / "repo"
    root.mkdir()
    (root / "mlp").symlink_to(repo / "mlp", target_is_directory=True)
    server = start_server(root, root.parent / "serve.log")  # --log warn, the default
    yield server
    assert stop_server(server) == 0, server.log_text()


def logged_after(server, action) -> str:
    """What the server logs while `action` runs."""
    before = len(server.log_text())
    action()
    time.sleep(0.3)
    return server.log_text()[before:]


def test_info_lines_appear_once_a_client_turns_them_on(served):
    with httpclient.InferenceServerClient(served.http_url) as client:
        assert "logging" in client.get_server_metadata()["extensions"]
        settings = client.get_log_settings()
        assert settings == {"log_file": "", "log_info": False, "log_warnings": True,
                            "log_errors": True, "log_verbose_level": 0, "log_format": "default"}
        load = lambda: client.load_model("mlp")  # noqa: E731
        assert "loaded through the repository API" not in logged_after(served, load)

        answer = client.update_log_settings({"log_info": True})
        assert answer["log_info"] is True and answer["log_warnings"] is True
        assert "loaded through the repository API" in logged_after(served, load)

        # Verbose level 1: a line for each inference request.
        x = httpclient.InferInput("INPUT0", [1, 16], "FP32")
        x.set_data_from_numpy(np.zeros((1, 16), dtype=np.float32))
        infer = lambda: client.infer("mlp", [x])  # noqa: E731
        assert "inference request" not in logged_after(served, infer)
        assert client.update_log_settings({"log_verbose_level": 1})["log_verbose_level"] == 1
        line = logged_after(served, infer)
        assert "inference request" in line and "model=\"mlp\"" in line, line
        assert " id=" not in line, line
        line = logged_after(served, lambda: client.infer("mlp", [x], request_id="req-42"))
        assert "id=\"req-42\"" in line, line
        client.update_log_settings({"log_verbose_level": 0})

    with grpcclient.InferenceServerClient(served.grpc_url) as client:
        got = client.get_log_settings(as_json=True)["settings"]
        assert got["log_info"] == {"bool_param": True}
        client.update_log_settings({"log_info": False, "log_verbose_level": 0})
        assert "loaded through the repository API" not in logged_after(
            served, lambda: client.load_model("mlp"))
        client.update_log_settings({"log_verbose_level": 1})
        x = grpcclient.InferInput("INPUT0", [1, 16], "FP32")
        x.set_data_from_numpy(np.zeros((1, 16), dtype=np.float32))
        line = logged_after(served, lambda: client.infer("mlp", [x], request_id="g-7"))
        assert "id=\"g-7\"" in line and "protocol=Grpc" in line, line
        client.update_log_settings({"log_verbose_level": 0})


@pytest.mark.parametrize("settings, message", [
    ({"log_file": "/tmp/torchbridge.log"}, "`log_file` can only be \"\""),
    ({"log_info": 1}, "`log_info` must be true or false, got 1"),
    ({"log_level": "debug"}, "unknown log setting `log_level`"),
])
def test_settings_that_cannot_be_made_are_refused_by_name(served, settings, message):
    with httpclient.InferenceServerClient(served.http_url) as client:
        with pytest.raises(InferenceServerException) as e:
            client.update_log_settings(settings)
        assert e.value.status() == "400" and message in e.value.message()
        assert client.get_log_settings()["log_verbose_level"] == 0


def test_with_json_lines_every_line_is_a_json_object(repo, tmp_path):
    """--log-format json: the status lines (where it listens, a model that failed, the
    stop) are JSON objects like the log's own, one a line; a failure is logged once."""
    require_models(repo, "mlp", "pickled")  # pickled fails to load (an untrusted pickle)
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("mlp", "pickled"):
        (root / name).symlink_to(repo / name, target_is_directory=True)
    server = start_server(root, tmp_path / "serve.log", "--log-format", "json")
    with httpclient.InferenceServerClient(server.http_url) as client:
        assert client.get_log_settings()["log_format"] == "json"
        client.update_log_settings({"log_format": "json"})  # what it says it is, it takes
    assert stop_server(server) == 0, server.log_text()
    lines = [json.loads(line) for line in server.log_text().splitlines() if line.strip()]
    messages = [line["fields"]["message"] for line in lines]
    assert any(m.startswith("HTTP on ") for m in messages), messages
    assert "stopped" in messages and any(m.startswith("SIGTERM: stopping") for m in messages)
    failed = [m for m in messages if "pickled" in m or "trust_pickle" in m]
    assert sum("trust_pickle" in m for m in messages) == 1, failed  # the error, once


def test_a_client_cannot_forge_a_log_line(served):
    # A config whose field name holds a newline and a made-up log line: the refused
    # load is logged (at info: the client's mistake) with the client's text, every line
    # after the first indented, so it cannot pass for a line of the server's own.
    # (Lower case: Triton's field names are read snake_case, which would mangle capitals.)
    forged = "2026-01-01 error torchbridge: forged line"
    # A field torchbridge does not know: refused by name, whatever the bridge.
    config = json.dumps({"no_such_field\n" + forged: 1})
    with httpclient.InferenceServerClient(served.http_url) as client:
        client.update_log_settings({"log_info": True})
        try:
            logged = logged_after(served, lambda: pytest.raises(
                InferenceServerException, client.load_model, "mlp", config=config))
        finally:
            client.update_log_settings({"log_info": False})
    assert "forged line" in logged, logged
    assert not any(line.startswith(forged) for line in logged.splitlines()), logged


def test_a_failed_request_is_logged_with_its_model_and_the_clients_id(server):
    # py_error raises on a negative input: a 500, logged at ERROR (the default level).
    require_models(server.repo, "py_error")
    for module, url, rid in ((httpclient, server.http_url, "h-42"),
                             (grpcclient, server.grpc_url, "g-42")):
        x = module.InferInput("X", [1, 2], "FP32")
        x.set_data_from_numpy(np.full((1, 2), -1, dtype=np.float32))
        with module.InferenceServerClient(url) as client:
            with pytest.raises(InferenceServerException):
                client.infer("py_error", [x], request_id=rid)
        time.sleep(0.3)
        [event] = [e for e in events(server.log_text()) if rid in e]
        assert "ERROR" in event and "py_error" in event and "negative input" in event, event


def events(log: str) -> list[str]:
    """The log's events: a line and the indented lines that continue it (a traceback)."""
    found = []
    for line in log.splitlines():
        if line.startswith("    ") and found:
            found[-1] += "\n" + line
        else:
            found.append(line)
    return found
