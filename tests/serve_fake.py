"""A small stand-in for :class:`tritonstub.harness.Engine` (same method names and types, no
stubs), so the front ends of `tritonstub serve` are tested in milliseconds. Its error texts are
Triton's for the cases the tests use; the real engine is tested against tritonserver elsewhere."""
from __future__ import annotations

import threading
from typing import Callable, Dict, List, Optional

import numpy as np

from tritonstub.harness.types import (DATATYPES, InferError, InferRequest, InferResponse,
                                      InferTensor, ModelIndexEntry)


class FakeModel:
    def __init__(self, name: str, inputs, outputs, fn, *, decoupled=False, max_batch_size=0):
        self.name, self.version = name, "1"
        self.inputs, self.outputs, self.fn = inputs, outputs, fn
        self.decoupled, self.max_batch_size = decoupled, max_batch_size
        self.config = {
            "name": name, "platform": "", "backend": "python", "version_policy":
                {"latest": {"num_versions": 1}}, "max_batch_size": max_batch_size,
            "input": [{"name": n, "data_type": "TYPE_STRING" if d == "BYTES" else f"TYPE_{d}",
                       "dims": s} for n, d, s in inputs],
            "output": [{"name": n, "data_type": "TYPE_STRING" if d == "BYTES" else f"TYPE_{d}",
                        "dims": s} for n, d, s in outputs],
            "model_transaction_policy": {"decoupled": decoupled},
        }
        self.count = 0

    def metadata(self):
        return {"name": self.name, "versions": ["1"], "platform": "python",
                "inputs": [{"name": n, "datatype": d, "shape": s} for n, d, s in self.inputs],
                "outputs": [{"name": n, "datatype": d, "shape": s} for n, d, s in self.outputs]}

    def statistics(self):
        zero = {"count": 0, "ns": 0}
        return {"model_stats": [{
            "name": self.name, "version": "1", "last_inference": 0,
            "inference_count": self.count, "execution_count": self.count,
            "inference_stats": {"success": {"count": self.count, "ns": 10}, "fail": zero,
                                "queue": zero, "compute_input": zero, "compute_infer": zero,
                                "compute_output": zero, "cache_hit": zero, "cache_miss": zero},
            "response_stats": {}, "batch_stats": [], "memory_usage": []}]}


class FakeCall:
    def __init__(self):
        self.cancelled = threading.Event()
        self.finished = threading.Event()
        self.responses = []

    def cancel(self):
        self.cancelled.set()

    def wait(self, timeout=None):
        return self.finished.wait(timeout)

    @property
    def done(self):
        return self.finished.is_set()


def _add_sub(inputs):
    a, b = inputs["INPUT0"], inputs["INPUT1"]
    return [{"OUTPUT0": a + b, "OUTPUT1": a - b}]


def _echo(inputs):
    return [{"OUT": inputs["IN"]}]


def _repeat(inputs):
    n = int(inputs["IN"].reshape(-1)[0])
    return [{"OUT": np.array([i], dtype=np.int32)} for i in range(n)]


def _fail(inputs):
    raise InferError("INVALID_ARG", "model says no")


class FakeEngine:
    def __init__(self):
        self.models: Dict[str, FakeModel] = {}
        self.loaded: Dict[str, bool] = {}
        self.closed = False
        self.control_mode = "explicit"
        self.calls: List[FakeCall] = []
        for m in (
            FakeModel("add_sub", [("INPUT0", "FP32", [4]), ("INPUT1", "FP32", [4])],
                      [("OUTPUT0", "FP32", [4]), ("OUTPUT1", "FP32", [4])], _add_sub),
            FakeModel("echo", [("IN", "BYTES", [-1])], [("OUT", "BYTES", [-1])], _echo),
            FakeModel("echo_fp16", [("IN", "FP16", [-1])], [("OUT", "FP16", [-1])], _echo),
            FakeModel("repeat", [("IN", "INT32", [1])], [("OUT", "INT32", [1])], _repeat,
                      decoupled=True),
            FakeModel("fail", [("IN", "INT32", [1])], [("OUT", "INT32", [1])], _fail),
        ):
            self.models[m.name] = m
            self.loaded[m.name] = True
        self.slow = threading.Event()      # set: "repeat" waits for cancel between responses

    # -------------------------------------------------------------- lifecycle
    def start(self):
        return self

    def close(self):
        self.closed = True

    def load(self, name, config=None, files=None):
        if name not in self.models:
            raise InferError("INVALID_ARG", f"failed to load '{name}', failed to poll from "
                                            f"model repository")
        self.loaded[name] = True

    def unload(self, name, unload_dependents=False):
        if name not in self.models:
            raise InferError("INVALID_ARG", f"failed to unload '{name}', no version is available")
        self.loaded[name] = False

    def is_ready(self, name, version=""):
        return self.loaded.get(name, False) and version in ("", "1")

    def index(self):
        return [ModelIndexEntry(n, "1", "READY" if self.loaded[n] else "UNAVAILABLE",
                                "" if self.loaded[n] else "unloaded") for n in sorted(self.models)]

    def model(self, name, version=""):
        if name not in self.models or not self.loaded[name] or version not in ("", "1"):
            raise InferError("NOT_FOUND", f"Request for unknown model: '{name}' is not found")
        return self.models[name]

    def metrics_text(self):
        return "# HELP fake_metric a metric\n# TYPE fake_metric counter\nfake_metric 1\n"

    # -------------------------------------------------------------- inference
    def _check(self, request: InferRequest) -> FakeModel:
        model = self.model(request.model_name, request.model_version)
        rid = f"[request id: {request.request_id or '<id_unknown>'}] "
        declared = {n: (d, s) for n, d, s in model.inputs}
        for t in request.inputs:
            if t.name not in declared:
                raise InferError("INVALID_ARG", f"{rid}unexpected inference input '{t.name}' for "
                                                f"model '{model.name}'")
            d, s = declared[t.name]
            if t.datatype != d:
                raise InferError("INVALID_ARG", f"{rid}inference input '{t.name}' data-type is "
                                                f"'{t.datatype}', but model '{model.name}' "
                                                f"expects '{d}'")
            shape = t.shape
            if len(shape) != len(s) or any(x != -1 and x != y for x, y in zip(s, shape)):
                raise InferError("INVALID_ARG", f"{rid}unexpected shape for input '{t.name}' for "
                                                f"model '{model.name}'. Expected "
                                                f"[{','.join(map(str, s))}], got "
                                                f"[{','.join(map(str, shape))}]. ")
        if len(request.inputs) != len(declared):
            raise InferError("INVALID_ARG", f"{rid}expected {len(declared)} inputs but got "
                                            f"{len(request.inputs)} inputs for model "
                                            f"'{model.name}'")
        return model

    def validate(self, request: InferRequest) -> None:
        self._check(request)

    def _run(self, request: InferRequest, model: FakeModel, emit: Callable, call: FakeCall):
        model.count += 1
        arrays = {t.name: t.array for t in request.inputs}
        try:
            results = model.fn(arrays)
        except InferError as e:
            emit(InferResponse(model.name, "1", request.request_id, error=e, final=True))
            return
        dtypes = {n: d for n, d, _ in model.outputs}
        for i, res in enumerate(results):
            if call.cancelled.is_set():
                break
            if self.slow.is_set():
                call.cancelled.wait(0.2)
            outs = [InferTensor(k, dtypes[k], v) for k, v in res.items()
                    if request.requested_outputs is None or k in request.requested_outputs]
            final = not model.decoupled and i == len(results) - 1
            emit(InferResponse(model.name, "1", request.request_id, outs, final=final,
                               parameters={"index": i} if model.decoupled else {}))
        if model.decoupled:
            emit(InferResponse(model.name, "1", request.request_id, [], final=True))

    def infer(self, request: InferRequest, timeout_s=None) -> List[InferResponse]:
        model = self._check(request)
        if model.decoupled:
            raise InferError("UNSUPPORTED", "decoupled model on a unary call")
        out: List[InferResponse] = []
        self._run(request, model, out.append, FakeCall())
        return out

    def submit(self, request: InferRequest, on_response=None) -> FakeCall:
        model = self._check(request)
        call = FakeCall()
        self.calls.append(call)

        def emit(resp):
            call.responses.append(resp)
            if on_response is not None:
                on_response(resp)

        def run():
            try:
                self._run(request, model, emit, call)
            finally:
                call.finished.set()
        threading.Thread(target=run, daemon=True).start()
        return call
