"""Fault injection under the real tritonserver: kill or stop a stub (or the server) mid-request and
record what a client, the server and the machine see afterwards.

One scenario = one fresh tritonserver with two models served by the same stub kind: ``victim``
(the fault hits its stub while a request is in flight) and ``bystander`` (must keep serving).
Faults:

- ``stub-sigkill``: SIGKILL of the victim's stub process alone (what the OOM killer does);
- ``stub-sigstop``: SIGSTOP of the victim's stub (a hung process);
- ``stub-group-sigkill``: SIGKILL of every process of the victim's stub at once (ours has a
  heartbeat helper; a process-group kill);
- ``server-sigkill``: SIGKILL of tritonserver;
- ``server-sigstop``: SIGSTOP of tritonserver for ``SERVER_STOP_S``; meanwhile the victim's
  wait in model code ends, so its stub answers a stopped parent; then SIGCONT;
- ``memory-exhausted`` and ``fds-exhausted`` (``execute`` only; no signal): the victim's
  ``execute`` lowers its own RLIMIT_AS (RLIMIT_NOFILE), takes all it may, keeps it, and returns
  its response: can the stub still answer, serve the next request, finalize and exit?

Phases: ``stream`` (a decoupled model with its stream open, between two responses),
``execute`` (a non-decoupled model inside ``execute``), ``async-execute`` (the same inside an
``async def execute``), ``initialize`` (a load by a client after
the start, inside ``initialize``), ``auto-complete`` (the same, inside
``auto_complete_config``), ``bls`` (inside ``InferenceRequest.exec()``: the victim waits
for the reply of a third model, ``target``, which sleeps until the runner releases it after the
fault) and ``finalize`` (an unload by a client, inside ``finalize()``). Each victim writes a
marker file when it gets there (``MARKERS``), and the fault comes once it exists: the stub waits
in model code, holding none of the region's locks. A stub killed inside one (the parent's next
lock of it throws ``boost::interprocess::lock_exception`` and tritonserver aborts, with either
stub) is a matter of chance that a test must not depend on; docs/reliability.md reports it
separately. The tests (tests/test_faults.py) assert the bounds;
``python -m tritonstub.testing.faults --runs N --write docs/reliability.md`` runs the whole
matrix for both stubs and writes the table (``--phases bls,finalize --chance-runs 0``: only
those phases' rows are run and replaced, the others stay).
"""
from __future__ import annotations

import argparse
import os
import queue
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np

from .reference import Reference, provision
from .tritonserver import ModelSpec, TritonServer, make_model_repository, processes_naming
from .procs import parent_pid

FAULTS = ("stub-sigkill", "stub-sigstop", "stub-group-sigkill", "server-sigkill", "server-sigstop",
          "memory-exhausted", "fds-exhausted")
PHASES = ("stream", "execute", "async-execute", "initialize", "auto-complete", "bls", "finalize")
#: Faults the victim's model brings on itself inside ``execute`` (no signal): it takes every byte
#: of address space or every descriptor it may have, keeps them, and returns its response.
EXHAUSTION_FAULTS = ("memory-exhausted", "fds-exhausted")
#: How long ``server-sigstop`` keeps tritonserver stopped (the victim's wait in model code ends
#: meanwhile, so the stub answers a stopped parent); far longer than the parent's one-second
#: health check and the stub's 300 ms heartbeat.
SERVER_STOP_S = 5.0
#: Phases where a client loads the victim after the start and the fault hits inside that load.
LOAD_PHASES = ("initialize", "auto-complete")
#: ``busy``: a decoupled model sending a response every 2 ms when the fault comes, so the stub
#: may be inside one of the region's locks: the outcome is a matter of chance (matrix only).
CHANCE_PHASES = ("busy",)
#: How long a client may wait for an answer after the fault before we call it a hang.
CLIENT_BOUND_S = 10.0

#: How long the victim may take to unload after the fault (a stub's unload takes < 1 s).
UNLOAD_BOUND_S = 10.0

#: How long the victim may take to reach the point where the fault hits (a loaded machine).
MARKER_BOUND_S = 60.0

#: The file each phase's victim writes when it waits in model code (no lock held, no handshake
#: under way): the fault comes once it exists.
MARKERS = {"stream": "victim/in_stream", "execute": "victim/in_execute",
           "async-execute": "victim/in_execute",
           "initialize": "victim/in_initialize", "auto-complete": "victim/in_auto_complete",
           "bls": "target/in_target",
           "finalize": "victim/in_finalize"}

#: Responses the decoupled victim sends before it waits with its stream open.
STREAMED = 30

#: Put in place of PROCEED in a victim's source: its wait in model code (bounded, so that
#: nothing waits for ever), which only ``server-sigstop`` ends, by writing ``proceed`` in the
#: model's directory. After the other faults the wait goes on until the stub is stopped: a stub
#: that the parent gave up on must not send (tritonserver 2.51 then crashes, with either stub;
#: docs/reliability.md).
_PROCEED = """
import os as _os
import time as _time


def _wait_to_proceed(model_dir, bound_s=600):
    proceed = _os.path.join(model_dir, "proceed")
    deadline = _time.monotonic() + bound_s
    while not _os.path.exists(proceed) and _time.monotonic() < deadline:
        _time.sleep(0.02)
"""

_STREAM = """
import numpy as np
import triton_python_backend_utils as pb_utils
PROCEED


class TritonPythonModel:
    def initialize(self, args):
        self.model_dir = args["model_repository"]

    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            for i in range(STREAMED):
                sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.full(1, i, np.int32))]))
            # Every send has returned, so its handshake with the parent is over: the stub holds
            # no lock and no parent thread waits for it while the stream stays open.
            open(self.model_dir + "/in_stream", "w").close()
            _wait_to_proceed(self.model_dir)
            # One more response (a client sees no empty final one), then the end of the stream.
            sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.full(1, STREAMED, np.int32))]))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
"""

_BUSY = """
import time
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            for i in range(100000):
                sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.full(1, i, np.int32))]))
                time.sleep(0.002)
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
"""

_INITIALIZE = """
import os
import triton_python_backend_utils as pb_utils
PROCEED


class TritonPythonModel:
    def initialize(self, args):
        marker = os.path.join(args["model_repository"], "in_initialize")
        if not os.path.exists(marker):             # the first load waits here; later ones do not
            open(marker, "w").close()
            _wait_to_proceed(args["model_repository"])

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.get_input_tensor_by_name(r, "IN")]) for r in requests]
"""

#: auto_complete_config() has no model directory in its arguments: the marker goes next to the
#: version directory of model.py. A second load (after the marker) returns at once.
_AUTO_COMPLETE = """
import os
import time
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    @staticmethod
    def auto_complete_config(auto_complete_model_config):
        model_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        marker = os.path.join(model_dir, "in_auto_complete")
        if not os.path.exists(marker):
            open(marker, "w").close()
            release = os.path.join(model_dir, "release")
            deadline = time.monotonic() + 600
            while not os.path.exists(release) and time.monotonic() < deadline:
                time.sleep(0.02)
        return auto_complete_model_config

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy())])
                for r in requests]
"""

_EXECUTE = """
import triton_python_backend_utils as pb_utils
PROCEED

class TritonPythonModel:
    def initialize(self, args):
        self.model_dir = args["model_repository"]

    def execute(self, requests):
        x = pb_utils.get_input_tensor_by_name(requests[0], "IN").as_numpy()
        if x[0] == 1:
            open(self.model_dir + "/in_execute", "w").close()
            _wait_to_proceed(self.model_dir)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", x)]) for _ in requests]
"""

#: The victim of an exhaustion fault: its first request (IN == 1) takes every byte of address
#: space (every descriptor) that a lowered limit leaves it, keeps them until the stub exits, and
#: then returns its response; later requests answer at once. The address space taken is virtual
#: (calloc'd pages are not touched), so the machine's memory is not at risk.
_EXHAUST = """
import os
import resource
import triton_python_backend_utils as pb_utils

HEADROOM = 256 << 20


def _address_space():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024


class TritonPythonModel:
    def initialize(self, args):
        self.model_dir = args["model_repository"]
        self.kept = []

    def execute(self, requests):
        x = pb_utils.get_input_tensor_by_name(requests[0], "IN").as_numpy()
        if x[0] == 1 and not self.kept:
            if RESOURCE == "memory":
                _, hard = resource.getrlimit(resource.RLIMIT_AS)
                resource.setrlimit(resource.RLIMIT_AS, (_address_space() + HEADROOM, hard))
                for size in (1 << 20, 4096, 64):
                    try:
                        while True:
                            self.kept.append(bytearray(size))
                    except MemoryError:
                        pass
            else:
                soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
                resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 256), hard))
                try:
                    while True:
                        self.kept.append(os.open(os.devnull, os.O_RDONLY))
                except OSError:
                    pass
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", x)]) for _ in requests]
"""

#: The same as _EXECUTE with ``async def execute``: the stub runs it on its event loop.
_ASYNC_EXECUTE = """
import asyncio
import os
import time
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.model_dir = args["model_repository"]

    async def execute(self, requests):
        x = pb_utils.get_input_tensor_by_name(requests[0], "IN").as_numpy()
        if x[0] == 1:
            open(self.model_dir + "/in_execute", "w").close()
            proceed = os.path.join(self.model_dir, "proceed")
            deadline = time.monotonic() + 600
            while not os.path.exists(proceed) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", x)]) for _ in requests]
"""

_BLS = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "IN")
            # The stub waits here for the parent's BLS reply while 'target' sleeps.
            reply = pb_utils.InferenceRequest(model_name="target", inputs=[x],
                                              requested_output_names=["OUT"]).exec()
            if reply.has_error():
                raise pb_utils.TritonModelException(reply.error().message())
            out = pb_utils.get_output_tensor_by_name(reply, "OUT").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", out)]))
        return responses
"""

#: The BLS victim's callee: its first request writes in_target and sleeps until the runner
#: writes ``release`` (bounded), then writes target_done; later requests answer at once.
_TARGET = """
import os
import time
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.model_dir = args["model_repository"]

    def execute(self, requests):
        release = os.path.join(self.model_dir, "release")
        if not os.path.exists(release):
            open(os.path.join(self.model_dir, "in_target"), "w").close()
            deadline = time.monotonic() + 600
            while not os.path.exists(release) and time.monotonic() < deadline:
                time.sleep(0.02)
            open(os.path.join(self.model_dir, "target_done"), "w").close()
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy())])
                for r in requests]
"""

#: finalize() waits in model code until the runner writes ``release`` (bounded); a second
#: load's finalize (after the marker) returns at once.
_FINALIZE = """
import os
import time
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.model_dir = args["model_repository"]

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy())])
                for r in requests]

    def finalize(self):
        marker = os.path.join(self.model_dir, "in_finalize")
        if os.path.exists(marker):
            return
        open(marker, "w").close()
        release = os.path.join(self.model_dir, "release")
        deadline = time.monotonic() + 600
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.02)
"""

_CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 0
{decoupled}
input [ {{ name: "IN" data_type: TYPE_INT32 dims: [ 1 ] }} ]
output [ {{ name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] }} ]
"""


@dataclass
class Outcome:
    stub: str
    fault: str
    phase: str
    client: str = ""                        # what the client saw after the fault (shortened)
    error: str = ""                         # the client's error in full, if it got one
    client_s: Optional[float] = None        # seconds from the fault to that answer (None: none)
    server_alive: bool = False              # tritonserver still running 2 s after the answer
    bystander_ok: Optional[bool] = None     # the other model still answered correctly
    stub_gone_s: Optional[float] = None     # server-sigkill: seconds until every stub process was gone
    unloaded_s: Optional[float] = None      # seconds the victim took to unload (None: not in UNLOAD_BOUND_S)
    reloaded: Optional[bool] = None         # loaded again and READY after that unload
    exit_status: Optional[int] = None       # tritonserver's exit status when stopped afterwards
    crash: str = ""                         # tritonserver's fatal signal / fatal log lines, if any
    leftovers: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)   # the phase's own findings

    def row(self) -> str:
        if self.fault == "server-sigkill":
            answered = "connection lost (server gone)"
        elif self.client_s is None:
            answered = f"no answer in {CLIENT_BOUND_S:.0f} s"
        elif self.client_s < 0:
            answered = f"{self.client} before the fault"
        else:
            answered = f"{self.client} after {self.client_s:.2f} s"
        if self.stub_gone_s is not None:
            gone = f"{self.stub_gone_s:.2f} s"
        elif self.fault == "server-sigkill":
            gone = f"not in {CLIENT_BOUND_S:.0f} s"
        else:
            gone = ""
        by = {None: "", True: "yes", False: "NO"}[self.bystander_ok]
        reloaded = "reloaded" if self.reloaded else "NOT reloaded"
        if self.fault == "server-sigkill" or (self.phase in LOAD_PHASES and self.reloaded is None):
            unload = ""
        elif self.phase == "finalize":
            # The unload was under way when the fault hit: seconds from the fault.
            if self.unloaded_s is not None:
                unload = f"in {self.unloaded_s:.2f} s, {reloaded}"
            else:
                unload = f"NO (not in {UNLOAD_BOUND_S:.0f} s)"
                if self.reloaded is not None:
                    unload += f"; {reloaded} after SIGCONT"
        elif self.fault == "stub-sigstop":
            unload = "not tried (stub stopped)"
        elif self.phase in LOAD_PHASES:
            unload = "loaded again" if self.reloaded else "could NOT be loaded again"
        elif self.unloaded_s is None:
            unload = f"NO (not in {UNLOAD_BOUND_S:.0f} s)"
        else:
            unload = f"in {self.unloaded_s:.2f} s, {reloaded}"
        left = "; ".join(self.leftovers) or "nothing"
        return (f"| {self.fault} | {self.phase} | {self.stub} | {answered} | "
                f"{'yes' if self.server_alive else 'NO'} | {by} | {unload} | {gone} | "
                f"{self.exit_status} | {left} | {'; '.join(self.notes)} |")


class _LoadError(Exception):
    pass


def _client_call(server: TritonServer, phase: str, answers: "queue.Queue"):
    """Start the phase's client call; its answers come on ``answers`` as (result, error, when)."""
    if phase in LOAD_PHASES or phase == "finalize":
        import threading
        action = "unload" if phase == "finalize" else "load"

        def control():
            status, body = server.http("POST", f"/v2/repository/models/victim/{action}", {},
                                       timeout=CLIENT_BOUND_S + 60)
            if status == 200:
                answers.put((f"{action}ed", None, time.monotonic()))
            else:
                text = body.decode(errors="replace") if status else "no answer (connection lost)"
                try:
                    import json
                    text = json.loads(text)["error"]
                    text = text.split(" state: ", 1)[-1]        # the reason after the state
                except (ValueError, KeyError, TypeError):
                    pass
                answers.put((None, _LoadError(f"{action} failed: {text}"), time.monotonic()))
        threading.Thread(target=control, daemon=True).start()
        return None
    import tritonclient.grpc as grpcclient
    client = grpcclient.InferenceServerClient(server.grpc_url)
    inp = grpcclient.InferInput("IN", [1], "INT32")
    inp.set_data_from_numpy(np.ones(1, np.int32))
    if phase in ("stream", "busy"):
        client.start_stream(callback=lambda result, error: answers.put((result, error, time.monotonic())))
        client.async_stream_infer("victim", [inp])
    else:
        client.async_infer("victim", [inp],
                           callback=lambda result, error: answers.put((result, error, time.monotonic())))
    return client


def _source(text: str) -> str:
    """A model's source with its placeholders filled in."""
    return text.replace("STREAMED", str(STREAMED)).replace("PROCEED", _PROCEED)


def stub_pids(server: TritonServer, model: str) -> List[int]:
    """The model's stub (the child of tritonserver) first, then its helpers (ours has one).
    Found by the model file's full path: other servers on the machine may serve a model of the
    same name."""
    model_py = str(server.model_repository / model / "1" / "model.py")
    pids = [p for p in processes_naming(model_py) if p != server.pid]
    return sorted(pids, key=lambda p: parent_pid(p) != server.pid)


def run(stub: str, fault: str, phase: str, reference: Optional[Reference] = None,
        workdir: Optional[Path] = None) -> Outcome:
    """One scenario on a fresh tritonserver; always stops it and removes what it left."""
    reference = reference or provision()
    workdir = Path(workdir or tempfile.mkdtemp(prefix="tritonstub-fault-"))
    decoupled = "model_transaction_policy { decoupled: true }" if phase in ("stream", "busy") else ""
    if fault in EXHAUSTION_FAULTS:
        if phase != "execute":
            raise ValueError(f"{fault} is a fault of the execute phase only, not of {phase}")
        source = _EXHAUST.replace("RESOURCE", repr(fault.split("-")[0]))
    else:
        source = {"stream": _STREAM, "busy": _BUSY, "execute": _EXECUTE,
                  "async-execute": _ASYNC_EXECUTE, "initialize": _INITIALIZE,
                  "auto-complete": _AUTO_COMPLETE, "bls": _BLS, "finalize": _FINALIZE}[phase]
    specs = {
        "victim": ModelSpec(_source(source), config=_CONFIG.format(name="victim", decoupled=decoupled),
                            stub=stub),
        "bystander": ModelSpec(_source(_EXECUTE), config=_CONFIG.format(name="bystander", decoupled=""),
                               stub=stub),
    }
    if phase == "bls":
        specs["target"] = ModelSpec(_source(_TARGET), config=_CONFIG.format(name="target", decoupled=""), stub=stub)
    # In the initialize and auto-complete phases the victim is loaded by a client after the
    # start (the fault hits while that load runs); otherwise every model is loaded at start-up.
    loaded = [m for m in specs if not (phase in LOAD_PHASES and m == "victim")]
    repo = make_model_repository(workdir / "repo", specs, reference=reference)
    out = Outcome(stub, fault, phase)
    server = TritonServer(repo, reference=reference, log_dir=workdir / "log",
                          models=loaded,
                          extra_args=["--model-control-mode=explicit",
                                      *[f"--load-model={m}" for m in loaded]])
    server.start()
    client = None
    pids: List[int] = []
    try:
        answers: "queue.Queue" = queue.Queue()
        called = time.monotonic()
        client = _client_call(server, phase, answers)
        if fault in EXHAUSTION_FAULTS:
            # The model brings the fault on itself: the time is counted from the request.
            pids = stub_pids(server, "victim")
            _await_answer(out, answers, called)
            out.notes.append("the next request: " + _infer_text(server, "victim", 1))
            return _after_fault(out, server, repo, client, phase, fault)
        if phase in ("stream", "busy"):
            for _ in range(STREAMED):                         # every response arrived
                answers.get(timeout=30)
        if phase in MARKERS:
            _wait_for_file(repo / MARKERS[phase], f"the model never reached its {phase} marker")
        pids = stub_pids(server, "victim")
        assert pids, "the victim's stub process was not found"
        t0 = time.monotonic()
        if fault == "server-sigstop":
            # Every stub of the server keeps running; the victim's model is released while the
            # server is stopped, so its stub sends its answer to a stopped parent. The times
            # after this are counted from the SIGCONT.
            everyone = [p for p in processes_naming(str(repo)) if p != server.pid]
            os.kill(server.pid, signal.SIGSTOP)
            for name in ("target", "victim"):
                if (repo / name).is_dir():
                    (repo / name / "release").touch()
                    (repo / name / "proceed").touch()
            time.sleep(SERVER_STOP_S)
            gone = [p for p in everyone if not _running(p)]
            out.notes.append(f"stopped {SERVER_STOP_S:.0f} s: " + (
                f"{len(gone)} stub process(es) left meanwhile" if gone else "every stub stayed"))
            os.kill(server.pid, signal.SIGCONT)
            t0 = time.monotonic()
        elif fault == "server-sigkill":
            # Every stub of the server (the other models' too) and their helpers.
            everyone = [p for p in processes_naming(str(repo)) if p != server.pid]
            os.kill(server.pid, signal.SIGKILL)
            while any(_running(p) for p in everyone) and time.monotonic() - t0 < CLIENT_BOUND_S:
                time.sleep(0.02)
            if not any(_running(p) for p in everyone):
                out.stub_gone_s = time.monotonic() - t0
            return out
        else:
            sig = signal.SIGSTOP if fault == "stub-sigstop" else signal.SIGKILL
            for pid in (pids if fault == "stub-group-sigkill" else pids[:1]):
                os.kill(pid, sig)
        _await_answer(out, answers, t0)
        if phase == "finalize":
            _after_finalize_fault(out, server, repo, pids, t0)
            return out
        out = _after_fault(out, server, repo, client, phase, fault)
        client = None
        return out
    finally:
        for name in ("target", "victim"):           # end every wait the models still have
            if (repo / name).is_dir():
                (repo / name / "release").touch()
        if fault == "stub-sigstop":
            for pid in pids:
                _signal(pid, signal.SIGCONT)
        if fault == "server-sigstop":
            _signal(server.pid, signal.SIGCONT)
        if client is not None:
            _close_client(client, phase)
        out.exit_status = server.stop(timeout=15)
        if fault != "server-sigkill":
            out.crash = server.crash_report()
        if server.killed:
            out.leftovers.append("server did not exit on SIGTERM (killed)")
        if server.orphans:
            out.leftovers.append(f"{len(server.orphans)} stub process(es) outlived the server")
        if server.leaked_regions:
            out.leftovers.append(f"{len(server.leaked_regions)} /dev/shm region(s)")


def _after_fault(out: Outcome, server: TritonServer, repo: Path, client, phase: str,
                 fault: str) -> Outcome:
    """After the client's answer: is the server up and serving the bystander, can the victim
    be unloaded and loaded again? Closes ``client``."""
    try:
        time.sleep(2)                 # a server that aborts on the fault does so by then
        out.server_alive = server.running
        if out.server_alive:
            out.bystander_ok = _model_answers(server, "bystander")
        if out.server_alive and phase == "bls":
            # The target's request sleeps until now: does it end, and does the target serve?
            (repo / "target" / "release").touch()
            try:
                _wait_for_file(repo / "target" / "target_done", "", timeout=30)
                done = "its request returned after the release"
            except AssertionError:
                done = "its request did NOT return in 30 s after the release"
            served = "served" if _model_answers(server, "target") else "NOT served"
            out.notes.append(f"BLS target: {done}, then {served}")
        if out.server_alive and phase in LOAD_PHASES and out.client_s is None:
            # A second load would only queue behind the first.
            out.notes.append("a second load not tried (the first never returned)")
        elif out.server_alive and fault != "stub-sigstop" and phase in LOAD_PHASES:
            status, _ = server.http("POST", "/v2/repository/models/victim/load", {}, timeout=60)
            out.unloaded_s = 0.0 if status == 200 else None
            out.reloaded = status == 200 and (server.model_status("victim") or {}).get("state") == "READY"
        elif out.server_alive and fault != "stub-sigstop":
            # The client has its error and closes its stream (an open gRPC stream keeps the
            # unload waiting, measured with our stub: not in 10 s; after the close, ~1 s).
            _close_client(client, phase)
            out.unloaded_s, out.reloaded = _unload_and_reload(server, "victim")
        return out
    finally:
        _close_client(client, phase)


def _await_answer(out: Outcome, answers: "queue.Queue", t0: float) -> None:
    """The client's answer after the fault (bounded); a control call (load, unload) may have
    been answered before it: then ``client_s`` is negative."""
    while True:
        left = CLIENT_BOUND_S - (time.monotonic() - t0)
        try:
            result, error, when = answers.get(timeout=max(left, 0.001))
        except queue.Empty:
            return
        if error is not None:
            out.error = " ".join(str(error).split())
            out.client, out.client_s = f"error \"{_short(out.error)}\"", when - t0
            return
        if result in ("loaded", "unloaded"):
            out.client, out.client_s = f"the {result[:-2]} succeeded", when - t0
            return
        if hasattr(result, "as_numpy"):                  # an inference result
            out.client, out.client_s = f"the answer {result.as_numpy('OUT').tolist()}", when - t0
            return


def _after_finalize_fault(out: Outcome, server: TritonServer, repo: Path, pids: List[int],
                          t0: float) -> None:
    """The fault hit inside finalize() of an unload: does the unload finish (the victim
    UNAVAILABLE within UNLOAD_BOUND_S of the fault), does the victim load again? A stopped
    stub is continued (and its finalize released) after the bound, and the same asked again."""
    out.unloaded_s = _await_state(server, "victim", "UNAVAILABLE", t0 + UNLOAD_BOUND_S, t0)
    out.server_alive = server.running
    if out.server_alive:
        out.bystander_ok = _model_answers(server, "bystander")
    if out.unloaded_s is None and out.server_alive and out.fault == "stub-sigstop":
        for pid in pids:
            _signal(pid, signal.SIGCONT)
        (repo / "victim" / "release").touch()
        t1 = time.monotonic()
        later = _await_state(server, "victim", "UNAVAILABLE", t1 + UNLOAD_BOUND_S, t1)
        out.notes.append("after SIGCONT: " + (f"unloaded in {later:.2f} s" if later is not None
                                              else f"NOT unloaded in {UNLOAD_BOUND_S:.0f} s"))
        if later is None:
            return
    elif out.unloaded_s is None:
        return
    if out.server_alive:
        status, _ = server.http("POST", "/v2/repository/models/victim/load", {}, timeout=60)
        out.reloaded = status == 200 and (server.model_status("victim") or {}).get("state") == "READY"


def _await_state(server: TritonServer, model: str, state: str, deadline: float, since: float):
    """Seconds from ``since`` until ``model`` is in ``state``, or None if not by ``deadline``."""
    while True:
        if (server.model_status(model) or {}).get("state") == state:
            return time.monotonic() - since
        if time.monotonic() > deadline or not server.running:
            return None
        time.sleep(0.05)


def _wait_for_file(path: Path, what: str, timeout: float = MARKER_BOUND_S) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{what} (no {path.name} in {timeout:.0f} s)"
        time.sleep(0.02)


def _close_client(client, phase: str) -> None:
    if client is None:
        return
    try:
        if phase in ("stream", "busy"):
            client.stop_stream(cancel_requests=True)
        client.close()
    except Exception:  # noqa: BLE001 - the server may be gone
        pass


def _unload_and_reload(server: TritonServer, model: str):
    """Unload ``model`` (explicit model control), wait for the unload to finish, load it again.
    Returns (seconds the unload took or None, whether the new load became READY)."""
    t0 = time.monotonic()
    status, body = server.http("POST", f"/v2/repository/models/{model}/unload", {})
    if status != 200:
        return None, False
    unloaded = _await_state(server, model, "UNAVAILABLE", t0 + UNLOAD_BOUND_S, t0)
    if unloaded is None:
        return None, False
    status, _ = server.http("POST", f"/v2/repository/models/{model}/load", {}, timeout=60)
    return unloaded, status == 200 and (server.model_status(model) or {}).get("state") == "READY"


def _running(pid: int) -> bool:
    from .procs import process_alive
    return process_alive(pid)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass


def _short(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _infer_text(server: TritonServer, model: str, value: int, timeout: float = CLIENT_BOUND_S) -> str:
    """One request to ``model`` over HTTP: "the answer [...]" or "error \"...\"" (shortened)."""
    import tritonclient.http as httpclient
    try:
        inp = httpclient.InferInput("IN", [1], "INT32")
        inp.set_data_from_numpy(np.full(1, value, np.int32))
        result = server.http_client(network_timeout=timeout).infer(model, [inp])
        return f"the answer {result.as_numpy('OUT').tolist()}"
    except Exception as e:  # noqa: BLE001 - what the client saw is the finding
        return f"error \"{_short(str(e), 70)}\""


def _model_answers(server: TritonServer, model: str) -> bool:
    """``model`` still echoes a request (tritonclient's default 60 s network timeout)."""
    return _infer_text(server, model, 7, timeout=60.0) == "the answer [7]"


HEADER = ("| fault | phase | stub | what the client saw | server up | other model served "
          "| victim unloaded | stub gone after | server exit | left behind | notes |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|")


CHANCE_HEADER = ("| fault | phase | stub | runs | server aborted (SIGABRT) | victim unloaded and reloaded "
                 "| could not unload | left behind after the server's exit |\n|---|---|---|---|---|---|---|---|")


def chance_row(outcomes: List[Outcome]) -> str:
    """One row for several runs of a fault whose outcome is a matter of chance."""
    o = outcomes[0]
    n = len(outcomes)
    aborted = sum(1 for x in outcomes if x.exit_status == -6 or "SIGABRT" in x.crash)
    reloaded = sum(1 for x in outcomes if x.unloaded_s is not None and x.reloaded)
    stuck = sum(1 for x in outcomes if x.server_alive and x.unloaded_s is None)
    left = sum(1 for x in outcomes if x.leftovers)
    return (f"| {o.fault} | {o.phase} | {o.stub} | {n} | {aborted} | {reloaded} | {stuck} | "
            f"{left} run(s) |")


def _write_table(path: Path, marker: str, table: str) -> None:
    text = path.read_text()
    start, end = f"<!-- {marker} -->", f"<!-- /{marker} -->"
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    path.write_text(f"{head}{start}\n{table}\n{end}{tail}")


def _read_rows(path: Path, marker: str) -> List[str]:
    """The rows of the table between ``marker``'s comments in ``path`` (header left out)."""
    text = path.read_text()
    start, end = f"<!-- {marker} -->", f"<!-- /{marker} -->"
    if start not in text:
        return []
    body = text.split(start, 1)[1].split(end, 1)[0]
    return [line for line in body.strip().splitlines()[2:] if line.startswith("|")]


def merge_rows(old: List[str], new: List[str]) -> List[str]:
    """``new`` rows replace the old rows of the same (fault, phase); old rows with fewer cells
    than the header get empty ones; the result is in the matrix order (fault, phase, stub)."""
    width = HEADER.splitlines()[0].count("|")

    def key(row: str):
        cells = [c.strip() for c in row.strip("|").split("|")]
        fault, phase, stub = cells[:3]
        return (FAULTS.index(fault) if fault in FAULTS else len(FAULTS),
                PHASES.index(phase) if phase in PHASES else len(PHASES),
                ("cpp", "ours").index(stub) if stub in ("cpp", "ours") else 2)

    replaced = {key(r)[:2] for r in new}
    kept = []
    for row in old:
        if key(row)[:2] in replaced:
            continue
        kept.append(row + " |" * (width - row.count("|")))
    return sorted(kept + new, key=key)         # stable: runs of one scenario keep their order


def _main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tritonstub.testing.faults",
                                     description="Run the fault matrix on both stubs and print (or write) the tables.")
    parser.add_argument("--runs", type=int, default=1, help="runs of each scenario")
    parser.add_argument("--phases", default=",".join(PHASES),
                        help=f"comma-separated phases to run (default: all of {','.join(PHASES)}); "
                        "with --write, their rows replace those already in the table and the "
                        "other rows stay")
    parser.add_argument("--faults", default=",".join(FAULTS),
                        help=f"comma-separated faults to run (default: all of {','.join(FAULTS)})")
    parser.add_argument("--stubs", default="cpp,ours", help="comma-separated stubs (default: cpp,ours)")
    parser.add_argument("--chance-runs", type=int, default=5,
                        help="runs of each fault in the 'busy' phase (0: skip that table)")
    parser.add_argument("--write", type=Path, help="write the tables into this markdown file "
                        "(between the '<!-- fault matrix -->' and '<!-- busy matrix -->' markers)")
    args = parser.parse_args(argv)
    chosen = {}
    for name, allowed in (("phases", PHASES), ("faults", FAULTS), ("stubs", ("cpp", "ours"))):
        values = [v for v in getattr(args, name).split(",") if v]
        unknown = [v for v in values if v not in allowed]
        if unknown:
            parser.error(f"unknown {name}: {', '.join(unknown)} (choose from {', '.join(allowed)})")
        chosen[name] = values
    rows = []
    for fault in chosen["faults"]:
        for phase in chosen["phases"]:
            if fault in EXHAUSTION_FAULTS and phase != "execute":
                continue
            for stub in chosen["stubs"]:
                for _ in range(args.runs):
                    out = run(stub, fault, phase)
                    rows.append(out.row())
                    print(rows[-1], flush=True)
    if args.write and rows:
        rows = merge_rows(_read_rows(args.write, "fault matrix"), rows)
        _write_table(args.write, "fault matrix", HEADER + "\n" + "\n".join(rows))
    if args.chance_runs:
        chance = []
        for fault in ("stub-sigkill", "stub-group-sigkill"):
            for stub in chosen["stubs"]:
                outs = []
                for _ in range(args.chance_runs):
                    outs.append(run(stub, fault, "busy"))
                    print(outs[-1].row(), flush=True)
                chance.append(chance_row(outs))
                print(chance[-1], flush=True)
        if args.write:
            _write_table(args.write, "busy matrix", CHANCE_HEADER + "\n" + "\n".join(chance))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
