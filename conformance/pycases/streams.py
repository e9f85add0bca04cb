"""gRPC streaming for the differential suite: decoupled models, cancellation, rescheduling.

:func:`stream_infer` sends one request on its own bidirectional gRPC stream (``start_stream`` /
``async_stream_infer`` with ``enable_empty_final_response``) and collects every message until
the request is over. Every wait is bounded by ``timeout_s``; on expiry the outcome records what
arrived and ``timeout``.

When is a request over? A response with the FINAL flag says so. An error does not: a stream
error carries no request id and no final flag, and a decoupled model may send an error response
without FINAL and go on. So after an error the client half-closes the stream and keeps reading
until the server ends it, which tritonserver does once every request of the stream is complete.
No guess from a silence is involved.

How a stream is closed matters to the *server*: Triton 2.51's gRPC frontend loses a request that
is cancelled after its final response was written (it logs "Waiting for the callback to retrieve
cancellation ... CANCELLATION_ISSUED" and no callback ever comes), and the model can then never
unload, whichever stub serves it. A module's shared server would hit its exit timeout at
teardown with the stubs and regions of that model left behind (issue 15, step 0; measured with
``benchmarks/stream_cancel_unload.py --cancel-completed``). So a stream whose request is over is
closed without cancelling (``stop_stream(cancel_requests=False)``, bounded); only a request that
is still running (``cancel_after``, or a timeout) is cancelled.

``cancel_after=k`` cancels the request (closing the stream with ``cancel_requests=True``) once
``k`` messages arrived; the messages delivered until the stream was torn down are kept.

The result is a comparable :class:`difftools.Outcome` of kind ``"value"`` whose value is a
:class:`StreamResult`.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Mapping, Optional, Tuple

from difftools import InputValue, Output, Outcome, Target, make_inputs

STREAM_TIMEOUT_S = 20.0
#: Bound on the server ending a stream whose request is over (it normally takes milliseconds).
CLOSE_TIMEOUT_S = 10.0


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
    #: "final" (FINAL seen), "error" (the last message was an error and the server then ended
    #: the stream), "timeout", "cancelled".
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


def _close_gracefully(client, timeout_s: float) -> bool:
    """Half-close the stream and wait until the server has ended it (all callbacks delivered).

    False when the server did not end it within ``timeout_s``; the stream is then cancelled.
    """
    stream = getattr(client, "_stream", None)  # tritonclient keeps no public handle on it
    closer = threading.Thread(target=client.stop_stream, kwargs={"cancel_requests": False},
                              name="stream-close", daemon=True)
    closer.start()
    closer.join(max(timeout_s, 0.0))
    if not closer.is_alive():
        return True
    iterator = getattr(stream, "_response_iterator", None)
    if iterator is not None:
        iterator.cancel()  # ends tritonclient's reader thread, so stop_stream returns
    closer.join(CLOSE_TIMEOUT_S)
    return False


def stream_infer(target: Target, inputs: Mapping[str, InputValue], *, timeout_s: float = STREAM_TIMEOUT_S,
                 cancel_after: Optional[int] = None, **kwargs) -> Outcome:
    """One request on its own stream; see the module docstring."""
    import tritonclient.grpc as grpcclient

    messages: "queue.Queue" = queue.Queue()
    client = grpcclient.InferenceServerClient(target.server.grpc_url)
    msgs = []
    end = "timeout"
    closed = False

    def record(result, error) -> None:
        if error is not None:
            msgs.append(Msg(error=target.normaliser.text(error.message())))
        else:
            msgs.append(Msg(outputs=_outputs_of_grpc(result), final=_is_final(result)))

    def drain() -> None:
        while not messages.empty():
            record(*messages.get_nowait())

    try:
        client.start_stream(callback=lambda result, error: messages.put((result, error)))
        client.async_stream_infer(target.name, make_inputs(grpcclient, inputs),
                                  enable_empty_final_response=True, **kwargs)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                result, error = messages.get(timeout=max(0.0, min(deadline - time.monotonic(), 0.1)))
            except queue.Empty:
                continue
            record(result, error)
            if msgs[-1].final:
                end = "final"
                break
            if cancel_after is not None and len(msgs) >= cancel_after:
                # stop_stream returns once tritonclient's reader thread has ended: every message
                # delivered before the cancel is in the queue by then.
                client.stop_stream(cancel_requests=True)
                closed = True
                drain()
                end = "cancelled"
                break
            if error is not None:
                # Not necessarily the end (see the module docstring): let the server say.
                closed = True
                if _close_gracefully(client, deadline - time.monotonic()):
                    drain()
                    end = "final" if any(m.final for m in msgs) else "error"
                else:
                    drain()
                break
    finally:
        try:
            if not closed:
                if end == "final":
                    _close_gracefully(client, CLOSE_TIMEOUT_S)
                else:
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
