"""Drives a served model with tritonclient, many requests at once, as a Triton user would.

Run by tests/python/test_serve.py with .venv-clients/bin/python (tritonclient pins
numpy < 2, so it lives outside .venv):

    triton_driver.py HTTP_ADDRESS GRPC_ADDRESS MODEL REQUESTS.npz REPLIES.npz STATS.json

REQUESTS.npz holds arrays x0, x1, ... (one request each, input `INPUT0`); every other
request goes over gRPC, the rest over HTTP (binary tensors, or JSON for every fourth).
REPLIES.npz gets y0, y1, ... (output `OUTPUT0`); STATS.json the model's statistics and
configuration as tritonclient reads them.
"""

import json
import queue
import sys

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient


def main(http_address, grpc_address, model, requests_path, replies_path, stats_path):
    requests = np.load(requests_path)
    xs = [requests[f"x{i}"] for i in range(len(requests.files))]
    http = httpclient.InferenceServerClient(http_address, concurrency=16)
    grpc = grpcclient.InferenceServerClient(grpc_address)
    assert http.is_model_ready(model) and grpc.is_model_ready(model)

    pending_http, grpc_replies = {}, queue.Queue()
    for i, x in enumerate(xs):  # all sent before any reply is read: they overlap
        if i % 2:
            tensor = grpcclient.InferInput("INPUT0", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x)
            grpc.async_infer(model, [tensor], request_id=str(i),
                             callback=lambda result, error, i=i: grpc_replies.put((i, result, error)))
        else:
            tensor = httpclient.InferInput("INPUT0", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x, binary_data=i % 4 != 0)
            pending_http[i] = http.async_infer(model, [tensor], request_id=str(i))

    replies = {}
    for i, request in pending_http.items():
        replies[i] = request.get_result().as_numpy("OUTPUT0")
    for _ in range(len(xs) - len(pending_http)):
        i, result, error = grpc_replies.get(timeout=120)
        if error is not None:
            raise error
        replies[i] = result.as_numpy("OUTPUT0")
    np.savez(replies_path, **{f"y{i}": y for i, y in replies.items()})

    stats = http.get_inference_statistics(model)
    grpc_stats = grpc.get_inference_statistics(model, as_json=True)
    config = grpc.get_model_config(model, as_json=True)["config"]
    with open(stats_path, "w") as out:
        json.dump({"http": stats, "grpc": grpc_stats, "config": config}, out)
    http.close()
    grpc.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
