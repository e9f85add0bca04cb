"""Cancellation and request rescheduling through both stubs.

Cancellation: a client cancels a gRPC stream (decoupled ``dec_modes``, which polls
``sender.is_cancelled()`` between responses) or a gRPC unary request (``cancel_wait``, which
polls ``request.is_cancelled()``); the model's notes say what it saw.
Rescheduling: ``resched`` runs under ``sequence_batching { iterative_sequence: true }`` (r24.10's name for
what later releases call generative_sequence; what
qa/L0_backend_python/request_rescheduling uses) and releases requests with
TRITONSERVER_REQUEST_RELEASE_RESCHEDULE, decoupled and not.
"""
from __future__ import annotations

import json
import queue

import numpy as np

from tritonstub.testing.tritonserver import FATAL_LOG
from difftools import DiffModel, Outcome, Target, make_inputs
from shm_helpers import wait_for
from solo import run_hazard, solo  # noqa: F401 - solo is a fixture
from streams import notes, stream_infer

#: Items of the conformance checklist these cases cover (conformance/CASES.md).
COVERS = ["cancellation", "rescheduling"]

DECOUPLED_RESCHED = """
backend: "python"
max_batch_size: 0
model_transaction_policy { decoupled: true }
input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
sequence_batching { iterative_sequence: true }
instance_group [ { kind: KIND_CPU count: 1 } ]
"""

DIFF_MODELS = [
    DiffModel("dec_cancel", source="dec_modes"),
    DiffModel("cancel_wait"),
    DiffModel("resched"),
    DiffModel("resched_dec", source="resched", config=DECOUPLED_RESCHED),
]
# Hazards (see solo.py): each kills tritonserver under the C++ stub, so each stub's side runs on a
# server of its own.
SOLO_MODELS = [
    DiffModel("bls_cancel", source="bls_caller"),
    DiffModel("dec_hazard", source="dec_modes"),
]


def _inputs(mode: str, n: int = 0):
    return {"MODE": np.array([mode.encode()], dtype=object), "N": np.array([n], dtype=np.int32)}


# ---- cancellation -----------------------------------------------------------------------------


def test_cancelling_a_stream_midway(pair):
    """The client closes the stream (cancel_requests=True) after 3 responses; the model sees
    sender.is_cancelled() (and request.is_cancelled()) turn True, and what a send does then."""
    def case(t: Target) -> Outcome:
        first = stream_infer(t, _inputs("cancel_poll", 1000), cancel_after=3).value
        kept = notes(t)
        return Outcome("value", value=(first.end, len(first.responses) >= 3, tuple(map(tuple, kept))))
    end, enough, kept = pair.run("dec_cancel", case).value
    assert end == "cancelled" and enough
    assert kept[0] == ("cancelled", "sender True, request True"), kept
    assert [k[0] for k in kept[1:]] == ["response after cancel", "FINAL after cancel"]


def test_cancelling_a_unary_grpc_request(pair):
    def case(t: Target) -> Outcome:
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(t.server.grpc_url)
        got: "queue.Queue" = queue.Queue()
        try:
            polling = len(t.log_lines(f"{t.name} polling", expect=0))
            ctx = client.async_infer(t.name, make_inputs(grpcclient, _inputs("poll", 1000)),
                                     callback=lambda result, error: got.put((result, error)))
            # Cancel once execute is polling: a request cancelled while still queued never runs.
            lines = t.log_lines(f"{t.name} polling", expect=polling + 1, timeout_s=30.0)
            assert len(lines) == polling + 1, "the request did not start executing"
            ctx.cancel()
            result, error = got.get(timeout=10)
        finally:
            client.close()
        report = t.infer(_inputs("report")).require_ok()
        return Outcome("value", value=(None if error is None else str(error), report.output("NOTE").data[0]))
    error, kept = pair.run("cancel_wait", case).value
    assert "Locally cancelled by application!" in error, error
    assert json.loads(kept) == [["cancelled", True, True]]


def test_a_request_that_is_not_cancelled(pair):
    def case(t: Target) -> Outcome:
        out = t.infer_grpc(_inputs("poll", 3))
        return Outcome("value", value=(out, t.infer(_inputs("report")).require_ok().output("NOTE").data[0]))
    out, kept = pair.run("cancel_wait", case).value
    assert out.require_ok().array("OUT").tolist() == [3]
    assert json.loads(kept) == [["not cancelled", False]]


# ---- rescheduling -----------------------------------------------------------------------------


def test_rescheduled_request_then_answered(pair):
    """Rescheduled twice, answered on the third execution."""
    out = pair.run("resched", lambda t: t.infer_grpc({"IN": np.array([2], np.int32)}, request_id="r-two"))
    assert out.require_ok().array("OUT").tolist() == [3]


def test_rescheduled_decoupled_request_sends_from_each_execution(pair):
    result = pair.run("resched_dec", lambda t: stream_infer(t, {"IN": np.array([4], np.int32)},
                                                           request_id="d-four")).value
    assert result.end == "final" and result.values() == [3, 2, 1, 0]


def test_rescheduled_request_that_also_returns_a_response(pair):
    out = pair.run("resched", lambda t: t.infer_grpc({"IN": np.array([-1], np.int32)}, request_id="r-bad",
                                                     timeout_s=10))
    assert out.require_error().error == (
        "Failed to process the request(s) for model 'resched_<stub>_0_0', message: Expected a None object in the "
        "execute function return list for reschduled request, found type "
        "'<class 'c_python_backend_utils.InferenceResponse'>'."), out.error


# ---- hazards ----------------------------------------------------------------------------------


def test_is_cancelled_on_a_request_built_for_bls(pair, solo):
    """C++: the stub asks the parent about a request with no address; the parent throws in its
    monitor thread and tritonserver dies. Ours answers False without asking."""
    def case(t: Target) -> Outcome:
        try:
            out = t.infer({"CASE": np.array([json.dumps({"case": "bls_request_is_cancelled"}).encode()],
                                            dtype=object)}, timeout_s=5)
        except Exception as exc:  # noqa: BLE001 - the connection dies with the server
            out = Outcome("error", error=type(exc).__name__)
        if out.kind != "ok":
            wait_for(lambda: not t.server.running, 30.0, "tritonserver to exit after the failed request")
            fatal = sorted({m.group(0) for m in FATAL_LOG.finditer(t.server.log_text())})
            return Outcome("value", value=("failed", out.kind, t.server.running, fatal))
        return Outcome("value", value=("ok", json.loads(out.output("RESULT").data[0])))
    out = run_hazard(pair, solo, "bls_cancel", case, compare=False, cpp_alone=True).value
    if pair.is_cpp:
        # The crash is the expected outcome here (its server is a throwaway one): asserted.
        assert out[0] == "failed" and out[2] is False and out[3], out
    else:
        assert out == ("ok", {"request": "returned False", "sender": "returned False"})


def test_is_cancelled_after_final(pair, solo):
    """C++: the stub asks the parent about the response factory it deleted at FINAL: a use after
    free in TRITONBACKEND_ResponseFactoryIsCancelled, seen to kill tritonserver with SIGSEGV (not
    every time). Ours must answer without asking the parent."""
    def case(t: Target) -> Outcome:
        first = stream_infer(t, _inputs("is_cancelled_after_final"), timeout_s=5.0).value
        if t.stub == "cpp":
            return Outcome("value", value=(first,))
        return Outcome("value", value=(first, tuple(map(tuple, notes(t)))))
    out = run_hazard(pair, solo, "dec_hazard", case, compare=False, cpp_alone=True).value
    assert out[0].values() == [0]
    if not pair.is_cpp:
        assert out[1] == (("sender.is_cancelled() after FINAL", "returned False"),
                          ("request.is_cancelled() after FINAL", "returned False"))
