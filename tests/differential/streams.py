"""gRPC streaming for the differential suite: decoupled models, cancellation, rescheduling.

:func:`stream_infer` sends one request on its own bidirectional gRPC stream (``start_stream`` /
``async_stream_infer`` with ``enable_empty_final_response``) and collects every message until
the FINAL flag. A stream error carries no request id and no final flag, so an error ends the
collection only after ``settle_s`` of silence (a decoupled model may send an error response
without FINAL and go on). Every wait is bounded by ``timeout_s``; on expiry the outcome records
what arrived and ``timeout``.

``cancel_after=k`` cancels the request (closing the stream with ``cancel_requests=True``) once
``k`` messages arrived, then gives the server ``settle_s`` before returning.

The result is a comparable :class:`difftools.Outcome` of kind ``"value"`` whose value is a
:class:`StreamResult`.
"""
from __future__ import annotations

import queue
import time
from dataclasses import dataclass
from typing import Mapping, Optional, Tuple

from difftools import InputValue, Output, Outcome, Target, make_inputs

STREAM_TIMEOUT_S = 20.0
SETTLE_S = 0.3


@dataclass(frozen=True)
class Msg:
    """One message of a response stream: a response (outputs, FINAL flag) or an error text."""

    outputs: Tuple[Output, ...] = ()
    final: bool = False
    error: Optional[str] = None

    def output(self, name: str) -> Output:
        for out in self.outputs:
            if out.name == name:
                return out
        raise KeyError(f"no output {name!r} in {self}")

    def array(self, name: str):
        return self.output(name).array()

    def scalar(self, name: str):
        value = self.array(name).reshape(-1)[0]
        return value.decode() if isinstance(value, bytes) else value.item()


@dataclass(frozen=True)
class StreamResult:
    msgs: Tuple[Msg, ...]
    #: "final" (FINAL seen), "error" (an error, then silence), "timeout", "cancelled".
    end: str

    @property
    def responses(self) -> Tuple[Msg, ...]:
        """The messages that carry outputs."""
        return tuple(m for m in self.msgs if m.error is None and m.outputs)

    @property
    def errors(self) -> Tuple[str, ...]:
        return tuple(m.error for m in self.msgs if m.error is not None)

    def values(self, name: str = "OUT"):
        return [m.scalar(name) for m in self.responses]


def _outputs_of_grpc(result) -> Tuple[Output, ...]:
    outputs = []
    for out in result.get_response().outputs:
        arr = result.as_numpy(out.name)
        if out.datatype == "BYTES":
            data = tuple(bytes(x) for x in arr.reshape(-1)) if arr is not None else ()
        else:
            data = arr.tobytes() if arr is not None else b""
        outputs.append(Output(out.name, out.datatype, tuple(out.shape), data))
    return tuple(outputs)


def _is_final(result) -> bool:
    params = result.get_response().parameters
    return "triton_final_response" in params and params["triton_final_response"].bool_param


def stream_infer(target: Target, inputs: Mapping[str, InputValue], *, timeout_s: float = STREAM_TIMEOUT_S,
                 settle_s: float = SETTLE_S, cancel_after: Optional[int] = None, **kwargs) -> Outcome:
    """One request on its own stream; see the module docstring."""
    import tritonclient.grpc as grpcclient

    messages: "queue.Queue" = queue.Queue()
    client = grpcclient.InferenceServerClient(target.server.grpc_url)
    msgs = []
    end = "timeout"
    try:
        client.start_stream(callback=lambda result, error: messages.put((result, error)))
        client.async_stream_infer(target.name, make_inputs(grpcclient, inputs),
                                  enable_empty_final_response=True, **kwargs)
        deadline = time.monotonic() + timeout_s
        last_was_error = False
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            wait = min(remaining, settle_s) if last_was_error else remaining
            try:
                result, error = messages.get(timeout=wait)
            except queue.Empty:
                if last_was_error:
                    end = "error"
                    break
                continue
            if error is not None:
                msgs.append(Msg(error=target.normaliser.text(error.message())))
                last_was_error = True
            else:
                final = _is_final(result)
                msgs.append(Msg(outputs=_outputs_of_grpc(result), final=final))
                last_was_error = False
                if final:
                    end = "final"
                    break
            if cancel_after is not None and len(msgs) >= cancel_after:
                client.stop_stream(cancel_requests=True)
                time.sleep(settle_s)
                while not messages.empty():
                    result, error = messages.get_nowait()
                    if error is None:
                        msgs.append(Msg(outputs=_outputs_of_grpc(result), final=_is_final(result)))
                end = "cancelled"
                break
    finally:
        try:
            client.stop_stream(cancel_requests=True)
        finally:
            client.close()
    return Outcome("value", value=StreamResult(tuple(msgs), end))


def notes(target: Target, *, timeout_s: float = STREAM_TIMEOUT_S):
    """The JSON notes a model kept (the ``report`` mode of this suite's models), then cleared."""
    import json

    import numpy as np

    out = stream_infer(target, {"MODE": np.array([b"report"], dtype=object), "N": np.array([0], np.int32)},
                       timeout_s=timeout_s)
    result = out.value
    assert result.end == "final" and result.responses, result
    return target.normaliser.value(json.loads(result.responses[0].scalar("NOTE")))
