"""The Python half of torchbridge's python bridge (embedded in the Rust crate).

Rust calls three things here: `use_venv` (once per virtualenv), `load` (once per model
instance, returns a `Runner`) and `Runner.run` (once per batch). Keeping this glue in
Python keeps the Rust side to a handful of calls, and lets torch's own functions do the
conversions (`torch.frombuffer` over Rust memory, `.numpy()` for the way back).

torch is imported lazily: this module is created before the virtualenv that holds torch
is on sys.path.
"""

import builtins
import contextlib
import importlib.machinery
import importlib.util
import inspect
import json
import os
import site
import struct
import sys
import threading
import time
import types
import warnings
import weakref
import zipfile

# Inputs are read-only views of Rust memory; torch warns that it cannot mark a tensor
# read-only. Models must not write to their inputs (the bridge documents this).
warnings.filterwarnings("ignore", message="The given buffer is not writable", category=UserWarning)


class BridgeError(Exception):
    """The model (or its file) does not fit what the bridge and the config expect. Rust
    reports it as a load or inference error, not as an exception of the model's code."""


_venvs = []


def use_venv(venv, site_packages):
    """Puts a virtualenv's site-packages (and its .pth files) on sys.path.

    The interpreter was started as the first virtualenv's python, so that one is already
    there, ahead of the rest. One process holds one interpreter: another model's
    virtualenv is appended, so its packages fill in; they do not replace packages
    found (or imported) earlier. Returns whether sys.path changed.
    """
    venv, site_packages = os.fspath(venv), os.fspath(site_packages)
    if venv not in _venvs:
        _venvs.append(venv)
    if site_packages in sys.path:
        return False
    site.addsitedir(site_packages)
    return True


def interpreter():
    """The interpreter, as an import error names it."""
    return (f"Python {sys.version.split()[0]} ({sys.executable}, sys.prefix {sys.prefix}); "
            f"virtualenvs used: {_venvs or 'none'}; sys.path = {sys.path}")


def torch_version():
    import torch

    return torch.__version__


def format_exception(exc):
    import traceback

    return "".join(traceback.format_exception(exc))


def load(form, path, model_dir, module_name, config_json, trust_pickle, device, threads,
         inputs, outputs):
    """Loads one instance of a model and wraps it in a Runner.

    form: "handler" (model.py), "torchscript" (model.pt) or "exported" (model.pt2).
    inputs, outputs: [(name, datatype)] from the config, in order.
    """
    import torch

    path, model_dir = os.fspath(path), os.fspath(model_dir)
    _check_device(torch, device)
    if form == "handler":
        model, scope = _load_handler(path, model_dir, module_name, json.loads(config_json))
        try:
            if isinstance(model, torch.nn.Module):
                model.to(device).eval()
            runner = Runner(torch, model, True, inputs, outputs, device, threads)
        except BaseException:
            scope.forget()
            raise
        weakref.finalize(runner, scope.forget)
        return runner
    elif form == "torchscript":
        model = _load_torchscript(torch, path, model_dir, trust_pickle, device).eval()
    elif form == "exported":
        program = torch.export.load(path)
        if device != "cpu":
            from torch.export.passes import move_to_device_pass

            program = move_to_device_pass(program, device)
        # An exported graph keeps the train/eval mode it was traced in; its module
        # refuses .eval(). Export from a module in eval mode.
        model = program.module()
    else:
        raise BridgeError(f"unknown model form {form!r}")
    return Runner(torch, model, form == "handler", inputs, outputs, device, threads)


def _check_device(torch, device):
    if device == "cpu":
        return
    index = int(device.partition(":")[2] or 0)
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if index >= count:
        raise BridgeError(f"device `{device}` is not available: torch sees {count} CUDA device(s)")


def _load_handler(path, model_dir, module_name, config):
    """The handler's `Model` instance, and the scope its modules live in."""
    scope = _ModelScope(os.path.realpath(model_dir), module_name)
    path = os.path.join(scope.directory, os.path.basename(path))
    stem = os.path.splitext(os.path.basename(path))[0]
    # Named inside the scope's package: `from . import helpers` works in it, and a
    # sibling's `import model` (or a pickle naming `model.Net`) finds this very module.
    name = f"{scope.package}.{stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        with scope.loading():
            spec.loader.exec_module(module)
            cls = getattr(module, "Model", None)
            if not isinstance(cls, type):
                raise BridgeError(f"{path} defines no class `Model`")
            _check_takes(cls, (model_dir, config), f"{path}: `Model(model_dir, config)`")
            model = cls(model_dir, config)
        predict = getattr(model, "predict", None)
        if not callable(predict):
            raise BridgeError(f"{path}: `Model` has no method `predict(inputs)`")
        if inspect.iscoroutinefunction(predict):
            raise BridgeError(
                f"{path}: `Model.predict` is `async def`; the bridge calls it on a thread of "
                f"its own, with no event loop: make it a plain `def` (asyncio.run inside it "
                f"if it must await)")
        _check_takes(predict, ({},), f"{path}: `Model.predict(inputs)`")
    except BaseException:
        scope.forget()
        raise
    return model, scope


def _check_takes(fn, args, what):
    """Refuses at load a handler whose `fn` cannot be called with `args` (as it will be),
    rather than failing each request with Python's bare TypeError."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # no signature to read (a builtin): let it run
        return
    try:
        signature.bind(*args)
    except TypeError as e:
        raise BridgeError(f"{what} cannot be called so: its signature is {signature} ({e})") \
            from None


_scopes = {}  # a scope's package name: the scope
_loading = threading.local()  # .scope: the scope whose model this thread is loading
_ALIASES = threading.Condition()
_aliases = {}  # a plain module name: (the scope holding it, the process's modules)
# A load that wants a plain name another load holds waits for that load to end.
ALIAS_WAIT_S = 600


def _namespace_folder(entry):
    """A folder of .py files without __init__.py (a namespace package), unless the process
    has a module of that name: then, as on sys.path, that one wins (a data folder named
    like a library must not hide it)."""
    if not entry.is_dir() or not entry.name.isidentifier():
        return False
    if not any(f.endswith(".py") for f in os.listdir(entry.path)):
        return False
    try:
        return importlib.util.find_spec(entry.name) is None
    except (ImportError, ValueError):
        return False


def _keys_under(top):
    """The sys.modules keys of module `top` and its submodules (a copy: other threads
    import meanwhile)."""
    return [k for k in list(sys.modules) if k == top or k.startswith(top + ".")]


class _ModelScope:
    """The modules a model's directory holds beside model.py (`helpers.py`, packages),
    kept apart from every other model's and from the process's own.

    One interpreter serves every python model, and Python caches imports by name in
    sys.modules: two models (or two versions of one) that each `import helpers` would
    otherwise share whichever loaded first, and run the wrong code without a word. So
    each load's files live under a package of its own (`<model module>_files`): model.py
    is `<package>.model`, and an import of a name its directory defines, from any of its
    files, at load or at call time, resolves to `<package>.<name>`. sys.modules is never
    swapped, so models load and run side by side.

    A pickle names modules plainly (`torch.load` of a whole module records `helpers.Net`,
    or `model.Net`). While a model loads (model.py runs, then `Model(...)`), such an
    import of one of its names on the loading thread makes the plain name stand for the
    model's module until the load ends (so does importlib.import_module of one of its
    names); another load wanting the same name meanwhile waits for that load to end,
    instances of one model too (each has its own classes).
    At unload (the Runner freed) the load's modules leave sys.modules and can be freed.
    """

    def __init__(self, directory, module_name):
        self.directory = directory
        self.names = {
            entry.name[:-3] if entry.name.endswith(".py") else entry.name
            for entry in os.scandir(directory)
            if not entry.name.startswith(".")
            and (entry.name.endswith(".py")
                 or os.path.isfile(os.path.join(entry.path, "__init__.py"))
                 or _namespace_folder(entry))
        }
        self.package = f"{module_name}_files"
        self.aliased = []  # plain names this load holds
        package = types.ModuleType(self.package)
        package.__path__ = [directory]
        package.__spec__ = importlib.machinery.ModuleSpec(self.package, None, is_package=True)
        package.__spec__.submodule_search_locations = [directory]
        sys.modules[self.package] = package
        _scopes[self.package] = self
        if builtins.__import__ is not _scoped_import:
            global _process_import
            _process_import = builtins.__import__
            builtins.__import__ = _scoped_import
            sys.meta_path.insert(0, _PlainNameFinder)

    @staticmethod
    def around(importer_globals):
        """The scope of the model whose file does an import, if any."""
        name = importer_globals.get("__name__") if importer_globals else None
        if not isinstance(name, str):
            return None
        return _scopes.get(name.partition(".")[0])

    def owns(self, name):
        return name.partition(".")[0] in self.names

    def resolve(self, name, fromlist):
        """`import name` (or `from name import ...`) of one of the model's files."""
        module = _process_import(f"{self.package}.{name}", None, None, fromlist, 0)
        # `import a.b` binds `a`.
        return module if fromlist else sys.modules[f"{self.package}.{name.partition('.')[0]}"]

    @contextlib.contextmanager
    def loading(self):
        _loading.scope = self
        try:
            yield
        finally:
            _loading.scope = None
            self._release_aliases()

    def alias(self, name, fromlist):
        """`import name` by its plain name while this model loads on this thread (a pickle
        names modules so): the model's module, which the plain name stands for until the
        load ends."""
        module = self.resolve(name, fromlist)
        top = name.partition(".")[0]
        with _ALIASES:
            if top not in self.aliased:
                free = lambda: top not in _aliases  # noqa: E731
                if not _ALIASES.wait_for(free, ALIAS_WAIT_S):
                    raise ImportError(
                        f"`{name}`: loading {self.directory} imports its `{top}` by that plain "
                        f"name (a pickle does), and the load of {_aliases[top][0].directory} "
                        f"has held the name for over {ALIAS_WAIT_S} s; load the two one at a "
                        f"time (--model-load-threads 1)", name=name)
                theirs = {k: sys.modules.pop(k) for k in _keys_under(top)}
                _aliases[top] = (self, theirs)
                self.aliased.append(top)
            prefix = f"{self.package}."
            for key in _keys_under(prefix + top):
                sys.modules[key[len(prefix):]] = sys.modules[key]
        return module

    def _release_aliases(self):
        with _ALIASES:
            for top in self.aliased:
                _, theirs = _aliases.pop(top)
                for key in _keys_under(top):
                    del sys.modules[key]
                sys.modules.update(theirs)
            self.aliased = []
            _ALIASES.notify_all()

    def forget(self):
        """Drops the load's modules from sys.modules, so that they, and what their
        globals hold (weights loaded at import), can be freed."""
        for key in _keys_under(self.package):
            sys.modules.pop(key, None)
        _scopes.pop(self.package, None)
        # Not gc.collect() here: a Runner is freed on an instance thread, maybe while the
        # process exits, and collecting torch objects then crashed it. The cycles a
        # module's functions and globals make go at Python's next full collection.


class _PlainNameFinder:
    """On sys.meta_path: while a model loads on this thread, an import of one of its names
    that does not pass through `import` (importlib.import_module("helpers")) finds the
    model's module, as `import helpers` does."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        scope = getattr(_loading, "scope", None)
        if scope is None or path is not None or "." in name or not scope.owns(name):
            return None
        return importlib.util.spec_from_loader(name, _PlainNameLoader(scope))


class _PlainNameLoader:
    def __init__(self, scope):
        self.scope = scope

    def create_module(self, spec):
        return self.scope.alias(spec.name, ())

    def exec_module(self, module):
        pass  # run once already, under the scope's package


_process_import = builtins.__import__


def _scoped_import(name, globals=None, locals=None, fromlist=(), level=0):
    """`import` everywhere once a handler is loaded: as Python's own, except that a
    model's files import what lies beside them (see _ModelScope)."""
    scope = _ModelScope.around(globals)
    if level == 0 and scope is not None and scope.owns(name):
        # C's PyImport_Import (how the C unpickler, pickle.load called from the model's
        # code, imports) passes an empty list, which no import statement does; it then
        # looks the plain name up in sys.modules. While loading, give it the plain name.
        if type(fromlist) is list and scope is getattr(_loading, "scope", None):
            return scope.alias(name, fromlist)
        return scope.resolve(name, fromlist)
    if level == 0 and scope is None:
        loading = getattr(_loading, "scope", None)
        if loading is not None and loading.owns(name):
            return loading.alias(name, fromlist)
    return _process_import(name, globals, locals, fromlist, level)


@contextlib.contextmanager
def _on_sys_path(directory):
    """The version directory is on sys.path only while the model's pickle loads."""
    sys.path.insert(0, directory)
    try:
        yield
    finally:
        if directory in sys.path:
            sys.path.remove(directory)


def _load_torchscript(torch, path, model_dir, trust_pickle, device):
    try:
        return torch.jit.load(path, map_location=device)
    except RuntimeError:
        if not _is_pickle(path):
            raise
    if not trust_pickle:
        raise BridgeError(
            f"{path} is not TorchScript: it is a pickled object written by torch.save. "
            "Loading a pickle runs arbitrary code from the file; set `trust_pickle = true` "
            "in config.toml only if you trust this file, or save the model with "
            "torch.jit.script/trace (or torch.export to model.pt2)")
    with _on_sys_path(model_dir):
        model = torch.load(path, weights_only=False, map_location=device)
    if not isinstance(model, torch.nn.Module):
        raise BridgeError(f"{path} holds a pickled {type(model).__name__}, not a whole "
                          "nn.Module (a state_dict needs a model.py handler to build the module)")
    return model


def _is_pickle(path):
    """torch.save's zip holds data.pkl but, unlike TorchScript, no constants.pkl."""
    if not zipfile.is_zipfile(path):
        return True  # torch.save's legacy (pre-zip) format
    names = [n.rsplit("/", 1)[-1] for n in zipfile.ZipFile(path).namelist()]
    return "data.pkl" in names and "constants.pkl" not in names


DTYPES = {
    "BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32",
    "UINT64": "uint64", "INT8": "int8", "INT16": "int16", "INT32": "int32",
    "INT64": "int64", "FP16": "float16", "FP32": "float32", "FP64": "float64",
    "BF16": "bfloat16",
}


class Runner:
    """One loaded model instance and the declared tensors it is called with."""

    def __init__(self, torch, model, is_handler, inputs, outputs, device, threads):
        self.torch = torch
        self.model = model
        self.is_handler = is_handler
        self.inputs = [(name, None if dt == "BYTES" else getattr(torch, DTYPES[dt]))
                       for name, dt in inputs]
        self.outputs = outputs
        self.datatypes = {getattr(torch, t): dt for dt, t in DTYPES.items()}
        self.device = device
        self.threads = threads

    def run(self, inputs):
        """inputs: [(data, shape, aligned)] in config order; data is an InputBuffer over
        the Rust bytes (None when empty), or a list of bytes for BYTES.
        Returns, in config order, a numpy array over each output's contiguous CPU
        memory (int16 bits for BF16, which numpy lacks), or (bytes, shape) for BYTES."""
        torch = self.torch
        clock = time.perf_counter_ns
        begin = clock()
        # torch's intra-op thread count is process-wide: re-apply this model's.
        if self.threads and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            tensors = [self._input(dtype, *given) for given, (_, dtype) in zip(inputs, self.inputs)]
            ready = clock()
            if self.is_handler:
                result = self.model.predict(
                    {name: t for (name, _), t in zip(self.inputs, tensors)})
                values = self._by_name(result, "predict() returned")
            else:
                values = self._module_outputs(self.model(*tensors))
            done = clock()
            outputs = [self._output(name, dt, v) for (name, dt), v in zip(self.outputs, values)]
        # Nanoseconds converting inputs, in the model, converting outputs (read by Rust).
        self.timing = (ready - begin, done - ready, clock() - done)
        return outputs

    def _input(self, dtype, data, shape, aligned):
        if dtype is None:  # BYTES: a numpy object array of bytes
            import numpy as np

            array = np.empty(len(data), dtype=object)
            array[:] = data
            return array.reshape(shape)
        torch = self.torch
        if data is None:
            tensor = torch.empty(shape, dtype=dtype)
        elif aligned:
            tensor = torch.frombuffer(data, dtype=dtype).view(shape)  # a view, no copy
        else:  # torch kernels need aligned elements: copy this one
            tensor = torch.frombuffer(data, dtype=torch.uint8).clone().view(dtype).view(shape)
        return tensor if self.device == "cpu" else tensor.to(self.device)

    def _module_outputs(self, result):
        torch = self.torch
        if isinstance(result, torch.Tensor) or type(result).__name__ == "ndarray":
            result = [result]
        if isinstance(result, dict):
            return self._by_name(result, "the module returned")
        if not isinstance(result, (list, tuple)):
            raise BridgeError(f"the module returned {type(result).__name__}; expected a "
                              "tensor, a tuple or list of tensors, or a dict of str to tensor")
        if len(result) != len(self.outputs):
            names = ", ".join(f"`{n}`" for n, _ in self.outputs)
            raise BridgeError(f"the module returned {len(result)} value(s), but the config "
                              f"declares {len(self.outputs)} output(s) ({names})")
        return result

    def _by_name(self, result, what):
        if not isinstance(result, dict):
            raise BridgeError(f"{what} {type(result).__name__}, not a dict of output name to tensor")
        missing = [name for name, _ in self.outputs if name not in result]
        if missing:
            keys = ", ".join(f"`{k}`" for k in result)
            raise BridgeError(f"{what} no output `{missing[0]}` (its keys: {keys or 'none'})")
        return [result[name] for name, _ in self.outputs]

    def _output(self, name, datatype, value):
        if datatype == "BYTES":
            return _strings_output(name, value)
        torch = self.torch
        if not isinstance(value, torch.Tensor):
            if type(value).__name__ == "ndarray" and not _plain(value):
                # torch takes no negative strides (`a[:, ::-1]`) or foreign byte order.
                import numpy as np
                value = np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("="))
            try:
                value = torch.as_tensor(value)
            except (TypeError, ValueError, RuntimeError) as e:
                raise BridgeError(f"output `{name}` is {type(value).__name__}, "
                                  f"not a tensor or numpy array ({e})") from None
        got = self.datatypes.get(value.dtype)
        if got != datatype:
            raise BridgeError(f"output `{name}` is declared {datatype} but the model returned "
                              f"{value.dtype}" + (f" ({got})" if got else ""))
        # Each step is skipped when it would be a no-op (they cost a microsecond each).
        if value.requires_grad:
            value = value.detach()
        if not value.is_cpu:
            value = value.cpu()
        if value.layout != torch.strided:
            value = value.to_dense()
        if not value.is_contiguous():
            value = value.contiguous()
        if datatype == "BF16":
            value = value.view(torch.int16)
        if value.dim() == 0:
            # A 0-d array exports no shape through the buffer protocol: one element
            # and its (empty) shape instead.
            return value.reshape(1).numpy(), []
        return value.numpy()


def _plain(array):
    """Whether torch can take the numpy array as it is: native byte order, no negative
    stride."""
    return array.dtype.byteorder in "=|" and all(stride >= 0 for stride in array.strides)


def _strings_output(name, value):
    """A BYTES output from a list (nested for more dims) or array of bytes or str,
    laid out as the protocol wants: a little-endian u32 length before each element."""
    import numpy as np

    if hasattr(value, "detach"):
        raise BridgeError(f"output `{name}` is declared BYTES but the model returned a tensor")
    array = np.asarray(value, dtype=object)
    parts = []
    for item in array.reshape(-1):
        if isinstance(item, str):
            item = item.encode()
        elif isinstance(item, (bytes, bytearray, memoryview, np.bytes_)):
            item = bytes(item)
        else:
            raise BridgeError(f"output `{name}` is declared BYTES but holds a "
                              f"{type(item).__name__}; return bytes or str elements")
        parts.append(struct.pack("<I", len(item)))
        parts.append(item)
    return b"".join(parts), list(array.shape)
