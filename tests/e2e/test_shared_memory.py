"""System shared memory (Triton's `systemsharedmemory` extension), driven by tritonclient's
own shared-memory utilities over HTTP and gRPC and by `perf_analyzer --shared-memory
system`, against `torchbridge serve --allow-client-shm`. Each answer through shared
memory must equal the answer to the same request sent with the tensors inline."""

import uuid

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from conftest import require_models, run_perf_analyzer, start_server, stop_server

PROTOCOLS = {"http": httpclient, "grpc": grpcclient}


@pytest.fixture(scope="module")
def shm_server(repo, tmp_path_factory):
    require_models(repo, "multi_io")
    small = tmp_path_factory.mktemp("shm_repo")
    for model in ("multi_io", "mlp"):
        (small / model).symlink_to(repo / model, target_is_directory=True)
    server = start_server(small, tmp_path_factory.mktemp("shm_logs") / "serve.log",
                          "--allow-client-shm")
    yield server
    code = stop_server(server)
    assert code == 0, f"torchbridge serve exited with {code}:\n{server.log_text()}"


def client_for(server, protocol):
    module = PROTOCOLS[protocol]
    url = server.http_url if protocol == "http" else server.grpc_url
    return module, module.InferenceServerClient(url)


@pytest.fixture
def regions():
    """Creates shared-memory objects on request; destroys them all after the test."""
    made = []

    def make(byte_size):
        name = f"tb-{uuid.uuid4().hex[:12]}"
        handle = shm.create_shared_memory_region(name, f"/{name}", byte_size)
        made.append(handle)
        return name, handle

    yield make
    for handle in made:
        shm.destroy_shared_memory_region(handle)


def multi_io_inputs():
    x = np.array([[0.5, -1.0, 2.0], [3.0, 4.5, -6.0]], dtype=np.float32)
    ids = np.arange(10, dtype=np.int64).reshape(2, 5) * 7
    return x, ids


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_inputs_and_outputs_through_shared_memory(shm_server, regions, protocol):
    module, client = client_for(shm_server, protocol)
    x, ids = multi_io_inputs()

    inline = [module.InferInput("X", list(x.shape), "FP32"),
              module.InferInput("IDS", list(ids.shape), "INT64")]
    inline[0].set_data_from_numpy(x)
    inline[1].set_data_from_numpy(ids)
    want = client.infer("multi_io", inline)

    # X in a region at an offset, IDS inline; SCALED into a region, IDS_PLUS inline.
    in_name, in_handle = regions(64 + x.nbytes)
    shm.set_shared_memory_region(in_handle, [x], offset=64)
    client.register_system_shared_memory(in_name, f"/{in_name}", 64 + x.nbytes)
    out_name, out_handle = regions(1024)
    client.register_system_shared_memory(out_name, f"/{out_name}", 1024)

    inputs = [module.InferInput("X", list(x.shape), "FP32"),
              module.InferInput("IDS", list(ids.shape), "INT64")]
    inputs[0].set_shared_memory(in_name, x.nbytes, offset=64)
    inputs[1].set_data_from_numpy(ids)
    outputs = [module.InferRequestedOutput("SCALED"), module.InferRequestedOutput("IDS_PLUS")]
    outputs[0].set_shared_memory(out_name, 1024)
    got = client.infer("multi_io", inputs, outputs=outputs)

    scaled = want.as_numpy("SCALED")
    assert got.get_output("SCALED") is not None
    from_region = shm.get_contents_as_numpy(out_handle, np.float32, list(scaled.shape))
    np.testing.assert_array_equal(from_region, scaled)
    np.testing.assert_array_equal(got.as_numpy("IDS_PLUS"), want.as_numpy("IDS_PLUS"))

    status = client.get_system_shared_memory_status()
    if protocol == "http":
        listed = {r["name"]: (r["key"], int(r["byte_size"])) for r in status}
    else:
        listed = {name: (r.key, r.byte_size) for name, r in status.regions.items()}
    assert listed[in_name] == (f"/{in_name}", 64 + x.nbytes)
    assert listed[out_name] == (f"/{out_name}", 1024)

    client.unregister_system_shared_memory(in_name)
    with pytest.raises(InferenceServerException) as gone:
        client.infer("multi_io", inputs, outputs=outputs)
    assert f"no shared-memory region `{in_name}` is registered" in str(gone.value)
    client.unregister_system_shared_memory()
    status = client.get_system_shared_memory_status()
    assert len(status if protocol == "http" else status.regions) == 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_mistakes_are_named_and_the_server_stays_up(shm_server, regions, protocol):
    module, client = client_for(shm_server, protocol)
    x, ids = multi_io_inputs()
    name, handle = regions(x.nbytes)
    shm.set_shared_memory_region(handle, [x])
    client.register_system_shared_memory(name, f"/{name}", x.nbytes)

    with pytest.raises(InferenceServerException) as twice:
        client.register_system_shared_memory(name, f"/{name}", x.nbytes)
    assert f"`{name}` is already registered" in str(twice.value)
    with pytest.raises(InferenceServerException) as bigger:
        client.register_system_shared_memory(f"{name}-2", f"/{name}", x.nbytes + 1)
    assert f"holds {x.nbytes} bytes" in str(bigger.value)
    with pytest.raises(InferenceServerException) as escape:
        client.register_system_shared_memory("evil", "/../../etc/passwd", 1)
    assert "is not a shared-memory key" in str(escape.value)

    def request(x_bytes, out_bytes):
        inputs = [module.InferInput("X", list(x.shape), "FP32"),
                  module.InferInput("IDS", list(ids.shape), "INT64")]
        inputs[0].set_shared_memory(name, x_bytes)
        inputs[1].set_data_from_numpy(ids)
        out = module.InferRequestedOutput("SCALED")
        out.set_shared_memory(name, out_bytes)
        return client.infer("multi_io", inputs, outputs=[out])

    with pytest.raises(InferenceServerException) as short:
        request(x.nbytes - 4, x.nbytes)
    assert "needs 24 bytes, shared_memory_byte_size is 20" in str(short.value)
    with pytest.raises(InferenceServerException) as small_out:
        request(x.nbytes, x.nbytes - 4)
    assert "output `SCALED` is 24 bytes, more than the 20 bytes" in str(small_out.value)
    # The same region for input and output: the answer overwrites the input.
    request(x.nbytes, x.nbytes)
    assert client.is_server_live()


def test_off_without_the_flag(server, regions):
    """The session's server runs without --allow-client-shm: nothing may be registered,
    and the extension is not listed."""
    client = httpclient.InferenceServerClient(server.http_url)
    name, _ = regions(64)
    with pytest.raises(InferenceServerException) as off:
        client.register_system_shared_memory(name, f"/{name}", 64)
    assert "--allow-client-shm" in str(off.value)
    assert "system_shared_memory" not in client.get_server_metadata()["extensions"]
    # CUDA shared memory: nothing is ever registered (as on a CPU-only Triton), so the
    # status is empty and unregistering all succeeds (perf_analyzer does it as it ends);
    # registering is refused by name.
    assert client.get_cuda_shared_memory_status() == []
    client.unregister_cuda_shared_memory()
    with pytest.raises(InferenceServerException) as cuda:
        client.register_cuda_shared_memory("r", b"aGFuZGxl", 0, 64)
    assert "CUDA shared memory is not supported" in str(cuda.value)
    with grpcclient.InferenceServerClient(server.grpc_url) as grpc:
        assert not grpc.get_cuda_shared_memory_status().regions
        grpc.unregister_cuda_shared_memory()
        with pytest.raises(InferenceServerException) as cuda:
            grpc.register_cuda_shared_memory("r", b"aGFuZGxl", 0, 64)
        assert "CUDA shared memory is not supported" in str(cuda.value)
        assert cuda.value.status() == "StatusCode.INVALID_ARGUMENT"


def test_extension_listed_with_the_flag(shm_server):
    metadata = httpclient.InferenceServerClient(shm_server.http_url).get_server_metadata()
    assert "system_shared_memory" in metadata["extensions"]
    with grpcclient.InferenceServerClient(shm_server.grpc_url) as client:
        assert "system_shared_memory" in client.get_server_metadata().extensions


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_perf_analyzer_with_system_shared_memory(shm_server, protocol):
    url = shm_server.http_url if protocol == "http" else shm_server.grpc_url
    run = run_perf_analyzer("-m", "mlp", "-u", url, "-i", protocol, "-b", "2",
                            "--concurrency-range", "2", "--request-count", "200",
                            "--shared-memory", "system", "--output-shared-memory-size", "1024")
    assert "Throughput" in run.stdout
    # perf_analyzer unregisters what it registered when it ends.
    client = httpclient.InferenceServerClient(shm_server.http_url)
    assert client.get_system_shared_memory_status() == []
