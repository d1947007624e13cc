"""Clients that stall (slowloris): a connection that never finishes its request's headers,
or never sends one (HTTP or gRPC), is closed after `--client-timeout-secs`; a body that stops arriving is
answered 408; a declared body over the limit is refused with 413 before it is sent, even
to a client waiting on `Expect: 100-continue`. The server serves on."""

import socket
import time
import urllib.request

import pytest
import tritonclient.grpc as grpcclient

from conftest import require_models, start_server, stop_server

TIMEOUT_S = 2


@pytest.fixture(scope="module")
def served(repo, tmp_path_factory):
    require_models(repo, "mlp")
    root = tmp_path_factory.mktemp("slow_clients") / "repo"
    root.mkdir()
    (root / "mlp").symlink_to(repo / "mlp", target_is_directory=True)
    server = start_server(root, root.parent / "serve.log", "--client-timeout-secs",
                          str(TIMEOUT_S), "--max-body-bytes", "100000")
    yield server
    assert stop_server(server) == 0, server.log_text()


def connect(server, url=None) -> socket.socket:
    host, port = (url or server.http_url).split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    return sock


def reply_of(sock) -> bytes:
    """Everything the server sends until it closes the connection (at most 30 s); a
    close with bytes the server never read is a reset."""
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except ConnectionResetError:
        pass
    return got


@pytest.mark.parametrize("sent", [b"", b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n"],
                         ids=["nothing", "half the headers"])
def test_a_connection_that_never_finishes_its_headers_is_closed(served, sent):
    with connect(served) as sock:
        sock.sendall(sent)
        start = time.monotonic()
        reply = reply_of(sock)
        assert reply == b"" or reply.startswith(b"HTTP/1.1 408"), reply
        # Closed by the server's clock (the client would have waited 30 s).
        assert time.monotonic() - start < 25
    assert_serving(served)


def test_the_metrics_port_closes_a_connection_that_never_finishes_its_headers(served):
    with connect(served, served.metrics_url) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\n")
        start = time.monotonic()
        reply = reply_of(sock)
        assert reply == b"" or reply.startswith(b"HTTP/1.1 408"), reply
        assert time.monotonic() - start < 25
    with connect(served, served.metrics_url) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert b"# TYPE torchbridge_" in reply_of(sock)


@pytest.mark.parametrize("sent", [b"", b"P", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r"],
                         ids=["nothing", "one byte", "all but one byte of the preface"])
def test_a_grpc_connection_that_never_finishes_its_preface_is_closed(served, sent):
    with connect(served, served.grpc_url) as sock:
        sock.sendall(sent)
        start = time.monotonic()
        assert reply_of(sock) == b""
        assert time.monotonic() - start < 25
    with grpcclient.InferenceServerClient(served.grpc_url) as client:
        assert client.is_server_ready()


def test_a_body_that_stops_arriving_is_answered_408(served):
    with connect(served) as sock:
        sock.sendall(b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"inputs\": [")
        reply = reply_of(sock).decode(errors="replace")
    assert reply.startswith("HTTP/1.1 408"), reply
    assert "did not arrive within 2 s (--client-timeout-secs)" in reply, reply
    assert_serving(served)


def test_a_declared_body_over_the_limit_is_refused_before_it_is_sent(served):
    with connect(served) as sock:
        sock.sendall(b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 99999999\r\nExpect: 100-continue\r\n\r\n")
        head = sock.recv(65536).decode(errors="replace")
    assert head.startswith("HTTP/1.1 413"), head
    assert "--max-body-bytes" in head, head
    assert_serving(served)


def assert_serving(server) -> None:
    with urllib.request.urlopen(f"http://{server.http_url}/v2/health/ready", timeout=10) as r:
        assert r.status == 200
