"""`torchbridge.serve` and `torchbridge.Server`: a Python callable (a function or an
`nn.Module`) served over KServe v2 HTTP and gRPC by torchbridge's Rust server, inside
this interpreter.

The server, the batching scheduler and every (de)serialisation run in Rust, without the
GIL; the GIL is taken only to call the callable, once per batch. It is the server of
`torchbridge serve`, so tritonclient, perf_analyzer and curl work against it unchanged.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from torchbridge import _native
from torchbridge._repo import check_labels, check_model_name, tensor_entries

DATATYPES = ("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
             "FP16", "FP32", "FP64", "BF16", "BYTES")

TensorDecl = tuple[str, str, Sequence[int]]
"""(name, datatype, dims): dims without the batch dimension when max_batch_size > 0;
-1 for a dimension of any size."""


class Server:
    """Serves `fn` in the background until `stop()` or the end of a `with` block.

        with torchbridge.Server(net, name="net", inputs=[("INPUT0", "FP32", [4])],
                                outputs=[("OUTPUT0", "FP32", [3])], http_port=0) as server:
            ...  # KServe v2 at server.url (HTTP) and server.grpc_address (gRPC)

    `fn` is called with the batch's input tensors as positional arguments, in the order
    of `inputs` (each a torch tensor on the CPU, batch dimension first when
    max_batch_size > 0; BYTES inputs as numpy object arrays of bytes), under
    `torch.inference_mode()`. It returns one tensor (when one output is declared), a
    tuple or list in the order of `outputs`, or a dict of output name to value; values
    are torch tensors or numpy arrays of the declared datatype, with the batch's rows.
    An `nn.Module` is put in eval mode while served; `stop()` gives each of its
    submodules its own mode back. Inputs are read-only views of request memory: do not
    modify them in place.

    A call that raises, or returns the wrong names, datatypes or shapes, fails every
    request batched with it: all the requests whose rows that call was given (HTTP 500 /
    gRPC INTERNAL, with the reason), not only the one whose rows caused it; the server
    stays up. With max_queue_delay_us=None each call is one request's.

    max_batch_size: 0 for a model without a batch dimension; else requests carry a
    batch dimension of up to this many rows, and concurrent ones are joined into one
    call (dynamic batching: the oldest waits at most max_queue_delay_us for companions;
    max_queue_delay_us=None runs each request on its own). preferred_batch_sizes: a
    group of exactly this many rows goes at once. instances: parallel callers of `fn`
    (threads; they share the GIL, which torch releases inside its ops).
    http_port, grpc_port: 0 picks a free port (read back from the attributes).
    idle_poll_us: keep the CPUs awake this long after each request (lowest-priority
    spinning threads, one per CPU) so the next one does not wait for a sleeping CPU to
    wake; costs CPU time; 0 (the default) is off. See `serve --idle-poll-us`.
    allow_client_shm: let clients on this host pass tensors through system shared memory
    (Triton's extension; see `serve --allow-client-shm`). Off by default: any client
    that reaches the server could read and write this user's shared-memory objects.
    labels: class names of outputs, {output name: [name of class 0, 1, ...]}: an output
    asked for as its top classes (tritonclient's `class_count`) names them.
    log: a filter for the server's log on stderr ("warn", "info", ...); the first
    server of the process sets it; None leaves it off.
    trace_file: where request traces go (Triton's trace extension, JSON trace format;
    see `serve --trace-file`): with it, clients turn tracing on and off
    (tritonclient's `update_trace_settings`); traces are written when the server stops.
    None (the default): tracing cannot be turned on.
    auth_tokens: bearer tokens, any of which a client must send (`authorization: Bearer
    <token>` over HTTP and gRPC; see `serve --auth-token-file`); health routes too unless
    auth_allow_health. None (the default): no token is asked for. Set it before binding
    host to anything but the loopback address: a served model is code anyone who
    reaches the port can run.
    tls_cert, tls_key: PEM files to serve HTTP and gRPC over TLS (both or neither);
    tls_client_ca: then every client must present a certificate signed by this CA.
    """

    def __init__(self, fn: Callable[..., Any], name: str = "model", *,
                 inputs: Sequence[TensorDecl], outputs: Sequence[TensorDecl],
                 max_batch_size: int = 64, max_queue_delay_us: int | None = 500,
                 preferred_batch_sizes: Sequence[int] | None = None, instances: int = 1,
                 http_port: int = 8000, grpc_port: int = 8001, host: str = "127.0.0.1",
                 request_timeout_ms: int = 60_000, idle_poll_us: int = 0,
                 allow_client_shm: bool = False, log: str | None = "warn",
                 labels: Mapping[str, Sequence[str]] | None = None,
                 trace_file: str | os.PathLike[str] | None = None,
                 auth_tokens: Sequence[str] | None = None, auth_allow_health: bool = False,
                 tls_cert: str | os.PathLike[str] | None = None,
                 tls_key: str | os.PathLike[str] | None = None,
                 tls_client_ca: str | os.PathLike[str] | None = None) -> None:
        if not callable(fn):
            raise TypeError(f"fn must be callable (a function or an nn.Module), "
                            f"got {type(fn).__name__}")
        check_model_name(name)
        inputs = _check_tensors("inputs", inputs)
        outputs = _check_tensors("outputs", outputs)
        check_labels(labels, [o[0] for o in outputs])
        _check_int("max_batch_size", max_batch_size, 0)
        _check_int("instances", instances, 1)
        _check_int("request_timeout_ms", request_timeout_ms, 1)
        _check_int("idle_poll_us", idle_poll_us, 0)
        if not isinstance(allow_client_shm, bool):
            raise TypeError(f"allow_client_shm must be True or False, "
                            f"got {type(allow_client_shm).__name__}")
        for key, port in (("http_port", http_port), ("grpc_port", grpc_port)):
            _check_int(key, port, 0, 65535)
        trace_path = _check_trace_file(trace_file)
        tokens = _check_auth(auth_tokens, auth_allow_health)
        tls = _check_tls(tls_cert, tls_key, tls_client_ca)
        batching = _batching(max_batch_size, max_queue_delay_us, preferred_batch_sizes)
        # Served in eval mode; stop() gives each submodule its own mode back (a training
        # loop that serves between epochs trains on with dropout and batch statistics).
        self._modes = [(m, m.training) for m in fn.modules()] \
            if isinstance(fn, torch.nn.Module) else []
        if isinstance(fn, torch.nn.Module):
            fn.eval()

        self._name = name
        self._repository = Path(tempfile.mkdtemp(prefix="torchbridge-serve-"))
        # The one-model repository the server reads its config from; gone when this
        # object is (or at exit), whether or not stop() was called.
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._repository, True)
        try:
            model_dir = self._repository / name
            (model_dir / "1").mkdir(parents=True)
            (model_dir / "config.toml").write_text(
                _config(model_dir, max_batch_size, instances, inputs, outputs, batching,
                        labels))
            if log:
                _native.init_logging(log)
            versions = [("torch", torch.__version__)]
            self._native = _native.Server(fn, os.fspath(self._repository), name, host,
                                          http_port, grpc_port, versions, request_timeout_ms,
                                          idle_poll_us, allow_client_shm, trace_path,
                                          tokens, auth_allow_health, tls)
            _RUNNING.add(self)
        except BaseException:
            self._cleanup()
            self._restore_modes()
            raise

    @property
    def name(self) -> str:
        """The model's name in the server's routes (/v2/models/<name>/...)."""
        return self._name

    @property
    def host(self) -> str:
        return self._native.host

    @property
    def http_port(self) -> int:
        return self._native.http_port

    @property
    def grpc_port(self) -> int:
        return self._native.grpc_port

    @property
    def url(self) -> str:
        """The HTTP base URL, e.g. http://127.0.0.1:8000."""
        return f"http://{self.http_address}"

    @property
    def http_address(self) -> str:
        """host:port of HTTP, as tritonclient.http takes it."""
        return f"{_bracketed(self.host)}:{self.http_port}"

    @property
    def grpc_address(self) -> str:
        """host:port of gRPC, as tritonclient.grpc takes it."""
        return f"{_bracketed(self.host)}:{self.grpc_port}"

    @property
    def running(self) -> bool:
        return self._native.running

    def wait(self, timeout: float | None = None) -> bool:
        """Blocks until the server stops or `timeout` seconds pass (None: no limit), with
        the GIL released; ctrl-c raises KeyboardInterrupt. Returns whether it stopped."""
        return self._native.wait(timeout)

    def stop(self) -> None:
        """Stops admission, lets the requests in flight finish, joins the server's
        threads and frees the ports; an `nn.Module` gets its submodules' training modes
        back. Calling it again does nothing. From inside the served callable it raises
        RuntimeError: it would wait for that very call to end."""
        if _native.on_instance_thread():
            raise RuntimeError(
                "stop() was called from inside the served callable: it would wait for that "
                "very call to end; stop the server from another thread (for instance "
                "threading.Thread(target=server.stop).start())")
        try:
            self._native.stop()
        finally:
            _RUNNING.discard(self)
            self._cleanup()
            self._restore_modes()

    def _restore_modes(self) -> None:
        """Once: modes set after stop() are the caller's."""
        modes, self._modes = self._modes, []
        for module, training in modes:
            module.training = training

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (f"Server(name={self._name!r}, http={self.http_address!r}, "
                f"grpc={self.grpc_address!r}, {state})")


# The servers not stopped yet, for the exit hook.
_RUNNING: weakref.WeakSet[Server] = weakref.WeakSet()


@atexit.register
def _at_exit() -> None:
    """Before the interpreter finalizes: stops the servers still running, then closes the
    interpreter to torchbridge's threads, waiting for the calls in flight. A thread of
    theirs that attached to a finalizing interpreter would be ended mid-frame, and the
    process abort ("terminate called without an active exception")."""
    for server in list(_RUNNING):
        with contextlib.suppress(Exception):
            server.stop()
    if not _native.close_for_exit(10.0):
        print("torchbridge: a call into a model was still running 10 s into the "
              "interpreter's exit; exiting anyway", file=sys.stderr)


def serve(fn: Callable[..., Any], name: str = "model", **kwargs: Any) -> None:
    """Serves `fn` (see `Server`, which takes the same arguments) until ctrl-c, then
    lets the requests in flight finish and returns. HTTP on 8000 and gRPC on 8001 by
    default, on 127.0.0.1 (host="0.0.0.0" for every interface)."""
    with _sigterm_interrupts(), Server(fn, name, **kwargs) as server:
        # The announcement is inside the try: a ctrl-c that comes as soon as it is out
        # (before wait() is reached) stops the server the same way.
        try:
            print(f"torchbridge: serving `{name}` over HTTP at {server.url} and gRPC at "
                  f"{server.grpc_address}; ctrl-c stops", flush=True)
            server.wait()
        except KeyboardInterrupt:
            print("torchbridge: stopping (finishing the requests in flight)", flush=True)
            # A second ctrl-c (or SIGTERM) while the requests in flight finish is ignored:
            # stopping halfway would drop them and leave the temporary repository.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("torchbridge: stopped", flush=True)


@contextlib.contextmanager
def _sigterm_interrupts():
    """SIGTERM (a process manager's stop) stops `serve` as ctrl-c does; the handlers
    in place before are put back after. Signals can only be handled on the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _config(model_dir: Path, max_batch_size: int, instances: int, inputs: list,
            outputs: list, batching: str, labels: Mapping[str, Sequence[str]] | None) -> str:
    lines = ['backend = "python"', f"max_batch_size = {max_batch_size}",
             f"instances = {instances}"]
    lines += tensor_entries(model_dir, inputs, outputs, labels)
    if batching:
        lines += ["", "[batching]", batching]
    return "\n".join(lines) + "\n"


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _check_auth(tokens: object, allow_health: object) -> list[str] | None:
    if not isinstance(allow_health, bool):
        raise TypeError(f"auth_allow_health must be True or False, "
                        f"got {type(allow_health).__name__}")
    if tokens is None:
        if allow_health:
            raise ValueError("auth_allow_health=True needs auth_tokens")
        return None
    if isinstance(tokens, (str, bytes)) or not isinstance(tokens, Sequence):
        raise TypeError(f"auth_tokens must be a list of strings (the tokens), "
                        f"got {type(tokens).__name__}")
    for i, token in enumerate(tokens):
        if not isinstance(token, str):
            raise TypeError(f"auth_tokens[{i}] must be a string, got {type(token).__name__}")
        if not token:
            raise ValueError(f"auth_tokens[{i}] is empty")
        if not all("!" <= c <= "~" for c in token):
            raise ValueError(f"auth_tokens[{i}] has a space or a non-ASCII character; tokens "
                             f"are sent in a header, so use printable ASCII")
    return list(tokens)


def _check_tls(cert: object, key: object,
               client_ca: object) -> tuple[str, str, str | None] | None:
    for key_name, value in (("tls_cert", cert), ("tls_key", key), ("tls_client_ca", client_ca)):
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise TypeError(f"{key_name} must be a path or None, got {type(value).__name__}")
    if (cert is None) != (key is None):
        raise ValueError("tls_cert and tls_key go together: give both (a PEM certificate "
                         "chain and its private key) or neither")
    if cert is None:
        if client_ca is not None:
            raise ValueError("tls_client_ca needs tls_cert and tls_key")
        return None
    return (os.fspath(cert), os.fspath(key),  # type: ignore[arg-type]
            None if client_ca is None else os.fspath(client_ca))  # type: ignore[arg-type]


def _check_trace_file(trace_file: object) -> str | None:
    if trace_file is None:
        return None
    if not isinstance(trace_file, (str, os.PathLike)):
        raise TypeError(f"trace_file must be a path or None, got {type(trace_file).__name__}")
    path = Path(trace_file)
    if not path.parent.is_dir():
        raise ValueError(f"trace_file {os.fspath(path)!r}: the directory {os.fspath(path.parent)!r}"
                         f" does not exist")
    return os.fspath(path)


def _check_int(key: str, value: object, low: int, high: int | None = None) -> None:
    if (not isinstance(value, int) or isinstance(value, bool) or value < low
            or (high is not None and value > high)):
        bounds = f">= {low}" if high is None else f"in {low}..{high}"
        raise ValueError(f"{key} must be an integer {bounds}, got {value!r}")


def _check_tensors(key: str, specs: object) -> list[tuple[str, str, list[int]]]:
    form = f"{key} must be a non-empty list of (name, datatype, dims) tuples, e.g. " \
           f"[(\"INPUT0\", \"FP32\", [4])]"
    if isinstance(specs, (str, bytes)) or not isinstance(specs, Sequence) or not specs:
        raise ValueError(f"{form}; got {specs!r}")
    checked, seen = [], set()
    for spec in specs:
        if not isinstance(spec, (tuple, list)) or len(spec) != 3:
            raise ValueError(f"{form}; got the entry {spec!r}")
        name, datatype, dims = spec
        if not isinstance(name, str) or not name:
            raise ValueError(f"{key}: a tensor name must be a non-empty string, got {name!r}")
        if name in seen:
            raise ValueError(f"{key}: the name `{name}` is given twice")
        seen.add(name)
        if datatype not in DATATYPES:
            raise ValueError(f"{key}: `{name}` has datatype {datatype!r}; expected one of "
                             f"{', '.join(DATATYPES)}")
        if (isinstance(dims, (str, bytes)) or not isinstance(dims, Sequence)
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= -1
                           for d in dims)):
            raise ValueError(f"{key}: `{name}` has dims {dims!r}; expected a list of "
                             "integers (-1 for any size), without the batch dimension")
        checked.append((name, datatype, list(dims)))
    return checked


def _batching(max_batch_size: int, delay_us: int | None,
              preferred: Sequence[int] | None) -> str:
    """The body of the config's [batching] table, or "" for none."""
    if max_batch_size == 0 or delay_us is None:
        if preferred:
            raise ValueError("preferred_batch_sizes needs dynamic batching "
                             "(max_batch_size > 0 and max_queue_delay_us not None)")
        return ""
    _check_int("max_queue_delay_us", delay_us, 0, 10_000_000)  # the server's bound: 10 s
    lines = [f"max_queue_delay_us = {delay_us}"]
    if preferred:
        for size in preferred:
            _check_int("each of preferred_batch_sizes", size, 1, max_batch_size)
        lines.append(f"preferred_batch_sizes = {list(preferred)}")
    return "\n".join(lines) + "\n"
