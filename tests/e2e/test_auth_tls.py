"""Bearer tokens and TLS against the real `torchbridge serve`, driven by tritonclient's own
header and SSL options. Certificates are made at test time with the `openssl` command:
a CA, a server certificate for 127.0.0.1 signed by it, a client certificate signed by it,
and a self-signed client certificate the server must refuse.

Three servers, each over a repository holding only the `mlp` fixture:
- `tokens`: plain TCP, two tokens from --auth-token-file, health not exempt;
- `tls`: TLS (no client certificates), a token from --auth-token-env, health open;
- `mtls`: TLS that requires a client certificate signed by the CA, no tokens."""

import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import gevent.ssl
import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import BINARY, Server, free_port, free_ports, grpc_health, stop_server

TOKENS = ["first-token-0123456789", "second.token/abc"]
X = np.linspace(-1, 1, 16, dtype=np.float32).reshape(1, 16)

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
MAKE_CERTS = Path(__file__).parents[1] / "fixtures" / "make_certs.py"


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("certs")
    subprocess.run([sys.executable, str(MAKE_CERTS), str(d)], check=True)
    return d


def context(certs, client="client", lib=ssl):
    """A verifying client context trusting the test CA, presenting `client`'s cert
    (`lib`: the ssl module, or gevent's for tritonclient.http)."""
    ctx = lib.create_default_context(cafile=str(certs / "ca.pem"))
    if client:
        ctx.load_cert_chain(str(certs / f"{client}.pem"), str(certs / f"{client}.key"))
    return ctx


def health(url, ctx=None, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"{url}/v2/health/ready", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5, context=ctx) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def start(repo, log, *flags, scheme="http", ctx=None, token=None, env=None) -> Server:
    """As conftest's start_server, waiting for readiness over TLS and with a token."""
    http, grpc, metrics = free_ports(3)
    args = [str(BINARY), "serve", "--model-repository", str(repo), "--host", "127.0.0.1",
            "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
            *flags]
    process = subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT,
                               env={**os.environ, **(env or {})})
    server = Server(process, f"127.0.0.1:{http}", f"127.0.0.1:{grpc}", f"127.0.0.1:{metrics}",
                    repo, log)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert process.poll() is None, f"serve exited early:\n{server.log_text()}"
        try:
            if health(f"{scheme}://{server.http_url}", ctx, token)[0] == 200:
                return server
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"serve not ready:\n{server.log_text()}")


@pytest.fixture(scope="module")
def small_repo(repo, tmp_path_factory):
    small = tmp_path_factory.mktemp("auth_repo")
    (small / "mlp").symlink_to(repo / "mlp", target_is_directory=True)
    return small


@pytest.fixture(scope="module")
def tokens(small_repo, tmp_path_factory):
    d = tmp_path_factory.mktemp("tokens")
    (d / "tokens.txt").write_text(f"# accepted tokens\n{TOKENS[0]}\n\n  {TOKENS[1]}  \n")
    server = start(small_repo, d / "serve.log", "--auth-token-file", str(d / "tokens.txt"),
                   token=TOKENS[1])
    yield server
    assert stop_server(server) == 0, server.log_text()


@pytest.fixture(scope="module")
def tls(small_repo, certs, tmp_path_factory):
    log = tmp_path_factory.mktemp("tls") / "serve.log"
    server = start(small_repo, log, "--tls-cert", str(certs / "server.pem"),
                   "--tls-key", str(certs / "server.key"), "--auth-allow-health",
                   scheme="https", ctx=context(certs, client=None),
                   env={"TORCHBRIDGE_AUTH_TOKEN_ENV": "TB_TEST_TOKENS",
                        "TB_TEST_TOKENS": TOKENS[0]})
    yield server
    assert stop_server(server) == 0, server.log_text()


@pytest.fixture(scope="module")
def mtls(small_repo, certs, tmp_path_factory):
    log = tmp_path_factory.mktemp("mtls") / "serve.log"
    server = start(small_repo, log, "--tls-cert", str(certs / "server.pem"),
                   "--tls-key", str(certs / "server.key"),
                   "--tls-client-ca", str(certs / "ca.pem"),
                   scheme="https", ctx=context(certs))
    yield server
    assert stop_server(server) == 0, server.log_text()


def http_infer(client, **kwargs):
    tensor = httpclient.InferInput("INPUT0", [1, 16], "FP32")
    tensor.set_data_from_numpy(X)
    return client.infer("mlp", [tensor], **kwargs).as_numpy("OUTPUT0")


def grpc_infer(client, **kwargs):
    tensor = grpcclient.InferInput("INPUT0", [1, 16], "FP32")
    tensor.set_data_from_numpy(X)
    return client.infer("mlp", [tensor], **kwargs).as_numpy("OUTPUT0")


# --- tokens --------------------------------------------------------------------------------


def test_http_requires_a_valid_token(tokens):
    status, headers, body = health(f"http://{tokens.http_url}")
    assert status == 401 and headers["www-authenticate"] == "Bearer", headers
    assert "authentication required" in body["error"]
    status, headers, body = health(f"http://{tokens.http_url}", token="guess")
    assert status == 401 and headers["www-authenticate"].startswith("Bearer"), headers
    assert body == {"error": "the bearer token is not valid"}
    with httpclient.InferenceServerClient(tokens.http_url) as client:
        with pytest.raises(InferenceServerException, match="authentication required"):
            http_infer(client)
        with pytest.raises(InferenceServerException, match="not valid"):
            http_infer(client, headers={"Authorization": "Bearer first-token"})
        with pytest.raises(InferenceServerException, match="must be `Bearer <token>`"):
            http_infer(client, headers={"Authorization": f"Basic {TOKENS[0]}"})
        answers = [http_infer(client, headers={"Authorization": f"Bearer {t}"}) for t in TOKENS]
    assert answers[0].shape == (1, 4)
    np.testing.assert_array_equal(answers[0], answers[1])


def test_grpc_requires_a_valid_token(tokens):
    with grpcclient.InferenceServerClient(tokens.grpc_url) as client:
        for headers in [None, {"authorization": "Bearer nope"}]:
            with pytest.raises(InferenceServerException) as info:
                grpc_infer(client, headers=headers)
            assert info.value.status() == "StatusCode.UNAUTHENTICATED", info.value
        with pytest.raises(InferenceServerException) as info:
            client.is_server_live()
        assert info.value.status() == "StatusCode.UNAUTHENTICATED"
        good = {"authorization": f"Bearer {TOKENS[0]}"}
        assert client.is_server_live(headers=good)
        assert grpc_infer(client, headers=good).shape == (1, 4)
    # The standard health check is guarded like ServerLive.
    with grpc.insecure_channel(tokens.grpc_url) as channel:
        with pytest.raises(grpc.RpcError) as info:
            grpc_health(channel)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert grpc_health(channel, metadata=[("authorization", f"Bearer {TOKENS[0]}")]) == 1


def test_metrics_stay_open(tokens):
    with urllib.request.urlopen(f"http://{tokens.metrics_url}/metrics", timeout=10) as r:
        assert r.status == 200
        assert "torchbridge_inference_requests_total" in r.read().decode()


# --- TLS -----------------------------------------------------------------------------------


def test_tls_http_with_tritonclient(tls, certs):
    # Health is open (--auth-allow-health); inference still needs the token.
    assert health(f"https://{tls.http_url}", context(certs, None))[0] == 200
    with httpclient.InferenceServerClient(
            tls.http_url, ssl=True,
            ssl_context_factory=lambda: context(certs, None, gevent.ssl)) as client:
        assert client.is_server_live()
        with pytest.raises(InferenceServerException, match="authentication required"):
            http_infer(client)
        out = http_infer(client, headers={"Authorization": f"Bearer {TOKENS[0]}"})
    assert out.shape == (1, 4)
    # The same through ssl_options (ssl.wrap_socket's options), trusting the CA.
    with httpclient.InferenceServerClient(
            tls.http_url, ssl=True, ssl_options={"ca_certs": str(certs / "ca.pem")}) as client:
        assert client.is_server_ready()


def test_tls_http_offers_only_the_http_it_speaks(tls, certs):
    # A client that prefers h2 (curl, Go, browsers) must be told http/1.1 in the
    # handshake: the HTTP port does not speak h2.
    ctx = context(certs, None)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    host, port = tls.http_url.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as conn:
            assert conn.selected_alpn_protocol() == "http/1.1"


def test_tls_refuses_plain_text_and_untrusted_clients(tls, certs):
    with pytest.raises((OSError, http.client.HTTPException)):
        health(f"http://{tls.http_url}")
    # A client that does not trust the test CA refuses the server's certificate.
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        health(f"https://{tls.http_url}", ssl.create_default_context())


def test_tls_grpc_with_tritonclient(tls, certs):
    with grpcclient.InferenceServerClient(tls.grpc_url, ssl=True,
                                          root_certificates=str(certs / "ca.pem")) as client:
        assert client.is_server_live()   # open: --auth-allow-health
        with pytest.raises(InferenceServerException) as info:
            grpc_infer(client)
        assert info.value.status() == "StatusCode.UNAUTHENTICATED"
        out = grpc_infer(client, headers={"authorization": f"Bearer {TOKENS[0]}"})
    assert out.shape == (1, 4)
    credentials = grpc.ssl_channel_credentials((certs / "ca.pem").read_bytes())
    with grpc.secure_channel(tls.grpc_url, credentials) as channel:
        assert grpc_health(channel) == 1   # open too: --auth-allow-health


# --- mutual TLS ----------------------------------------------------------------------------


def test_mtls_http(mtls, certs):
    url = f"https://{mtls.http_url}"
    assert health(url, context(certs))[0] == 200
    for client in [None, "rogue"]:   # no certificate, or one the CA did not sign
        with pytest.raises(OSError):
            health(url, context(certs, client))
    with httpclient.InferenceServerClient(
            mtls.http_url, ssl=True,
            ssl_context_factory=lambda: context(certs, lib=gevent.ssl)) as client:
        assert http_infer(client).shape == (1, 4)
    with httpclient.InferenceServerClient(
            mtls.http_url, ssl=True,
            ssl_context_factory=lambda: context(certs, None, gevent.ssl)) as client:
        with pytest.raises(Exception):
            client.is_server_live()


def test_mtls_grpc(mtls, certs):
    def client(name):
        options = {"ssl": True, "root_certificates": str(certs / "ca.pem")}
        if name:
            options.update(private_key=str(certs / f"{name}.key"),
                           certificate_chain=str(certs / f"{name}.pem"))
        return grpcclient.InferenceServerClient(mtls.grpc_url, **options)

    with client("client") as good:
        assert grpc_infer(good).shape == (1, 4)
    for name in [None, "rogue"]:
        with client(name) as bad:
            with pytest.raises(InferenceServerException) as info:
                bad.is_server_live()
            assert info.value.status() == "StatusCode.UNAVAILABLE", info.value


# --- settings that cannot work fail at start, naming the flag ------------------------------


@pytest.mark.parametrize("flags, message", [
    (["--auth-token-file", "{d}/empty.txt"], "--auth-token-file {d}/empty.txt holds no token"),
    (["--auth-token-env", "TB_UNSET_VARIABLE"], "`TB_UNSET_VARIABLE` is not set"),
    (["--auth-allow-health"], "--auth-allow-health needs --auth-token-file or --auth-token-env"),
    (["--tls-cert", "{d}/missing.pem", "--tls-key", "{d}/server.key"],
     "--tls-cert {d}/missing.pem: cannot read it"),
    (["--tls-cert", "{d}/server.pem", "--tls-key", "{d}/server.pem"],
     "--tls-key {d}/server.pem: no usable PEM private key"),
    (["--tls-cert", "{d}/server.pem", "--tls-key", "{d}/client.key"], "do not make a usable pair"),
    (["--tls-cert", "{d}/server.key", "--tls-key", "{d}/server.key"], "no PEM certificate"),
    (["--tls-cert", "{d}/server.pem"], "--tls-key"),
    (["--max-json-depth", "500"], "--max-json-depth must be at most 120, got 500"),
    (["--max-tensors", "0"], "--max-tensors must be at least 1"),
])
def test_unusable_settings_fail_at_start(certs, small_repo, flags, message):
    (certs / "empty.txt").write_text("# no tokens yet\n\n")
    flags = [f.format(d=certs) for f in flags]
    result = subprocess.run([str(BINARY), "serve", "--model-repository", str(small_repo),
                             "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0",
                             "--metrics-port", str(free_port()), *flags],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert message.format(d=certs) in result.stderr, result.stderr
