"""Bad input against the real `torchbridge serve`, over HTTP and gRPC: every input limit
and every mismatch gets its status and a message naming what is wrong (and, for a limit,
the flag that raises it); afterwards a good request still succeeds.

The server here is this module's own, started with small limits (so that passing each
one is cheap) over a repository holding only the `mlp` fixture (INPUT0 FP32 [-1, 16] ->
OUTPUT0 FP32 [-1, 4])."""

import gzip
import json
import struct
import urllib.error
import urllib.request
import zlib

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import start_server, stop_server

LIMITS = {
    "--max-body-bytes": 1 << 20,
    "--max-inflated-bytes": 2 << 20,
    "--max-tensors": 4,
    "--max-tensor-dims": 4,
    "--max-tensor-elements": 4096,
    "--max-bytes-element": 64,
    "--max-json-depth": 8,
}


@pytest.fixture(scope="module")
def limited(repo, tmp_path_factory):
    small = tmp_path_factory.mktemp("bad_input_repo")
    (small / "mlp").symlink_to(repo / "mlp", target_is_directory=True)
    log = tmp_path_factory.mktemp("bad_input_logs") / "serve.log"
    flags = [str(x) for pair in LIMITS.items() for x in pair]
    server = start_server(small, log, *flags)
    yield server
    assert stop_server(server) == 0, server.log_text()


def post(server, body, headers=None, model="mlp"):
    """POST to the model's infer route: (status, headers, parsed JSON body)."""
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    request = urllib.request.Request(f"http://{server.http_url}/v2/models/{model}/infer",
                                     data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, r.headers, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.headers, json.loads(e.read())


def refused(server, body, status, *fragments, headers=None):
    got, _, reply = post(server, body, headers)
    assert got == status, reply
    for fragment in fragments:
        assert fragment in reply["error"], reply["error"]
    return reply["error"]


def tensor(name="INPUT0", datatype="FP32", shape=(1, 16), data=None):
    if data is None:
        data = [0.5] * int(np.prod(shape))
    return {"name": name, "datatype": datatype, "shape": list(shape), "data": data}


def peak_rss_bytes(server):
    with open(f"/proc/{server.process.pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


# --- HTTP: sizes -------------------------------------------------------------------------


def test_a_body_over_the_limit_is_413(limited):
    body = b" " * ((1 << 20) + 1)
    refused(limited, body, 413, "over the limit of 1048576 bytes (--max-body-bytes)")


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_compression_bomb_is_refused_while_inflating(limited, encoding):
    # 256 MiB of zeros packs into well under the 1 MiB body limit; inflating it in full
    # would raise the server's peak memory by 256 MiB.
    zeros = bytes(256 << 20)
    bomb = gzip.compress(zeros, 6) if encoding == "gzip" else zlib.compress(zeros, 6)
    del zeros
    assert len(bomb) < 1 << 20
    before = peak_rss_bytes(limited)
    refused(limited, bomb, 413,
            f"the {encoding} request body inflates past the limit of 2097152 bytes "
            "(--max-inflated-bytes)",
            headers={"Content-Encoding": encoding})
    assert peak_rss_bytes(limited) - before < 64 << 20


def test_a_compressed_body_under_the_limit_is_served(limited):
    body = json.dumps({"inputs": [tensor()]}).encode()
    status, _, reply = post(limited, gzip.compress(body), {"Content-Encoding": "gzip"})
    assert status == 200, reply
    assert reply["outputs"][0]["shape"] == [1, 4]


# --- HTTP: counts, shapes, depth -------------------------------------------------------


def test_too_many_inputs(limited):
    inputs = [tensor(f"IN{i}") for i in range(5)]
    refused(limited, {"inputs": inputs}, 400,
            "the request has 5 inputs; the limit is 4 (--max-tensors)")


def test_too_many_requested_outputs(limited):
    outputs = [{"name": f"OUT{i}"} for i in range(5)]
    refused(limited, {"inputs": [tensor()], "outputs": outputs}, 400,
            "the request has 5 requested outputs; the limit is 4 (--max-tensors)")


def test_too_many_dimensions(limited):
    refused(limited, {"inputs": [tensor(shape=(1, 1, 1, 1, 16))]}, 400,
            "input `INPUT0`: shape has 5 dimensions; the limit is 4 (--max-tensor-dims)")


def test_too_many_elements(limited):
    # The shape alone is refused: the data is never looked at.
    refused(limited, {"inputs": [tensor(shape=(300, 16), data=[])]}, 400,
            "input `INPUT0`: shape [300, 16] has 4800 elements; the limit is 4096 "
            "(--max-tensor-elements)")
    refused(limited, {"inputs": [tensor(shape=(1 << 40, 1 << 40), data=[])]}, 400,
            "the limit is 4096 (--max-tensor-elements)")


def test_a_bytes_element_too_long(limited):
    refused(limited, {"inputs": [tensor("TEXT", "BYTES", (2,), ["short", "x" * 100])]}, 400,
            "input `TEXT`: BYTES element 1 is 100 bytes long; the limit is 64 "
            "(--max-bytes-element)")
    # The same in the binary extension.
    data = b"".join(struct.pack("<I", len(s)) + s for s in [b"ok", b"y" * 65])
    header = json.dumps({"inputs": [{"name": "TEXT", "datatype": "BYTES", "shape": [2],
                                     "parameters": {"binary_data_size": len(data)}}]}).encode()
    refused(limited, header + data, 400, "BYTES element 1 is 65 bytes long",
            headers={"Inference-Header-Content-Length": str(len(header))})


def test_json_nested_too_deep(limited):
    nested = 0.5
    for _ in range(9):
        nested = [nested]
    refused(limited, {"inputs": [tensor(data=nested)]}, 400,
            "the request JSON nests deeper than 8 levels (--max-json-depth)")
    # Far deeper than any parser recursion: refused by the same limit, the server stays up.
    refused(limited, b"[" * 100_000, 400, "(--max-json-depth)")


# --- HTTP: data that does not match its shape and datatype ------------------------------


def test_json_data_must_fill_the_shape(limited):
    refused(limited, {"inputs": [tensor(data=[0.5] * 15)]}, 400,
            "input `INPUT0`: shape [1, 16] needs 16 elements, `data` holds 15")
    refused(limited, {"inputs": [tensor(datatype="INT8", data=[300] * 16)]}, 400,
            "input `INPUT0`: 300 is out of range for INT8")
    refused(limited, {"inputs": [tensor(data=["a"] * 16)]}, 400,
            "input `INPUT0`: FP32 data cannot hold a string")
    refused(limited, {"inputs": [tensor(shape=(1, -16))]}, 400, "negative dimension")


def binary_request(data, size=None, shape=(1, 16)):
    header = json.dumps({"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": list(shape),
                                     "parameters": {"binary_data_size": size or len(data)}}]})
    header = header.encode()
    return header + data, {"Inference-Header-Content-Length": str(len(header))}


def test_binary_data_must_match_shape_and_datatype(limited):
    body, headers = binary_request(bytes(60))
    refused(limited, body, 400, "shape [1, 16] of FP32 needs 64 bytes, got 60", headers=headers)
    body, headers = binary_request(bytes(64), size=80)
    refused(limited, body, 400, "binary_data_size is 80 but only 64 bytes", headers=headers)
    body, headers = binary_request(bytes(64) + b"extra", size=64)
    refused(limited, body, 400, "binary_data_size add up to 64", headers=headers)
    refused(limited, b"{}", 400, "Inference-Header-Content-Length is 99 but the body holds only 2",
            headers={"Inference-Header-Content-Length": "99"})


def test_names_datatypes_and_shapes_must_match_the_model(limited):
    refused(limited, {"inputs": [tensor("NOPE")]}, 400,
            "unknown input `NOPE`; the model's inputs are `INPUT0`")
    refused(limited, {"inputs": [tensor(), tensor()]}, 400, "input `INPUT0` is given twice")
    refused(limited, {"inputs": [tensor(), tensor("EXTRA")]}, 400, "unknown input `EXTRA`")
    refused(limited, {"inputs": [tensor()], "outputs": [{"name": "NOPE"}]}, 400,
            "has no output `NOPE`; its outputs are `OUTPUT0`")
    refused(limited, {"inputs": [tensor(datatype="INT32", data=[1] * 16)]}, 400,
            "input `INPUT0` must be FP32, got INT32")
    refused(limited, {"inputs": [tensor(shape=(1, 15))]}, 400, "input `INPUT0`")
    refused(limited, {"inputs": []}, 400, "input `INPUT0` is missing")
    got, _, reply = post(limited, {"inputs": [tensor()]}, model="nope")
    assert got == 404 and "nope" in reply["error"], reply


def test_malformed_requests(limited):
    refused(limited, b"{\"inputs\": [", 400, "invalid inference request")
    refused(limited, {"inputs": [{"name": "INPUT0", "shape": [1]}]}, 400, "datatype")
    refused(limited, {"inputs": [tensor(datatype="FP99")]}, 400, "FP99")


# --- gRPC ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grpc_client(limited):
    with grpcclient.InferenceServerClient(limited.grpc_url) as c:
        yield c


def grpc_refused(client, inputs, code, *fragments, **kwargs):
    with pytest.raises(InferenceServerException) as info:
        client.infer("mlp", inputs, **kwargs)
    assert info.value.status() == f"StatusCode.{code}", info.value
    for fragment in fragments:
        assert fragment in info.value.message(), info.value.message()


def grpc_input(name, array, datatype="FP32"):
    tensor = grpcclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def test_a_body_over_the_limit_from_tritonclient_is_answered_413(limited):
    # tritonclient sends the whole body without waiting for a reply: refused unread, it
    # met a closed socket and raised BrokenPipeError instead of reading the 413.
    client = httpclient.InferenceServerClient(limited.http_url)
    big = httpclient.InferInput("INPUT0", [1, 10_000_000], "FP32")
    big.set_data_from_numpy(np.zeros((1, 10_000_000), np.float32))
    with pytest.raises(InferenceServerException) as e:
        client.infer("mlp", [big])
    assert e.value.status() == "413", e.value
    assert "over the limit of 1048576 bytes (--max-body-bytes)" in e.value.message()
    assert client.is_server_live()


def test_grpc_message_over_the_limit(grpc_client):
    big = np.zeros((1, 300_000), np.float32)
    grpc_refused(grpc_client, [grpc_input("INPUT0", big)], "RESOURCE_EXHAUSTED",
                 "over the limit of 1048576 bytes (--max-body-bytes)")


def test_grpc_compression_bomb(grpc_client):
    zeros = np.zeros((1, 4 << 20), np.float32)   # 16 MiB that gzip packs into kilobytes
    grpc_refused(grpc_client, [grpc_input("INPUT0", zeros)], "RESOURCE_EXHAUSTED",
                 "inflates past the limit of 1048576 bytes (--max-body-bytes)",
                 compression_algorithm="gzip")


def test_grpc_limits(grpc_client):
    x = np.zeros((1, 16), np.float32)
    grpc_refused(grpc_client, [grpc_input(f"IN{i}", x) for i in range(5)], "INVALID_ARGUMENT",
                 "the request has 5 inputs; the limit is 4 (--max-tensors)")
    grpc_refused(grpc_client, [grpc_input("INPUT0", np.zeros((1, 1, 1, 1, 16), np.float32))],
                 "INVALID_ARGUMENT", "5 dimensions; the limit is 4 (--max-tensor-dims)")
    grpc_refused(grpc_client, [grpc_input("INPUT0", np.zeros((300, 16), np.float32))],
                 "INVALID_ARGUMENT", "4800 elements; the limit is 4096 (--max-tensor-elements)")
    text = np.array([b"ok", b"z" * 100], dtype=np.object_)
    grpc_refused(grpc_client, [grpc_input("TEXT", text, "BYTES")], "INVALID_ARGUMENT",
                 "input `TEXT`: BYTES element 1 is 100 bytes long; the limit is 64 "
                 "(--max-bytes-element)")


def test_grpc_mismatches(grpc_client):
    x = np.zeros((1, 16), np.float32)
    grpc_refused(grpc_client, [grpc_input("NOPE", x)], "INVALID_ARGUMENT",
                 "unknown input `NOPE`")
    grpc_refused(grpc_client, [grpc_input("INPUT0", x.astype(np.int32), "INT32")],
                 "INVALID_ARGUMENT", "input `INPUT0` must be FP32, got INT32")
    wrong = grpc_input("INPUT0", x)
    wrong.set_shape([1, 17])   # 64 bytes of data, a shape that needs 68
    grpc_refused(grpc_client, [wrong], "INVALID_ARGUMENT", "needs 68 bytes, got 64")
    grpc_refused(grpc_client, [grpc_input("INPUT0", x)], "INVALID_ARGUMENT",
                 "has no output `NOPE`", outputs=[grpcclient.InferRequestedOutput("NOPE")])


# --- and then a good request still works ---------------------------------------------------


def test_a_good_request_still_succeeds(limited, grpc_client):
    x = np.linspace(-1, 1, 32, dtype=np.float32).reshape(2, 16)
    with httpclient.InferenceServerClient(limited.http_url) as client:
        tensor = httpclient.InferInput("INPUT0", [2, 16], "FP32")
        tensor.set_data_from_numpy(x)
        by_http = client.infer("mlp", [tensor]).as_numpy("OUTPUT0")
        assert client.is_server_live() and client.is_server_ready()
    by_grpc = grpc_client.infer("mlp", [grpc_input("INPUT0", x)]).as_numpy("OUTPUT0")
    assert by_http.shape == (2, 4)
    np.testing.assert_allclose(by_grpc, by_http, rtol=1e-6)
    assert limited.process.poll() is None
