"""One stub process driven from the parent's side (python_be.cc ``ModelInstanceState`` and
stub_launcher.cc ``StubLauncher``), in Python.

Theory of operation
-------------------
:class:`StubProcess` owns one region (:class:`~tritonstub.harness.parent.ParentSide`: control block
and five queues laid out as libtriton_python.so lays them out) and one stub process, ours or any
other executable, started with the real ten-argument argv. It plays the parent's half of every
exchange (docs/protocol/r24.10.md §4):

- start-up: pop the stub's "health thread started" message, then pattern R on the main queues for
  AutoCompleteRequest (an auto-complete stub) or InitializeRequest (an instance stub): push the
  request on stub_message_queue, wait for the reply on parent_message_queue, read it, push the
  release 0;
- execute: a RequestBatch of InferRequestShm (``address`` and ``response_factory_address`` are
  ids we choose; the stub hands them back opaque), pattern R again, then one response per request
  from the ExecuteResponse block; the release flags are read back (RESCHEDULE);
- the stub's own requests on stub_to_parent_mq, read by a monitor thread as the parent's
  ``StubToParentMQMonitor``: logs, cleanups, cancellation queries, metrics and model control are
  answered in the monitor thread; ResponseSend and BLS requests in a small thread pool, as the
  parent posts them to its pool;
- finalize: FinalizeRequest, the same handle back, then the process must exit.

Liveness is checked as the parent checks it, but every wait here is bounded by it: a wait for the
stub's reply clears ``stub_health`` and, when a one-second slice passes with no reply and no
heartbeat (or the process is gone), fails with Triton's text ``Stub process '<name>' is not
healthy.``; waits the C++ parent makes without a check (the first message, auto-complete, finalize)
are tied to the process being alive and to an overall limit here, so a dead or hung stub is an
error, never a hang. What the stub asks of the server (BLS inference, model control, metrics, the
log) goes to a :class:`Services` object: the engine.
"""
from __future__ import annotations

import itertools
import os
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .. import protocol
from ..errors import ShmError
from ..ipc import handshake, libc
from ..ipc.handshake import PeerGone
from ..protocol import control
from ..protocol.requests import RequestData, read_release_flags, read_request, \
    read_request_batch, write_request, write_request_batch
from ..protocol.responses import ResponseData, read_execute_response, read_response, \
    write_response, write_response_batch
from ..protocol.scalars import Owned, write_string
from .parent import ParentSide, new_region_name

L = protocol.current()
C = L.PYTHONSTUB_CommandType
H = L.OWNERSHIP_HEADER

#: How long the stub may take to send its first message (r25.08's parent allows 10 s; the
#: interpreter start and numpy import take well under that).
FIRST_MESSAGE_TIMEOUT_S = 30.0
#: Auto-complete and finalize: the C++ parent waits without a check; we bound them.
AUTO_COMPLETE_TIMEOUT_S = 120.0
FINALIZE_TIMEOUT_S = 60.0
EXIT_TIMEOUT_S = 10.0
#: One-second slices without a heartbeat before a live stub counts as hung. Triton gives up after
#: one; on a loaded test machine a heartbeat can be late by more than that, so we allow three.
HEALTH_MISSES = 3
_IDS = itertools.count(0x10000, 0x40)
#: Regions the harness creates: ``/dev/shm/tritonstub_harness_<pid>_<uuid>``.
REGION_PREFIX = f"tritonstub_harness_{os.getpid()}_"


def remove_stale_regions() -> List[str]:
    """Unlink the regions of harness processes that died without cleaning up (SIGKILL): the
    owner's pid is in the name, so a region whose owner is gone is nobody's."""
    removed = []
    try:
        names = os.listdir("/dev/shm")
    except OSError:
        return removed
    for name in names:
        if not name.startswith("tritonstub_harness_"):
            continue
        pid = name[len("tritonstub_harness_"):].split("_", 1)[0]
        if not pid.isdigit() or os.path.exists(f"/proc/{pid}"):
            continue
        try:
            os.unlink(f"/dev/shm/{name}")
            removed.append(name)
        except OSError:
            pass
    return removed


class BLSRefused(Exception):
    """The server refused a BLS request before running it (unknown or unready model, ...):
    ``str()`` is the text the stub gets as the ResponseBatch error."""


class StubFailed(Exception):
    """The stub died, hung or answered something the protocol does not allow: ``str()`` is the
    text Triton would report."""


@dataclass
class StubCommand:
    """How to start a stub: the executable (argv[0]) and what precedes the ten arguments (ours
    runs as ``python -m tritonstub.stub``), its ``python_lib`` directory and environment."""
    argv_prefix: List[str]
    python_lib: str
    env: Dict[str, str] = field(default_factory=dict)
    label: str = "ours"


@dataclass
class Pending:
    """One request in flight, as the parent's InferRequest/response factory pair."""
    request: object                               # the harness's InferRequest
    data: RequestData
    on_response: Callable[[ResponseData, bool], None]   # (response or None-error, final)
    address: int = 0
    factory: int = 0
    final_sent: bool = False
    factory_deleted: bool = False
    cancelled: bool = False
    release_flags: int = L.TRITONSERVER_REQUEST_RELEASE_ALL


class Services:
    """What a stub asks of the server. The engine implements it; every method runs in a
    harness thread and returns what the parent would write back."""

    def log_message(self, stub: "StubProcess", filename: str, line: int, level: int, message: str) -> None:
        raise NotImplementedError

    def bls(self, stub: "StubProcess", request: RequestData,
            on_response: Callable[[ResponseData], None], streaming: bool) -> None:
        """Run a BLS request; ``on_response`` for each response (the last with
        ``is_last_response``); an error is a ResponseData with ``error`` set."""
        raise NotImplementedError

    def bls_cancel(self, stub: "StubProcess", payload_id: int) -> None:
        pass

    def model_control(self, stub: "StubProcess", command: int, name: str, version: str,
                      config: str, files: Dict[str, bytes], unload_dependents: bool) -> Tuple[bool, Optional[str]]:
        """(is_model_ready, error text or None)."""
        raise NotImplementedError

    def metric(self, stub: "StubProcess", command: int, message: dict) -> Tuple[float, int, Optional[str]]:
        """(value, address, error text or None)."""
        raise NotImplementedError


class StubProcess:
    """A stub process and its region, seen from the parent."""

    def __init__(self, command: StubCommand, model_path: str, stub_name: str, services: Services,
                 *, decoupled: bool = False, runtime_modeldir: str = "DEFAULT",
                 shm_size: Optional[int] = None, shm_growth: Optional[int] = None,
                 on_output: Optional[Callable[[str], None]] = None,
                 parent_pid: Optional[int] = None, interactive: bool = False):
        self.command = command
        self.name = stub_name
        self.services = services
        kwargs = {}
        if shm_size:
            kwargs["size"] = shm_size
        if shm_growth:
            kwargs["growth"] = shm_growth
        self.parent = ParentSide.setup(name=new_region_name(REGION_PREFIX), decoupled=decoupled,
                                       **kwargs)
        self.region = self.parent.region
        self.q = self.parent.queues
        self._model_control_owned = Owned()     # the last model-control answer's error text
        argv = self.parent.stub_argv("STUB", model_path, command.python_lib, stub_name,
                                     runtime_modeldir, parent_pid=parent_pid)
        self.argv = list(command.argv_prefix) + argv[1:]
        self.proc: Optional[subprocess.Popen] = None
        self.pending: Dict[int, Pending] = {}      # by InferRequestShm.address
        self.by_factory: Dict[int, Pending] = {}
        self.lock = threading.Lock()
        self.execute_lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix=f"stub-{stub_name}")
        self._monitor: Optional[threading.Thread] = None
        # Each line the process writes to stdout or stderr goes to on_output (Triton's log gets
        # those lines as they are); without it, the process inherits ours.
        self._on_output = on_output
        self._output_thread: Optional[threading.Thread] = None
        self._interactive = interactive
        self.closed = False
        self.dead_reason: Optional[str] = None
        self.answered = False          # the stub answered its InitializeRequest
        # r25.04+: what Services.bls returned for each BLS stream (by InferPayload id), for
        # the stub's CancelBLSInferRequest
        self.bls_streams: Dict[int, object] = {}

    # ------------------------------------------------------------------ liveness
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _gone(self) -> StubFailed:
        return StubFailed(f"Stub process '{self.name}' is not healthy.")

    # ------------------------------------------------------------------ launch
    def launch(self) -> None:
        """StubLauncher::Launch: start the process, then wait for its first message."""
        # The monitor runs before the launch, as the parent's does.
        self._monitor = threading.Thread(target=self._monitor_loop, daemon=True,
                                         name=f"monitor-{self.name}")
        self._monitor.start()
        env = dict(os.environ)
        env.update(self.command.env)
        piped = self._on_output is not None
        self.proc = self.parent.launch(
            self.argv, env=env, stdout=subprocess.PIPE if piped else None,
            stderr=subprocess.STDOUT if piped else None,
            stdin=None if self._interactive else subprocess.DEVNULL)
        if self._on_output is not None:
            self._output_thread = threading.Thread(
                target=self._drain_output, args=(self.proc.stdout, self._on_output), daemon=True,
                name=f"output-{self.name}")
            self._output_thread.start()
        deadline = time.monotonic() + FIRST_MESSAGE_TIMEOUT_S
        while True:
            h = self.q["parent_message_queue"].pop(0.2)
            if h is not None:
                return
            if not self.alive():
                rc = self.proc.returncode
                how = (f"exited with status {rc}" if rc >= 0 else
                       f"was killed by signal {signal.Signals(-rc).name}")
                raise StubFailed(f"Stub process '{self.name}' {how} before it started.")
            if time.monotonic() > deadline:
                raise StubFailed(f"Stub process '{self.name}' sent no start-up message within "
                                 f"{FIRST_MESSAGE_TIMEOUT_S:g} s.")

    @staticmethod
    def _drain_output(stream, on_output: Callable[[str], None]) -> None:
        for raw in iter(stream.readline, b""):
            on_output(raw.decode("utf-8", "replace").rstrip("\n"))
        stream.close()

    # ------------------------------------------------------------------ pattern R
    def _handoff(self, what: str, value: int = 0, reply: Optional[Tuple[object, int]] = None) -> int:
        """Called just before the parent hands the stub something it wrote: ``what`` is
        "command" (``value``: the message handle pushed on stub_message_queue), "release" (the
        0 pushed after a reply), "reply" (``reply``: the layout and payload of a pattern B/D
        answer, just filled), "bls" (the InferExecResponse message handle) or "stream" (an
        InferStreamExecResponse message handle). Returns the value to hand over. Nothing
        happens here; the fuzz test (tritonstub.testing.fuzz) corrupts what the parent wrote."""
        return value

    def _send(self, command: int, args: int, owned: Owned) -> int:
        msg, _, _ = control.write_ipc_message(self.region, command, args, owned)
        handshake.push(self.q["stub_message_queue"], self._handoff("command", msg), self.alive)
        return msg

    def _receive(self, health_checked: bool = True, limit_s: Optional[float] = None) -> int:
        """ReceiveMessageFromStub: pop parent_message_queue in one-second slices; a slice with
        no reply and no heartbeat (or a dead process) fails as Triton does."""
        mq = self.q["parent_message_queue"]
        deadline = None if limit_s is None else time.monotonic() + limit_s
        misses = 0
        while True:
            if health_checked:
                self.parent.read_stub_health(reset=True)
            h = mq.pop(1.0)
            if h is not None:
                return h
            if not self.alive():
                raise self._gone()
            if health_checked:
                misses = 0 if self.parent.read_stub_health() else misses + 1
                if misses >= HEALTH_MISSES:
                    raise self._gone()
            if deadline is not None and time.monotonic() > deadline:
                raise StubFailed(f"Stub process '{self.name}' did not answer within {limit_s:g} s.")

    def _release(self) -> None:
        """The release 0 after every reply (the stub then drops its reply objects)."""
        try:
            handshake.push(self.q["stub_message_queue"], self._handoff("release", L.DUMMY_MESSAGE),
                           self.alive)
        except PeerGone:
            pass

    def auto_complete(self, config_json: str, limit_s: float = AUTO_COMPLETE_TIMEOUT_S) -> str:
        """AutoCompleteRequest -> the completed config JSON; StubFailed with the stub's error."""
        owned = Owned()
        try:
            arg = control.write_auto_complete_request(self.region, config_json, owned)
            self._send(C.AutoCompleteRequest, arg, owned)
            try:
                reply = self._receive(health_checked=False, limit_s=limit_s)
            except PeerGone:
                raise self._gone() from None
            try:
                command = control.read_command(self.region, reply)[0]
                if command != C.AutoCompleteResponse:
                    raise StubFailed(f"Unexpected reply {command} to an AutoCompleteRequest "
                                     f"from stub '{self.name}'.")
                config, error = control.read_auto_complete_response(self.region, reply)
            finally:
                self._release()
            if error is not None:
                raise StubFailed(error)
            return config if config is not None else config_json
        finally:
            owned.release(self.region)

    def initialize(self, params: Dict[str, str], limit_s: Optional[float] = None) -> None:
        """InitializeRequest; StubFailed with the stub's error text (and the stub exits), or
        when no answer comes within ``limit_s`` (Triton waits as long as the stub beats)."""
        owned = Owned()
        try:
            arg = control.write_initialize_request(self.region, params, owned)
            self._send(C.InitializeRequest, arg, owned)
            reply = self._receive(limit_s=limit_s)
            self.answered = True
            try:
                error = control.read_initialize_response(self.region, reply)
            finally:
                self._release()
            if error is not None:
                raise StubFailed(error)
        except PeerGone:
            raise self._gone() from None
        finally:
            owned.release(self.region)

    # ------------------------------------------------------------------ execute
    def execute(self, batch: Sequence[Pending], marks: Optional[List[int]] = None) -> Optional[str]:
        """One ExecuteRequest for ``batch``. Responses go to each Pending's ``on_response``;
        returns the batch's error text (every request not yet final gets it) or None.
        ``marks`` gets two ``monotonic_ns`` times: the request batch written and sent (end of
        the inputs), and the stub's reply read (start of the outputs)."""
        owned = Owned()
        region = self.region
        for p in batch:
            p.address = next(_IDS)
            p.factory = p.address + 8
            p.data.address, p.data.response_factory_address = p.address, p.factory
        with self.lock:
            for p in batch:
                self.pending[p.address] = p
                self.by_factory[p.factory] = p
        try:
            try:
                handles = [write_request(region, p.data, owned) for p in batch]
                rb = write_request_batch(region, handles, owned)
            except ShmError as e:
                # The region cannot hold the inputs (it could not grow: a small /dev/shm): the
                # batch fails with that error, as the parent's SaveRequestsToSharedMemory does;
                # the stub never saw it.
                return str(e)
            try:
                self._send(C.ExecuteRequest, rb, owned)
                if marks is not None:
                    marks.append(time.monotonic_ns())
                reply = self._receive()
                if marks is not None:
                    marks.append(time.monotonic_ns())
            except PeerGone:
                raise self._gone() from None
            try:
                result = read_execute_response(region, reply)
            finally:
                self._release()
            for p, h in zip(batch, handles):
                p.release_flags = read_release_flags(region, h)
            if result.error is not None:
                return result.error
            for p, resp in zip(batch, result.responses):
                if resp is None:
                    continue
                p.factory_deleted = True
                if p.release_flags == L.TRITONSERVER_REQUEST_RELEASE_RESCHEDULE and resp.error is None:
                    continue
                self._deliver(p, resp, True)
            return None
        finally:
            owned.release(region)

    def _deliver(self, p: Pending, resp: Optional[ResponseData], final: bool) -> None:
        if final:
            if p.final_sent:
                return
            p.final_sent = True
        p.on_response(resp, final)

    def finish(self, batch: Sequence[Pending]) -> None:
        """After execute: forget requests that are complete (the others still await their
        sender: decoupled models, or a response sender used by a non-decoupled model)."""
        with self.lock:
            for p in batch:
                if p.final_sent or p.release_flags == L.TRITONSERVER_REQUEST_RELEASE_RESCHEDULE:
                    self.pending.pop(p.address, None)
                    self.by_factory.pop(p.factory, None)

    def fail_pending(self, text: str) -> None:
        """Every request still waiting gets ``text`` as its final error (a dead stub)."""
        with self.lock:
            left = list(self.pending.values())
            self.pending.clear()
            self.by_factory.clear()
        for p in left:
            self._deliver(p, ResponseData(error=(L.TRITONSERVER_Error_Code.INTERNAL, text)), True)

    # ------------------------------------------------------------------ the stub's requests
    def _monitor_loop(self) -> None:
        mq = self.q["stub_to_parent_mq"]
        region = self.region
        while not self.closed:
            h = mq.pop(0.5)
            if h is None:
                if self.proc is not None and self.proc.poll() is not None and mq.fill() == 0:
                    if self.closed:
                        return
                continue
            if h == L.DUMMY_MESSAGE:
                return
            try:
                msg = control.read_ipc_message(region, h)
                cmd = msg.command
                if cmd in (C.ResponseSend, C.InferExecRequest, C.InferStreamExecRequest):
                    self.pool.submit(self._guarded, cmd, h, msg)
                else:
                    self._guarded(cmd, h, msg)
            except Exception as e:  # noqa: BLE001 - the parent logs and goes on
                self.services.log_message(self, "instance.py", 0, L.LogLevel.ERROR,
                                  f"tritonstub harness: bad message from stub '{self.name}': {e}")

    def _guarded(self, cmd: int, h: int, msg: control.IPCMessage) -> None:
        # The parent Loads what it reads (ref +1) and drops it when done: the stub releases its
        # own references as soon as the handshake lets it go, and without ours the blocks (the
        # mutex and condition we are still waiting on included) would be freed under us.
        region = self.region
        held = [h, msg.args] + ([msg.response_mutex, msg.response_cond]
                                if msg.inline_response else [])   # else not even initialised
        held = [x for x in held if x]
        try:
            for x in held:
                region.load(x)
        except Exception:  # noqa: BLE001 - a bad handle: answer nothing, as the parent would crash
            self.services.log_message(self, "instance.py", 0, L.LogLevel.ERROR,
                                      f"tritonstub harness: bad handle in command {cmd} from stub "
                                      f"'{self.name}'")
            return
        try:
            self._dispatch(cmd, h, msg)
        finally:
            region.release_many(held)

    def _dispatch(self, cmd: int, h: int, msg: control.IPCMessage) -> None:
        try:
            handler = _HANDLERS.get(cmd)
            if handler is None:
                self.services.log_message(self, "python_be.cc", 0, L.LogLevel.ERROR,
                                  "Unexpected message type received.")
                return
            handler(self, h, msg)
        except PeerGone:
            pass
        except Exception as e:  # noqa: BLE001
            self.services.log_message(self, "instance.py", 0, L.LogLevel.ERROR,
                                      f"tritonstub harness: failed to handle command {cmd} from "
                                      f"stub '{self.name}': {type(e).__name__}: {e}")
            self._answer_failure(cmd, msg, f"{type(e).__name__}: {e}")

    def _answer_failure(self, cmd: int, msg: control.IPCMessage, text: str) -> None:
        """A handler failed before answering: answer with an error where the message has room
        for one, so the stub is not left waiting."""
        layout = _LAYOUTS.get(cmd)
        if layout is None or not msg.args:
            return
        region = self.region
        payload = region.payload(msg.args)
        owned = Owned()

        def write():
            if "has_error" in layout.fields:
                fields = {"has_error": True}
                if "error" in layout.fields and "is_error_set" in layout.fields:
                    fields.update(is_error_set=True, error=write_string(region, text, owned))
                control.write_reply(region, payload, layout, **fields)
        try:
            self._answer(layout, payload, write)
        except Exception:  # noqa: BLE001
            pass
        finally:
            owned.release(region)

    def _answer(self, layout, payload: int, write: Optional[Callable[[], None]] = None,
                rounds: int = 2) -> None:
        box = control.mailbox(layout, payload)
        mu, cv = handshake.sync_objects(self.region, box.mutex, box.cond)

        def fill() -> None:
            if write is not None:
                write()
            self._handoff("reply", reply=(layout, payload))
        handshake.answer_flag(self.region, mu, cv, box.flag, self.alive, fill, rounds)

    def _on_log(self, h: int, msg: control.IPCMessage) -> None:
        rec = control.read_log_message(self.region, msg.args)
        try:
            self.services.log_message(self, rec.filename, rec.line, rec.level, rec.message)
        finally:
            self._answer(L.LogSendMessage, self.region.payload(msg.args))

    def _on_cleanup(self, h: int, msg: control.IPCMessage) -> None:
        region = self.region
        payload = region.payload(msg.args)
        ident = control.read_send_message(region, payload, L.CleanupMessage)["id"]
        if msg.command == C.DecoupledResponseFactoryCleanup:
            with self.lock:
                p = self.by_factory.get(ident)
            if p is not None:
                p.factory_deleted = True
        else:
            with self.lock:
                self.bls_streams.pop(ident, None)
            self.services.bls_cancel(self, ident)
        mu, cv = handshake.sync_objects(region, region.payload(msg.response_mutex),
                                        region.payload(msg.response_cond))
        flag = control.mailbox(L.CleanupMessage, payload).flag
        handshake.answer_flag(region, mu, cv, flag, self.alive, rounds=1)

    def _on_is_cancelled(self, h: int, msg: control.IPCMessage) -> None:
        region = self.region
        payload = region.payload(msg.args)
        f = control.read_send_message(region, payload, L.IsCancelledMessage)
        with self.lock:
            p = self.by_factory.get(f["response_factory_address"]) or \
                self.pending.get(f["request_address"])
        cancelled = bool(p is not None and p.cancelled)
        self._answer(L.IsCancelledMessage, payload,
                     lambda: control.write_reply(region, payload, L.IsCancelledMessage,
                                                 is_cancelled=cancelled))

    def _on_cancel_bls(self, h: int, msg: control.IPCMessage) -> None:
        """r25.04+ ProcessCancelBLSRequest: cancel the BLS stream's request if it still runs;
        the answer is ``is_cancelled`` true either way, as in python_be.cc."""
        region = self.region
        M = L.CancelBLSRequestMessage
        payload = region.payload(msg.args)
        ident = control.read_send_message(region, payload, M)["infer_payload_id"]
        with self.lock:
            handle = self.bls_streams.get(ident)
        if handle is not None and hasattr(handle, "cancel"):
            handle.cancel()
        self._answer(M, payload, lambda: control.write_reply(region, payload, M,
                                                             is_cancelled=True))

    def user_model_readiness(self, timeout_s: float = 5.0) -> Tuple[bool, Optional[str]]:
        """r26.03+ RunUserModelReadinessCheck: (is_ready, error text or None). Without the
        stub's control-block flag the model has no ``is_ready`` and is ready, with no message;
        otherwise UserModelReadinessRequest on parent_to_stub_mq, answered on the message's
        inline mutex/condition within ``timeout_s``."""
        T = L
        if "stub_has_user_model_readiness_fn" not in T.IPCControlShm.fields:
            return True, None
        region = self.region
        control_p = self.parent.control
        if not T.IPCControlShm.get(region.buf, control_p, "stub_has_user_model_readiness_fn"):
            return True, None
        M = T.UserModelReadinessMessage
        owned = Owned()
        try:
            with region.locked():
                args = control.write_user_model_readiness(region, owned)
                msg, mu_h, cv_h = control.write_ipc_message(
                    region, C.UserModelReadinessRequest, args, owned, inline=True,
                    sync_sizes=(libc.MUTEX_SIZE, libc.COND_SIZE))
            mu, cv = handshake.sync_objects(region, region.payload(mu_h), region.payload(cv_h),
                                            True)
            box = control.mailbox(M, region.payload(args))
            deadline = time.monotonic() + timeout_s

            def alive() -> bool:
                return self.alive() and time.monotonic() < deadline
            def read():
                # the error text too, before the stub is released: it frees the string then
                fields = control.read_send_message(region, box.payload, M)
                return fields, control.reply_error(
                    region, fields, "User-defined is_ready() failed with unknown error")
            try:
                reply, error = handshake.start_flag(
                    region, self.q["parent_to_stub_mq"], msg, mu, cv, box.flag, alive, read)
            except PeerGone:
                if self.alive():
                    # the stub may still answer: keep the message (as the C++ parent does)
                    owned.clear()
                    return False, "Timed out waiting for user-defined is_ready() response"
                return False, ("Stub process is not healthy while waiting for user-defined "
                               "is_ready() response")
            if reply["has_error"]:
                return False, error
            return (bool(reply["is_ready"]) if reply["function_exists"] else True), None
        finally:
            owned.release(region)

    def _on_metric(self, h: int, msg: control.IPCMessage) -> None:
        region = self.region
        payload = region.payload(msg.args)
        f = control.read_send_message(region, payload, L.CustomMetricsMessage)
        if msg.command in (C.MetricFamilyRequestNew, C.MetricFamilyRequestDelete):
            name, description, kind, address = control.read_metric_family(region, f["message"])
            message = {"name": name, "description": description, "kind": kind, "address": address}
        else:
            message = control.read_metric(region, f["message"])
        value, address, error = self.services.metric(self, msg.command, message)
        owned = Owned()

        def write():
            fields = {"value": float(value), "address": int(address),
                      "has_error": error is not None, "is_error_set": error is not None}
            if error is not None:
                fields["error"] = write_string(region, error, owned)
            control.write_reply(region, payload, L.CustomMetricsMessage, **fields)
        try:
            self._answer(L.CustomMetricsMessage, payload, write)
        finally:
            owned.release(region)

    def _on_model_control(self, h: int, msg: control.IPCMessage) -> None:
        region = self.region
        payload = region.payload(msg.args)
        f = control.read_send_message(region, payload, L.ModelLoaderMessage)
        req = control.read_model_loader_request(region, f["message"])
        ready, error = self.services.model_control(
            self, msg.command, req["name"], req.get("version", ""), req.get("config", ""),
            req.get("files") or {}, bool(req.get("unload_dependents")))
        owned = Owned()

        def write():
            fields = {"is_model_ready": bool(ready), "has_error": error is not None,
                      "is_error_set": error is not None}
            if error is not None:
                fields["error"] = write_string(region, error, owned)
            control.write_reply(region, payload, L.ModelLoaderMessage, **fields)
        try:
            self._answer(L.ModelLoaderMessage, payload, write)
        finally:
            # The C++ stub reads the error text after it has released us (a race with its
            # free that crashed it in CI, and that tritonserver shares: see conformance's
            # test_errors_reported_by_the_parent). The text is freed at the next model-control
            # message of this stub instead, when that stub is done with it.
            with self.lock:
                previous, self._model_control_owned = self._model_control_owned, owned
            previous.release(region)

    def _on_response_send(self, h: int, msg: control.IPCMessage) -> None:
        """Pattern D: a response (or only flags) through the request's response factory."""
        region = self.region
        S = L.ResponseSendMessage
        payload = region.payload(msg.args)
        f = control.read_send_message(region, payload, S)
        flags = f["flags"]
        final = bool(flags & L.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        with self.lock:
            p = self.by_factory.get(f["response_factory_address"]) or \
                self.pending.get(f["request_address"])
        error = None
        if p is None or p.final_sent:
            error = "Response sender has already sent the final response or was deleted."
        else:
            resp = read_response(region, f["response"]) if f["response"] else None
            self._deliver(p, resp, final)
            if final:
                p.factory_deleted = True
                with self.lock:
                    self.pending.pop(p.address, None)
                    self.by_factory.pop(p.factory, None)
        owned = Owned()

        def write():
            fields = {"has_error": error is not None, "is_error_set": error is not None}
            if error is not None:
                fields["error"] = write_string(region, error, owned)
            control.write_reply(region, payload, S, **fields)
        try:
            self._answer(S, payload, write)
        finally:
            owned.release(region)

    def _on_bls(self, h: int, msg: control.IPCMessage) -> None:
        """Pattern C (and C″ for the later responses of a stream). A request the server refuses
        (:class:`BLSRefused`) is a ResponseBatch error; a response with an error is a response."""
        region = self.region
        streaming = msg.command == C.InferStreamExecRequest
        rh = read_request_batch(region, msg.args)[0]
        request = read_request(region, rh)
        mu, cv = handshake.sync_objects(region, region.payload(msg.response_mutex),
                                        region.payload(msg.response_cond))
        payload_id = next(_IDS) if streaming else 0
        first = threading.Event()
        state: dict = {}
        lock = threading.Lock()

        def on_response(resp: ResponseData) -> None:
            resp.id = payload_id
            with lock:
                if "reply" not in state:
                    state["reply"] = resp
                    first.set()
                    return
            self._stream_response(resp)

        try:
            handle = self.services.bls(self, request, on_response, streaming)
            if streaming and handle is not None:
                with self.lock:
                    self.bls_streams[payload_id] = handle
        except BLSRefused as e:
            with lock:
                state["reply"] = str(e)
            first.set()
        while not first.wait(1.0):
            if not self.alive():
                return
        owned = Owned()
        reply_value = state["reply"]
        try:
            if isinstance(reply_value, str):
                batch = write_response_batch(region, reply_value, owned)
            else:
                batch = write_response_batch(region, write_response(region, reply_value, owned),
                                             owned)
            reply, _, _ = control.write_ipc_message(region, C.InferExecResponse, batch, owned)
            control.set_response_handle(region, h, self._handoff("bls", reply))
            mu.lock()
            try:
                cv.notify_all()
                handshake.wait_notify(mu, cv, self.alive)
            finally:
                mu.unlock()
        finally:
            owned.release(region)

    def _stream_response(self, resp: ResponseData) -> None:
        """C″: a later response of a BLS stream, pushed on parent_to_stub_mq."""
        region = self.region
        owned = Owned()
        try:
            batch = write_response_batch(region, write_response(region, resp, owned), owned)
            msg, mu_h, cv_h = control.write_ipc_message(
                region, C.InferStreamExecResponse, batch, owned, inline=True,
                sync_sizes=(libc.MUTEX_SIZE, libc.COND_SIZE))
            mu, cv = handshake.sync_objects(region, region.payload(mu_h), region.payload(cv_h), True)
            flag = control.mailbox(L.ResponseBatch, region.payload(batch)).flag
            handshake.start_flag(region, self.q["parent_to_stub_mq"], self._handoff("stream", msg),
                                 mu, cv, flag, self.alive, rounds=1)
        except PeerGone:
            pass
        finally:
            owned.release(region)

    # ------------------------------------------------------------------ finalize and stop
    def health_ok(self) -> bool:
        """UpdateHealth without the parent's one-second sleep: alive and beating."""
        if not self.alive():
            return False
        try:
            self.parent.read_stub_health(reset=True)
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                if self.parent.read_stub_health():
                    return True
                time.sleep(0.05)
        except Exception:  # noqa: BLE001 - a lock the stub died holding
            return False
        return False

    def finalize(self) -> None:
        """FinalizeRequest if the stub is healthy (else SIGKILL, as the parent), then wait for
        the exit; a stub that does not exit in time is killed."""
        if self.proc is None:
            return
        if self.health_ok():
            owned = Owned()
            try:
                self._send(C.FinalizeRequest, 0, owned)
                self._receive(health_checked=False, limit_s=FINALIZE_TIMEOUT_S)
            except (PeerGone, StubFailed):
                pass
            finally:
                owned.release(self.region)
        self.wait_exit(EXIT_TIMEOUT_S)

    def wait_exit(self, timeout: float) -> Optional[int]:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass

    def close(self) -> None:
        """Stop the monitor, kill what is left, remove the region. Idempotent."""
        if self.closed:
            return
        self.kill()
        # The monitor handles what the stub queued before it ended (a log line the stub sent
        # just before it exited, as after a failed initialize), then stops at the 0 we push.
        try:
            self.q["stub_to_parent_mq"].push(L.DUMMY_MESSAGE, 0.5)
        except Exception:  # noqa: BLE001
            pass
        # Every thread that may touch the region ends (the stub is dead, so their waits end
        # within a slice) before it is unmapped; one that does not keeps the mapping alive.
        if self._monitor is not None:
            self._monitor.join(30)
        self.closed = True
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.fail_pending(f"Stub process '{self.name}' is not healthy.")
        if self._monitor is not None and self._monitor.is_alive():
            self.region.unlink()
            return
        self.parent.close(unlink=True)


_HANDLERS = {
    C.LogRequest: StubProcess._on_log,
    C.BLSDecoupledInferPayloadCleanup: StubProcess._on_cleanup,
    C.DecoupledResponseFactoryCleanup: StubProcess._on_cleanup,
    C.IsRequestCancelled: StubProcess._on_is_cancelled,
    C.ResponseSend: StubProcess._on_response_send,
    C.InferExecRequest: StubProcess._on_bls,
    C.InferStreamExecRequest: StubProcess._on_bls,
}
for _c in (C.MetricFamilyRequestNew, C.MetricFamilyRequestDelete, C.MetricRequestNew,
           C.MetricRequestDelete, C.MetricRequestValue, C.MetricRequestIncrement,
           C.MetricRequestSet, C.MetricRequestObserve):
    _HANDLERS[_c] = StubProcess._on_metric
if hasattr(C, "CancelBLSInferRequest"):              # r25.04+
    _HANDLERS[C.CancelBLSInferRequest] = StubProcess._on_cancel_bls
for _c in (C.LoadModelRequest, C.UnloadModelRequest, C.ModelReadinessRequest):
    _HANDLERS[_c] = StubProcess._on_model_control
#: The two-round (pattern B / D) messages, for an error answer when a handler fails.
_LAYOUTS = {C.LogRequest: L.LogSendMessage, C.IsRequestCancelled: L.IsCancelledMessage,
            C.ResponseSend: L.ResponseSendMessage}
for _c, _h in _HANDLERS.items():
    if _h is StubProcess._on_metric:
        _LAYOUTS[_c] = L.CustomMetricsMessage
    elif _h is StubProcess._on_model_control:
        _LAYOUTS[_c] = L.ModelLoaderMessage
