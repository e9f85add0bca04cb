"""Differential testing: one case, two stubs, one real tritonserver, byte-for-byte comparison.

Every model under ``conformance/models/<source>/`` is served twice by the same server:
``<base>_cpp`` runs Triton's C++ ``triton_python_backend_stub`` and ``<base>_ours`` runs
tritonstub's, each installed per model as ``<model dir>/triton_python_backend_stub``. Apart from
that file the two model directories are identical copies. A case is a function of the served
model (:class:`Target`) that returns an :class:`Outcome`; it runs against both names and the two
outcomes must be equal after :class:`Normaliser` has removed what legitimately differs.

The server runs in explicit model-control mode, so a model that fails to load gives its error
text straight back from ``POST /v2/repository/models/<name>/load`` while the others keep serving.

A few C++ behaviours wreck the server they run in (a request that never gets a response keeps
the model from unloading, so tritonserver cannot stop cleanly; a stub that dies keeps the load
hanging forever). Those ``_cpp`` variants are *quarantined*: they are served by a second,
throwaway server whose leftovers are expected, checked to be exactly theirs, and cleaned up.

The same cases also run on the **harness column**: ``tritonstub serve`` (the harness engine behind
Triton's HTTP/gRPC API, :class:`HarnessServer`), one process per stub (``--stub cpp`` /
``--stub ours``) over a copy of the repository. There a case's outcome must equal its outcome on
tritonserver with the same stub: the harness claims to be the parent Triton is, so what a model
observes and what a client gets back must not tell the two apart.
"""
from __future__ import annotations

import json
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from tritonstub.conformance.normalise import _LOG_PREFIX, Normaliser, mask_addresses  # noqa: F401 - re-exported
from tritonstub.testing.reference import Reference
from tritonstub.testing.tritonserver import (
    Clients,
    TritonServer,
    check_stopped,
    http_request,
    install_cpp_stub,
    install_our_stub,
)

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
STUBS = ("cpp", "ours")
#: Bound on any single HTTP call to the server (inference, load, config) unless a case says less.
HTTP_TIMEOUT_S = 30.0
#: Bound on a model load; our stub may hang at load while it is being written.
LOAD_TIMEOUT_S = 45.0
#: The main server's --exit-timeout-secs: it unloads every model of the module (a dozen stubs
#: finalizing at once, about 1.5 s on an idle 2-core machine) and must never run out of time
#: by chance, since a server that exits without unloading fails the module. A clean stop ends
#: as soon as the models are unloaded, so a generous bound costs nothing.
MAIN_EXIT_TIMEOUT_S = 30
#: The servers' environment is pinned where it changes what a model observes, so that results do
#: not depend on who runs the suite. The C++ stub's embedded interpreter ignores all of these
#: (it is initialised isolated); a stub that honours them differs visibly.
SERVER_ENV = {
    "PYTHONUNBUFFERED": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "LANG": "C.UTF-8",
    "LC_ALL": None,
    "PYTHONIOENCODING": None,
    "PYTHONHOME": None,
    "PYTHONSTARTUP": None,
    "PYTHONWARNINGS": None,
    # PYTHONPATH is set per server to a directory with a probe module (see DiffServers).
}
PYTHONPATH_PROBE = "difftest_pythonpath_probe"


# ---------------------------------------------------------------------------------------------
# models and repositories


def line_of(model_file: str, text: str) -> int:
    """The 1-based line of ``models/<model_file>`` that contains ``text`` (exactly one must).

    Expected tracebacks and log lines name model.py lines; looking them up keeps the tests right
    when a model file is edited.
    """
    lines = (MODELS_DIR / model_file).read_text().splitlines()
    found = [i for i, line in enumerate(lines, 1) if text in line]
    if len(found) != 1:
        raise AssertionError(f"{text!r} is on lines {found} of models/{model_file}; expected exactly one")
    return found[0]


@dataclass(frozen=True)
class DiffModel:
    """One model of a test module, served as ``<base>_cpp`` and ``<base>_ours``.

    ``source`` is the directory under ``models/`` (default: ``base``). ``config`` replaces its
    config.pbtxt (so one model.py can serve several configs). ``preload`` loads the model when
    the server starts (load errors are recorded, not raised). ``quarantine_cpp`` serves the
    ``_cpp`` variant from a separate throwaway server because the C++ stub breaks the server
    there (see the module docstring).
    """

    base: str
    source: Optional[str] = None
    config: Optional[str] = None
    preload: bool = True
    quarantine_cpp: bool = False

    @property
    def source_dir(self) -> Path:
        return MODELS_DIR / (self.source or self.base)

    def name(self, stub: str) -> str:
        return f"{self.base}_{stub}"


def build_model(root: Path, model: DiffModel, stub: str, reference: Reference) -> Path:
    """Copy ``model``'s source directory to ``root/<base>_<stub>`` and install that stub in it."""
    target = root / model.name(stub)
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(model.source_dir, target,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "triton_python_backend_stub"))
    if model.config is not None:
        (target / "config.pbtxt").write_text(model.config)
    if stub == "cpp":
        install_cpp_stub(target, reference)
    elif stub == "ours":
        install_our_stub(target)
    else:
        raise ValueError(f"unknown stub {stub!r}")
    return target


def build_repositories(root: Path, models: Sequence[DiffModel], reference: Reference,
                       stubs: Iterable[str] = STUBS) -> Tuple[Path, Optional[Path]]:
    """Build the main repository (and the quarantine one, if any model needs it) under ``root``.

    Returns ``(main, quarantine)``; ``quarantine`` is None when no ``_cpp`` variant is quarantined.
    """
    main = root / "repo"
    quarantine = root / "quarantine_repo"
    main.mkdir(parents=True, exist_ok=True)
    jobs = []
    for model in models:
        for stub in stubs:
            where = quarantine if (stub == "cpp" and model.quarantine_cpp) else main
            jobs.append((where, model, stub))
    with ThreadPoolExecutor(max_workers=4) as pool:
        for future in [pool.submit(build_model, where, model, stub, reference) for where, model, stub in jobs]:
            future.result()
    return main, (quarantine if quarantine.exists() else None)


# ---------------------------------------------------------------------------------------------
# normalisation: tritonstub/conformance/normalise.py (shared with the conformance runner)

# ---------------------------------------------------------------------------------------------
# outcomes


@dataclass(frozen=True)
class Output:
    """One output tensor as the client received it."""

    name: str
    datatype: str
    shape: Tuple[int, ...]
    #: The raw little-endian bytes for numeric types; a tuple of the elements (bytes) for BYTES.
    data: Union[bytes, Tuple[bytes, ...]]

    def array(self) -> np.ndarray:
        if self.datatype == "BYTES":
            return np.array(self.data, dtype=object).reshape(self.shape)
        from tritonclient.utils import triton_to_np_dtype
        return np.frombuffer(self.data, dtype=triton_to_np_dtype(self.datatype)).reshape(self.shape)


@dataclass(frozen=True)
class Outcome:
    """What one case produced on one stub, normalised; equal outcomes mean equal behaviour.

    ``kind``: ``"ok"`` (outputs), ``"error"`` (an error text and a status), ``"timeout"`` (no
    answer within the client's timeout) or ``"value"`` (a case-specific value, e.g. log lines or
    a model config). ``raw`` keeps the unnormalised error text and is not compared.
    """

    kind: str
    outputs: Tuple[Output, ...] = ()
    header: Optional[dict] = None
    error: Optional[str] = None
    status: Optional[str] = None
    value: object = None
    raw: Optional[str] = field(default=None, compare=False)

    def output(self, name: str) -> Output:
        for out in self.outputs:
            if out.name == name:
                return out
        raise KeyError(f"no output {name!r}; outputs: {[o.name for o in self.outputs]}; {self.describe()}")

    def array(self, name: str) -> np.ndarray:
        return self.output(name).array()

    def json(self, name: str):
        """The first element of a BYTES output, parsed as JSON."""
        return json.loads(self.output(name).data[0])

    @property
    def names(self) -> List[str]:
        return [o.name for o in self.outputs]

    def describe(self) -> str:
        if self.kind == "ok":
            shown = "; ".join(f"{o.name} {o.datatype}{list(o.shape)} {_short(o.data)}" for o in self.outputs)
            return f"ok: {shown or 'no outputs'}"
        if self.kind == "error":
            return f"error (status {self.status}): {self.raw if self.raw is not None else self.error!r}"
        if self.kind == "timeout":
            return f"timeout: {self.error}"
        return f"value: {self.value!r}"

    def require_ok(self) -> "Outcome":
        assert self.kind == "ok", self.describe()
        return self

    def require_error(self) -> "Outcome":
        assert self.kind == "error", self.describe()
        return self


def _short(data, limit: int = 300) -> str:
    text = repr(data)
    return text if len(text) <= limit else text[:limit] + f"... ({len(data)} items/bytes)"


def _outputs_of(result) -> Tuple[Output, ...]:
    outputs = []
    for out in result.get_response().get("outputs", []):
        name = out["name"]
        arr = result.as_numpy(name)
        shape = tuple(int(d) for d in out["shape"])
        if out["datatype"] == "BYTES":
            data = tuple(bytes(x) for x in arr.reshape(-1)) if arr is not None else ()
        else:
            data = arr.tobytes() if arr is not None else b""
        outputs.append(Output(name, out["datatype"], shape, data))
    return tuple(outputs)


InputValue = Union[np.ndarray, Tuple[str, np.ndarray]]


def make_inputs(client_module, inputs: Mapping[str, InputValue]):
    """tritonclient InferInputs from ``name -> array`` (or ``name -> (datatype, array)``)."""
    from tritonclient.utils import np_to_triton_dtype

    made = []
    for name, value in inputs.items():
        if isinstance(value, tuple):
            datatype, arr = value
        else:
            arr = value
            datatype = "BYTES" if arr.dtype == np.object_ else np_to_triton_dtype(arr.dtype)
        tensor = client_module.InferInput(name, list(arr.shape), datatype)
        tensor.set_data_from_numpy(arr)
        made.append(tensor)
    return made


# ---------------------------------------------------------------------------------------------
# the harness column


class HarnessServer(Clients):
    """``tritonstub serve --stub STUB`` over ``repo``, with the part of :class:`TritonServer`'s
    interface that cases use (addresses, ``http``, clients, ``model_status``, ``metrics``, the log).

    Every model of the repository runs ``stub`` (the harness takes its stub from the command
    line, not from the model directory as Triton does), so each stub gets its own process.
    Explicit model control, like the tritonserver of the same module.
    """

    def __init__(self, repo: Path, stub: str, log_dir: Path, env: Mapping[str, Optional[str]], *,
                 log_verbose: int = 1, stop_timeout: float = MAIN_EXIT_TIMEOUT_S + 15,
                 cwd: Optional[Path] = None):
        from tritonstub.testing.serve import ServeProcess

        self.stub = stub
        self.model_repository = repo
        self.proc = ServeProcess(repo, "--stub", stub, "--model-control-mode", "explicit",
                                 "--log-verbose", str(log_verbose), log_dir=log_dir,
                                 startup_timeout=120.0, stop_timeout=stop_timeout, cwd=cwd)
        # ServeProcess puts tritonstub's root on PYTHONPATH; the pinned variables go on top of
        # that (None: unset), and the module's PYTHONPATH is added after the root.
        merged = dict(self.proc.env)
        for key, value in env.items():
            if key == "PYTHONPATH":
                merged[key] = os.pathsep.join([merged[key], value]) if value else merged[key]
            elif value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        self.proc.env = merged
        self._clients: list = []

    def start(self) -> "HarnessServer":
        self.proc.start()
        return self

    @property
    def pid(self) -> Optional[int]:
        return None if self.proc.proc is None else self.proc.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.proc is not None and self.proc.proc.poll() is None

    @property
    def returncode(self) -> Optional[int]:
        return self.proc.returncode

    @property
    def http_url(self) -> str:
        return self.proc.http_url

    @property
    def grpc_url(self) -> str:
        return self.proc.grpc_url

    @property
    def log(self) -> Path:
        return self.proc.log

    def http(self, method: str, path: str, body: Optional[object] = None,
             timeout: float = HTTP_TIMEOUT_S) -> Tuple[int, bytes]:
        return http_request(f"http://{self.http_url}", method, path, body, timeout)

    def model_status(self, name: str) -> Optional[dict]:
        status, body = self.http("POST", "/v2/repository/index", {})
        if status != 200:
            return None
        entries = [e for e in json.loads(body) if e.get("name") == name]
        return entries[0] if entries else None

    def metrics(self) -> str:
        status, body = self.http("GET", "/metrics")
        if status != 200:
            raise AssertionError(f"GET /metrics of tritonstub serve returned {status}: {body[:300]!r}")
        return body.decode()

    def log_text(self) -> str:
        try:
            return self.proc.log.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stub_launches(self) -> List[List[str]]:
        return []

    def stop(self) -> List[str]:
        """Stop (SIGTERM: every model finalized); the problems found (none after a clean run)."""
        self._close_clients()
        self.proc.stop()
        return self.proc.problems(f"tritonstub serve --stub {self.stub}")


# ---------------------------------------------------------------------------------------------
# the server pair


@dataclass
class Target:
    """One served model (``<base>_<stub>``) and the server it runs in."""

    base: str
    stub: str
    name: str
    server: TritonServer
    normaliser: Normaliser

    def client(self, network_timeout: float = HTTP_TIMEOUT_S, concurrency: int = 1):
        return self.server.http_client(network_timeout=network_timeout, connection_timeout=10.0,
                                       concurrency=concurrency)

    def infer(self, inputs: Mapping[str, InputValue], outputs: Optional[Sequence[str]] = None, *,
              timeout_s: float = HTTP_TIMEOUT_S, **kwargs) -> Outcome:
        """One HTTP inference (binary tensors); ``kwargs`` go to tritonclient's ``infer``."""
        import tritonclient.http as httpclient

        client = self.client(network_timeout=timeout_s)
        requested = None if outputs is None else [httpclient.InferRequestedOutput(o, binary_data=True)
                                                  for o in outputs]
        made = make_inputs(httpclient, inputs)  # a client-side mistake raises here, not as an outcome
        try:
            result = client.infer(self.name, made, outputs=requested, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a comparable outcome
            return self.failure(exc, timeout_s)
        finally:
            client.close()
        return self.success(result)

    def success(self, result) -> Outcome:
        header = dict(result.get_response())
        header.pop("outputs", None)
        return Outcome("ok", outputs=_outputs_of(result), header=self.normaliser.value(header))

    def failure(self, exc: BaseException, timeout_s: float) -> Outcome:
        from tritonclient.utils import InferenceServerException

        if isinstance(exc, InferenceServerException):
            raw = exc.message()
            return Outcome("error", error=self.normaliser.text(raw), status=str(exc.status()), raw=raw)
        if _is_timeout(exc):
            return Outcome("timeout", error=f"no response within {timeout_s:g} s", raw=repr(exc))
        raise exc

    def infer_grpc(self, inputs: Mapping[str, InputValue], *, timeout_s: float = HTTP_TIMEOUT_S,
                   **kwargs) -> Outcome:
        """One gRPC inference; errors keep the gRPC status code name (e.g. ``StatusCode.NOT_FOUND``)."""
        import tritonclient.grpc as grpcclient

        client = self.server.grpc_client()
        made = make_inputs(grpcclient, inputs)
        try:
            result = client.infer(self.name, made, client_timeout=timeout_s, **kwargs)
        except Exception as exc:  # noqa: BLE001
            return self.failure(exc, timeout_s)
        finally:
            client.close()
        outputs = []
        for out in result.get_response().outputs:
            arr = result.as_numpy(out.name)
            data = tuple(bytes(x) for x in arr.reshape(-1)) if out.datatype == "BYTES" else arr.tobytes()
            outputs.append(Output(out.name, out.datatype, tuple(out.shape), data))
        return Outcome("ok", outputs=tuple(outputs))

    def load(self, timeout_s: float = LOAD_TIMEOUT_S) -> Outcome:
        """``POST /v2/repository/models/<name>/load``: ok, or the error text the server returns."""
        status, body = self.server.http("POST", f"/v2/repository/models/{self.name}/load", {}, timeout=timeout_s)
        if status == 200:
            return Outcome("ok")
        if status == 0:
            return Outcome("timeout", error=f"load did not answer within {timeout_s:g} s")
        raw = _error_text(body)
        return Outcome("error", error=self.normaliser.text(raw), status=str(status), raw=raw)

    def log_during(self, action: Callable[[], object], *, settle_s: float = 0.5,
                   timeout_s: float = 5.0) -> Tuple[object, List[str]]:
        """Run ``action``; return its result and the server-log lines written meanwhile (raw).

        After the action, waits until the log has not grown for ``settle_s`` (at most
        ``timeout_s``), since stubs write to it asynchronously.
        """
        start = len(self.server.log_text())
        result = action()
        deadline = time.monotonic() + timeout_s
        size, stable_since = len(self.server.log_text()), time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - stable_since < settle_s:
            time.sleep(0.1)
            now = len(self.server.log_text())
            if now != size:
                size, stable_since = now, time.monotonic()
        return result, self.server.log_text()[start:].splitlines()

    def stub_lines(self, lines: Sequence[str], needle: str = "Failed to initialize Python stub") -> List[str]:
        """The lines a stub wrote about itself, normalised: lines with another pid than the
        server's (the stub's own stderr) and their continuation lines, plus lines containing
        ``needle`` (what the stub sent the parent to log)."""
        kept, in_stub_block = [], False
        for line in lines:
            m = _LOG_PREFIX.match(line)
            if m is None:
                if in_stub_block:
                    kept.append(self.normaliser.text(line))
                continue
            pid = int(line.split()[2])
            in_stub_block = pid != self.server.pid
            if in_stub_block or needle in line:
                kept.append(self.normaliser.log_line(line))
        return kept

    def config(self) -> dict:
        status, body = self.server.http("GET", f"/v2/models/{self.name}/config")
        assert status == 200, f"GET config of {self.name}: {status} {body[:500]!r}"
        return json.loads(body)

    def index_entry(self) -> Optional[dict]:
        entry = self.server.model_status(self.name)
        return None if entry is None else self.normaliser.value(entry)

    def log_lines(self, marker: str, *, expect: int = 1, timeout_s: float = 10.0) -> List[str]:
        """Normalised server-log lines of this model that contain ``marker``.

        Waits (bounded) until at least ``expect`` such lines appeared: log records travel to the
        server asynchronously. Lines of the other stub's model are excluded by name (the marker
        should include the model name, which every test model puts in its log messages).
        """
        deadline = time.monotonic() + timeout_s
        while True:
            lines = [line for line in self.server.log_text().splitlines()
                     if marker in line and self.name in line]
            if len(lines) >= expect or time.monotonic() >= deadline:
                return [self.normaliser.log_line(line) for line in lines]
            time.sleep(0.1)


def _is_timeout(exc: BaseException) -> bool:
    import socket

    names = {c.__name__ for c in type(exc).__mro__}
    return isinstance(exc, (TimeoutError, socket.timeout)) or "Timeout" in names or "timed out" in str(exc)


def _error_text(body: bytes) -> str:
    try:
        return json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace")


class DiffServers:
    """The servers of one test module: the main one and, if needed, the quarantine one.

    Models are built into repositories under ``workdir`` and preloaded (concurrently) when the
    main server starts; each load outcome is recorded. The quarantine server starts on first use.
    """

    def __init__(self, models: Sequence[DiffModel], reference: Reference, workdir: Path, *,
                 log_verbose: int = 1, stubs: Sequence[str] = STUBS):
        names = [m.base for m in models]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate model bases: {names}")
        self.models = {m.base: m for m in models}
        self.reference = reference
        self.workdir = workdir
        self.log_verbose = log_verbose
        self.stubs = tuple(stubs)
        self.main_repo, self.quarantine_repo = build_repositories(workdir, models, reference, self.stubs)
        self.harness_repo = workdir / "harness_repo"
        roots = [self.main_repo, self.harness_repo] + ([self.quarantine_repo] if self.quarantine_repo else [])
        self.normaliser = Normaliser(names, roots)
        self.main: Optional[TritonServer] = None
        self.quarantine: Optional[TritonServer] = None
        #: The harness column: one ``tritonstub serve`` per stub, started on first use.
        self.harness: Dict[str, HarnessServer] = {}
        self.loads: Dict[object, Outcome] = {}
        self._lock = threading.Lock()
        self._memo: Dict[tuple, Outcome] = {}

    # ---- servers --------------------------------------------------------------------------

    def _env(self) -> Dict[str, Optional[str]]:
        probe_dir = self.workdir / "pythonpath"
        probe_dir.mkdir(exist_ok=True)
        (probe_dir / f"{PYTHONPATH_PROBE}.py").write_text('"""Importable only through PYTHONPATH."""\n')
        return dict(SERVER_ENV, PYTHONPATH=str(probe_dir))

    def _server(self, repo: Path, tag: str, exit_timeout: int) -> TritonServer:
        env = self._env()
        return TritonServer(repo, reference=self.reference, log_verbose=self.log_verbose,
                            log_dir=self.workdir / f"server-{tag}", exit_timeout=exit_timeout, env=env,
                            extra_args=["--model-control-mode=explicit"], startup_timeout=60.0)

    def start(self) -> None:
        self.main = self._server(self.main_repo, "main", exit_timeout=MAIN_EXIT_TIMEOUT_S).start()
        preload = [self.target(m.base, stub) for m in self.models.values() if m.preload
                   for stub in self.stubs if not (stub == "cpp" and m.quarantine_cpp)]
        with ThreadPoolExecutor(max_workers=4) as pool:
            for target, outcome in zip(preload, pool.map(lambda t: t.load(), preload)):
                self.loads[target.name] = outcome

    def quarantine_server(self) -> TritonServer:
        with self._lock:
            if self.quarantine is None:
                if self.quarantine_repo is None:
                    raise RuntimeError("no model of this module is quarantined")
                self.quarantine = self._server(self.quarantine_repo, "quarantine", exit_timeout=1).start()
            return self.quarantine

    def harness_server(self, stub: str) -> HarnessServer:
        """``tritonstub serve --stub <stub>`` over a copy of the repositories (started on first
        use, with this stub's preloaded models loaded)."""
        with self._lock:
            server = self.harness.get(stub)
            if server is not None:
                return server
            self.harness_repo.mkdir(exist_ok=True)
            for model in self.models.values():
                source = (self.quarantine_repo if stub == "cpp" and model.quarantine_cpp else self.main_repo)
                built, copy = source / model.name(stub), self.harness_repo / model.name(stub)
                if built.is_dir() and not copy.exists():
                    shutil.copytree(built, copy)
            # Launched as tritonserver is (TritonServer): the same environment, with the
            # reference's library path, and the same working directory (the main server's).
            env = self._env()
            env["LD_LIBRARY_PATH"] = self.reference.env(dict(os.environ))["LD_LIBRARY_PATH"]
            cwd = self.workdir / "server-main"
            cwd.mkdir(exist_ok=True)
            server = HarnessServer(self.harness_repo, stub, self.workdir / f"serve-{stub}", env,
                                   log_verbose=self.log_verbose, cwd=cwd)
            server.start()
            self.harness[stub] = server     # only a started one: a failed start fails each test
        preload = [self.target(m.base, stub, "harness") for m in self.models.values() if m.preload]
        with ThreadPoolExecutor(max_workers=4) as pool:
            for target, outcome in zip(preload, pool.map(lambda t: t.load(), preload)):
                with self._lock:
                    self.loads[("harness", target.name)] = outcome
        return server

    def servers(self) -> List[Union[TritonServer, HarnessServer]]:
        return [s for s in (self.main, self.quarantine, *self.harness.values()) if s is not None]

    def target(self, base: str, stub: str, column: str = "triton") -> Target:
        model = self.models[base]
        if column == "harness":
            return Target(base, stub, model.name(stub), self.harness_server(stub), self.normaliser)
        quarantined = stub == "cpp" and model.quarantine_cpp
        server = self.quarantine_server() if quarantined else self.main
        return Target(base, stub, model.name(stub), server, self.normaliser)

    @staticmethod
    def _load_key(target: Target, column: str) -> object:
        return target.name if column == "triton" else (column, target.name)

    def loaded(self, base: str, stub: str, column: str = "triton") -> Target:
        """The target, loaded (lazily if not preloaded); fails the test if the load failed."""
        target = self.target(base, stub, column)
        outcome = self.load_outcome(base, stub, column=column)
        if outcome.kind != "ok":
            raise AssertionError(f"model {target.name} did not load on the {column} column: {outcome.describe()}")
        return target

    def load_outcome(self, base: str, stub: str, timeout_s: float = LOAD_TIMEOUT_S,
                     column: str = "triton") -> Outcome:
        target = self.target(base, stub, column)
        key = self._load_key(target, column)
        with self._lock:
            outcome = self.loads.get(key)
        if outcome is None:
            outcome = target.load(timeout_s)
            with self._lock:
                self.loads[key] = outcome
        return outcome

    def memo(self, key: tuple, compute: Callable[[], Outcome]) -> Outcome:
        with self._lock:
            if key in self._memo:
                return self._memo[key]
        outcome = compute()
        with self._lock:
            self._memo[key] = outcome
        return outcome

    # ---- stop -----------------------------------------------------------------------------

    def stop(self) -> List[str]:
        """Stop both servers; return the problems found (none after a clean run).

        The main server must stop cleanly: no crash, every model unloaded before its exit
        timeout (a model that cannot unload is a request that never ended: a bug of the stub or
        a case that belongs in quarantine), nothing left behind. The quarantine server serves
        only ``_cpp`` variants that are known to wreck it (some abort tritonserver now and then):
        its crash is the reference's behaviour and only reported; it may leave only its own
        stubs and regions.
        """
        problems = []
        # All at once. The quarantine server may ignore SIGTERM for good (a load that never
        # ends), so it gets a short grace time before its process group is killed.
        with ThreadPoolExecutor(max_workers=4) as pool:
            stops = [pool.submit(server.stop, timeout=timeout)
                     for server, timeout in ((self.quarantine, 2), (self.main, MAIN_EXIT_TIMEOUT_S + 15))
                     if server is not None]
            harness = [pool.submit(server.stop) for server in self.harness.values()]
            for stop in stops:
                stop.result()
            for stop in harness:
                problems += stop.result()
        if self.quarantine is not None:
            crash = self.quarantine.crash_report()
            if crash:
                print(f"note: the quarantine server (C++ stub only) crashed:\n{crash}")
            problems += self._unexpected_quarantine_leftovers()
        if self.main is not None:
            problems += [f"the main server: {p}" for p in check_stopped(self.main)]
        return problems

    def _unexpected_quarantine_leftovers(self) -> List[str]:
        """The quarantine server is expected to leave its stubs and regions; only theirs."""
        server = self.quarantine
        ours = {str(self.quarantine_repo)}
        problems = [f"quarantine server left an unexpected process {pid}: {line[:200]}"
                    for pid, line in server.orphans if not any(root in line for root in ours)]
        launched = {tok for argv in server.stub_launches() for tok in argv}
        problems += [f"quarantine server left a region no quarantined stub was given: {r}"
                     for r in server.leaked_regions if r not in launched]
        return problems



def result_value(target: "Target", out: Outcome):
    """What a case model answered in its RESULT output (JSON text), masked and normalised."""
    return target.normaliser.value(json.loads(mask_addresses(out.output("RESULT").data[0].decode())))


def result_outcome(target: "Target", out: Outcome) -> Outcome:
    """A case model's answer as a comparable value: (RESULT's JSON, the other outputs)."""
    if out.kind != "ok":
        return out
    return Outcome("value", value=(json.dumps(result_value(target, out), sort_keys=True),
                                   tuple(o for o in out.outputs if o.name != "RESULT")))


def assert_same(cpp: Outcome, ours: Outcome) -> None:
    """The differential assertion: equal normalised outcomes, with both sides shown if not."""
    assert ours == cpp, (f"the stubs differ\n  C++ stub: {cpp.describe()}\n  our stub: {ours.describe()}")


def assert_same_server(stub: str, triton: Outcome, harness: Outcome) -> None:
    """The harness column's assertion: the harness gives what tritonserver gives (same stub)."""
    assert harness == triton, (f"the harness differs from tritonserver ({stub} stub)\n"
                               f"  tritonserver: {triton.describe()}\n  harness:      {harness.describe()}")
