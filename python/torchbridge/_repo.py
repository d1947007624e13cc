"""Write torchbridge model-repository entries from an nn.Module: the machinery behind
`torchbridge.export`, also used by tests/fixtures/make_fixtures.py and
examples/digits/train.py (through tools/modelrepo.py, which loads this file directly, so
those need no built extension).

    forms = write_model(
        "models", "mlp", net, (torch.randn(3, 16),),
        inputs=[("INPUT0", "FP32", [16])], outputs=[("OUTPUT0", "FP32", [4])],
        max_batch_size=8, forms=["python", "torchscript", "onnx"], backend="torchscript",
        model_py=handler_source(Net, {}, ["INPUT0"], ["OUTPUT0"]))

Layout written: <repo>/<name>/config.toml and <repo>/<name>/<version>/ holding
state_dict.pt plus model.py (python), model.pt (torchscript), model.onnx (onnx) and/or
model.pt2 (pt2). Each written form is loaded back and run on the example inputs; its
outputs must match the eager module's in dtype, shape and value, otherwise ValueError.
One line per model is printed with each form's max abs diff. A spec is a tuple (name,
KServe datatype, dims without the batch dimension). Needs only stdlib, torch and numpy,
plus onnxruntime for the onnx form. Imports nothing of the torchbridge package.
"""

from __future__ import annotations

import contextlib
import dis
import importlib
import importlib.util
import inspect
import os
import shutil
import sys
import textwrap
import threading
import types
import warnings
from pathlib import Path

import numpy as np
import torch

FORMS = ("python", "torchscript", "onnx", "pt2")
FILES = {"python": "model.py", "torchscript": "model.pt", "onnx": "model.onnx", "pt2": "model.pt2"}

TORCH_DTYPES = {
    "BOOL": torch.bool, "UINT8": torch.uint8, "UINT16": torch.uint16, "UINT32": torch.uint32,
    "UINT64": torch.uint64, "INT8": torch.int8, "INT16": torch.int16, "INT32": torch.int32,
    "INT64": torch.int64, "FP16": torch.float16, "FP32": torch.float32, "FP64": torch.float64,
    "BF16": torch.bfloat16,
}

# (rtol, atol) per dtype when comparing a form's outputs with eager; integers/bool are exact.
TOLERANCES = {torch.float16: (1e-2, 1e-2), torch.bfloat16: (2e-2, 2e-2),
              torch.float32: (1e-4, 1e-5), torch.float64: (1e-9, 1e-12)}

ONNX_OPSET = 17  # pinned so the file does not change with torch's default


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} to TOML")


def _toml_key(key: str) -> str:
    bare = key and all(c.isalnum() or c in "-_" for c in key)
    return key if bare else _toml(key)


def write_config(model_dir, backend, max_batch_size, inputs, outputs, parameters=None,
                 labels=None, tables=None, **top):
    """Write <model_dir>/config.toml. `top`: extra top-level keys (trust_pickle=True, ...).
    `labels`: {output name: class names}, each written to <output>.labels.txt beside it,
    or {output name: file} to name a labels file already there. `tables`: more
    [sections] ({"batching": {...}}) written as they are."""
    instances = top.pop("instances", 1)
    lines = [f"backend = {_toml(backend)}", f"max_batch_size = {max_batch_size}",
             f"instances = {instances}"]
    lines += [f"{key} = {_toml(value)}" for key, value in top.items()]
    lines += tensor_entries(model_dir, inputs, outputs, labels)
    if parameters:
        lines += ["", "[parameters]"] + [f"{k} = {_toml(v)}" for k, v in parameters.items()]
    for table, values in (tables or {}).items():
        lines += ["", f"[{table}]"] + [f"{_toml_key(k)} = {_toml(v)}" for k, v in values.items()]
    # Replaced whole, never half-written: a server polling the repository may read it.
    # Staged under a name of this process and thread: exports may run at once.
    staged = Path(model_dir, f".config.toml.{os.getpid()}.{threading.get_ident()}.partial")
    staged.write_text("\n".join(lines) + "\n")
    staged.replace(Path(model_dir, "config.toml"))


def tensor_entries(model_dir, inputs, outputs, labels=None) -> list[str]:
    """The config.toml lines of the [[input]] and [[output]] entries; an output named in
    `labels` ({output: class names}) gets its names written to <output>.labels.txt in
    `model_dir` and the entry's `labels` key."""
    lines = []
    labels = dict(labels or {})
    for table, specs in (("input", inputs), ("output", outputs)):
        for name, datatype, dims in specs:
            assert datatype in TORCH_DTYPES or datatype == "BYTES", f"unknown datatype {datatype}"
            lines += ["", f"[[{table}]]", f"name = {_toml(name)}",
                      f"datatype = {_toml(datatype)}", f"dims = {_toml(list(dims))}"]
            if table == "output" and isinstance(labels.get(name), str):
                lines.append(f"labels = {_toml(labels[name])}")  # a file already there
            elif table == "output" and name in labels:
                file = f"{name}.labels.txt"
                Path(model_dir, file).write_text("".join(f"{n}\n" for n in labels[name]))
                lines.append(f"labels = {_toml(file)}")
    return lines


def check_model_name(name) -> None:
    """ValueError unless `name` can name a model directory of a repository."""
    if (not isinstance(name, str) or not name or name.startswith(".")
            or any(c in name for c in "/\\\0")):
        raise ValueError(f"name must be a non-empty model name without '/' or '\\' that "
                         f"does not start with '.', got {name!r}")


def check_labels(labels, out_names) -> None:
    """ValueError naming what is wrong with `labels` ({output: class names})."""
    for output, names in (labels or {}).items():
        if output not in out_names:
            raise ValueError(f"labels name output {output!r}, but the outputs are {out_names}")
        if (isinstance(names, str) or not isinstance(names, (list, tuple))
                or not all(isinstance(n, str) for n in names)):
            raise ValueError(f"labels of {output!r}: give a list of class-name strings")
        if any("\n" in n or "\r" in n for n in names):
            raise ValueError(f"labels of {output!r}: a class name cannot hold a line break "
                             f"(the labels file holds one name a line)")


def handler_source(net_cls, kwargs, input_names, output_names, doc="") -> str:
    """model.py text that rebuilds `net_cls(**kwargs)` and loads state_dict.pt.

    The class is copied by source (inspect.getsource), with an import for each name of
    its defining module that its code uses and that can be imported: a module (`import
    torch.nn.functional as F`), or a function or class of another module (`from math
    import sqrt`). ValueError names a name it uses that cannot be carried (a helper or
    constant defined beside the class), and an init kwarg whose repr() cannot be
    evaluated in model.py (tensors are written as `torch.tensor([...], dtype=...)`).
    The network takes the inputs positionally in config order and returns a tensor, a
    tuple in config order, or a dict keyed by output name.
    """
    source = inspect.getsource(net_cls).strip()
    imports = _imports(net_cls, textwrap.dedent(inspect.getsource(net_cls)))
    args = ", ".join(f"{k}={_kwarg(k, v)}" for k, v in dict(kwargs).items())
    ctor = f"{net_cls.__name__}({args})"
    imported = "".join(f"{line}\n" for line in imports)
    return f'''"""torchbridge python handler{": " + doc if doc else ""}.

Generated by torchbridge's exporter: rebuilds {net_cls.__name__} and loads state_dict.pt.
"""
import os

import torch
from torch import nn
{imported}
INPUTS = {list(input_names)!r}
OUTPUTS = {list(output_names)!r}


{source}


class Model:
    def __init__(self, model_dir, config):
        self.net = {ctor}
        state = torch.load(os.path.join(model_dir, "state_dict.pt"), weights_only=True)
        self.net.load_state_dict(state, assign=True)  # keeps the saved dtypes (FP16, BF16)
        self.net.eval()

    def predict(self, inputs):
        with torch.inference_mode():
            out = self.net(*(inputs[name] for name in INPUTS))
        if isinstance(out, dict):
            return {{name: out[name] for name in OUTPUTS}}
        if isinstance(out, torch.Tensor):
            out = (out,)
        return dict(zip(OUTPUTS, out, strict=True))
'''



# What the generated model.py binds itself, beside the class.
_HANDLER_NAMES = {"os", "torch", "nn", "INPUTS", "OUTPUTS", "Model"}


def _global_names(code) -> set[str]:
    """The names `code` (and the code nested in it: the class body, its methods,
    comprehensions, lambdas) reads as globals; a class body's own names left out."""
    names, stored = set(), set()
    for ins in dis.get_instructions(code):
        if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
            names.add(ins.argval)
        elif ins.opname in ("STORE_NAME", "STORE_GLOBAL"):
            stored.add(ins.argval)
    names -= stored
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _imports(net_cls, source: str) -> list[str]:
    """The import lines model.py needs for the globals the class's source uses."""
    module = sys.modules.get(net_cls.__module__)
    namespace = vars(module) if module is not None else {}
    used = _global_names(compile(source, "<class source>", "exec")) - _HANDLER_NAMES
    lines = []
    for name in sorted(used - {net_cls.__name__}):
        if name not in namespace or (name.startswith("__") and name.endswith("__")):
            # A builtin, undefined (the check run of model.py names it), or a module
            # attribute model.py has too (a class body reads __name__).
            continue
        value = namespace[name]
        if isinstance(value, types.ModuleType):
            lines.append(f"import {value.__name__}" if value.__name__ == name
                         else f"import {value.__name__} as {name}")
            continue
        home = getattr(value, "__module__", None)
        own = getattr(value, "__name__", None)
        if (isinstance(home, str) and isinstance(own, str) and home != "__main__"
                and home != net_cls.__module__ and _importable(home, own, value)):
            lines.append(f"from {home} import {own}" if own == name
                         else f"from {home} import {own} as {name}")
            continue
        what = (f"a {type(value).__name__}" if not callable(value) else
                "a class" if isinstance(value, type) else "a function")
        raise ValueError(
            f"python form: {net_cls.__name__} uses `{name}` ({what} that {net_cls.__module__} "
            f"defines or imports under that name), which the generated model.py cannot "
            f"carry: it holds "
            f"{net_cls.__name__}'s source and imports only modules and what other modules "
            f"define; fold `{name}` into {net_cls.__name__} (a method or class attribute), "
            f"pass trust_pickle=True to pickle the module instead, or leave \"python\" out "
            f"of bridges")
    return lines


def _importable(module_name: str, name: str, value) -> bool:
    """Whether `from module_name import name` gives `value`."""
    try:
        return getattr(importlib.import_module(module_name), name, None) is value
    except Exception:  # noqa: BLE001 - any failure to import means no
        return False


def _kwarg(key: str, value) -> str:
    """Python text that model.py evaluates to the init kwarg `value`."""
    if isinstance(value, torch.Tensor):
        text = f"torch.tensor({value.detach().cpu().tolist()!r}, dtype={value.dtype})"
    else:
        text = repr(value)
    try:
        eval(text, {"torch": torch, "nn": torch.nn, "os": os})  # noqa: S307 - the caller's own
    except Exception as err:  # noqa: BLE001 - SyntaxError, NameError, ...
        raise ValueError(
            f"python form: init_kwargs[{key!r}] is written into model.py as its repr() "
            f"{text[:80]!r}, which does not evaluate there ({type(err).__name__}: {err}): "
            f"pass values whose repr() is Python (numbers, strings, lists, dicts, tensors), "
            f"or trust_pickle=True to pickle the module instead") from None
    return text


def as_list(out, output_names) -> list[torch.Tensor]:
    """Outputs of any form (tensor, tuple, dict, numpy) as a list in config order."""
    if isinstance(out, dict):
        out = [out[name] for name in output_names]
    elif isinstance(out, (torch.Tensor, np.ndarray)):
        out = [out]
    return [torch.as_tensor(o) for o in out]


def check(form, got, want, names) -> float:
    """Max abs diff of got vs want; ValueError unless dtype, shape and values all match."""
    worst = 0.0
    for name, g, w in zip(names, got, want, strict=True):
        where = f"{form} form, output {name}"
        if g.dtype != w.dtype or g.shape != w.shape:
            raise ValueError(f"{where}: got {g.dtype}{list(g.shape)}, "
                             f"expected {w.dtype}{list(w.shape)}")
        diff = (g.double() - w.double()).abs().max().item() if w.numel() else 0.0
        rtol, atol = TOLERANCES.get(w.dtype, (0.0, 0.0))
        if not torch.allclose(g.double(), w.double(), rtol=rtol, atol=atol):
            raise ValueError(f"{where}: max abs diff {diff:.3g} exceeds rtol={rtol} atol={atol}")
        worst = max(worst, diff)
    return worst


def _examples(example, other):
    """The example, and the one with other sizes on its dynamic axes where there is one."""
    return (example,) if other is None else (example, other)


def _write_python(vdir, model_py, parameters, module, example, in_names, out_names,
                  other=None):
    Path(vdir, "model.py").write_text(model_py)
    # Import it the way an embedded interpreter would: from the file, under a fresh name.
    spec = importlib.util.spec_from_file_location(f"_handler_{Path(vdir).parent.name}",
                                                  Path(vdir, "model.py"))
    handler_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(handler_mod)
    handler = handler_mod.Model(str(vdir), dict(parameters or {}))
    worst = 0.0
    for ex in _examples(example, other):
        got = handler.predict({n: t.clone() for n, t in zip(in_names, ex, strict=True)})
        worst = max(worst, check("python", as_list(got, out_names),
                                 as_list(module(*ex), out_names), out_names))
    return worst


@contextlib.contextmanager
def _branches_refused(advice):
    """Refuses a form made by tracing `forward` when the trace met a tensor turned into a
    Python bool in the model's code: an `if` on data, whose branch the trace fixed to the
    example's, so the form would answer other inputs wrongly (and agree on the example)."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("always", torch.jit.TracerWarning)
        yield
    # torch's own modules test their inputs that way (an RNN's `input.size(-1) !=
    # input_size` raises); a branch in the model's code is what a trace gets wrong.
    torch_dir = os.path.dirname(torch.__file__) + os.sep
    for w in seen:
        if (issubclass(w.category, torch.jit.TracerWarning)
                and "Python boolean" in str(w.message)
                and not w.filename.startswith(torch_dir)):
            raise ValueError(
                f"tracing forward met a branch on a tensor's value at "
                f"{w.filename}:{w.lineno} ({first_line(str(w.message))}); the traced form "
                f"would always take the branch the example took. {advice}")
    for w in seen:  # the others, as torch would have shown them
        if not issubclass(w.category, DeprecationWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _write_torchscript(vdir, module, example, out_names, other=None):
    path = Path(vdir, "model.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated in 2.13
        try:
            scripted = torch.jit.script(module)
        except Exception as err:  # noqa: BLE001 - tracing is the documented fallback
            print(f"    torch.jit.script failed ({type(err).__name__}), tracing instead")
            advice = (f"torch.jit.script failed ({first_line(err)}): make forward scriptable, "
                      f"or leave \"torchscript\" out of bridges")
            try:
                with _branches_refused(advice):
                    scripted = torch.jit.trace(module, example)
            except ValueError:
                raise
            except Exception as trace_err:
                raise ValueError(f"torch.jit.script failed ({first_line(err)}) and "
                                 f"torch.jit.trace failed ({first_line(trace_err)})") from err
        scripted.save(str(path))
        loaded = torch.jit.load(str(path))
    return max(check("torchscript", as_list(loaded(*ex), out_names),
                     as_list(module(*ex), out_names), out_names)
               for ex in _examples(example, other))


def _ort_feed(tensor):
    import onnxruntime as ort

    if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16: hand ORT the raw bits
        bits = tensor.contiguous().view(torch.int16).numpy()
        return ort.OrtValue.ortvalue_from_numpy_with_onnx_type(bits, 16)  # 16 = BFLOAT16
    return ort.OrtValue.ortvalue_from_numpy(tensor.contiguous().numpy())


def _write_onnx(vdir, module, example, in_names, out_names, batched, dynamic_axes=None,
               other=None):
    import onnxruntime as ort

    path = Path(vdir, "model.onnx")
    axes = {name: ({0: "batch"} if batched else {})
            | {a: f"{name}_{a}" for a in (dynamic_axes or {}).get(name, ())}
            for name in in_names + out_names}
    axes = {name: a for name, a in axes.items() if a} or None
    # torch 2.13 still has the legacy (TorchScript-based) exporter behind dynamo=False and
    # warns that it is deprecated. It writes one self-contained file with exactly our
    # input/output names, which is what the onnx bridge wants. It traces forward.
    advice = ("Write the branch with tensor ops (torch.where), or leave \"onnx\" out of "
              "bridges")
    with _branches_refused(advice):
        torch.onnx.export(module, example, str(path), dynamo=False, opset_version=ONNX_OPSET,
                          input_names=in_names, output_names=out_names, dynamic_axes=axes)
    if Path(vdir, "model.onnx.data").exists():
        raise ValueError("onnx form: exporter wrote external data (model.onnx.data)")

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = ([i.name for i in sess.get_inputs()], [o.name for o in sess.get_outputs()])
    if names != (in_names, out_names):
        raise ValueError(f"onnx form: graph names {names} != config {(in_names, out_names)}")
    # Batch 1 and the full example both go through the dynamic batch axis.
    worst = 0.0
    runs = ([t[:1] for t in example], example) if batched else (example,)
    for ex in runs + (() if other is None else (other,)):
        feed = {n: _ort_feed(t) for n, t in zip(in_names, ex, strict=True)}
        got = sess.run_with_ort_values(out_names, feed)
        got = [torch.from_numpy(v.numpy()) for v in got]
        form = f"onnx (shapes {[list(t.shape) for t in ex]})"
        worst = max(worst, check(form, got, as_list(module(*ex), out_names), out_names))
    return worst


def _write_pt2(vdir, module, example, out_names, max_batch_size):
    path = Path(vdir, "model.pt2")
    dynamic = None
    if max_batch_size > 1:
        batch = torch.export.Dim("batch", min=1, max=max_batch_size)
        dynamic = tuple({0: batch} for _ in example)
    torch.export.save(torch.export.export(module, example, dynamic_shapes=dynamic), str(path))
    loaded = torch.export.load(str(path)).module()
    return check("pt2", as_list(loaded(*example), out_names),
                 as_list(module(*example), out_names), out_names)


def write_model(repo, name, module, example, *, inputs, outputs, max_batch_size, forms,
                backend, model_py=None, parameters=None, best_effort=(), **top) -> list[str]:
    """Write <repo>/<name>/ (replacing it, as version 1) and return the forms written.

    example: tuple of tensors, batch-first when max_batch_size > 0, in config input order.
    best_effort: forms whose export/check failure is reported and dropped instead of raised.
    top: extra top-level config keys (e.g. trust_pickle=True).
    """
    assert len(example) == len(inputs), "one example tensor per input spec"
    model_dir = Path(repo, name)
    shutil.rmtree(model_dir, ignore_errors=True)
    model_dir.mkdir(parents=True)
    write_config(model_dir, backend, max_batch_size, inputs, outputs, parameters, **top)
    diffs = write_version(model_dir / "1", module, example, [s[0] for s in inputs],
                          [s[0] for s in outputs], forms=forms, max_batch_size=max_batch_size,
                          model_py=model_py, parameters=parameters, best_effort=best_effort)
    return list(diffs)


def write_version(vdir, module, example, in_names, out_names, *, forms, max_batch_size,
                  model_py=None, parameters=None, best_effort=(), dynamic_axes=None,
                  other_example=None) -> dict[str, float]:
    """Write the asked forms into `vdir` (a new directory, or an empty one the caller
    made) and check each against `module`.

    dynamic_axes: {tensor name: [axis, ...]} that vary beyond the batch (the onnx form
    declares them); other_example: the example with other sizes on those axes, which
    every form is checked on too.
    Returns {form: max abs diff} for the forms written (best-effort failures dropped).
    """
    assert set(forms) <= set(FORMS), f"unknown form in {forms}"
    assert "python" not in forms or model_py, "the python form needs model_py"
    module = module.eval()
    vdir = Path(vdir)
    vdir.mkdir(parents=True, exist_ok=True)
    torch.save(module.state_dict(), vdir / "state_dict.pt")
    name = vdir.parent.name
    written, report = {}, []
    for form in forms:
        try:
            with torch.no_grad():
                if form == "python":
                    diff = _write_python(vdir, model_py, parameters, module, example, in_names,
                                         out_names, other_example)
                elif form == "torchscript":
                    diff = _write_torchscript(vdir, module, example, out_names, other_example)
                elif form == "onnx":
                    diff = _write_onnx(vdir, module, example, in_names, out_names,
                                       max_batch_size > 0, dynamic_axes, other_example)
                else:
                    diff = _write_pt2(vdir, module, example, out_names, max_batch_size)
        except Exception as err:
            if form not in best_effort:
                raise ValueError(f"{name}: {form} form failed: {first_line(err)}") from err
            report.append(f"{form} SKIPPED ({first_line(err)[:120]})")
            for path in vdir.glob(FILES[form] + "*"):  # also a stray model.onnx.data
                path.unlink()
            continue
        written[form] = diff
        report.append(f"{form} {diff:.2g}")
    # One line per model: each form and its max abs diff against the eager module.
    print(f"{name}: max abs diff vs eager: " + ", ".join(report))
    return written


def first_line(err: BaseException) -> str:
    """The first non-empty line of an exception's message, else its type's name."""
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[0].strip() if lines else type(err).__name__
