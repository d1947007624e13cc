"""KServe v2 over HTTP, driven by tritonclient.http exactly as its docs show, against the
real `torchbridge serve` (the `server` fixture of conftest.py) and the fixture repository
of tests/fixtures/make_fixtures.py. Outputs are compared with the eager-torch reference
.npy files within 1e-5 relative (1e-6 absolute, for values near zero)."""

import gzip
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import RUNTIME_BRIDGES, binary_bridges, require_models, run_perf_analyzer

RTOL, ATOL = 1e-5, 1e-6
DTYPES = ["FP16", "FP32", "FP64", "BF16", "INT8", "INT16", "INT32", "INT64", "UINT8", "BOOL"]


@pytest.fixture(scope="module")
def client(server):
    with httpclient.InferenceServerClient(server.http_url) as c:
        yield c


def ref(server, model, kind, name):
    """A reference tensor; BF16 ones are stored as their 16-bit patterns (uint16)."""
    array = np.load(Path(server.repo) / model / "ref" / kind / f"{name}.npy")
    if array.dtype == np.uint16 and model.endswith("BF16"):
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


def triton_input(name, array, datatype, binary):
    tensor = httpclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def raw(server, method, path, body=None, headers=None):
    """A plain HTTP request: (status, headers, parsed JSON body or None)."""
    request = urllib.request.Request(f"http://{server.http_url}{path}", data=body,
                                     method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            status, hdrs, data = r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        status, hdrs, data = e.code, e.headers, e.read()
    return status, hdrs, json.loads(data) if data else None


def test_health_and_server_metadata(client, server):
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "torchbridge"
    for extension in ["binary_tensor_data", "statistics", "model_configuration",
                      "model_repository"]:
        assert extension in metadata["extensions"]
    # The engines in use, as the project's venv has them (those compiled in).
    for runtime, version in [("torch", "2.13.0"), ("libtorch", "2.13.0"),
                             ("onnxruntime", "1.31.1"), ("tract", "0.23.9")]:
        if RUNTIME_BRIDGES[runtime] in binary_bridges():
            assert metadata["runtimes"][runtime].startswith(version), metadata["runtimes"]
    assert raw(server, "GET", "/v2/health/live")[::2] == (200, {"live": True})
    assert raw(server, "GET", "/v2/health/ready")[::2] == (200, {"ready": True})


def test_not_ready_is_an_answer_not_an_error_in_the_log(client, server):
    # Probes ask every few seconds while a model loads; each "no" is not an ERROR line.
    require_models(server.repo, "pickled")
    assert not client.is_model_ready("pickled")  # its pickle is not trusted: not loaded
    time.sleep(0.2)
    logged = [line for line in server.log_text().splitlines() if "/ready" in line]
    assert not [line for line in logged if "ERROR" in line or "WARN" in line], logged


def test_model_metadata_reports_full_shapes(client):
    assert client.is_model_ready("mlp")
    assert client.is_model_ready("mlp", "1")
    metadata = client.get_model_metadata("mlp")
    assert metadata["name"] == "mlp" and metadata["versions"] == ["1"]
    assert metadata["inputs"] == [{"name": "INPUT0", "datatype": "FP32", "shape": [-1, 16]}]
    assert metadata["outputs"] == [{"name": "OUTPUT0", "datatype": "FP32", "shape": [-1, 4]}]
    no_batch = client.get_model_metadata("no_batch", "1")
    assert no_batch["inputs"][0]["shape"] == [2, 3]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_mlp_matches_the_reference(client, server, binary):
    x = ref(server, "mlp", "inputs", "INPUT0")
    outputs = [httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary)]
    result = client.infer("mlp", [triton_input("INPUT0", x, "FP32", binary)], outputs=outputs,
                          request_id=f"mlp-{binary}")
    response = result.get_response()
    assert response["id"] == f"mlp-{binary}"
    assert response["model_name"] == "mlp" and response["model_version"] == "1"
    assert ("data" in response["outputs"][0]) != binary
    np.testing.assert_allclose(result.as_numpy("OUTPUT0"),
                               ref(server, "mlp", "outputs", "OUTPUT0"), rtol=RTOL, atol=ATOL)


def test_outputs_default_to_binary_when_none_are_named(client, server):
    x = ref(server, "mlp", "inputs", "INPUT0")
    result = client.infer("mlp", [triton_input("INPUT0", x, "FP32", True)], model_version="1")
    assert result.get_output("OUTPUT0")["parameters"]["binary_data_size"] == x.shape[0] * 4 * 4
    np.testing.assert_allclose(result.as_numpy("OUTPUT0"),
                               ref(server, "mlp", "outputs", "OUTPUT0"), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("request_compression", [None, "gzip", "deflate"])
@pytest.mark.parametrize("response_compression", [None, "gzip", "deflate"])
def test_compressed_bodies(client, server, request_compression, response_compression):
    x = ref(server, "mlp", "inputs", "INPUT0")
    result = client.infer("mlp", [triton_input("INPUT0", x, "FP32", True)],
                          request_compression_algorithm=request_compression,
                          response_compression_algorithm=response_compression)
    np.testing.assert_allclose(result.as_numpy("OUTPUT0"),
                               ref(server, "mlp", "outputs", "OUTPUT0"), rtol=RTOL, atol=ATOL)


def test_mixed_binary_and_json_inputs_and_an_output_subset(client, server):
    x = ref(server, "multi_io", "inputs", "X")
    ids = ref(server, "multi_io", "inputs", "IDS")
    inputs = [triton_input("X", x, "FP32", True), triton_input("IDS", ids, "INT64", False)]
    outputs = [httpclient.InferRequestedOutput("IDS_PLUS", binary_data=False)]
    result = client.infer("multi_io", inputs, outputs=outputs)
    assert [o["name"] for o in result.get_response()["outputs"]] == ["IDS_PLUS"]
    assert result.as_numpy("SCALED") is None
    np.testing.assert_array_equal(result.as_numpy("IDS_PLUS"),
                                  ref(server, "multi_io", "outputs", "IDS_PLUS"))

    both = [httpclient.InferRequestedOutput("SCALED", binary_data=True),
            httpclient.InferRequestedOutput("IDS_PLUS", binary_data=True)]
    result = client.infer("multi_io", inputs, outputs=both)
    np.testing.assert_allclose(result.as_numpy("SCALED"),
                               ref(server, "multi_io", "outputs", "SCALED"), rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(result.as_numpy("IDS_PLUS"),
                                  ref(server, "multi_io", "outputs", "IDS_PLUS"))


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("datatype", DTYPES)
def test_every_datatype(client, server, datatype, binary):
    if datatype == "BF16" and not binary:
        pytest.skip("tritonclient sends BF16 only as binary data")
    model = f"dtypes_{datatype}"
    require_models(server.repo, model)
    assert client.is_model_ready(model), client.get_model_repository_index()
    x = ref(server, model, "inputs", "X")
    outputs = [httpclient.InferRequestedOutput("Y", binary_data=binary)]
    result = client.infer(model, [triton_input("X", x, datatype, binary)], outputs=outputs)
    got, want = result.as_numpy("Y"), ref(server, model, "outputs", "Y")
    assert result.get_output("Y")["datatype"] == datatype
    assert got.shape == want.shape
    if datatype in ("FP16", "FP32", "FP64", "BF16"):
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64),
                                   rtol=RTOL, atol=ATOL)
    else:
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("datatype", ["FP16", "FP32", "FP64"])
def test_nan_and_infinities_survive_json_both_ways(client, server, datatype):
    # tritonclient writes them as NaN / Infinity / -Infinity literals, as Triton does.
    model = f"dtypes_{datatype}"
    require_models(server.repo, model)
    x = np.array([[np.nan, np.inf, -np.inf, 1.0]], dtype=httpclient.triton_to_np_dtype(datatype))
    outputs = [httpclient.InferRequestedOutput("Y", binary_data=False)]
    got = client.infer(model, [triton_input("X", x, datatype, False)], outputs=outputs)
    np.testing.assert_array_equal(got.as_numpy("Y"), x + 1)


def test_any_nonzero_bool_byte_is_true(client, server):
    # perf_analyzer's random data sends random bytes for BOOL; Triton reads nonzero as true.
    require_models(server.repo, "dtypes_BOOL")
    x = np.array([[0, 1, 2, 255]], dtype=np.uint8).view(np.bool_)
    got = client.infer("dtypes_BOOL", [triton_input("X", x, "BOOL", True)])
    np.testing.assert_array_equal(got.as_numpy("Y"), [[True, False, False, False]])


def test_a_model_without_a_batch_dimension(client, server):
    x = ref(server, "no_batch", "inputs", "X")
    result = client.infer("no_batch", [triton_input("X", x, "FP32", False)])
    np.testing.assert_allclose(result.as_numpy("Y"), ref(server, "no_batch", "outputs", "Y"),
                               rtol=RTOL, atol=ATOL)


def test_model_config_in_tritons_shape(client):
    config = client.get_model_config("mlp")
    assert config["name"] == "mlp"
    assert config["max_batch_size"] == 8
    assert config["input"][0]["name"] == "INPUT0"
    assert config["input"][0]["data_type"] == "TYPE_FP32"
    assert config["input"][0]["dims"] == [16]
    assert config["output"][0]["dims"] == [4]
    assert config["instance_group"][0]["kind"] == "KIND_CPU"
    assert config["instance_group"][0]["count"] == 1
    assert client.get_model_config("mlp", "1")["name"] == "mlp"


def test_statistics_count_inferences(client, server):
    x = ref(server, "mlp", "inputs", "INPUT0")
    before = client.get_inference_statistics("mlp")["model_stats"][0]
    client.infer("mlp", [triton_input("INPUT0", x, "FP32", True)])
    stats = client.get_inference_statistics("mlp")["model_stats"][0]
    assert (stats["name"], stats["version"]) == ("mlp", "1")
    assert stats["inference_count"] == before["inference_count"] + x.shape[0]
    assert stats["execution_count"] >= before["execution_count"] + 1
    success = stats["inference_stats"]["success"]
    assert success["count"] == before["inference_stats"]["success"]["count"] + 1
    assert success["ns"] > 0
    for key in ["fail", "queue", "compute_input", "compute_infer", "compute_output", "cache_hit",
                "cache_miss"]:
        assert set(stats["inference_stats"][key]) == {"count", "ns"}
    assert stats["last_inference"] > 0
    every = client.get_inference_statistics()["model_stats"]
    assert "mlp" in {s["name"] for s in every}
    assert client.get_inference_statistics("mlp", "1")["model_stats"][0]["name"] == "mlp"


def test_repository_index_load_and_unload(client, server):
    index = {m["name"]: m for m in client.get_model_repository_index()}
    assert index["mlp"]["state"] == "READY" and index["mlp"]["version"] == "1"
    # `pickled` is a whole pickled module without trust_pickle: it must fail, with a reason.
    assert index["pickled"]["state"] == "UNAVAILABLE"
    assert index["pickled"]["reason"]

    x = ref(server, "no_batch", "inputs", "X")
    try:
        client.unload_model("no_batch")
        assert not client.is_model_ready("no_batch")
        with pytest.raises(InferenceServerException) as e:
            client.infer("no_batch", [triton_input("X", x, "FP32", True)])
        assert e.value.status() == "503"
        assert "unloaded" in e.value.message()
    finally:
        client.load_model("no_batch")
    assert client.is_model_ready("no_batch")
    result = client.infer("no_batch", [triton_input("X", x, "FP32", True)])
    np.testing.assert_allclose(result.as_numpy("Y"), ref(server, "no_batch", "outputs", "Y"),
                               rtol=RTOL, atol=ATOL)

    with pytest.raises(InferenceServerException) as e:
        client.load_model("pickled")
    assert e.value.status() == "400" and "pickled" in e.value.message()
    with pytest.raises(InferenceServerException) as e:
        client.load_model("no_such_model")
    assert e.value.status() == "404"


def test_errors_carry_status_and_message(client, server):
    require_models(server.repo, "py_error")
    x = ref(server, "mlp", "inputs", "INPUT0")
    with pytest.raises(InferenceServerException) as e:
        client.infer("no_such_model", [triton_input("INPUT0", x, "FP32", True)])
    assert e.value.status() == "404" and "unknown model `no_such_model`" in e.value.message()

    wrong = x[:, :8].copy()
    with pytest.raises(InferenceServerException) as e:
        client.infer("mlp", [triton_input("INPUT0", wrong, "FP32", True)])
    assert e.value.status() == "400" and "INPUT0" in e.value.message()

    with pytest.raises(InferenceServerException) as e:
        client.infer("mlp", [triton_input("INPUT0", x, "FP32", True)],
                     outputs=[httpclient.InferRequestedOutput("NOPE")])
    assert e.value.status() == "400" and "no output `NOPE`" in e.value.message()

    with pytest.raises(InferenceServerException) as e:
        client.infer("mlp", [triton_input("INPUT0", x, "FP32", True)], model_version="7")
    assert e.value.status() == "404"

    negative = -np.abs(ref(server, "py_error", "inputs", "X")) - 1
    with pytest.raises(InferenceServerException) as e:
        client.infer("py_error", [triton_input("X", negative, "FP32", True)])
    assert e.value.status() == "500" and "negative input" in e.value.message()
    assert "Traceback" not in e.value.message()


def test_raw_json_errors(server):
    body = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "UINT8", "data": [300, 1, 2, 3]}]}
    status, _, reply = raw(server, "POST", "/v2/models/dtypes_UINT8/infer",
                           json.dumps(body).encode())
    assert status == 400 and "input `X`: 300 is out of range for UINT8" in reply["error"]
    status, _, reply = raw(server, "POST", "/v2/models/mlp/infer", b"{not json")
    assert status == 400 and "error" in reply
    status, _, reply = raw(server, "GET", "/v2/no/such/route")
    assert status == 404 and "error" in reply
    # A nested JSON tensor, gzip-compressed by hand, answered in deflate.
    x = np.arange(8, dtype=np.int32).reshape(2, 4)
    body = {"id": "7", "inputs": [{"name": "X", "shape": [2, 4], "datatype": "INT32",
                                   "data": x.tolist()}]}
    status, headers, _ = raw(server, "POST", "/v2/models/dtypes_INT32/infer",
                             gzip.compress(json.dumps(body).encode()),
                             {"Content-Encoding": "gzip", "Accept-Encoding": "identity"})
    assert status == 200 and headers.get("Content-Encoding") is None


def test_metrics_are_exported(client, server):
    client.is_server_live()
    wrong_method = urllib.request.Request(f"http://{server.http_url}/v2/health/live",
                                          method="DELETE")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(wrong_method, timeout=10)
    assert refused.value.code == 405
    with urllib.request.urlopen(f"http://{server.metrics_url}/metrics", timeout=10) as r:
        text = r.read().decode()
    assert "# HELP torchbridge_inference_requests_total Inference requests" in text
    # A refusal the route layer never sees is counted too.
    assert 'route="unmatched",method="DELETE",status="405"' in text
    assert 'torchbridge_http_requests_total{' in text
    assert 'route="/v2/models/{model}/infer"' in text
    assert 'torchbridge_inference_requests_total{' in text
    assert "torchbridge_inference_duration_seconds" in text
    # Histograms with buckets, not summaries: Prometheus takes quantiles across replicas.
    for histogram in ["torchbridge_inference_duration_seconds", "torchbridge_batch_size",
                      "torchbridge_compute_duration_seconds"]:
        assert f"# TYPE {histogram} histogram" in text, histogram
        assert f'{histogram}_bucket{{' in text and 'le="+Inf"' in text, histogram


def test_perf_analyzer_runs_against_the_server(server):
    """perf_analyzer needs the model config and, for its server-side figures, statistics."""
    run = run_perf_analyzer("-m", "mlp", "-u", server.http_url, "-i", "http", "-b", "2",
                            "--concurrency-range", "2", "--request-count", "400")
    assert "Throughput" in run.stdout and "Server:" in run.stdout, run.stdout


def test_a_large_json_request_is_decoded_off_the_async_threads_with_the_same_checks(server):
    # Over 256 KiB of JSON: parsed on the blocking pool; its errors are the same 400s.
    data = [0.5] * 60_000
    body = json.dumps({"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 16],
                                   "data": data}]}).encode()
    assert len(body) > 256 << 10
    status, _, answer = raw(server, "POST", "/v2/models/mlp/infer", body)
    assert status == 400 and "INPUT0" in answer["error"], answer
    status, _, answer = raw(server, "POST", "/v2/models/mlp/infer",
                            json.dumps({"inputs": [{"name": "INPUT0", "datatype": "FP32",
                                                    "shape": [8, 16], "data": [0.5] * 128}],
                                        "padding": "x" * (300 << 10)}).encode())
    assert status == 200 and answer["outputs"][0]["shape"] == [8, 4], answer
