"""What a case does to a served model, and the outcome it gets back as plain JSON.

Every action talks to the server only through KServe v2 (tritonclient over HTTP or gRPC, and the
repository API), so the same case runs on tritonserver and on ``tritonstub serve``. An outcome
is a JSON-serialisable dict, normalised (:mod:`.normalise`), compared as canonical JSON text:

- ``{"kind": "ok", "header": {...}, "outputs": [{"name", "datatype", "shape", "data"}]}``
- ``{"kind": "error", "status": "...", "error": "<text>"}`` / ``{"kind": "timeout"}``
- ``{"kind": "stream", "end": "final"|"error"|"timeout", "msgs": [{"outputs": [...],
  "final": bool} | {"error": "<text>"}]}``
- ``{"kind": "value", "value": ...}`` (a model's config, its index entries)
- ``{"kind": "many", "results": [outcome, ...]}`` (``infer_many``: requests sent at once)

plus ``"log": [lines]`` when the case names a log marker. Numeric tensor data is a flat list
(non-finite floats as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``); BYTES elements are
strings when they are UTF-8 and ``{"hex": ...}`` otherwise.
"""
from __future__ import annotations

import hashlib
import json
import math
import queue
import re
import socket
import threading
import time
from typing import Callable, List, Mapping, Optional

import numpy as np

from .cases import Case, CaseError
from .normalise import _LOG_PREFIX, Normaliser, mask_addresses

HTTP_TIMEOUT_S = 30.0
_TPBU = re.compile(r"/[^\s\"'(]*/triton_python_backend_utils\.py")
STREAM_TIMEOUT_S = 20.0
LOAD_TIMEOUT_S = 45.0


# ---- tensors in -----------------------------------------------------------------------------------


def _element_bytes(v) -> bytes:
    if isinstance(v, dict) and "hex" in v:
        return bytes.fromhex(v["hex"])
    if isinstance(v, str):
        return v.encode("utf-8")
    raise CaseError(f"a BYTES element must be a string or {{\"hex\": ...}}, not {v!r}")


def _float(v):
    if isinstance(v, str):
        return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[v]
    return v


def make_array(spec: Mapping) -> np.ndarray:
    """A numpy array from a case's tensor: ``{"datatype", "shape"}`` and one of ``"data"`` (the
    elements, flat or nested), ``"arange": [start, step]`` or ``"fill"`` (every element; BYTES
    may add ``"times"``, a repeat count of the fill)."""
    from tritonclient.utils import triton_to_np_dtype

    datatype, shape = spec["datatype"], [int(d) for d in spec["shape"]]
    count = int(np.prod(shape)) if shape else 1
    if datatype == "BYTES":
        if "fill" in spec:  # every element the same: "fill" repeated "times" times
            flat = [_element_bytes(spec["fill"]) * int(spec.get("times", 1))] * count
        else:
            flat = [_element_bytes(v) for v in np.array(spec.get("data", []), dtype=object).reshape(-1)]
        arr = np.empty(len(flat), dtype=object)
        arr[:] = flat
        return arr.reshape(shape)
    dtype = triton_to_np_dtype(datatype)
    if "arange" in spec:
        start, step = spec["arange"]
        arr = (np.arange(count, dtype=np.float64) * step + start).astype(dtype)
    elif "fill" in spec:
        arr = np.full(count, _float(spec["fill"]), dtype=dtype)
    else:
        flat = [_float(v) for v in np.array(spec.get("data", []), dtype=object).reshape(-1)]
        arr = np.array(flat, dtype=dtype)
    return arr.reshape(shape)


def _inputs(client_module, specs: Mapping[str, Mapping]):
    made = []
    for name, spec in specs.items():
        arr = make_array(spec)
        tensor = client_module.InferInput(name, list(arr.shape), spec["datatype"])
        tensor.set_data_from_numpy(arr)
        made.append(tensor)
    return made


# ---- tensors out ----------------------------------------------------------------------------------


def _json_number(x):
    if isinstance(x, float) and not math.isfinite(x):
        return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")
    return x


def _bytes_element(b: bytes):
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return {"hex": b.hex()}


def output_json(name: str, datatype: str, shape, arr: Optional[np.ndarray], digest: bool) -> dict:
    shape = [int(d) for d in shape]
    if arr is None:
        data = None
    elif datatype == "BYTES":
        flat = [bytes(x) if not isinstance(x, bytes) else x for x in arr.reshape(-1)]
        data = ([_bytes_element(b) for b in flat] if not digest else
                {"sha256": hashlib.sha256(b"".join(len(b).to_bytes(4, "little") + b for b in flat)).hexdigest(),
                 "count": len(flat)})
    elif digest:
        data = {"sha256": hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest(), "count": int(arr.size)}
    elif datatype == "BF16":
        data = {"hex": np.ascontiguousarray(arr).tobytes().hex()}
    else:
        data = [_json_number(x) for x in arr.reshape(-1).tolist()]
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


# ---- the context an action runs in ------------------------------------------------------------------


class Context:
    """One served model in one cell: URLs, the load call, the server log, the normaliser."""

    def __init__(self, served, model: str, normaliser: Normaliser):
        self.served = served
        self.model = model
        self.normaliser = normaliser

    def text(self, text: str, case: Case) -> str:
        text = self.normaliser.text(mask_addresses(text))
        # The python backend's own utilities live wherever Triton is installed.
        text = _TPBU.sub("<python_backend>/triton_python_backend_utils.py", text)
        for pattern, repl in case.normalise:
            text = re.sub(pattern, repl, text)
        return text

    def value(self, value, case: Case):
        if isinstance(value, str):
            return self.text(value, case)
        if isinstance(value, list):
            return [self.value(v, case) for v in value]
        if isinstance(value, dict):
            return {self.value(k, case): self.value(v, case) for k, v in value.items()}
        return value


def _is_timeout(exc: BaseException) -> bool:
    names = {c.__name__ for c in type(exc).__mro__}
    return isinstance(exc, (TimeoutError, socket.timeout)) or "Timeout" in names or "timed out" in str(exc)


def _failure(ctx: Context, case: Case, exc: BaseException) -> dict:
    from tritonclient.utils import InferenceServerException

    if isinstance(exc, InferenceServerException):
        return {"kind": "error", "status": str(exc.status()), "error": ctx.text(exc.message() or "", case)}
    if _is_timeout(exc):
        return {"kind": "timeout"}
    raise exc


def do_infer(ctx: Context, case: Case) -> dict:
    p = case.params
    timeout_s = float(p.get("timeout_s", HTTP_TIMEOUT_S))
    kwargs = {}
    if "request_id" in p:
        kwargs["request_id"] = p["request_id"]
    if "parameters" in p:
        kwargs["parameters"] = p["parameters"]
    for key in ("sequence_id", "sequence_start", "sequence_end", "priority", "timeout"):
        if key in p:
            kwargs[key] = p[key]
    if p.get("protocol", "http") == "grpc":
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(ctx.served.grpc_url)
        requested = None if "outputs" not in p else [grpcclient.InferRequestedOutput(o) for o in p["outputs"]]
        try:
            result = client.infer(ctx.model, _inputs(grpcclient, p.get("inputs", {})), outputs=requested,
                                  client_timeout=timeout_s, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every failure is a comparable outcome
            return _failure(ctx, case, exc)
        finally:
            client.close()
        outputs = [output_json(o.name, o.datatype, o.shape, result.as_numpy(o.name), case.digest)
                   for o in result.get_response().outputs]
        return {"kind": "ok", "outputs": outputs}
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(ctx.served.http_url, network_timeout=timeout_s,
                                              connection_timeout=10.0)
    requested = None if "outputs" not in p else [httpclient.InferRequestedOutput(o, binary_data=True)
                                                 for o in p["outputs"]]
    try:
        result = client.infer(ctx.model, _inputs(httpclient, p.get("inputs", {})), outputs=requested, **kwargs)
    except Exception as exc:  # noqa: BLE001
        return _failure(ctx, case, exc)
    finally:
        client.close()
    response = result.get_response()
    header = {k: v for k, v in response.items() if k != "outputs"}
    outputs = [output_json(o["name"], o["datatype"], o["shape"], result.as_numpy(o["name"]), case.digest)
               for o in response.get("outputs", [])]
    if p.get("json_outputs"):  # BYTES outputs holding JSON: compare the parsed values
        for o in outputs:
            if o["name"] in p["json_outputs"] and isinstance(o["data"], list):
                o["data"] = [json.loads(x) if isinstance(x, str) else x for x in o["data"]]
    return {"kind": "ok", "header": ctx.value(header, case), "outputs": ctx.value(outputs, case)}


def do_infer_many(ctx: Context, case: Case) -> dict:
    """Several ``infer`` requests sent at once (one thread and connection each), e.g. to fill a
    dynamic batch; the outcomes in the order of the requests."""
    import dataclasses

    requests = case.params.get("requests", [])
    results: List[Optional[dict]] = [None] * len(requests)

    def one(i: int) -> None:
        results[i] = do_infer(ctx, dataclasses.replace(case, params=requests[i]))

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(requests))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + max(float(r.get("timeout_s", HTTP_TIMEOUT_S)) for r in requests) + 10.0
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return {"kind": "many", "results": [r if r is not None else {"kind": "timeout"} for r in results]}


def do_stream(ctx: Context, case: Case) -> dict:
    """One request on its own gRPC stream; every message until FINAL (or the server ends the
    stream after an error). Bounded by ``timeout_s``."""
    import tritonclient.grpc as grpcclient

    p = case.params
    timeout_s = float(p.get("timeout_s", STREAM_TIMEOUT_S))
    messages: "queue.Queue" = queue.Queue()
    msgs: List[dict] = []
    end = "timeout"
    client = grpcclient.InferenceServerClient(ctx.served.grpc_url)

    def record(result, error) -> None:
        if error is not None:
            msgs.append({"error": ctx.text(error.message() or "", case)})
            return
        response = result.get_response()
        params = response.parameters
        final = "triton_final_response" in params and params["triton_final_response"].bool_param
        outputs = [output_json(o.name, o.datatype, o.shape, result.as_numpy(o.name), case.digest)
                   for o in response.outputs]
        msgs.append({"outputs": ctx.value(outputs, case), "final": bool(final)})

    closed = False
    try:
        client.start_stream(callback=lambda result, error: messages.put((result, error)))
        client.async_stream_infer(ctx.model, _inputs(grpcclient, p.get("inputs", {})),
                                  enable_empty_final_response=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                result, error = messages.get(timeout=0.1)
            except queue.Empty:
                continue
            record(result, error)
            if msgs[-1].get("final"):
                end = "final"
                break
            if error is not None:
                closed = True
                if _close_gracefully(client, deadline - time.monotonic()):
                    end = "error"
                while not messages.empty():
                    record(*messages.get_nowait())
                if any(m.get("final") for m in msgs):
                    end = "final"
                break
    finally:
        try:
            if not closed:
                if end == "final":
                    _close_gracefully(client, 10.0)
                else:
                    client.stop_stream(cancel_requests=True)
        finally:
            client.close()
    return {"kind": "stream", "end": end, "msgs": msgs}


def _close_gracefully(client, timeout_s: float) -> bool:
    """Half-close the stream without cancelling (Triton 2.51 loses a request cancelled after its
    final response: the model could then never unload); False if the server did not end it."""
    stream = getattr(client, "_stream", None)
    closer = threading.Thread(target=client.stop_stream, kwargs={"cancel_requests": False}, daemon=True)
    closer.start()
    closer.join(max(timeout_s, 0.0))
    if not closer.is_alive():
        return True
    iterator = getattr(stream, "_response_iterator", None)
    if iterator is not None:
        iterator.cancel()
    closer.join(10.0)
    return False


def do_load(ctx: Context, case: Case) -> dict:
    status, text = ctx.served.load(ctx.model, float(case.params.get("timeout_s", LOAD_TIMEOUT_S)))
    if status == 200:
        return {"kind": "ok"}
    if status == 0:
        return {"kind": "timeout"}
    return {"kind": "error", "status": str(status), "error": ctx.text(text, case)}


def do_config(ctx: Context, case: Case) -> dict:
    status, body = ctx.served.http("GET", f"/v2/models/{ctx.model}/config")
    if status != 200:
        return {"kind": "error", "status": str(status), "error": ctx.text(body.decode(errors="replace"), case)}
    config = json.loads(body)
    keys = case.params.get("keys")
    if keys:
        config = {k: config.get(k) for k in keys}
    return {"kind": "value", "value": ctx.value(config, case)}


def do_index(ctx: Context, case: Case) -> dict:
    """The model's entry in ``POST /v2/repository/index`` (state and reason)."""
    status, body = ctx.served.http("POST", "/v2/repository/index", {})
    if status != 200:
        return {"kind": "error", "status": str(status), "error": ctx.text(body.decode(errors="replace"), case)}
    entries = [e for e in json.loads(body) if e.get("name") == ctx.model]
    return {"kind": "value", "value": ctx.value(entries, case)}


ACTION_FUNCS: Mapping[str, Callable[[Context, Case], dict]] = {
    "infer": do_infer, "infer_many": do_infer_many, "stream": do_stream, "load": do_load, "config": do_config, "index": do_index}


def run_case(ctx: Context, case: Case) -> dict:
    """Do ``case``'s action; with a log marker, also collect the log lines written meanwhile."""
    if case.log is None:
        return ACTION_FUNCS[case.action](ctx, case)
    marker, excluded = (case.log, None) if isinstance(case.log, str) else (case.log["contains"],
                                                                           case.log.get("excludes"))
    # Lines of earlier work (a model's initialize) may still be on their way: start from a quiet log.
    _wait_quiet(ctx, quiet_s=0.5, limit_s=5.0)
    start = len(ctx.served.log_text())
    outcome = ACTION_FUNCS[case.action](ctx, case)
    # Stubs write to the log asynchronously. Wait for as many lines as the recorded expectation
    # has (at most 10 s), then until the log has been quiet for 0.5 s (at most 5 s more).
    want = len((case.expect or {}).get("log", ())) if isinstance(case.expect, dict) else 0

    def lines():
        """Lines containing the marker, each with its continuation lines (a multi-line message
        a stub wrote to its stderr: lines without a log prefix that follow it)."""
        kept, inside = [], False
        for line in ctx.served.log_text()[start:].splitlines():
            if _LOG_PREFIX.match(line) is None:
                if inside:
                    kept.append(line)
                continue
            inside = marker in line and not (excluded and excluded in line)
            if inside:
                kept.append(line)
        return kept

    deadline = time.monotonic() + 10.0
    while len(lines()) < want and time.monotonic() < deadline:
        time.sleep(0.1)
    _wait_quiet(ctx, quiet_s=0.5, limit_s=5.0)
    outcome["log"] = [ctx.text(ctx.normaliser.log_line(line), case) if _LOG_PREFIX.match(line)
                      else ctx.text(line, case) for line in lines()]
    return outcome


def _wait_quiet(ctx: Context, quiet_s: float, limit_s: float) -> None:
    """Until the server log has not grown for ``quiet_s`` (at most ``limit_s``)."""
    deadline = time.monotonic() + limit_s
    size, quiet_since = len(ctx.served.log_text()), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < quiet_s:
        time.sleep(0.1)
        now = len(ctx.served.log_text())
        if now != size:
            size, quiet_since = now, time.monotonic()


def canonical(outcome: Optional[dict]) -> str:
    return json.dumps(outcome, sort_keys=True, ensure_ascii=False)
