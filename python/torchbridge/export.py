"""`torchbridge.export`: one call from a trained nn.Module to a model-repository entry
holding every asked-for form, each checked against the module before it returns."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import tomllib
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
           instances: int | None = None,
           labels: Mapping[str, Sequence[str]] | None = None,
           dynamic_dims: Mapping[str, Sequence[int]] | None = None) -> Exported:
    """Writes `<repository>/<name>/config.toml` and a new version directory (the highest
    present + 1) holding the model in the form each of `bridges` reads; the first bridge
    is the config's `backend`. Each form is loaded back and compared with the module on
    the example (onnx through onnxruntime: tract reads the same file and is not run here;
    `torchbridge check` runs every bridge).

    example_inputs: one tensor or a tuple, in the order `module.forward` takes them, with
    the batch dimension first when max_batch_size > 0 (0: the model does not batch).
    Names default to INPUT0.. / OUTPUT0.. (or the keys of a dict the module returns);
    datatypes and dims come from the example and the module's outputs.

    The python form is the state dict plus a generated model.py holding the module's
    class source, rebuilt as `cls(**init_kwargs)` (each kwarg written as its repr(), a
    tensor as `torch.tensor([...], dtype=...)`), and an import for each name of the
    class's module that its code uses and that is a module (`import torch.nn.functional
    as F`) or a function or class of another module; a helper or constant defined beside
    the class is refused, naming it, and so is a kwarg whose repr() is not Python. With
    `trust_pickle=True` it is the whole module pickled (model.pt, loaded only with
    `trust_pickle = true` in config.toml) instead; a pickle names its classes by module,
    so they must be importable where the server runs (not defined in the script itself).

    labels: class names of outputs, {output name: [name of class 0, 1, ...]}; a server
    asked for an output's top classes (Triton's classification, tritonclient's
    `class_count`) answers with them.

    dynamic_dims: axes of inputs whose size varies from request to request beyond the
    batch, {input name: [axis, ...]} counted as in the example tensor (1: the first
    after the batch), e.g. {"input_ids": [1]} for a sequence length. They are -1 in
    config.toml and dynamic in the onnx form; the outputs' axes that follow them are
    found by running the module on the example grown along those axes (by one, by
    eight, and to twice the size), and every form is checked on the first of those.

    Every form is loaded back and run on the example; ExportError names the form and
    the exporter's reason (an unsupported operator or construct) when one fails, and no
    version directory is left behind. Exports of one name may run at once (DDP ranks,
    two notebooks): each claims its own version number before it writes.
    """
    _check_name(name)
    if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int) \
            or max_batch_size < 0:
        raise ExportError(f"max_batch_size must be a whole number >= 0 (0: the model does "
                          f"not batch), got {max_batch_size!r}")
    if isinstance(bridges, str):
        bridges = (bridges,)
    unknown = [b for b in bridges if b not in BRIDGE_FORMS]
    if not bridges or unknown:
        raise ExportError(f"bridges={tuple(bridges)!r}: choose from {sorted(BRIDGE_FORMS)}")
    forms = list(dict.fromkeys(BRIDGE_FORMS[b] for b in bridges))
    if trust_pickle and "python" in forms and "torchscript" in forms:
        raise ExportError("trust_pickle=True writes the python form as a pickled model.pt, "
                          "the torchscript form's file: export them in separate calls")
    example = (example_inputs,) if isinstance(example_inputs, torch.Tensor) \
        else tuple(example_inputs)
    not_tensors = [type(t).__name__ for t in example if not isinstance(t, torch.Tensor)]
    if not_tensors:
        raise ExportError(f"example_inputs must be a tensor or a tuple of tensors (one per "
                          f"argument of forward), got {', '.join(not_tensors)}")
    # Exported in eval mode; the caller's module gets its own modes back (a training
    # loop that exports each epoch trains on with dropout and batch statistics).
    modes = [(m, m.training) for m in module.modules()]
    try:
        return _export(module.eval(), example, repository, name, bridges, max_batch_size,
                       input_names, output_names, init_kwargs, trust_pickle, instances,
                       labels, dynamic_dims)
    finally:
        for m, training in modes:
            m.training = training


def _export(module, example, repository, name, bridges, max_batch_size, input_names,
            output_names, init_kwargs, trust_pickle, instances, labels,
            dynamic_dims) -> Exported:
    forms = list(dict.fromkeys(BRIDGE_FORMS[b] for b in bridges))
    if max_batch_size > 1 and all(t.dim() > 0 and t.shape[0] == 1 for t in example):
        # One row hides code that fixes the batch size (a reshape by the example's
        # size, a squeeze of dim 0): two rows make every form show it, and the onnx
        # form is checked at one row too.
        example = tuple(torch.cat([t, t]) for t in example)
    with torch.no_grad():
        out = module(*example)
    if output_names is None and isinstance(out, Mapping):
        output_names = list(out)
    if isinstance(out, Mapping) and list(output_names) != list(out):
        # The onnx exporter names a dict's values in the dict's order.
        raise ExportError(f"output_names {list(output_names)} must be the keys of the dict "
                          f"the module returns, in its order: {list(out)} (or leave "
                          f"output_names out)")
    in_names = list(input_names or [f"INPUT{i}" for i in range(len(example))])
    try:
        outputs = _repo.as_list(out, output_names) if isinstance(out, Mapping) \
            else _repo.as_list(out, None)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ExportError(f"the module's outputs must be a tensor, or a tuple, list or dict "
                          f"of tensors (not nested), got {type(out).__name__} ({err})") from err
    out_names = list(output_names or [f"OUTPUT{i}" for i in range(len(outputs))])
    if len(in_names) != len(example) or len(out_names) != len(outputs):
        raise ExportError(f"{len(example)} example inputs and {len(outputs)} outputs, but "
                          f"names {in_names} and {out_names}")
    names = in_names + out_names
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ExportError(f"the inputs' and outputs' names must all differ (a request names "
                          f"each tensor): {twice} given more than once (inputs {in_names}, "
                          f"outputs {out_names})")
    batched = max_batch_size > 0
    if batched:
        _check_batch_first(module, example, out_names, outputs)
    axes, other = _dynamic_axes(module, example, in_names, out_names, outputs, batched,
                                dynamic_dims)
    inputs = [_spec(n, t, batched, "input", axes.get(n, ()))
              for n, t in zip(in_names, example, strict=True)]
    outs = [_spec(n, t, batched, "output", axes.get(n, ()))
            for n, t in zip(out_names, outputs, strict=True)]
    _check_labels(labels, outs)

    model_dir = Path(repository, name)
    python = "python" in forms and not trust_pickle
    if python:
        _check_rebuildable(type(module))
    try:
        model_py = _repo.handler_source(type(module), dict(init_kwargs or {}), in_names,
                                        out_names) if python else None
    except (OSError, TypeError) as err:  # inspect.getsource: no file behind the class
        raise ExportError(f"python form: the source of {type(module).__name__} cannot be "
                          f"read ({err}); define the class in a module (a .py file), or "
                          f"leave \"python\" out of bridges") from err
    except ValueError as err:  # a name or an init kwarg that model.py cannot carry
        raise ExportError(str(err)) from None
    made_dir = not model_dir.exists()
    # Written beside the repository's versions under a name no server reads as one, then
    # renamed: a server polling the repository never sees a half-written version.
    version, staged = _claim_version(model_dir)
    try:
        diffs = _repo.write_version(
            staged, module, example, in_names, out_names,
            forms=[f for f in forms if f != "python" or python],
            max_batch_size=max_batch_size, model_py=model_py, dynamic_axes=axes,
            other_example=other)
        if trust_pickle and "python" in forms:
            diffs = {"python": _write_pickle(staged, module, example, out_names), **diffs}
    except ValueError as err:
        _discard(staged, model_dir if made_dir else None)
        raise ExportError(f"{err}{_python_hint(err, type(module))}") from err
    except BaseException:
        _discard(staged, model_dir if made_dir else None)
        raise
    old = _old_config(model_dir)
    top, tables, labels = _kept_settings(old, labels, outs)
    clash = _clash_with_batch_size(tables, max_batch_size)
    if clash:
        _discard(staged, model_dir if made_dir else None)
        raise ExportError(f"config.toml keeps {clash}, which does not fit max_batch_size="
                          f"{max_batch_size}: edit config.toml first (export keeps its "
                          f"other settings), or export with a larger max_batch_size")
    _publish(staged, model_dir / str(version))
    if trust_pickle:
        top["trust_pickle"] = True
    if instances is None:  # as config.toml said, else one
        instances = old.get("instances", 1)
    _repo.write_config(model_dir, bridges[0], max_batch_size, inputs, outs,
                       labels=labels, instances=instances, tables=tables, **top)
    return Exported(model_dir, version, diffs, inputs, outs)


# What export writes into config.toml itself; everything else a config.toml already
# holds (hand edits: [batching], version_policy, threads, ...) is kept on re-export.
_EXPORT_WRITES = {"backend", "max_batch_size", "instances", "trust_pickle", "input", "output"}


def _old_config(model_dir: Path) -> dict:
    """The config.toml a new version is exported beside; {} if there is none, or it is
    unreadable (then it is replaced whole)."""
    try:
        return tomllib.loads((model_dir / "config.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}


def _kept_settings(old: dict, labels, outs):
    """(top-level keys, [tables], labels) to keep from the config.toml `old`: the
    operator's settings, and the labels files of outputs that keep their name and class
    count when no new labels are given."""
    kept = {k: v for k, v in old.items() if k not in _EXPORT_WRITES}
    tables = {k: v for k, v in kept.items() if isinstance(v, dict) and k != "version_policy"}
    top = {k: v for k, v in kept.items() if k not in tables}
    if labels is None:
        dims = {name: d for name, _, d in outs}
        labels = {o["name"]: o["labels"] for o in old.get("output", [])
                  if "labels" in o and dims.get(o["name"]) == o.get("dims")} or None
    return top, tables, labels


def _clash_with_batch_size(tables: dict, max_batch_size: int) -> str | None:
    """The kept setting that the new max_batch_size would make config.toml refuse."""
    batching, warmup = tables.get("batching"), tables.get("warmup") or {}
    if batching is not None and max_batch_size == 0:
        return "a [batching] table"
    for table, key in ((batching or {}, "batching.preferred_batch_sizes"),
                       (warmup, "warmup.batch_sizes")):
        sizes = table.get(key.split(".")[1], [])
        if max_batch_size > 0 and any(size > max_batch_size for size in sizes):
            return f"`{key} = {sizes}`"
    return None


def _check_name(name: object) -> None:
    try:
        _repo.check_model_name(name)
    except ValueError as err:
        raise ExportError(str(err)) from None


def _check_rebuildable(cls: type) -> None:
    """The python form copies the class's source into model.py: torch's own classes
    (nn.Sequential, nn.Linear) cannot be rebuilt that way."""
    if cls.__module__.split(".")[0] == "torch":
        raise ExportError(
            f"python form: the generated model.py rebuilds the module's class from its "
            f"source, and {cls.__name__} is torch's own ({cls.__module__}): wrap it in a "
            f"class of your own, leave \"python\" out of bridges, or pass trust_pickle=True "
            f"to pickle the module instead")


def _python_hint(err: ValueError, cls: type) -> str:
    if "python form" not in str(err):
        return ""
    if isinstance(err.__cause__, NameError):
        return (f" (model.py holds the source of {cls.__name__} and imports the modules "
                f"its module binds to the names it uses, and it uses a name defined nowhere "
                f"there: define {cls.__name__} so that it needs only those, or pass "
                f"trust_pickle=True to pickle the module instead)")
    return (f" (the generated model.py rebuilds {cls.__name__}(**init_kwargs) from its "
            f"source: pass init_kwargs=, or trust_pickle=True to pickle the module instead)")


def _check_labels(labels: Mapping[str, Sequence[str]] | None, outs) -> None:
    try:
        _repo.check_labels(labels, [name for name, _, _ in outs])
    except ValueError as err:
        raise ExportError(str(err)) from None
    for name, _, dims in outs:
        names = (labels or {}).get(name)
        if names is not None and dims and dims[-1] > 0 and len(names) != dims[-1]:
            raise ExportError(f"labels of {name!r}: {len(names)} class name(s), but the output "
                              f"has {dims[-1]} classes (dims {dims})")


def _spec(name: str, tensor: torch.Tensor, batched: bool, what: str, dynamic=()):
    if tensor.dtype not in DATATYPES:
        raise ExportError(f"{what} {name}: torch dtype {tensor.dtype} has no KServe datatype")
    if batched and tensor.dim() == 0:
        raise ExportError(f"{what} {name} is a scalar, but max_batch_size > 0 wants a "
                          f"batch dimension first (pass max_batch_size=0 if it has none)")
    shape = [-1 if axis in dynamic else size for axis, size in enumerate(tensor.shape)]
    return name, DATATYPES[tensor.dtype], shape[1:] if batched else shape


def _check_batch_first(module, example, out_names, outputs):
    """Every output has the batch's rows first, at one row and at the example's
    (whose `outputs` are at hand), and the example's first and last rows come out as
    they do run alone: dim 0 of every input is a batch of independent rows (a
    time-major RNN's dim 0 passes the shape checks, and batching would mix requests)."""
    def alone(rows):
        try:
            with torch.no_grad():
                got = module(*(t[rows] for t in example))
        except Exception as err:
            raise ExportError(
                f"the module fails on one row of the example ({type(err).__name__}: {err}); "
                f"with max_batch_size > 0 it must take any number of rows (does it fix the "
                f"batch size, as a reshape to the example's size does?); pass "
                f"max_batch_size=0 for a model without a batch dimension") from err
        return _repo.as_list(got, out_names if isinstance(got, Mapping) else None)

    first, last = slice(0, 1), slice(-1, None)
    one = alone(first)
    for rows, got in ((1, one), (example[0].shape[0], outputs)):
        for name, tensor in zip(out_names, got, strict=True):
            if tensor.dim() == 0 or tensor.shape[0] != rows:
                raise ExportError(
                    f"output {name} has shape {list(tensor.shape)} for {rows} row(s): with "
                    f"max_batch_size > 0 every output's first dim is the batch (pass "
                    f"max_batch_size=0 for a model without one)")
    rows = example[0].shape[0]
    for which, row, single in (("first", first, one), ("last", last, alone(last))):
        for name, batched, alone_out in zip(out_names, outputs, single, strict=True):
            if not _same_rows(batched[row], alone_out):
                raise ExportError(
                    f"output {name}: the {which} row of the {rows}-row example differs from "
                    f"that row run alone, so the rows of dim 0 are not independent requests "
                    f"(is dim 0 time or channels, as in an RNN without batch_first=True?); "
                    f"put the batch first, or pass max_batch_size=0")


def _same_rows(batched, alone) -> bool:
    """Equal within ten times the datatype's tolerance (a batch may sum in another
    order); integers and booleans exactly."""
    if batched.shape != alone.shape or batched.dtype != alone.dtype:
        return False
    rtol, atol = _repo.TOLERANCES.get(alone.dtype, (0.0, 0.0))
    return torch.allclose(batched.double(), alone.double(), rtol=10 * rtol, atol=10 * atol,
                          equal_nan=True)


def _dynamic_axes(module, example, in_names, out_names, outputs, batched, dynamic_dims):
    """({tensor name: [axis, ...]}, the example grown by one on those axes) for
    `dynamic_dims`; the outputs' dynamic axes are those whose size follows (growing the
    inputs by one, by eight, or to twice their size)."""
    if not dynamic_dims:
        return {}, None
    axes = {}
    for name, given in dict(dynamic_dims).items():
        if name not in in_names:
            raise ExportError(f"dynamic_dims names {name!r}, but the inputs are {in_names}")
        rank = example[in_names.index(name)].dim()
        given = [given] if isinstance(given, int) else list(given)
        low = 1 if batched else 0
        bad = [a for a in given if not isinstance(a, int) or not low <= a < rank]
        if bad:
            batch = " (axis 0 is the batch)" if batched else ""
            raise ExportError(f"dynamic_dims of {name!r}: axis {bad[0]!r} is not one of "
                              f"{low}..{rank - 1}{batch}")
        axes[name] = sorted(set(given))

    def grown(tensor, name, by):
        for axis in axes.get(name, ()):
            last = tensor.narrow(axis, tensor.shape[axis] - 1, 1)
            n = tensor.shape[axis] if by is None else by  # None: to twice the size
            tensor = torch.cat([tensor] + [last] * n, dim=axis)
        return tensor

    def run(by):
        inputs = tuple(grown(t, n, by) for n, t in zip(in_names, example, strict=True))
        with torch.no_grad():
            out = module(*inputs)
        return inputs, _repo.as_list(out, out_names if isinstance(out, Mapping) else None)

    # Grown by one, by eight and to twice the size: a strided layer's output grows only
    # every stride steps (a ViT's 16x16 patches, on a 32-pixel example, only at 48).
    other, other_outputs = run(1)
    _, further_outputs = run(8)
    _, doubled_outputs = run(None)
    for name, before, *grown_outputs in zip(out_names, outputs, other_outputs,
                                            further_outputs, doubled_outputs, strict=True):
        changed = [a for a, sizes in enumerate(zip(before.shape,
                                                   *(o.shape for o in grown_outputs)))
                   if len(set(sizes)) > 1]
        if changed:
            axes[name] = changed
    return axes, other


def _claim_version(model_dir: Path) -> tuple[int, Path]:
    """(version, its staging directory `.<version>.partial`, made empty): the next
    version number, claimed by making that directory. Exports of one name may run at once
    (DDP ranks, two notebooks): a number whose staging directory another export has made,
    or that is a version already, is passed over, so each export writes its own."""
    model_dir.mkdir(parents=True, exist_ok=True)
    version = max(_versions(model_dir), default=0)
    while True:
        version += 1
        staged = model_dir / f".{version}.partial"
        try:
            os.mkdir(staged)
        except FileExistsError:
            if not _abandoned(staged):
                continue  # another export's, still being written: never touched here
            shutil.rmtree(staged, ignore_errors=True)  # a killed export's
            version -= 1
            continue
        if not (model_dir / str(version)).exists():
            (staged / _OWNER).write_text(_owner())
            return version, staged
        # Published between the listing and the claim: that number is taken.
        os.rmdir(staged)


# Names the export writing a staging directory (host and pid), so a later one can tell
# the directory of a killed export (gigabytes, maybe) from one still being written.
_OWNER = ".owner"


def _owner() -> str:
    return f"{socket.gethostname()} {os.getpid()}"


def _abandoned(staged: Path) -> bool:
    """Whether `staged` was left by an export of this host that is no longer running."""
    try:
        host, pid = (staged / _OWNER).read_text().split()
    except (OSError, ValueError):
        return False  # being made (no owner yet), or not ours to judge
    if host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (OSError, ValueError):
        return False
    return False


def _publish(staged: Path, vdir: Path) -> None:
    """Renames the staged version into place; never over or into an existing one."""
    try:
        if vdir.exists():  # rename(2) would replace an empty directory
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(vdir))
        (staged / _OWNER).unlink(missing_ok=True)
        os.rename(staged, vdir)
    except OSError as err:
        _discard(staged, None)
        raise ExportError(f"version {vdir.name} of {vdir.parent.name} appeared in "
                          f"{vdir.parent} while this export wrote it (not by another "
                          f"torchbridge.export, which claims its number first): nothing "
                          f"written; export again ({err})") from err


def _discard(staged: Path, made_dir: Path | None) -> None:
    """Removes this export's staging directory, and the model directory this export made
    if nothing else is in it now (another export of the same name may be writing there)."""
    shutil.rmtree(staged, ignore_errors=True)
    if made_dir is not None:
        with contextlib.suppress(OSError):
            os.rmdir(made_dir)


def _versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return [int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]


def _write_pickle(vdir: Path, module: nn.Module, example, out_names) -> float:
    # A pickle names each class by its module; the server imports that module to load
    # it, and a script's own classes live in `__main__`, which the server's is not.
    scripted = sorted({type(m).__qualname__ for m in module.modules()
                       if type(m).__module__ == "__main__"})
    if scripted:
        raise ValueError(f"trust_pickle: the pickle refers to {', '.join(scripted)} in "
                         f"`__main__` (the running script), which the server cannot import: "
                         f"define the classes in a module (a .py file) that the model's "
                         f"python_env can import, or leave \"python\" out of bridges")
    path = vdir / "model.pt"
    torch.save(module, path)
    with torch.no_grad():
        loaded = torch.load(path, weights_only=False).eval()
        return _repo.check("python (pickle)", _repo.as_list(loaded(*example), out_names),
                           _repo.as_list(module(*example), out_names), out_names)
