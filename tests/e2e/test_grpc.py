"""The gRPC endpoint (`inference.GRPCInferenceService`) driven by tritonclient.grpc, as a
Triton user would drive it, against the real `torchbridge serve` and the fixture models
of tests/fixtures/make_fixtures.py (references: eager torch, stored as .npy)."""

import queue
import socket
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from conftest import backend_of, grpc_health, require_models, run_perf_analyzer

DTYPES = ["FP16", "FP32", "FP64", "BF16", "INT8", "INT16", "INT32", "INT64", "UINT8", "BOOL"]
# (rtol, atol) against the eager-torch reference; integers and bools must be exact.
TOLERANCE = {"FP16": (1e-3, 1e-3), "BF16": (1e-2, 1e-2), "FP32": (1e-5, 1e-6),
             "FP64": (1e-5, 1e-12)}


@pytest.fixture(scope="module")
def client(server):
    with grpcclient.InferenceServerClient(server.grpc_url) as c:
        yield c


@pytest.fixture(scope="module")
def stub(server):
    """The raw generated stub, for what tritonclient never sends (typed contents)."""
    with grpc.insecure_channel(server.grpc_url) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def ref(server, model, kind, name, bf16=False) -> np.ndarray:
    array = np.load(Path(server.repo) / model / "ref" / kind / f"{name}.npy")
    return bf16_to_f32(array) if bf16 else array


def infer_input(name, array, datatype=None):
    datatype = datatype or grpcclient.np_to_triton_dtype(array.dtype)
    i = grpcclient.InferInput(name, list(array.shape), datatype)
    i.set_data_from_numpy(array)
    return i


def assert_close(got, want, datatype="FP32"):
    assert got.shape == want.shape, (got.shape, want.shape)
    if datatype in TOLERANCE:
        rtol, atol = TOLERANCE[datatype]
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64),
                                   rtol=rtol, atol=atol)
    else:
        assert got.dtype == want.dtype, (got.dtype, want.dtype)
        np.testing.assert_array_equal(got, want)


def error_of(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        call()
    return info.value


# Health and metadata.

def test_health(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("mlp")
    assert client.is_model_ready("mlp", "1")
    assert not client.is_model_ready("mlp", "2")
    assert not client.is_model_ready("no_such_model")
    assert not client.is_model_ready("pickled")  # refuses to unpickle without trust_pickle


def test_server_metadata(client):
    meta = client.get_server_metadata()
    assert meta.name == "torchbridge"
    assert meta.version
    assert {"model_repository", "model_configuration", "statistics"} <= set(meta.extensions)


def test_model_metadata(client):
    meta = client.get_model_metadata("mlp")
    assert meta.name == "mlp"
    assert list(meta.versions) == ["1"]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        ("INPUT0", "FP32", [-1, 16])]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [
        ("OUTPUT0", "FP32", [-1, 4])]
    meta = client.get_model_metadata("no_batch", as_json=True)
    assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": ["2", "3"]}]


def test_model_config(server, client):
    config = client.get_model_config("mlp", as_json=True)["config"]
    assert config["name"] == "mlp"
    # torchscript as make_fixtures.py writes it; tract for a binary without that bridge.
    backend = backend_of(server.repo / "mlp")
    assert config["backend"] == backend
    assert config["max_batch_size"] == 8
    # MessageToJson writes int64 as strings.
    assert config["input"] == [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": ["16"]}]
    assert config["output"] == [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": ["4"],
                                 "label_filename": "OUTPUT0.labels.txt"}]
    assert config["instance_group"][0]["count"] == 1
    assert config["instance_group"][0]["kind"] == "KIND_CPU"
    assert config["default_model_filename"] == {"torchscript": "model.pt",
                                                "tract": "model.onnx"}[backend]
    # HTTP answers the same.
    with httpclient.InferenceServerClient(server.http_url) as http:
        shown = http.get_model_config("mlp")
    for key in ["default_model_filename", "max_batch_size", "backend"]:
        assert shown[key] == config[key], key
    assert shown["instance_group"][0]["name"] == config["instance_group"][0]["name"] == "mlp_0"
    config = client.get_model_config("no_batch").config
    assert config.max_batch_size == 0 and list(config.input[0].dims) == [2, 3]


# Inference.

def test_infer_matches_the_reference(server, client):
    x = ref(server, "mlp", "inputs", "INPUT0")
    result = client.infer("mlp", [infer_input("INPUT0", x)],
                          outputs=[grpcclient.InferRequestedOutput("OUTPUT0")],
                          request_id="req-7")
    assert_close(result.as_numpy("OUTPUT0"), ref(server, "mlp", "outputs", "OUTPUT0"))
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == ("mlp", "1", "req-7")
    # An explicit version, and gzip / deflate request compression.
    for algorithm in ("gzip", "deflate"):
        result = client.infer("mlp", [infer_input("INPUT0", x)], model_version="1",
                              compression_algorithm=algorithm)
        assert_close(result.as_numpy("OUTPUT0"), ref(server, "mlp", "outputs", "OUTPUT0"))


def test_several_inputs_and_an_output_subset(server, client):
    inputs = [infer_input(n, ref(server, "multi_io", "inputs", n)) for n in ("X", "IDS")]
    result = client.infer("multi_io", inputs)
    for name in ("SCALED", "IDS_PLUS"):
        want = ref(server, "multi_io", "outputs", name)
        assert_close(result.as_numpy(name), want, grpcclient.np_to_triton_dtype(want.dtype))
    result = client.infer("multi_io", inputs,
                          outputs=[grpcclient.InferRequestedOutput("IDS_PLUS")])
    assert [o.name for o in result.get_response().outputs] == ["IDS_PLUS"]
    assert result.as_numpy("SCALED") is None
    assert_close(result.as_numpy("IDS_PLUS"), ref(server, "multi_io", "outputs", "IDS_PLUS"))


def test_outputs_are_matched_by_name(server, client):
    require_models(server.repo, "dict_out")
    x = ref(server, "dict_out", "inputs", "X")
    result = client.infer("dict_out", [infer_input("X", x)])
    for name in ("A", "B"):
        assert_close(result.as_numpy(name), ref(server, "dict_out", "outputs", name))


@pytest.mark.parametrize("datatype", DTYPES)
def test_every_datatype(server, client, datatype):
    model, bf16 = f"dtypes_{datatype}", datatype == "BF16"
    require_models(server.repo, model)
    x = ref(server, model, "inputs", "X", bf16)
    result = client.infer(model, [infer_input("X", x, datatype)])
    assert result.get_response().outputs[0].datatype == datatype
    assert_close(result.as_numpy("Y"), ref(server, model, "outputs", "Y", bf16), datatype)


def test_typed_contents(server, stub):
    """tritonclient always sends raw bytes; other clients send typed `contents`."""
    x = ref(server, "mlp", "inputs", "INPUT0")
    request = service_pb2.ModelInferRequest(model_name="mlp", id="typed")
    tensor = request.inputs.add(name="INPUT0", datatype="FP32", shape=list(x.shape))
    tensor.contents.fp32_contents.extend(x.ravel().tolist())
    response = stub.ModelInfer(request)
    assert response.id == "typed"
    got = np.frombuffer(response.raw_output_contents[0], np.float32).reshape(response.outputs[0].shape)
    assert_close(got, ref(server, "mlp", "outputs", "OUTPUT0"))

    ids = ref(server, "multi_io", "inputs", "IDS")
    request = service_pb2.ModelInferRequest(model_name="multi_io")
    for name, array in (("X", ref(server, "multi_io", "inputs", "X")), ("IDS", ids)):
        t = request.inputs.add(name=name, datatype=grpcclient.np_to_triton_dtype(array.dtype),
                               shape=list(array.shape))
        field = t.contents.fp32_contents if array.dtype == np.float32 else t.contents.int64_contents
        field.extend(array.ravel().tolist())
    response = stub.ModelInfer(request)
    names = [o.name for o in response.outputs]
    got = np.frombuffer(response.raw_output_contents[names.index("IDS_PLUS")], np.int64)
    assert_close(got.reshape(ids.shape), ref(server, "multi_io", "outputs", "IDS_PLUS"))

    # Typed and raw may not be mixed.
    request.raw_input_contents.append(b"\0" * 4)
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "raw_input_contents has 1 entries for 2 inputs" in info.value.details()


def test_streaming_answers_in_request_order(server, client):
    """As Triton for a model that is not decoupled: tritonclient's stream callback pairs
    replies with requests by order (it sends no id unless asked)."""
    x = ref(server, "mlp", "inputs", "INPUT0")
    want = ref(server, "mlp", "outputs", "OUTPUT0")
    replies = queue.Queue()
    client.start_stream(callback=lambda result, error: replies.put((result, error)))
    sent = []
    try:
        for i in range(40):
            model = ["mlp", "mlp_batched"][i % 2]
            client.async_stream_infer(model, [infer_input("INPUT0", x)], request_id=f"s{i}")
            sent.append(f"s{i}")
            if i == 20:
                client.async_stream_infer("no_such_model", [infer_input("INPUT0", x)],
                                          request_id="bad")
                sent.append("bad")
        client.async_stream_infer("mlp", [infer_input("INPUT0", x[:1])], request_id="last")
        sent.append("last")
        got = [replies.get(timeout=60) for _ in sent]
    finally:
        client.stop_stream()
    errors = [e for _, e in got if e is not None]
    assert len(errors) == 1 and "unknown model `no_such_model`" in errors[0].message()
    order = [r.get_response().id if e is None else "bad" for r, e in got]
    assert order == sent
    for r, e in got:
        if e is None and r.get_response().id != "last":
            assert_close(r.as_numpy("OUTPUT0"), want)
        # Clients that loop until Triton's final-response flag would otherwise hang.
        if e is None:
            assert r.get_response().parameters["triton_final_response"].bool_param
    assert_close(got[-1][0].as_numpy("OUTPUT0"), want[:1])


# Statistics and the repository.

def test_statistics(server, client):
    x = ref(server, "mlp", "inputs", "INPUT0")
    client.infer("mlp", [infer_input("INPUT0", x)])
    stats = client.get_inference_statistics("mlp").model_stats
    assert [(s.name, s.version) for s in stats] == [("mlp", "1")]
    s = stats[0]
    assert s.inference_count >= x.shape[0] and s.execution_count >= 1
    assert s.last_inference > 0
    assert s.inference_stats.success.count >= 1 and s.inference_stats.success.ns > 0
    assert s.inference_stats.compute_infer.count >= 1
    everything = client.get_inference_statistics(as_json=True)["model_stats"]
    assert "mlp" in {s["name"] for s in everything}
    assert "pickled" not in {s["name"] for s in everything}
    e = error_of(lambda: client.get_inference_statistics("no_such_model"))
    assert e.status() == "StatusCode.NOT_FOUND"


def test_repository_index(client):
    index = {m["name"]: m for m in client.get_model_repository_index(as_json=True)["models"]}
    assert index["mlp"]["state"] == "READY" and index["mlp"]["version"] == "1"
    assert index["pickled"]["state"] == "UNAVAILABLE"
    assert "model `pickled` failed to load" in index["pickled"]["reason"]
    assert index["no_batch"]["state"] == "READY"


def test_unload_and_load(server, client):
    x = ref(server, "no_batch", "inputs", "X")
    client.unload_model("no_batch")
    try:
        assert not client.is_model_ready("no_batch")
        e = error_of(lambda: client.infer("no_batch", [infer_input("X", x)]))
        assert e.status() == "StatusCode.UNAVAILABLE"
        assert "model `no_batch` is not ready: unloaded" in e.message()
    finally:
        client.load_model("no_batch")
    assert client.is_model_ready("no_batch")
    result = client.infer("no_batch", [infer_input("X", x)])
    assert_close(result.as_numpy("Y"), ref(server, "no_batch", "outputs", "Y"))

    e = error_of(lambda: client.load_model("no_such_model"))
    assert e.status() == "StatusCode.NOT_FOUND"
    e = error_of(lambda: client.load_model("pickled"))
    assert e.status() == "StatusCode.FAILED_PRECONDITION"
    assert "model `pickled` failed to load" in e.message()
    e = error_of(lambda: client.load_model("mlp", config='{"max_batch_size": "four"}'))
    assert e.status() == "StatusCode.INVALID_ARGUMENT"
    assert "`max_batch_size`: must be a whole number" in e.message()


# Errors: each with its status code and a message that says what is wrong.

def test_errors(server, client):
    x = ref(server, "mlp", "inputs", "INPUT0")
    cases = [
        (lambda: client.infer("no_such_model", [infer_input("INPUT0", x)]),
         "NOT_FOUND", "unknown model `no_such_model`"),
        (lambda: client.infer("mlp", [infer_input("INPUT0", x)], model_version="7"),
         "NOT_FOUND", "model `mlp` has no version 7 (versions served: [1])"),
        (lambda: client.infer("mlp", [infer_input("INPUT0", x)], model_version="latest"),
         "INVALID_ARGUMENT", "model version `latest` is not a version number"),
        (lambda: client.infer("mlp", [infer_input("INPUT0", x[:, :8])]),
         "INVALID_ARGUMENT", "input `INPUT0` must have shape [-1, 16], got [3, 8]"),
        (lambda: client.infer("mlp", [infer_input("INPUT0", x.astype(np.float64))]),
         "INVALID_ARGUMENT", "input `INPUT0` must be FP32, got FP64"),
        (lambda: client.infer("mlp", [infer_input("WRONG", x)]),
         "INVALID_ARGUMENT", "unknown input `WRONG`"),
        (lambda: client.infer("mlp", [infer_input("INPUT0", x)],
                              outputs=[grpcclient.InferRequestedOutput("NOPE")]),
         "INVALID_ARGUMENT", "model `mlp` has no output `NOPE`; its outputs are `OUTPUT0`"),
        (lambda: client.infer("pickled", [infer_input("X", x[:, :2])]),
         "UNAVAILABLE", "model `pickled` is not ready"),
        (lambda: client.get_model_metadata("no_such_model"),
         "NOT_FOUND", "unknown model `no_such_model`"),
        (lambda: client.get_model_config("no_such_model"),
         "NOT_FOUND", "unknown model `no_such_model`"),
    ]
    for call, status, message in cases:
        e = error_of(call)
        assert e.status() == f"StatusCode.{status}", (status, message, e)
        assert message in e.message(), (message, e.message())
    # Refusals of requests that named no version count under the version served, as on
    # HTTP (they had version="").
    with urllib.request.urlopen(f"http://{server.metrics_url}/metrics", timeout=10) as r:
        text = r.read().decode()
    assert ('torchbridge_inference_requests_total{model="mlp",version="1",outcome="invalid",'
            'protocol="grpc"}') in text, text


def test_a_python_exception_is_internal_without_its_traceback(server, client):
    require_models(server.repo, "py_error")
    x = -np.abs(ref(server, "py_error", "inputs", "X"))
    e = error_of(lambda: client.infer("py_error", [infer_input("X", x)]))
    assert e.status() == "StatusCode.INTERNAL"
    assert "ValueError: negative input" in e.message()
    assert "Traceback" not in e.message()
    # The model still serves.
    good = ref(server, "py_error", "inputs", "X")
    result = client.infer("py_error", [infer_input("X", good)])
    assert_close(result.as_numpy("Y"), ref(server, "py_error", "outputs", "Y"))


# perf_analyzer, as a Triton user would point it at the server (no timing is asserted).

@pytest.mark.parametrize("extra", [[], ["--streaming"]], ids=["unary", "streaming"])
def test_perf_analyzer(server, tmp_path, extra):
    run = run_perf_analyzer("-m", "mlp", "-u", server.grpc_url, "-i", "grpc", "-b", "2",
                            "--concurrency-range", "2", "--request-count", "400", "-f",
                            str(tmp_path / "perf.csv"), *extra)
    assert "Throughput" in run.stdout
    assert (tmp_path / "perf.csv").read_text().startswith("Concurrency,")


def test_the_standard_health_check_answers_serving(server):
    with grpc.insecure_channel(server.grpc_url) as channel:
        assert grpc_health(channel) == 1
        assert grpc_health(channel, "inference.GRPCInferenceService") == 1
        with pytest.raises(grpc.RpcError) as unknown:
            grpc_health(channel, "some.Other")
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        assert "unknown service `some.Other`" in unknown.value.details()
        watch = channel.unary_stream("/grpc.health.v1.Health/Watch",
                                     request_serializer=lambda b: b,
                                     response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as unimplemented:
            next(iter(watch(b"", timeout=10)))
        assert unimplemented.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_a_connection_may_hold_a_bounded_number_of_calls(server):
    """The server's HTTP/2 SETTINGS bound the streams of one connection (without it, one
    connection could hold any number of calls open, about 10 KB each)."""
    host, port = server.grpc_url.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
        header = b""
        while len(header) < 9:
            header += conn.recv(9 - len(header))
        length, kind = int.from_bytes(header[:3], "big"), header[3]
        assert kind == 4, header  # the server's first frame is its SETTINGS
        body = b""
        while len(body) < length:
            body += conn.recv(length - len(body))
    settings = {int.from_bytes(body[i:i + 2], "big"): int.from_bytes(body[i + 2:i + 6], "big")
                for i in range(0, length, 6)}
    assert settings.get(3) == 1024, settings  # SETTINGS_MAX_CONCURRENT_STREAMS
