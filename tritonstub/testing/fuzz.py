"""Fuzz our stub from the parent's side: the parent's messages, corrupted one field at a time
(issue 15, hostile shared memory).

    python -m tritonstub.testing.fuzz --mutations 100000            # the long run
    python -m tritonstub.testing.fuzz --mutations 2000 --seed 7     # a short look

Theory of operation
-------------------
:class:`FuzzStub` is the harness's :class:`~tritonstub.harness.instance.StubProcess` (it plays
libtriton_python.so's side) with its ``_handoff`` hook filled in: the hook runs just before each
thing the parent wrote reaches the stub, and corrupts it. The region's ``construct`` is wrapped to
record, per thread, the blocks the parent builds for the message at hand; the hook picks one of
them (for a pattern B/D answer: the answer's fields in the stub's block, never its mutex,
condition or flag, which are the handshake's synchronisation and not data), a 1-, 4- or 8-byte
slot in it, and writes a boundary value there (0, 1, -1, the integer limits, the mapping's size
and its neighbours, the handle of another block, the old value +- 1, random bytes). The queue
values themselves (a command's message handle, the release 0 after a reply, a BLS answer's
message handle, a stream response's message handle) are corrupted too. Every message type the
parent sends is covered: AutoCompleteRequest, InitializeRequest, ExecuteRequest (the batch, its
requests, their tensors and strings), FinalizeRequest, the release, and the answers to every
stub request (log, metrics, model control, cancellation query, response send, BLS and BLS
stream responses).

One round is one ExecuteRequest of one to three requests to the fuzz model (:data:`MODEL`),
whose ``MODE`` input picks what its ``execute`` asks of the parent: nothing, a BLS call, a BLS
stream, a log line, metrics, model control, a cancellation query, a response through the
response sender. A stub serves ``--rounds-per-stub`` rounds (fewer when it exits) and is then
finalized; every ``--auto-complete-every`` launches an auto-complete stub runs first. A mutation
is one corrupted field; a round may carry several (one per message at most).

What each outcome means (``Verdicts``); the run fails on any of the bad ones:

- ``ok``: the stub answered, with an error or not, and lives on;
- ``exit``: it exited by itself (status 0 or 1, not a signal) with no Python traceback;
- ``lost``: the parent corrupted a message the stub had to recognise to go on (a command's or a
  stream response's handle, a stream response's fields) and the stub, alive and beating, waits
  for the real one, as the C++ stub does; the stub is replaced (counted, not a failure);
- bad: ``crash`` (killed by a signal: SIGSEGV is a read outside the mapping), ``traceback`` (it
  exited through an unchecked Python error), ``unclear`` (an error answer or log line that names
  an unchecked Python error: IndexError, struct.error, MemoryError ...), ``hang`` (no answer
  within :data:`HANG_S` though no lost message explains it), ``walk`` (the region's consistency
  walk, ``ManagedSegment.check``, fails: the allocator is corrupt), ``harness`` (the parent's own
  bookkeeping broke: the stub freed or overwrote one of the parent's blocks).
"""
from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .. import protocol
from ..harness import config as configs
from ..harness.engine import stub_command
from ..harness.instance import Pending, Services, StubFailed, StubProcess
from ..ipc.handshake import PeerGone
from ..protocol import control, dtypes
from ..protocol.requests import RequestData
from ..protocol.responses import ResponseData
from ..protocol.tensors import RawTensor

L = protocol.current()
H = L.OWNERSHIP_HEADER
C = L.PYTHONSTUB_CommandType

#: A round whose ExecuteRequest gets no answer within this long, from a live stub, is a hang.
HANG_S = 20.0
#: The same once a mutation may have lost a message the stub needs (then it is not a hang).
LOST_S = 3.0
#: The share of mutations that may lose a message (a stream response, a command message's own
#: fields): each costs a relaunch.
LOSSY_SHARE = 0.01
#: How long a launch (first message, auto-complete, initialize) may take on a loaded machine.
LAUNCH_S = 60.0

BAD = ("crash", "traceback", "unclear", "hang", "walk", "harness")

#: Error texts that betray an unchecked read: a field taken as it came.
_UNCHECKED = re.compile(r"\b(IndexError|struct\.error|OverflowError|MemoryError|"
                        r"UnicodeDecodeError|KeyError|ZeroDivisionError|SystemError|"
                        r"RecursionError|AttributeError|TypeError|ValueError|"
                        r"Traceback \(most recent call last\)|internal error)\b")

MODEL = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """What each request's MODE asks of the parent (tritonstub.testing.fuzz)."""

    def initialize(self, args):
        self.metric = None

    def execute(self, requests):
        return [self.one(r) for r in requests]

    def one(self, request):
        try:
            mode = pb_utils.get_input_tensor_by_name(request, "MODE")
            mode = int(mode.as_numpy().reshape(-1)[0]) % 8 if mode is not None and \\
                mode.as_numpy().size else 0
            outs = []
            for name, out in (("IN", "OUT"), ("S", "SOUT")):
                t = pb_utils.get_input_tensor_by_name(request, name)
                if t is not None:
                    outs.append(pb_utils.Tensor(out, t.as_numpy()))
            request.request_id(), request.correlation_id(), request.flags()
            request.requested_output_names(), request.parameters()
            if mode == 1:
                r = pb_utils.InferenceRequest(
                    model_name="peer", requested_output_names=["OUT"],
                    inputs=[pb_utils.Tensor("IN", np.arange(3, dtype=np.int32))]).exec()
                if not r.has_error():
                    [t.as_numpy() for t in r.output_tensors()]
            elif mode == 2:
                for r in pb_utils.InferenceRequest(
                        model_name="peer", requested_output_names=["OUT"],
                        inputs=[pb_utils.Tensor("IN", np.arange(3, dtype=np.int32))]).exec(
                            decoupled=True):
                    if not r.has_error():
                        [t.as_numpy() for t in r.output_tensors()]
            elif mode == 3:
                pb_utils.Logger.log_info("fuzz")
            elif mode == 4:
                if self.metric is None:
                    family = pb_utils.MetricFamily(name="fuzz_total", description="fuzz",
                                                   kind=pb_utils.MetricFamily.COUNTER)
                    self.metric = family.Metric(labels={"a": "b"})
                self.metric.increment(1)
                self.metric.value()
            elif mode == 5:
                pb_utils.is_model_ready("peer")
            elif mode == 6:
                request.is_cancelled()
            elif mode == 7:
                request.get_response_sender().send(
                    pb_utils.InferenceResponse(outs),
                    flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                return None
            return pb_utils.InferenceResponse(outs)
        except Exception as e:
            return pb_utils.InferenceResponse(
                error=pb_utils.TritonError(f"fuzz-model caught {type(e).__name__}: {e}"))
'''

CONFIG = '''
name: "fuzz"
backend: "python"
max_batch_size: 0
input [
  { name: "MODE" data_type: TYPE_INT32 dims: [ 1 ] },
  { name: "IN" data_type: TYPE_INT32 dims: [ -1 ] },
  { name: "S" data_type: TYPE_STRING dims: [ -1 ] }
]
output [
  { name: "OUT" data_type: TYPE_INT32 dims: [ -1 ] },
  { name: "SOUT" data_type: TYPE_STRING dims: [ -1 ] }
]
instance_group [ { kind: KIND_CPU count: 1 } ]
'''


@dataclass
class Finding:
    verdict: str
    detail: str
    mutations: List[str]


@dataclass
class Tally:
    mutations: Counter = field(default_factory=Counter)        # by message kind
    verdicts: Counter = field(default_factory=Counter)
    launches: int = 0
    rounds: int = 0
    findings: List[Finding] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.mutations.values())

    def bad(self) -> int:
        return sum(self.verdicts[v] for v in BAD)


class FuzzServices(Services):
    """The server's side of what the fuzz model asks: canned answers, every error text kept."""

    def __init__(self):
        self.logs: List[str] = []
        self.lock = threading.Lock()

    def log_message(self, stub, filename, line, level, message) -> None:
        with self.lock:
            self.logs.append(message)

    def bls(self, stub, request, on_response, streaming):
        stub._made.streaming = streaming        # for the hook, in this same thread
        out = ("OUT", dtypes.INT32 if hasattr(dtypes, "INT32") else 8, (3,),
               np.arange(3, dtype=np.int32).tobytes())
        if not streaming:
            on_response(ResponseData(outputs=[out]))
            return None
        on_response(ResponseData(outputs=[out], is_last_response=False))

        def rest():
            try:
                on_response(ResponseData(outputs=[out], is_last_response=False))
                on_response(ResponseData(is_last_response=True))
            except Exception:  # noqa: BLE001 - a stub gone mid-stream
                pass
        # In the stub's own pool: its close() waits for them before it unmaps the region.
        stub.pool.submit(rest)
        return None

    def model_control(self, stub, command, name, version, config, files, unload_dependents):
        return True, None

    def metric(self, stub, command, message):
        return 1.0, 0x1000, None


_INT32 = 8
_BYTES = dtypes.BYTES


class Mutator:
    """Picks what to corrupt and how (see the module docstring)."""

    def __init__(self, rng: random.Random, rate: float):
        self.rng = rng
        self.rate = rate

    def values(self, width: int, old: int, capacity: int, other: int) -> int:
        rng = self.rng
        top = (1 << (8 * width)) - 1
        pick = rng.randrange(14)
        if pick == 0:
            v = 0
        elif pick == 1:
            v = 1
        elif pick == 2:
            v = top                                  # -1
        elif pick == 3:
            v = top >> 1                             # INT_MAX
        elif pick == 4:
            v = (top >> 1) + 1                       # INT_MIN
        elif pick == 5:
            v = capacity + rng.choice((-H - 8, -1, 0, 1, 16, 4096, capacity))
        elif pick == 6:
            v = other
        elif pick == 7:
            v = other + rng.choice((-16, -8, 8, 16, 24))
        elif pick == 8:
            v = old + rng.choice((-1, 1))
        elif pick == 9:
            v = old + rng.choice((-16, 16, 1 << 20, 1 << 31))
        elif pick == 10:
            v = old * rng.choice((2, 1000))
        elif pick == 11:
            v = rng.choice((2, 3, 7, 13, 64, 255, 256, 65535, 1 << 31, 1 << 32))
        else:
            v = rng.getrandbits(8 * width)
        return v & top

    def corrupt_span(self, buf, start: int, nbytes: int, capacity: int, other: int,
                     skip: Sequence[Tuple[int, int]] = ()) -> Optional[str]:
        """One slot of [start, start + nbytes) gets a boundary value; ``skip``: spans to avoid."""
        rng = self.rng
        for _ in range(8):
            width = rng.choice((8, 8, 8, 4, 4, 1, 1, 0))
            if width == 0:                           # random bytes (string contents, dtypes)
                n = rng.randint(1, 8)
                if nbytes < n:
                    continue
                off = start + rng.randrange(nbytes - n + 1)
                if any(a < off + n and off < b for a, b in skip):
                    continue
                buf[off:off + n] = bytes(rng.getrandbits(8) for _ in range(n))
                return f"bytes@{off - start}={n}"
            if nbytes < width:
                continue
            off = start + rng.randrange((nbytes - width) // width + 1) * width
            if any(a < off + width and off < b for a, b in skip):
                continue
            old = int.from_bytes(buf[off:off + width], "little")
            v = self.values(width, old, capacity, other)
            buf[off:off + width] = v.to_bytes(width, "little")
            return f"u{8 * width}@{off - start}:{old:#x}->{v:#x}"
        return None


class FuzzStub(StubProcess):
    """A StubProcess whose ``_handoff`` corrupts what the parent wrote (module docstring)."""

    def __init__(self, *args, mutator: Mutator, tally: Tally, **kwargs):
        super().__init__(*args, **kwargs)
        self.mutator = mutator
        self.tally = tally
        self._made = threading.local()
        self.round_mutations: List[str] = []
        self.lossy = False              # a mutation this round may have lost a message
        self.enabled = True
        self.abandoned = False
        #: The share of mutations that corrupt a queue value (a command's handle: the stub
        #: then stops, and a relaunch costs a second).
        self.queue_rate = 0.0005
        self._mlock = threading.Lock()
        region = self.region
        construct, construct_many = region.construct, region.construct_many

        def recorded_construct(nbytes, aligned=False):
            h = construct(nbytes, aligned)
            self._record([(h, nbytes)])
            return h

        def recorded_many(sizes, aligned=False):
            sizes = list(sizes)
            hs = construct_many(sizes, aligned)
            self._record(list(zip(hs, sizes)))
            return hs
        region.construct = recorded_construct
        region.construct_many = recorded_many

    def _record(self, blocks) -> None:
        made = getattr(self._made, "blocks", None)
        if made is None:
            made = self._made.blocks = []
        made.extend(blocks)

    def _take_made(self) -> List[Tuple[int, int]]:
        made = getattr(self._made, "blocks", None) or []
        self._made.blocks = []
        return made

    def alive(self) -> bool:
        # A round given up as hung or lost ends every harness wait at its next slice.
        return not self.abandoned and super().alive()

    # ------------------------------------------------------------------ the hook
    def _handoff(self, what: str, value: int = 0, reply=None) -> int:
        made = self._take_made()
        rng = self.mutator.rng
        # A stream response corrupted is (nearly always) a stream lost, and a lost stream costs
        # a relaunch: those are corrupted less often, to keep the run fast.
        # The first response of a BLS stream names the stream (its id) as well.
        lossy = what == "stream" or (what == "bls" and getattr(self._made, "streaming", False))
        rate = self.mutator.rate * (LOSSY_SHARE if lossy else 1.0)
        if not self.enabled or rng.random() >= rate:
            return value
        region = self.region
        cap = region.capacity
        other = rng.choice(made)[0] if made else value
        note = None
        kind = what
        if what == "command" and value:
            cmd = L.IPCMessageShm.get(region.buf, region.payload(value), "command")
            kind = {int(C.AutoCompleteRequest): "auto_complete", int(C.InitializeRequest):
                    "initialize", int(C.ExecuteRequest): "execute",
                    int(C.FinalizeRequest): "finalize"}.get(int(cmd), "command")
        elif what == "reply" and reply is not None:
            kind = "reply:" + reply[0].name
        if what == "stream" and value:
            # The inline mutex and condition are the handshake's (the parent waits on them
            # itself); their handles in the message are fair game.
            m = control.read_ipc_message(region, value)
            made = [b for b in made if b[0] not in (m.response_mutex, m.response_cond)]
        if what == "release" or (value and rng.random() < self.queue_rate) or \
                (not made and reply is None):
            if not value and what != "release":
                return value
            new = self.mutator.values(8, value, cap, other)
            new = new - (1 << 64) if new >= 1 << 63 else new       # queues hold i64
            note = f"{kind} queue value {value:#x}->{new:#x}"
            value = new
            if what == "command" or lossy:
                self.lossy = True
        elif reply is not None and (not made or rng.random() < 0.7):
            layout, payload = reply
            skip = [(payload + f.offset, payload + f.offset + f.size)
                    for f in layout.fields.values()
                    if f.type in ("mutex", "cond") or f.name in ("waiting_on_stub",
                                                                 "is_stub_turn")]
            what_done = self.mutator.corrupt_span(region.buf, payload, layout.size, cap, other,
                                                  skip)
            if what_done:
                note = f"{kind} fields {what_done}"
        else:
            if what == "command" and len(made) > 1 and rng.random() >= LOSSY_SHARE:
                made = [b for b in made if b[0] != value]      # not the message itself
            h, nbytes = rng.choice(made)
            what_done = self.mutator.corrupt_span(region.buf, h + H, nbytes, cap, other)
            if what_done:
                note = f"{kind} block {h:#x}+{nbytes} {what_done}"
            # The message itself (its command, args): the stub may not see the command it was.
            if lossy or (what == "command" and h == value):
                self.lossy = True
        if note:
            with self._mlock:
                self.tally.mutations[kind] += 1
                self.round_mutations.append(note)
        return value

    def _receive(self, health_checked: bool = True, limit_s: Optional[float] = None) -> int:
        """The parent's wait for a reply, bounded: HANG_S, or LOST_S once a mutation may
        have lost a message the stub needs (checked every second: a stream response's loss
        happens in another thread during the wait)."""
        limit = HANG_S if limit_s is None else min(limit_s, LAUNCH_S)
        start = time.monotonic()
        while True:
            try:
                return super()._receive(health_checked, 1.0)
            except StubFailed as e:
                if "did not answer within" not in str(e):
                    raise
            waited = time.monotonic() - start
            if waited > limit or (self.lossy and waited > LOST_S):
                raise StubFailed(f"Stub process '{self.name}' did not answer within "
                                 f"{waited:.0f} s.")


def _request(rng: random.Random) -> RequestData:
    mode = rng.randrange(8)
    n = rng.randrange(0, 6)
    strings = np.array([b"x" * rng.randrange(0, 12) for _ in range(rng.randrange(0, 4))],
                       dtype=object)
    inputs = [RawTensor("MODE", _INT32, (1,), np.array([mode], np.int32).tobytes()),
              RawTensor("IN", _INT32, (n,), np.arange(n, dtype=np.int32).tobytes()),
              RawTensor("S", _BYTES, (len(strings),), bytes(dtypes.serialize_bytes(strings)))]
    return RequestData(inputs=inputs, requested_output_names=["OUT", "SOUT"],
                       request_id=f"r{rng.randrange(1000)}", correlation_id=rng.randrange(5),
                       model_name="fuzz", model_version=1,
                       parameters=json.dumps({"p": rng.randrange(3)}))


class Fuzzer:
    """Launch, drive and judge stubs until ``mutations`` fields were corrupted."""

    def __init__(self, mutations: int, seed: int = 0, rate: float = 0.5,
                 rounds_per_stub: int = 200, auto_complete_every: int = 10,
                 workdir: Optional[str] = None, stub_python: Optional[str] = None,
                 log=None, max_launches: Optional[int] = None, verbose: bool = False):
        self.target = mutations
        self.rng = random.Random(seed)
        self.mutator = Mutator(self.rng, rate)
        self.tally = Tally()
        self.rounds_per_stub = rounds_per_stub
        self.auto_complete_every = auto_complete_every
        self.command = stub_command("ours", stub_python)
        self.command.env["PYTHONFAULTHANDLER"] = "1"   # a hung stub's stacks, on SIGABRT
        self.services = FuzzServices()
        self.log = log or (lambda text: None)
        self.max_launches = max_launches
        #: The share of launches whose InitializeRequest is corrupted (a failed initialize
        #: costs a relaunch).
        self.initialize_share = 0.3
        self.verbose = verbose
        self.regions: List[str] = []      # the name of every region made, for leak checks
        self._own_dir = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="tritonstub-fuzz-"))
        model = self.dir / "fuzz"
        (model / "1").mkdir(parents=True, exist_ok=True)
        (model / "1" / "model.py").write_text(MODEL)
        (model / "config.pbtxt").write_text(CONFIG)
        self.model_py = str(model / "1" / "model.py")
        pb = configs.load(model)
        configs.complete(pb, model, "fuzz")
        self.config_json = configs.to_json(pb)
        self.params = {"model_config": self.config_json, "model_instance_kind": "CPU",
                       "model_instance_name": "fuzz_0_0", "model_instance_device_id": "0",
                       "model_repository": str(model), "model_version": "1",
                       "model_name": "fuzz"}

    # ------------------------------------------------------------------ one stub
    def _stub(self, name: str) -> FuzzStub:
        lines: List[str] = []       # what the process writes to stdout and stderr
        stub = FuzzStub(self.command, self.model_py, name, self.services,
                        on_output=lines.append, mutator=self.mutator, tally=self.tally)
        stub._lines = lines          # type: ignore[attr-defined]
        self.regions.append(stub.region.name)
        return stub

    def _judge_end(self, stub: FuzzStub, lines: List[str], how: str) -> None:
        """The stub is gone (or given up on): crash, traceback or a clean exit."""
        rc = stub.proc.returncode if stub.proc is not None else None
        t = stub._output_thread
        if t is not None:
            t.join(5)
        text = "\n".join(lines[-60:])
        # SIGKILL is ours (a stub that did not exit after a lost finalize); any other signal is
        # the stub's own crash.
        if rc is not None and rc < 0 and rc != -signal.SIGKILL and how != "killed":
            self._bad("crash", f"stub killed by signal {-rc}\n{text}", stub)
        elif _UNCHECKED.search(text):
            self._bad("traceback", f"stub exited {rc} ({how})\n{text}", stub)

    def _bad(self, verdict: str, detail: str, stub: Optional[FuzzStub]) -> None:
        self.tally.verdicts[verdict] += 1
        muts = list(stub.round_mutations) if stub is not None else []
        if len(self.tally.findings) < 200:
            self.tally.findings.append(Finding(verdict, detail[-3000:], muts))
        self.log(f"!! {verdict}: {detail[:1500]}\n   mutations: {muts}")

    def _walk(self, stub: FuzzStub) -> bool:
        region = stub.region
        try:
            with region.locked():
                region.segment.check()
            return True
        except Exception as e:  # noqa: BLE001
            self._bad("walk", f"{type(e).__name__}: {e}", stub)
            return False

    def _errors_of(self, stub: FuzzStub, texts: List[str]) -> None:
        for text in texts:
            if text and _UNCHECKED.search(text):
                self._bad("unclear", text, stub)
                return

    def run_stub(self, index: int) -> None:
        tally = self.tally
        if self.auto_complete_every and index % self.auto_complete_every == 0:
            self._auto_complete_stub(index)
        stub = self._stub(f"fuzz_{index}")
        tally.launches += 1
        lines: List[str] = []
        how = "exit"
        try:
            stub.enabled = False
            lines = stub._lines
            stub.launch()
            stub.enabled = self.rng.random() < self.initialize_share
            stub.round_mutations = []
            try:
                stub.initialize(self.params, limit_s=LAUNCH_S)
            except StubFailed as e:
                self._after_failure(stub, str(e), "initialize")
                how = "initialize failed"
                return
            stub.enabled = True
            for _ in range(self.rounds_per_stub):
                if tally.total >= self.target:
                    break
                if not self._round(stub):
                    how = "round"
                    return
            stub.enabled = True
            stub.round_mutations = []
            stub.lossy = False
            stub.finalize()
            self._walk(stub)
        finally:
            if stub.abandoned or (stub.proc is not None and stub.proc.poll() is None):
                how = "killed"
            stub.close()
            self._judge_end(stub, lines, how)
            for text in self.services.logs:
                if _UNCHECKED.search(text):
                    self._bad("unclear", f"log: {text}", stub)
                    break
            self.services.logs.clear()

    def _auto_complete_stub(self, index: int) -> None:
        stub = self._stub(f"fuzz_ac_{index}")
        lines: List[str] = []
        self.tally.launches += 1
        how = "exit"
        try:
            stub.enabled = False
            lines = stub._lines
            stub.launch()
            stub.enabled = True
            try:
                stub.auto_complete(self.config_json, limit_s=HANG_S)
            except StubFailed as e:
                self._after_failure(stub, str(e), "auto-complete")
                return
            stub.finalize()
        finally:
            if stub.abandoned or (stub.proc is not None and stub.proc.poll() is None):
                how = "killed"
            stub.close()
            self._judge_end(stub, lines, how)

    def _after_failure(self, stub: FuzzStub, text: str, phase: str) -> None:
        """A StubFailed: the stub's own error answer (clear or not), its exit, a loss or a
        hang."""
        if "did not answer within" in text:
            if stub.alive():
                if stub.lossy:
                    self.tally.verdicts["lost"] += 1
                    if self.verbose:
                        self.log(f"lost: {stub.round_mutations}")
                else:
                    # Where it waits: faulthandler (PYTHONFAULTHANDLER) dumps every thread's
                    # stack on SIGABRT; _judge_end then waits for stderr to end.
                    stub.proc.send_signal(signal.SIGABRT)
                    try:
                        stub.proc.wait(10)
                    except subprocess.TimeoutExpired:
                        pass
                    t = stub._output_thread
                    if t is not None:
                        t.join(5)
                    stacks = "\n".join(getattr(stub, "_lines", [])[-80:])
                    self._bad("hang", f"{phase}: {text}\n{stacks}", stub)
                stub.abandoned = True
            return
        if "not healthy" in text or "exited" in text:
            self.tally.verdicts["exit"] += 1
            if self.verbose:
                self.log(f"exit: {stub.round_mutations}")
            stub.wait_exit(10)
            return
        self.tally.verdicts["ok"] += 1
        self._errors_of(stub, [text])

    def _round(self, stub: FuzzStub) -> bool:
        """One ExecuteRequest. False when the stub is gone (or given up on)."""
        tally = self.tally
        rng = self.rng
        stub.round_mutations = []
        stub.lossy = False
        texts: List[str] = []
        batch = []
        for _ in range(rng.randint(1, 3)):
            def on_response(resp, final, texts=texts):
                if resp is not None and resp.error is not None:
                    texts.append(resp.error[1])
            batch.append(Pending(None, _request(rng), on_response))
        tally.rounds += 1
        try:
            error = stub.execute(batch)
        except StubFailed as e:
            self._after_failure(stub, str(e), "execute")
            return False
        except PeerGone:
            self.tally.verdicts["exit"] += 1
            return False
        except Exception as e:  # noqa: BLE001 - the parent's own bookkeeping broke
            self._bad("harness", f"{type(e).__name__}: {e}", stub)
            stub.abandoned = True
            return False
        finally:
            stub.finish(batch)
            with stub.lock:
                for p in batch:
                    stub.pending.pop(p.address, None)
                    stub.by_factory.pop(p.factory, None)
        if error is not None:
            texts.append(error)
        tally.verdicts["ok"] += 1
        self._errors_of(stub, texts)
        return self._walk(stub)

    def run(self) -> Tally:
        index = 0
        try:
            while self.tally.total < self.target:
                if self.max_launches is not None and index >= self.max_launches:
                    break
                self.run_stub(index)
                index += 1
                if self.verbose or index % 20 == 0:
                    self.log(self.progress())
        finally:
            if self._own_dir:
                shutil.rmtree(self.dir, ignore_errors=True)
        return self.tally

    def progress(self) -> str:
        t = self.tally
        return (f"{time.strftime('%H:%M:%S')} {t.total} mutations, {t.rounds} rounds, "
                f"{t.launches} launches; verdicts "
                f"{dict(t.verdicts)}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tritonstub.testing.fuzz",
        description="Corrupt the parent's messages to our stub, one field at a time, and check "
                    "that it answers with a clear error or exits cleanly: no crash, no "
                    "unchecked error, no hang, a clean allocator walk (issue 15).")
    ap.add_argument("--mutations", type=int, default=10000, help="how many fields to corrupt")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rate", type=float, default=0.5,
                    help="chance that a message the parent sends is corrupted (default 0.5)")
    ap.add_argument("--rounds-per-stub", type=int, default=1000)
    ap.add_argument("--auto-complete-every", type=int, default=10,
                    help="an auto-complete stub every N launches (0: none)")
    ap.add_argument("--initialize-share", type=float, default=0.3,
                    help="the share of launches whose InitializeRequest is corrupted (each failed "
                         "initialize costs a relaunch; 1 with --rounds-per-stub 3 "
                         "--auto-complete-every 1 exercises the start-up messages)")
    ap.add_argument("--json", help="write the tally and findings to this file")
    ap.add_argument("-v", "--verbose", action="store_true", help="a progress line per stub")
    args = ap.parse_args(argv)
    started = time.monotonic()
    fuzzer = Fuzzer(args.mutations, args.seed, args.rate, args.rounds_per_stub,
                    args.auto_complete_every, log=lambda s: print(s, flush=True),
                    verbose=args.verbose)
    fuzzer.initialize_share = args.initialize_share
    tally = fuzzer.run()
    took = time.monotonic() - started
    print(f"done in {took:.0f} s: {fuzzer.progress()}")
    print("mutations by message:", dict(sorted(tally.mutations.items())))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "mutations": tally.total, "by_message": dict(tally.mutations),
            "verdicts": dict(tally.verdicts), "rounds": tally.rounds,
            "launches": tally.launches, "seconds": round(took, 1),
            "findings": [f.__dict__ for f in tally.findings]}, indent=1))
    return 1 if tally.bad() else 0


if __name__ == "__main__":
    sys.exit(main())
