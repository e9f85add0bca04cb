"""The harness engine: tritonserver's side of the python backend, for a repository of models.

Theory of operation
-------------------
:class:`Engine` is the one data plane under every front end (docs/harness-api.md). It keeps a
repository (a directory of model directories) and, per loaded model, a :class:`Model`: the
completed config, one :class:`~tritonstub.harness.instance.StubProcess` per instance, and a queue.

Loading repeats what the core and the python backend do: config.pbtxt -> the completed config
JSON (harness/config.py) -> an auto-complete stub (``auto_complete_config``) -> completed again ->
one stub per instance of each instance group (``<group>_<n>``), each initialized with the seven
arguments Triton passes. Any failure leaves the model UNAVAILABLE with Triton's reason
(``Internal: <text>``) and every process and region of it gone.

Inference: a request is checked as the core checks it (harness/validate.py, same texts), queued,
and taken by the next free instance's worker thread, which runs one ExecuteRequest at a time, as
Triton does. With ``dynamic_batching`` a worker gathers queued requests up to ``max_batch_size``
(batch dimension summed) or until ``max_queue_delay_microseconds`` passes. Responses reach the
caller's callback as they come: from the ExecuteResponse block, or through the response sender
(decoupled models, or a sender used by a default model). A dead or hung stub fails the requests
it holds with ``Stub process '<name>' is not healthy.`` (after at most about a second without a
heartbeat), and later requests fail the same way, as in r24.10 (no restart).

What stubs ask of the server is answered here too (:class:`Services`): BLS requests run through
the same queues (or through a plain function registered as a stand-in model), model control acts
on the repository, metrics live in one registry, and log records are written in Triton's format.
"""
from __future__ import annotations

import dataclasses
import copy
import json
import os
import queue
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, IO, List, Mapping, Optional, Sequence, Union

from .. import protocol
from ..errors import ConfigError
from ..protocol.requests import RequestData
from ..protocol.responses import ResponseData
from . import config as configs
from . import convert
from .instance import (EXIT_TIMEOUT_S, BLSRefused, Pending, Services, StubCommand, StubFailed,
                       StubProcess, remove_stale_regions)
from .metrics import MetricError, MetricRegistry
from .types import InferError, InferRequest, InferResponse, InferTensor, LogRecord, ModelIndexEntry
from .validate import datatype, validate

L = protocol.current()
C = L.PYTHONSTUB_CommandType

READY, UNAVAILABLE, LOADING, UNLOADING = "READY", "UNAVAILABLE", "LOADING", "UNLOADING"
_LEVELS = {int(L.LogLevel.INFO): "I", int(L.LogLevel.WARNING): "W", int(L.LogLevel.ERROR): "E",
           int(L.LogLevel.VERBOSE): "I"}
_KINDS = {"KIND_CPU": "CPU", "KIND_GPU": "GPU", "KIND_MODEL": "MODEL", "KIND_AUTO": "CPU"}


# ---------------------------------------------------------------------------- stubs
def stub_command(stub: str = "ours", python: Optional[str] = None) -> StubCommand:
    """``ours`` (this interpreter running tritonstub.stub), ``cpp`` (the C++ stub the reference
    Triton ships) or the path of any stub executable."""
    if stub == "ours":
        return StubCommand([python or sys.executable, "-m", "tritonstub.stub"], _python_lib(),
                           label="ours")
    if stub == "cpp":
        from ..testing.reference import find_reference
        ref = find_reference()
        if ref is None or not Path(ref.cpp_stub).exists():
            raise ConfigError("stub='cpp' needs the C++ stub of the reference Triton "
                              "(pip install nvidia-pytriton==0.7.0, then "
                              "`python -m tritonstub.testing.reference`)")
        return StubCommand([str(ref.cpp_stub)], str(ref.python_backend_dir),
                           env={"LD_LIBRARY_PATH": ref.env()["LD_LIBRARY_PATH"]}, label="cpp")
    path = Path(stub)
    if not path.exists():
        raise ConfigError(f"stub {stub!r}: no such file (use 'ours', 'cpp' or a path)")
    return StubCommand([str(path.resolve())], str(_FALLBACK_TPBU), label=str(path))


#: Our copy of triton_python_backend_utils.py, for when no Triton is installed.
_FALLBACK_TPBU = Path(__file__).resolve().parents[1] / "stub" / "tpbu_fallback"


def _python_lib() -> str:
    """argv[6] for our stub: the python backend's directory of an installed Triton when there is
    one (the stock triton_python_backend_utils.py, as under that Triton), else our fallback copy."""
    try:
        from ..testing.reference import find_reference
        ref = find_reference()
    except Exception:  # noqa: BLE001 - no reference install is fine
        ref = None
    if ref is not None and (Path(ref.python_backend_dir) / "triton_python_backend_utils.py").exists():
        return str(ref.python_backend_dir)
    return str(_FALLBACK_TPBU)


# ---------------------------------------------------------------------------- log
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\b": "\\b",
            "\f": "\\f"}
_ESCAPES.update({chr(o): "\\u%04X" % o for o in range(0x20) if chr(o) not in _ESCAPES})


def _escape(message: str) -> str:
    """TritonJson::SerializeString (rapidjson): quotes, escapes, UTF-8 kept."""
    return '"' + "".join(_ESCAPES.get(ch, ch) for ch in message) + '"'


class LogBook:
    """The server log: records in Triton's format, kept for tests and written to a stream."""

    def __init__(self, stream: Optional[IO[str]] = None, verbose: int = 0):
        self.stream = stream
        self.verbose = verbose
        self.records: List[LogRecord] = []
        self._lock = threading.Lock()

    def write(self, level: int, filename: str, line: int, message: str) -> None:
        if level == int(L.LogLevel.VERBOSE) and self.verbose < 1:
            return
        letter = _LEVELS.get(level, "I")
        now = time.time()
        tm = time.gmtime(now)
        base = os.path.basename(filename)
        text = (f"{letter}{tm.tm_mon:02d}{tm.tm_mday:02d} {tm.tm_hour:02d}:{tm.tm_min:02d}:"
                f"{tm.tm_sec:02d}.{int(now % 1 * 1e6):06d} {os.getpid()} {base}:{line}] "
                f"{_escape(message)}")
        self._add(LogRecord(letter, base, line, message, text))

    def raw(self, text: str) -> None:
        """A line a stub wrote to its own stderr (Triton's log gets those as they are)."""
        self._add(LogRecord("", "", 0, text, text))

    def _add(self, rec: LogRecord) -> None:
        with self._lock:
            self.records.append(rec)
            if self.stream is not None:
                try:
                    self.stream.write(rec.text + "\n")
                    self.stream.flush()
                except (OSError, ValueError):
                    pass

    @property
    def lines(self) -> List[str]:
        with self._lock:
            return [r.text for r in self.records]

    def text(self) -> str:
        return "\n".join(self.lines)


# ---------------------------------------------------------------------------- calls
class Call:
    """One request in flight: its responses as they come, and a way to cancel it."""

    def __init__(self, request: InferRequest, on_response: Optional[Callable[[InferResponse], None]]):
        self.request = request
        self.on_response = on_response
        self.responses: List[InferResponse] = []
        self._done = threading.Event()
        self.pending: Optional[Pending] = None
        self.cancelled = False

    def _add(self, response: InferResponse) -> None:
        self.responses.append(response)
        if self.on_response is not None:
            try:
                self.on_response(response)
            except Exception:  # noqa: BLE001 - a front end's callback must not kill a stub thread
                pass
        if response.final:
            self._done.set()

    def cancel(self) -> None:
        """What TRITONSERVER_InferenceRequestCancel does for a python model: the model's
        ``is_cancelled()`` turns true."""
        self.cancelled = True
        if self.pending is not None:
            self.pending.cancelled = True

    def wait(self, timeout: Optional[float] = None) -> bool:
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        return self._done.is_set()


@dataclass
class _Work:
    call: Call
    pending: Pending
    batch_size: int
    model_version: str
    queued_ns: int = field(default_factory=time.monotonic_ns)
    counted: bool = False          # in the statistics already (a request counts once)
    # set by Model.run: the execute's start, end of inputs, start of outputs, end
    marks: Optional[Sequence[int]] = None


_DURATIONS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output",
              "cache_hit", "cache_miss")


def _compute_phases(start: int, sent: int, replied: int, end: int):
    """One execute's marks as Triton's compute phases: (name, ns) for each."""
    return (("compute_input", sent - start), ("compute_infer", replied - sent),
            ("compute_output", end - replied))


def _count(table: Dict[str, Dict[str, int]], key: str, ns: int) -> None:
    entry = table.setdefault(key, {"count": 0, "ns": 0})
    entry["count"] += 1
    entry["ns"] += ns


class Statistics:
    """One model's statistics as Triton's statistics extension reports them (core
    ``infer_stats.cc``): per request, ``success`` (count, and ns from queued to the final
    response) with its ``queue``, ``compute_input``, ``compute_infer`` and ``compute_output``
    shares and ``inference_count`` (its batch size), or ``fail``; per execute,
    ``execution_count`` and ``batch_stats`` by batch size. Times come from one execute's marks:
    start, request batch sent to the stub, reply read, responses handed on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.inference = {k: {"count": 0, "ns": 0} for k in _DURATIONS}
        self.batches: Dict[int, Dict[str, Dict[str, int]]] = {}
        self.executions = 0
        self.inferences = 0
        self.last_inference_ms = 0

    def executed(self, batch_size: int, marks: Sequence[int]) -> None:
        if len(marks) != 4:
            return                     # the stub failed before it answered: no execution
        with self._lock:
            self.executions += 1
            self.last_inference_ms = int(time.time() * 1000)
            row = self.batches.setdefault(batch_size, {})
            for key, ns in _compute_phases(*marks):
                _count(row, key, ns)

    def request_done(self, work: "_Work", ok: bool) -> None:
        """``work`` ended: its final response (``ok``), or its first error."""
        now = time.monotonic_ns()
        with self._lock:
            if work.counted:
                return
            work.counted = True
            _count(self.inference, "success" if ok else "fail", now - work.queued_ns)
            if ok:
                self.inferences += max(work.batch_size, 1)   # successful inferences only
            if ok and work.marks is not None and len(work.marks) >= 3:
                # a response sent during execute comes before the execute's end mark
                start, sent, replied = work.marks[:3]
                end = work.marks[3] if len(work.marks) > 3 else now
                _count(self.inference, "queue", start - work.queued_ns)
                for key, ns in _compute_phases(start, sent, replied, end):
                    _count(self.inference, key, ns)

    def as_json(self, name: str, version: str) -> dict:
        with self._lock:
            return {"name": name, "version": version,
                    "last_inference": self.last_inference_ms,
                    "inference_count": self.inferences, "execution_count": self.executions,
                    "inference_stats": copy.deepcopy(self.inference),
                    "response_stats": {},
                    "batch_stats": [dict(batch_size=size, **copy.deepcopy(row))
                                    for size, row in sorted(self.batches.items())],
                    "memory_usage": []}


# ---------------------------------------------------------------------------- models
class Model:
    """A loaded (or failed) model: config, instances, queue, state."""

    def __init__(self, engine: "Engine", name: str, path: Optional[Path]):
        self.engine = engine
        self.name = name
        self.path = path
        self.version = "1"
        self.config: dict = {}
        self.state = LOADING
        self.reason = ""
        self.instances: List[StubProcess] = []
        self.queue: "queue.Queue[Optional[_Work]]" = queue.Queue()
        self.workers: List[threading.Thread] = []
        self.function: Optional[Callable] = None
        self.stats = Statistics()
        self.sequences: set = set()
        self.sequence_lock = threading.Lock()
        self.next_sequence_id = 1       # iterative_sequence: IDs for requests without one

    @property
    def decoupled(self) -> bool:
        return bool(self.config.get("model_transaction_policy", {}).get("decoupled"))

    @property
    def max_batch_size(self) -> int:
        return int(self.config.get("max_batch_size", 0))

    def check_sequence(self, request: InferRequest, batch_size: int) -> InferRequest:
        """The sequence batcher's checks (core sequence_batch_scheduler.cc, same texts); a
        sequence is known from its START until its END. Returns the request as the batcher
        passes it on: with ``iterative_sequence`` a request without a correlation ID starts a
        sequence of its own, numbered from 1 (sequence_utils.h IterativeSequencer)."""
        if batch_size > 1:
            raise InferError("INVALID_ARG", f"inference request to model '{self.name}' must "
                                            "specify batch-size 1 due to requirements of sequence "
                                            "batcher")
        corr = request.correlation_id
        if corr in (0, "") and self.config["sequence_batching"].get("iterative_sequence"):
            with self.sequence_lock:
                corr = self.next_sequence_id
                self.next_sequence_id += 1
            request = dataclasses.replace(request, correlation_id=corr, flags=1)
        if corr in (0, ""):
            raise InferError("INVALID_ARG", f"inference request to model '{self.name}' must "
                                            "specify a non-zero or non-empty correlation ID")
        start, end = bool(request.flags & 1), bool(request.flags & 2)
        with self.sequence_lock:
            if not start and corr not in self.sequences:
                raise InferError("INVALID_ARG", f"inference request for sequence {corr} to model "
                                                f"'{self.name}' must specify the START flag on the "
                                                "first request of the sequence")
            if end:
                self.sequences.discard(corr)
            else:
                self.sequences.add(corr)
        return request

    def metadata(self) -> dict:
        """KServe v2 model metadata."""
        def tensors(items):
            return [{"name": t["name"],
                     "datatype": datatype(t.get("data_type", "")),
                     "shape": ([-1] if self.max_batch_size > 0 else []) +
                              [int(d) for d in t.get("dims", [])]} for t in items]
        return {"name": self.name, "versions": [self.version],
                "platform": self.config.get("backend", "python"),
                "inputs": tensors(self.config.get("input", [])),
                "outputs": tensors(self.config.get("output", []))}

    def statistics(self) -> dict:
        """Triton's ``model_stats`` entry of this model (statistics extension)."""
        return self.stats.as_json(self.name, self.version)

    # ------------------------------------------------------------ scheduling
    def work(self, call: Call, data: RequestData, batch_size: int) -> _Work:
        """``call`` ready for the queue: what the stub sends for it becomes the call's
        responses, as it sent them (a default model that uses its sender gives a response, then
        FINAL alone: Triton's stream shows the first as not final and drops the second; a unary
        front end takes the one response, serve/dataplane.py), counted in the statistics."""
        version, rid = self.version, call.request.request_id
        work = _Work(call, None, batch_size, version)   # type: ignore[arg-type]
        # The pending's callback reaches the work and the call through a list it empties at
        # the final response: a closure over them would make a reference cycle (pending ->
        # callback -> call -> pending) that keeps the request's inputs and outputs until a full
        # garbage collection (measured under `tritonstub serve`: 1-2 GB of 16 MiB tensors held
        # after a round of 16 clients).
        refs = [work, call]

        def on_stub_response(resp: Optional[ResponseData], final: bool) -> None:
            if not refs:
                return                       # after the final response: nothing is delivered
            w, c = refs
            out = convert.response_from_data(resp, self.name, version, rid, final)
            if final or out.error is not None:
                self.stats.request_done(w, out.error is None)
            if final:
                refs.clear()
            c._add(out)

        work.pending = call.pending = Pending(call.request, data, on_stub_response)
        return work

    def start_workers(self) -> None:
        for stub in self.instances:
            t = threading.Thread(target=self._worker, args=(stub,), daemon=True,
                                 name=f"harness-{stub.name}")
            t.start()
            self.workers.append(t)

    def _gather(self, first: _Work) -> List[_Work]:
        batch = [first]
        dyn = self.config.get("dynamic_batching")
        if dyn is None or self.max_batch_size <= 0:
            return batch
        total = max(first.batch_size, 1)
        delay = int(dyn.get("max_queue_delay_microseconds", 0) or 0) / 1e6
        deadline = time.monotonic() + delay
        while total < self.max_batch_size:
            timeout = deadline - time.monotonic()
            try:
                work = self.queue.get(timeout=timeout) if timeout > 0 else self.queue.get_nowait()
            except queue.Empty:
                break
            if work is None:
                self.queue.put(None)
                break
            if total + max(work.batch_size, 1) > self.max_batch_size:
                self.queue.put(work)      # goes to the back; good enough for a harness
                break
            batch.append(work)
            total += max(work.batch_size, 1)
        return batch

    def _worker(self, stub: StubProcess) -> None:
        while True:
            work = self.queue.get()
            if work is None:
                self.queue.put(None)
                return
            batch = self._gather(work)
            self.run(stub, batch)
            del work, batch         # a finished request is not kept until the next one comes

    def run(self, stub: StubProcess, batch: List[_Work]) -> None:
        """One execute on ``stub`` for ``batch`` (also used by :meth:`Engine.execute`)."""
        pendings = [w.pending for w in batch]
        marks = [time.monotonic_ns()]
        for w in batch:
            w.marks = marks
        if self.engine.log.verbose:
            self.engine.log.write(int(L.LogLevel.VERBOSE), "python_be.cc", 1305,
                                  f"model {self.name}, instance {stub.name}, executing "
                                  f"{len(batch)} requests")
        error: Optional[str]
        try:
            with stub.execute_lock:      # one execute at a time per stub (Engine.execute too)
                if stub.dead_reason is not None:
                    raise StubFailed(stub.dead_reason)
                error = stub.execute(pendings, marks)
        except StubFailed as e:
            stub.dead_reason = f"Stub process '{stub.name}' is not healthy."
            error = str(e)
        except Exception as e:  # noqa: BLE001 - a bug of ours must not leave requests waiting
            self.engine.log.write(int(L.LogLevel.ERROR), "tritonstub", 0,
                                  f"model {self.name}, instance {stub.name}: the harness failed "
                                  f"to run an execute: {traceback.format_exc()}")
            error = f"tritonstub harness error: {type(e).__name__}: {e}"
        if len(marks) == 3:
            marks.append(time.monotonic_ns())
        self.stats.executed(sum(max(w.batch_size, 1) for w in batch), marks)
        if error is not None:
            # The core answers every request that has no FINAL yet with the batch's error.
            for p in pendings:
                stub._deliver(p, ResponseData(error=(int(L.TRITONSERVER_Error_Code.INTERNAL), error)),
                              True)
        for w in batch:
            if w.pending.release_flags == L.TRITONSERVER_REQUEST_RELEASE_RESCHEDULE and \
                    not w.pending.final_sent:
                # A rescheduled request goes back to the queue, as the core puts it back.
                w.pending.address = w.pending.factory = 0
                w.pending.release_flags = L.TRITONSERVER_REQUEST_RELEASE_ALL
                self.queue.put(w)
        stub.finish(pendings)

    def stop(self, grace_s: float = 60.0) -> None:
        """Let the executes in flight finish (as Triton's unload does), at most ``grace_s``;
        then kill the stubs, which ends their executes within a health-check slice."""
        self.queue.put(None)
        deadline = time.monotonic() + grace_s
        for t in self.workers:
            t.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self.workers):
            for stub in self.instances:
                stub.kill()
            for t in self.workers:
                t.join()
        self.workers.clear()
        # Requests still queued never ran: Triton fails them on unload.
        while True:
            try:
                work = self.queue.get_nowait()
            except queue.Empty:
                break
            if work is not None:
                work.call._add(InferResponse(self.name, work.model_version, work.call.request.request_id,
                                             error=InferError("UNAVAILABLE", "Model is unloading"), final=True))


# ---------------------------------------------------------------------------- the engine
class Engine(Services):
    """tritonserver's side for a repository of python models (docs/harness-api.md)."""

    def __init__(self, repository: Union[str, Path, None] = None, *, stub: str = "ours",
                 model_control: str = "none", models: Sequence[str] = (), log_verbose: int = 0,
                 log_stream: Optional[IO[str]] = sys.stderr, python: Optional[str] = None,
                 interactive: bool = False, env: Optional[Mapping[str, str]] = None,
                 auto_complete: bool = True, load_timeout_s: float = 300.0,
                 load_on_demand: bool = False):
        self.repository = Path(repository).resolve() if repository is not None else None
        self.stub = stub_command(stub, python)
        if env:
            self.stub.env.update(env)
        self.control_mode = model_control
        self.startup_models = list(models)
        self.log = LogBook(log_stream, log_verbose)
        self.metrics = MetricRegistry()
        self.models: Dict[str, Model] = {}
        self.interactive = interactive
        self.auto_complete = auto_complete
        #: auto-complete and each initialize must answer within this (tritonserver would wait
        #: for as long as the stub's heartbeat goes on).
        self.load_timeout_s = load_timeout_s
        #: A BLS request to a model of the repository that is not loaded loads it first (the
        #: CLI's one-model runs; tritonserver answers "not ready").
        self.load_on_demand = load_on_demand
        self._lock = threading.RLock()
        self._extra_paths: Dict[str, Path] = {}
        self.started = False

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> "Engine":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        """Load every model of the repository (model control "none") or ``models``."""
        self.started = True
        for name in remove_stale_regions():
            self.log.write(int(L.LogLevel.WARNING), "engine.py", 0,
                           f"removed /dev/shm/{name}: its harness process is gone")
        if self.control_mode == "none":
            names = self.repository_models()
        else:
            names = self.startup_models
        for name in names:
            try:
                self.load(name)
            except InferError:
                pass      # the model is UNAVAILABLE with its reason, as in Triton

    def close(self) -> None:
        """Finalize and stop every model; no process or region is left."""
        with self._lock:
            names = list(self.models)
        for name in names:
            try:
                self.unload(name)
            except InferError:
                pass

    def repository_models(self) -> List[str]:
        if self.repository is None:
            return []
        return sorted(p.name for p in self.repository.iterdir()
                      if p.is_dir() and not p.name.startswith("."))

    def add_model_dir(self, path: Union[str, Path], name: Optional[str] = None) -> str:
        """Make a model directory outside the repository loadable (``tritonstub check DIR``)."""
        path = Path(path).resolve()
        name = name or path.name
        self._extra_paths[name] = path
        return name

    def _model_dir(self, name: str) -> Optional[Path]:
        if name in self._extra_paths:
            return self._extra_paths[name]
        if self.repository is not None and (self.repository / name).is_dir():
            return self.repository / name
        return None

    # ------------------------------------------------------------ repository
    def load(self, name: str, config: Optional[str] = None,
             files: Optional[Mapping[str, bytes]] = None) -> None:
        """Load (or reload) a model. InferError with Triton's text on failure."""
        if files:
            raise InferError("UNSUPPORTED", "load with files is not supported by the tritonstub "
                                            "harness")
        with self._lock:
            old = self.models.get(name)
        if old is not None:
            if old.function is not None:
                return
            self.unload(name)
        path = self._model_dir(name)
        if path is None:
            raise InferError("INTERNAL", f"failed to load '{name}', failed to poll from model "
                                         f"repository")
        model = Model(self, name, path)
        with self._lock:
            self.models[name] = model
        try:
            self._load(model, config)
        except (StubFailed, ConfigError, InferError) as e:
            text = e.message if isinstance(e, InferError) else str(e)
            for stub in model.instances:
                # After a failed initialize the parent waits for the stub to exit (it sends
                # its last log lines on the way out); then nothing of it may be left.
                if stub.answered:
                    stub.wait_exit(EXIT_TIMEOUT_S)
                stub.close()
            model.instances.clear()
            model.state, model.reason = UNAVAILABLE, f"Internal: {text}"
            self.log.write(int(L.LogLevel.ERROR), "model_lifecycle.cc", 0,
                           f"failed to load '{name}' version {model.version}: {model.reason}")
            raise InferError("INVALID_ARG", f"load failed for model '{name}': version "
                                            f"{model.version} is at UNAVAILABLE state: "
                                            f"{model.reason};\n") from None
        model.state = READY
        self.log.write(int(L.LogLevel.INFO), "model_lifecycle.cc", 0,
                       f"successfully loaded '{name}' version {model.version}")

    def _load(self, model: Model, override: Optional[str]) -> None:
        path = model.path
        if override:
            pb = configs.from_json(override)
        else:
            pb = configs.load(path)
        configs.complete(pb, path, model.name)
        if pb.platform == "ensemble":
            raise InferError("UNSUPPORTED", f"model '{model.name}' is an ensemble: the harness runs "
                                            "python models only (serve ensembles with tritonserver)")
        versions = sorted((int(p.name) for p in path.iterdir() if p.is_dir() and p.name.isdigit()),
                          reverse=True)
        if not versions:
            raise InferError("INTERNAL", "at least one version must be available under the "
                                         "version policy of model '" + model.name + "'")
        model.version = str(versions[0])
        model_py = path / model.version / (pb.default_model_filename or "model.py")
        config_json = configs.to_json(pb)
        if self.auto_complete:
            ac = self._stub(model, model.name, str(model_py), decoupled=False)
            try:
                ac.launch()
                completed = ac.auto_complete(config_json, self.load_timeout_s)
            except StubFailed as e:
                ac.kill()
                ac.close()
                raise StubFailed(str(e)) from None
            try:
                ac.finalize()
            finally:
                ac.close()
            pb = configs.from_json(completed)
            configs.complete(pb, path, model.name)
            config_json = configs.to_json(pb)
        model.config = json.loads(config_json)
        decoupled = model.decoupled
        for group in model.config.get("instance_group", []):
            kind = _KINDS.get(group.get("kind", "KIND_CPU"), "CPU")
            gpus = group.get("gpus") or [0]
            for c in range(int(group.get("count", 1))):
                instance_name = f"{group['name']}_{c}"
                stub = self._stub(model, instance_name, str(model_py), decoupled)
                model.instances.append(stub)
                stub.launch()
                stub.initialize({
                    "model_config": config_json,
                    "model_instance_kind": kind,
                    "model_instance_name": instance_name,
                    "model_instance_device_id": str(gpus[0] if kind == "GPU" else 0),
                    "model_repository": str(path),
                    "model_version": model.version,
                    "model_name": model.name,
                }, limit_s=self.load_timeout_s)
        model.start_workers()

    def _stub(self, model: Model, stub_name: str, model_py: str, decoupled: bool) -> StubProcess:
        stub = StubProcess(self.stub, model_py, stub_name, self, decoupled=decoupled,
                           on_output=None if self.interactive else self.log.raw,
                           interactive=self.interactive)
        stub.model = model          # type: ignore[attr-defined]
        return stub

    def unload(self, name: str, unload_dependents: bool = False) -> None:
        with self._lock:
            model = self.models.pop(name, None)
        if model is None:
            raise InferError("INVALID_ARG", f"failed to unload '{name}', no version is available")
        if model.function is not None:
            return
        was = model.state
        model.state = UNLOADING
        model.stop()
        for stub in model.instances:
            try:
                stub.finalize()
            finally:
                stub.close()
        model.instances.clear()
        if was == READY:
            self.log.write(int(L.LogLevel.INFO), "model_lifecycle.cc", 0,
                           f"successfully unloaded '{name}' version {model.version}")

    def is_ready(self, name: str, version: str = "") -> bool:
        """InferenceServer::ModelIsReady: READY, and from r26.03 every instance ready too
        (TRITONBACKEND_ModelInstanceReady: the stub alive, then the model's own ``is_ready()``);
        the reason an instance is not is logged at verbose level 1, as the core does."""
        with self._lock:
            model = self.models.get(name)
        if model is None or model.state != READY or version not in ("", model.version):
            return False
        if "stub_has_user_model_readiness_fn" not in L.IPCControlShm.fields:
            return True                 # before r26.03 the backend has no readiness entry point
        for stub in list(model.instances):
            if not stub.alive():
                why = f"Stub process '{stub.name}' is not healthy."
            else:
                ready, why = stub.user_model_readiness()
                if why is None and not ready:
                    why = f"Model '{stub.name}' is not ready (user-defined check failed)."
            if why is not None:
                self.log.write(int(L.LogLevel.VERBOSE), "server.cc", 479,
                               f"Model '{name}' version {model.version} is not ready: {why}")
                return False
        return True

    def index(self, ready_only: bool = False) -> List[ModelIndexEntry]:
        entries = []
        with self._lock:
            loaded = dict(self.models)
        names = sorted(set(self.repository_models()) | set(loaded) | set(self._extra_paths))
        for name in names:
            m = loaded.get(name)
            if m is None:
                if not ready_only:
                    entries.append(ModelIndexEntry(name))
                continue
            if ready_only and m.state != READY:
                continue
            entries.append(ModelIndexEntry(name, m.version, m.state, m.reason))
        return entries

    def model(self, name: str, version: str = "") -> Model:
        with self._lock:
            m = self.models.get(name)
        if m is None:
            raise InferError("NOT_FOUND", f"Request for unknown model: '{name}' is not found")
        if version not in ("", m.version):
            raise InferError("NOT_FOUND", f"Request for unknown model: '{name}' version {version} "
                                          f"is not found")
        if m.state != READY:
            raise InferError("NOT_FOUND", f"Request for unknown model: '{name}' has no available "
                                            f"versions")
        return m

    def add_function(self, name: str, fn: Callable[[Dict[str, object]], Dict[str, object]], *,
                     inputs: Sequence[dict] = (), outputs: Sequence[dict] = (),
                     decoupled: bool = False) -> None:
        """Serve ``fn`` as a model: a stand-in for a non-python model in BLS tests."""
        m = Model(self, name, None)
        m.function = fn
        m.config = {"name": name, "backend": "function", "max_batch_size": 0,
                    "input": list(inputs), "output": list(outputs),
                    "model_transaction_policy": {"decoupled": decoupled}}
        m.state = READY
        with self._lock:
            self.models[name] = m

    # ------------------------------------------------------------ inference
    def submit(self, request: InferRequest,
               on_response: Optional[Callable[[InferResponse], None]] = None) -> Call:
        """Queue one request; responses go to ``on_response`` (and ``Call.responses``)."""
        model = self.model(request.model_name, request.model_version)
        call = Call(request, on_response)
        batch_size = validate(model.config, request) if model.config.get("input") is not None \
            else 0
        if model.function is not None:
            self._run_function(model, call)
            return call
        if "sequence_batching" in model.config:
            request = call.request = model.check_sequence(request, batch_size)
        outputs = request.requested_outputs or [o["name"] for o in model.config.get("output", [])]
        data = convert.request_data(request, outputs, -1 if not request.model_version
                                    else int(request.model_version))
        work = model.work(call, data, batch_size)
        model.queue.put(work)
        return call

    def infer(self, request: InferRequest, timeout_s: Optional[float] = None) -> List[InferResponse]:
        """Every response of one request, up to the final one."""
        call = self.submit(request)
        if not call.wait(timeout_s):
            call.cancel()
            raise InferError("UNAVAILABLE", f"no final response from model "
                                            f"'{request.model_name}' within {timeout_s:g} s")
        return list(call.responses)

    def execute(self, requests: Sequence[InferRequest],
                timeout_s: Optional[float] = None) -> List[List[InferResponse]]:
        """These requests (of one model) in ONE execute call, on the model's first instance."""
        if not requests:
            return []
        model = self.model(requests[0].model_name, requests[0].model_version)
        calls, work = [], []
        for request in requests:
            if request.model_name != model.name:
                raise InferError("INVALID_ARG", "execute() takes requests of one model")
            call = Call(request, None)
            batch_size = validate(model.config, request)
            outputs = request.requested_outputs or [o["name"] for o in model.config.get("output", [])]
            data = convert.request_data(request, outputs, -1)

            calls.append(call)
            work.append(model.work(call, data, batch_size))
        model.run(model.instances[0], work)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for call in calls:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            call.wait(left)
        return [list(c.responses) for c in calls]

    def _run_function(self, model: Model, call: Call) -> None:
        arrays = {t.name: t.array for t in call.request.inputs}
        try:
            result = model.function(arrays)
            outs = [v if isinstance(v, InferTensor) else InferTensor.of(k, v)
                    for k, v in (result or {}).items()]
            call._add(InferResponse(model.name, model.version, call.request.request_id, outs))
        except Exception as e:  # noqa: BLE001
            call._add(InferResponse(model.name, model.version, call.request.request_id,
                                    error=InferError("INTERNAL", f"{type(e).__name__}: {e}")))

    # ------------------------------------------------------------ observability
    def metrics_text(self) -> str:
        return self.metrics.prometheus_text()

    def log_lines(self) -> List[str]:
        return self.log.lines

    # ------------------------------------------------------------ what stubs ask (Services)
    def log_message(self, stub, filename, line, level, message) -> None:
        self.log.write(level, filename, line, message)

    def bls(self, stub: StubProcess, request: RequestData,
            on_response: Callable[[ResponseData], None], streaming: bool) -> None:
        name = request.model_name
        prefix = f"Model {name} - Error when running inference: "
        with self._lock:
            m = self.models.get(name)
        if m is None and self.load_on_demand and self._model_dir(name) is not None:
            try:
                self.load(name)
            except InferError:
                pass
            with self._lock:
                m = self.models.get(name)
        version = "" if request.model_version < 0 else str(request.model_version)
        if m is None or m.state != READY or version not in ("", m.version):
            raise BLSRefused(prefix + f"Failed for execute the inference request. Model '{name}' "
                                      f"is not ready.")
        if m.decoupled and not streaming:
            raise BLSRefused(
                prefix + f"Model {name} is using the decoupled. The current BLS request call "
                "doesn't support models using the decoupled transaction policy. Please use "
                "'decoupled=True' argument to the 'exec' or 'async_exec' calls for decoupled "
                "models.'")
        harness_request = convert.request_from_data(request)

        def forward(resp: InferResponse) -> None:
            data = convert.data_from_response(resp)
            data.is_last_response = resp.final
            if data.error is not None:
                # request_executor.cc rethrows the response's error and keeps only its text:
                # the model sees TritonError INTERNAL whatever code the callee gave
                data.error = (int(L.TRITONSERVER_Error_Code.INTERNAL), data.error[1])
            on_response(data)
        try:
            return self.submit(harness_request, forward)    # its cancel() for r25.04+ streams
        except InferError as e:
            raise BLSRefused(prefix + e.message) from None

    def model_control(self, stub, command, name, version, config, files, unload_dependents):
        try:
            if command == C.LoadModelRequest:
                self.load(name, config or None, files or None)
                return True, None
            if command == C.UnloadModelRequest:
                self.unload(name, unload_dependents)
                return False, None
            return self.is_ready(name, version), None
        except InferError as e:
            return False, e.message

    def metric(self, stub, command, message):
        reg = self.metrics
        try:
            if command == C.MetricFamilyRequestNew:
                return 0.0, reg.family_new(message["name"], message["description"],
                                           message["kind"]), None
            if command == C.MetricFamilyRequestDelete:
                reg.family_delete(message["address"])
                return 0.0, 0, None
            address = message.get("metric_address", 0)
            if command == C.MetricRequestNew:
                return 0.0, reg.metric_new(message["metric_family_address"], message["labels"],
                                           message["buckets"]), None
            if command == C.MetricRequestDelete:
                reg.metric_delete(address)
                return 0.0, 0, None
            if command == C.MetricRequestValue:
                return reg.value(address), address, None
            value = float(message.get("operation_value", 0.0))
            if command == C.MetricRequestIncrement:
                reg.increment(address, value)
            elif command == C.MetricRequestSet:
                reg.set(address, value)
            elif command == C.MetricRequestObserve:
                reg.observe(address, value)
            return 0.0, address, None
        except MetricError as e:
            return 0.0, 0, str(e)

