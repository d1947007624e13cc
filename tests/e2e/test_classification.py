"""Triton's classification extension over tritonclient (`class_count=k`): an output comes
back as the k highest values of each row, each `value:index[:label]`, the labels read from
the file the model's config names (the fixture `mlp` names three of its four classes, so
the fourth stays unnamed). Every answer is checked against the raw output of the same
request, ranked here with numpy."""

import json
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import require_models

LABELS = ["north", "south", "east"]


def expected_classes(raw: np.ndarray, count: int, batched: bool, labels=()) -> list:
    """What the server should answer: per row, highest first, ties in index order."""
    rows = raw.reshape(raw.shape[0], -1) if batched else raw.reshape(1, -1)
    answer = []
    for row in rows:
        order = sorted(range(row.size), key=lambda i: (-row[i], i))
        texts = []
        for i in order[:count]:
            text = f"{float(row[i]):.6f}:{i}"
            if i < len(labels) and labels[i]:
                text += f":{labels[i]}"
            texts.append(text)
        answer.append(texts)
    return answer if batched else answer[0]


def texts(array: np.ndarray) -> list:
    """A BYTES result as str (tritonclient gives bytes from binary data, str from JSON)."""
    decode = np.vectorize(lambda v: v.decode() if isinstance(v, bytes) else v, otypes=[object])
    return decode(array).tolist()


def mlp_input(repo) -> np.ndarray:
    return np.load(repo / "mlp" / "ref" / "inputs" / "INPUT0.npy")


def http_infer(client, model, name, x, output, binary=True, **requested):
    """Runs `model` on FP32 input `name` = `x`, asking for `output` (as classes, given
    `class_count`)."""
    tensor = httpclient.InferInput(name, list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    wanted = httpclient.InferRequestedOutput(output, binary_data=binary, **requested)
    return client.infer(model, [tensor], outputs=[wanted])


@pytest.fixture(scope="module")
def http(server):
    with httpclient.InferenceServerClient(server.http_url) as c:
        yield c


@pytest.fixture(scope="module")
def grpc(server):
    with grpcclient.InferenceServerClient(server.grpc_url) as c:
        yield c


@pytest.mark.parametrize("binary,count", [(True, 3), (False, 10)], ids=["binary", "json"])
def test_http_answers_the_top_classes_with_their_labels(http, repo, binary, count):
    require_models(repo, "mlp")
    x = mlp_input(repo)
    raw = http_infer(http, "mlp", "INPUT0", x, "OUTPUT0").as_numpy("OUTPUT0")
    result = http_infer(http, "mlp", "INPUT0", x, "OUTPUT0", binary=binary, class_count=count)
    output = result.get_output("OUTPUT0")
    kept = min(count, raw.shape[1])
    assert output["datatype"] == "BYTES" and output["shape"] == [x.shape[0], kept]
    assert texts(result.as_numpy("OUTPUT0")) == expected_classes(raw, count, True, LABELS)


@pytest.mark.parametrize("count", [1, 10])
def test_grpc_answers_the_top_classes_with_their_labels(grpc, repo, count):
    require_models(repo, "mlp")
    x = mlp_input(repo)
    tensor = grpcclient.InferInput("INPUT0", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    raw = grpc.infer("mlp", [tensor]).as_numpy("OUTPUT0")
    wanted = grpcclient.InferRequestedOutput("OUTPUT0", class_count=count)
    result = grpc.infer("mlp", [tensor], outputs=[wanted])
    output = result.get_output("OUTPUT0")
    assert output.datatype == "BYTES"
    assert list(output.shape) == [x.shape[0], min(count, raw.shape[1])]
    assert texts(result.as_numpy("OUTPUT0")) == expected_classes(raw, count, True, LABELS)


def test_a_model_without_a_batch_dimension_ranks_its_whole_output(http, repo):
    require_models(repo, "no_batch")
    x = np.load(repo / "no_batch" / "ref" / "inputs" / "X.npy")
    raw = http_infer(http, "no_batch", "X", x, "Y").as_numpy("Y")
    result = http_infer(http, "no_batch", "X", x, "Y", class_count=4)
    assert result.get_output("Y")["shape"] == [4]
    assert texts(result.as_numpy("Y")) == expected_classes(raw, 4, False)


def test_the_server_lists_the_extension_and_the_config_its_labels_file(http, grpc, repo):
    require_models(repo, "mlp")
    assert "classification" in http.get_server_metadata()["extensions"]
    assert http.get_model_config("mlp")["output"][0]["label_filename"] == "OUTPUT0.labels.txt"
    config = grpc.get_model_config("mlp", as_json=True)["config"]
    assert config["output"][0]["label_filename"] == "OUTPUT0.labels.txt"


def post_infer(server, model: str, body: dict) -> tuple:
    request = urllib.request.Request(f"http://{server.http_url}/v2/models/{model}/infer",
                                     data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_a_count_that_is_not_a_positive_whole_number_is_refused(server, repo):
    require_models(repo, "mlp")
    x = mlp_input(repo)
    inputs = [{"name": "INPUT0", "shape": list(x.shape), "datatype": "FP32",
               "data": x.ravel().tolist()}]
    for count, why in [(0, "asks for 0 classes"), ("3", 'not "3"'), (-2, "asks for -2")]:
        outputs = [{"name": "OUTPUT0", "parameters": {"classification": count}}]
        status, body = post_infer(server, "mlp", {"inputs": inputs, "outputs": outputs})
        assert status == 400, body
        assert "output `OUTPUT0`" in body["error"] and why in body["error"], body


def test_outputs_that_are_not_numbers_cannot_be_ranked(http, grpc, repo):
    require_models(repo, "dtypes_BOOL")
    x = np.load(repo / "dtypes_BOOL" / "ref" / "inputs" / "X.npy")
    tensor = httpclient.InferInput("X", list(x.shape), "BOOL")
    tensor.set_data_from_numpy(x)
    wanted = [httpclient.InferRequestedOutput("Y", class_count=2)]
    with pytest.raises(InferenceServerException, match=r"output `Y`.*BOOL"):
        http.infer("dtypes_BOOL", [tensor], outputs=wanted)
    tensor = grpcclient.InferInput("X", list(x.shape), "BOOL")
    tensor.set_data_from_numpy(x)
    wanted = [grpcclient.InferRequestedOutput("Y", class_count=2)]
    with pytest.raises(InferenceServerException, match=r"output `Y`.*BOOL") as raised:
        grpc.infer("dtypes_BOOL", [tensor], outputs=wanted)
    assert raised.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert http.is_server_live()


def test_a_labels_file_that_names_fewer_classes_than_the_output_has_is_a_warning(server, repo):
    require_models(repo, "mlp")  # its labels name 3 of its 4 classes
    assert "the labels of output `OUTPUT0` name 3 classes, but it has 4" in server.log_text()
