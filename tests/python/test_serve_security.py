"""torchbridge.Server's bearer tokens and TLS: the same checks as `serve --auth-token-file`
and `--tls-cert/--tls-key/--tls-client-ca`, asked for from Python, on a real socket."""

import http.client
import json
import shutil
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import torchbridge

MAKE_CERTS = Path(__file__).parents[1] / "fixtures" / "make_certs.py"
IO = {"inputs": [("INPUT0", "FP32", [4])], "outputs": [("OUTPUT0", "FP32", [2])]}
ROWS = np.arange(8, dtype=np.float32).reshape(2, 4)


def net():
    torch.manual_seed(0)
    return nn.Linear(4, 2)


def expected():
    with torch.no_grad():
        return net()(torch.from_numpy(ROWS)).numpy()


def call(url, path, *, token=None, body=None, context=None):
    """(status, parsed JSON body) of a GET, or of a POST when `body` is given."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}{path}", data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60, context=context) as reply:
            text = reply.read()
            return reply.status, json.loads(text) if text else None
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def infer_body():
    return {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [2, 4],
                        "data": ROWS.reshape(-1).tolist()}]}


def answer(body):
    out = body["outputs"][0]
    return np.asarray(out["data"], np.float32).reshape(out["shape"])


@pytest.mark.parametrize("allow_health", [False, True])
def test_a_token_is_asked_for_and_the_right_one_is_served(allow_health):
    with torchbridge.Server(net(), name="net", **IO, http_port=0, grpc_port=0,
                            auth_tokens=["first-token", "second-token"],
                            auth_allow_health=allow_health) as server:
        status, body = call(server.url, "/v2/models/net/infer", body=infer_body())
        assert status == 401 and "Bearer" in body["error"], body
        status, body = call(server.url, "/v2/models/net/infer", body=infer_body(),
                            token="not-a-token")
        assert status == 401 and "not valid" in body["error"], body
        for token in ("first-token", "second-token"):
            status, body = call(server.url, "/v2/models/net/infer", body=infer_body(),
                                token=token)
            assert status == 200, body
            np.testing.assert_allclose(answer(body), expected(), rtol=1e-5, atol=1e-6)
        status, _ = call(server.url, "/v2/health/ready")
        assert status == (200 if allow_health else 401)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is missing")
    d = tmp_path_factory.mktemp("certs")
    subprocess.run([sys.executable, str(MAKE_CERTS), str(d)], check=True)
    return d


def test_tls_serves_https_only_to_clients_with_a_certificate_when_a_ca_is_given(certs):
    trusting = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    presenting = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    presenting.load_cert_chain(str(certs / "client.pem"), str(certs / "client.key"))
    with torchbridge.Server(net(), name="net", **IO, http_port=0, grpc_port=0,
                            tls_cert=certs / "server.pem", tls_key=certs / "server.key",
                            tls_client_ca=certs / "ca.pem") as server:
        https = f"https://{server.http_address}"
        status, body = call(https, "/v2/models/net/infer", body=infer_body(),
                            context=presenting)
        assert status == 200, body
        np.testing.assert_allclose(answer(body), expected(), rtol=1e-5, atol=1e-6)
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            call(https, "/v2/health/ready", context=trusting)  # no client certificate
        # Plain HTTP: the server answers with TLS (an alert), which is no HTTP status line.
        with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
            call(server.url, "/v2/health/ready")


@pytest.mark.parametrize("kwargs, error, message", [
    ({"auth_tokens": "one-token"}, TypeError, "auth_tokens must be a list of strings"),
    ({"auth_tokens": []}, ValueError, "auth_tokens holds no token"),
    ({"auth_tokens": ["good", "has space"]}, ValueError, "auth_tokens\\[1\\] has a space"),
    ({"auth_allow_health": True}, ValueError, "auth_allow_health=True needs auth_tokens"),
    ({"tls_cert": "cert.pem"}, ValueError, "tls_cert and tls_key go together"),
    ({"tls_client_ca": "ca.pem"}, ValueError, "tls_client_ca needs tls_cert and tls_key"),
    ({"tls_cert": "/nonexistent/cert.pem", "tls_key": "/nonexistent/key.pem"}, ValueError,
     "tls_cert /nonexistent/cert.pem: cannot read it"),
])
def test_unusable_security_settings_are_refused_by_name(kwargs, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(")):
        torchbridge.Server(net(), name="net", **IO, http_port=0, grpc_port=0, **kwargs)
