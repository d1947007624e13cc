"""torchbridge from Python: export a trained module into a model repository, run any
model of a repository through torchbridge's Rust bridges (python, torchscript, onnx),
and serve a Python callable over KServe v2 HTTP and gRPC from torchbridge's Rust server.

    import torchbridge
    torchbridge.export(net, (example,), "models", name="digits")
    model = torchbridge.Model.load("models/digits")
    outputs = model.infer({"INPUT0": array})        # {"OUTPUT0": ndarray}
    torchbridge.serve(net, name="digits", inputs=[("INPUT0", "FP32", [64])],
                      outputs=[("OUTPUT0", "FP32", [10])])   # until ctrl-c

`import torch` comes first: the extension links libtorch (the torchscript bridge) and
finds it already loaded from this torch installation.
"""

import importlib.util as _importlib_util
import os as _os
from pathlib import Path as _Path

import torch as _torch  # noqa: F401  (loads libtorch before the extension)


def _find_onnxruntime() -> None:
    """Point the onnx bridge at this interpreter's onnxruntime wheel (ORT_DYLIB_PATH)."""
    spec = _importlib_util.find_spec("onnxruntime")
    if "ORT_DYLIB_PATH" in _os.environ or spec is None or not spec.submodule_search_locations:
        return
    for location in spec.submodule_search_locations:
        libs = sorted(_Path(location, "capi").glob("libonnxruntime.so*"))
        if libs:
            _os.environ["ORT_DYLIB_PATH"] = str(libs[0])
            return


_find_onnxruntime()

from torchbridge._native import (  # noqa: E402
    ConfigError,
    DeadlineExceededError,
    InferenceError,
    InvalidInputError,
    ModelError,
    ModelNotFoundError,
    OverloadedError,
    TorchbridgeError,
    UnavailableError,
    compiled_bridges,
)
from torchbridge._model import Model, TensorInfo  # noqa: E402
from torchbridge.export import ExportError, Exported, export  # noqa: E402
from torchbridge._serve import Server, serve  # noqa: E402

__version__ = "0.1.0"
__all__ = [
    "ConfigError",
    "DeadlineExceededError",
    "ExportError",
    "Exported",
    "InferenceError",
    "InvalidInputError",
    "Model",
    "ModelError",
    "ModelNotFoundError",
    "OverloadedError",
    "Server",
    "TensorInfo",
    "TorchbridgeError",
    "UnavailableError",
    "compiled_bridges",
    "export",
    "serve",
]
