"""`torchbridge.export`: one call from a trained nn.Module to a model-repository entry
holding every asked-for form, each checked against the module before it returns."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchbridge import _repo
from torchbridge._native import TorchbridgeError

# The form each bridge reads (tract runs the onnx file).
BRIDGE_FORMS = {"python": "python", "torchscript": "torchscript", "onnx": "onnx",
                "tract": "onnx"}
DATATYPES = {dtype: name for name, dtype in _repo.TORCH_DTYPES.items()}


class ExportError(TorchbridgeError, ValueError):
    """A form could not be made, or does not give the module's outputs."""


@dataclass
class Exported:
    """Where `export` wrote, and each form's max abs diff against the module."""

    path: Path
    version: int
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    inputs: list[tuple[str, str, list[int]]] = field(default_factory=list)
    outputs: list[tuple[str, str, list[int]]] = field(default_factory=list)


def export(module: nn.Module, example_inputs: torch.Tensor | Sequence[torch.Tensor],
           repository: str | os.PathLike[str], *, name: str,
           bridges: Sequence[str] = ("python", "torchscript", "onnx"),
           max_batch_size: int = 64, input_names: Sequence[str] | None = None,
           output_names: Sequence[str] | None = None,
           init_kwargs: Mapping[str, Any] | None = None, trust_pickle: bool = False,
           instances: int = 1,
           labels: Mapping[str, Sequence[str]] | None = None) -> Exported:
    """Writes `<repository>/<name>/config.toml` and a new version directory (the highest
    present + 1) holding the model in the form each of `bridges` reads; the first bridge
    is the config's `backend`.

    example_inputs: one tensor or a tuple, in the order `module.forward` takes them, with
    the batch dimension first when max_batch_size > 0 (0: the model does not batch).
    Names default to INPUT0.. / OUTPUT0.. (or the keys of a dict the module returns);
    datatypes and dims come from the example and the module's outputs.

    The python form is the state dict plus a generated model.py holding the module's
    class source, rebuilt as `cls(**init_kwargs)`; that class may use only torch. With
    `trust_pickle=True` it is the whole module pickled (model.pt, loaded only with
    `trust_pickle = true` in config.toml) instead.

    labels: class names of outputs, {output name: [name of class 0, 1, ...]}; a server
    asked for an output's top classes (Triton's classification, tritonclient's
    `class_count`) answers with them.

    Every form is loaded back and run on the example; ExportError names the form and
    the exporter's reason (an unsupported operator or construct) when one fails, and no
    version directory is left behind.
    """
    unknown = [b for b in bridges if b not in BRIDGE_FORMS]
    if not bridges or unknown:
        raise ExportError(f"bridges={tuple(bridges)!r}: choose from {sorted(BRIDGE_FORMS)}")
    forms = list(dict.fromkeys(BRIDGE_FORMS[b] for b in bridges))
    if trust_pickle and "python" in forms and "torchscript" in forms:
        raise ExportError("trust_pickle=True writes the python form as a pickled model.pt, "
                          "the torchscript form's file: export them in separate calls")
    example = (example_inputs,) if isinstance(example_inputs, torch.Tensor) \
        else tuple(example_inputs)
    module = module.eval()
    with torch.no_grad():
        out = module(*example)
    if output_names is None and isinstance(out, Mapping):
        output_names = list(out)
    in_names = list(input_names or [f"INPUT{i}" for i in range(len(example))])
    outputs = _repo.as_list(out, output_names) if isinstance(out, Mapping) \
        else _repo.as_list(out, None)
    out_names = list(output_names or [f"OUTPUT{i}" for i in range(len(outputs))])
    if len(in_names) != len(example) or len(out_names) != len(outputs):
        raise ExportError(f"{len(example)} example inputs and {len(outputs)} outputs, but "
                          f"names {in_names} and {out_names}")
    _check_labels(labels, out_names)
    batched = max_batch_size > 0
    inputs = [_spec(n, t, batched, "input") for n, t in zip(in_names, example, strict=True)]
    outs = [_spec(n, t, batched, "output") for n, t in zip(out_names, outputs, strict=True)]

    model_dir = Path(repository, name)
    version = max(_versions(model_dir), default=0) + 1
    vdir = model_dir / str(version)
    python = "python" in forms and not trust_pickle
    model_py = _repo.handler_source(type(module), dict(init_kwargs or {}), in_names,
                                    out_names) if python else None
    try:
        diffs = _repo.write_version(
            vdir, module, example, in_names, out_names,
            forms=[f for f in forms if f != "python" or python],
            max_batch_size=max_batch_size, model_py=model_py)
        if trust_pickle and "python" in forms:
            diffs = {"python": _write_pickle(vdir, module, example, out_names), **diffs}
    except ValueError as err:
        shutil.rmtree(vdir, ignore_errors=True)
        hint = ""
        if "python form" in str(err):
            hint = (f" (the generated model.py rebuilds {type(module).__name__}"
                    f"(**init_kwargs) from its source: pass init_kwargs=, or "
                    f"trust_pickle=True to pickle the module instead)")
        raise ExportError(f"{err}{hint}") from err
    top = {"trust_pickle": True} if trust_pickle else {}
    _repo.write_config(model_dir, bridges[0], max_batch_size, inputs, outs,
                       labels=labels, instances=instances, **top)
    return Exported(model_dir, version, diffs, inputs, outs)


def _check_labels(labels: Mapping[str, Sequence[str]] | None, out_names: list[str]) -> None:
    try:
        _repo.check_labels(labels, out_names)
    except ValueError as err:
        raise ExportError(str(err)) from None


def _spec(name: str, tensor: torch.Tensor, batched: bool, what: str):
    if tensor.dtype not in DATATYPES:
        raise ExportError(f"{what} {name}: torch dtype {tensor.dtype} has no KServe datatype")
    if batched and tensor.dim() == 0:
        raise ExportError(f"{what} {name} is a scalar, but max_batch_size > 0 wants a "
                          f"batch dimension first (pass max_batch_size=0 if it has none)")
    dims = list(tensor.shape[1:] if batched else tensor.shape)
    return name, DATATYPES[tensor.dtype], dims


def _versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return [int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]


def _write_pickle(vdir: Path, module: nn.Module, example, out_names) -> float:
    path = vdir / "model.pt"
    torch.save(module, path)
    with torch.no_grad():
        loaded = torch.load(path, weights_only=False).eval()
        return _repo.check("python (pickle)", _repo.as_list(loaded(*example), out_names),
                           _repo.as_list(module(*example), out_names), out_names)
