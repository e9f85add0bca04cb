"""BLS: InferenceRequest.exec / async_exec from model.py (InferRequest::Exec, r24.10).

Pattern C. We Construct an IPCMessageShm with an inline (32-aligned) response mutex and
condition, a one-request RequestBatch and the InferRequestShm with its inputs, lock the response
mutex, push on stub_to_parent_mq (command 8, or 9 for ``decoupled=True``) and wait. A parent pool
thread writes the handle of its reply IPCMessageShm (command 10) into our ``response_handle``
(before the inference runs), runs the inference, then notifies and waits in turn. There is no
flag to wait on, so like the C++ stub we wait for the notification (we hold the mutex from
before the push, so it cannot be missed), in one-second slices tied to the parent's liveness.
We copy the response out and notify, which lets the parent drop its objects.

Streaming (C″): the first response of ``exec(decoupled=True)`` arrives as above; each later one is
pushed by the parent on parent_to_stub_mq (command 11) with an inline mutex/condition; the
monitor thread copies it into the ResponseIterator keyed by the parent's InferPayload address
(``ResponseShm.id``), then sets ``ResponseBatch.waiting_on_stub`` and notifies. When an iterator
is exhausted or dropped, command 17 tells the parent to release that payload.
"""
from __future__ import annotations

import struct

from .. import protocol
from ..ipc.sync import Condition, Mutex
from . import codec
from .codec import Owned
from .messaging import WAIT_SLICE_S, ParentGone

L = protocol.current()

C = L.PYTHONSTUB_CommandType
_H = L.OWNERSHIP_HEADER
BLS_ERROR = "An error occurred while performing BLS request."
SITE_FILE = "tritonstub/stub/bls.py"


def execute(rt, request, decoupled: bool):
    """Returns an InferenceResponse (an error response on failure, as C++ does)."""
    from .bridge import error_response, make_response, request_data
    stub = rt.stub
    region = stub.region
    owned = Owned()
    msg_h = 0
    started = False
    registry = None
    try:
        data = request_data(request)
        with region.locked():                   # one hold of shm_mutex for every block
            msg_h, mu_h, cv_h = rt.messenger._ipc_message(
                C.InferStreamExecRequest if decoupled else C.InferExecRequest, 0, owned,
                inline=True)
            batch = region.construct(L.RequestBatch.size + 8)
            owned.append(batch)
            rh = codec.save_request(region, data, owned)
        L.RequestBatch.write(region.buf, batch + _H, batch_size=1, gpu_buffers_handle=0)
        struct.pack_into("<q", region.buf, batch + _H + L.RequestBatch.size, rh)
        L.IPCMessageShm.set(region.buf, msg_h + _H, "args", batch)
        mu = Mutex(region.addr(mu_h + _H))
        cv = Condition(region.addr(cv_h + _H))
        registry = rt.__dict__.get("bls_iterators") if decoupled else None
        if registry is not None:
            registry.begin_stream()  # its later responses may overtake the first one
            started = True
        mu.lock()
        try:
            rt.messenger.push(msg_h)
            # The parent writes response_handle *before* it runs the inference and notifies
            # only when the response is complete, with no flag to test: like the C++ stub we
            # wait for the notification (we hold the mutex since before the push, so it cannot
            # be missed), in one-second slices so a dead parent cannot keep us here.
            while not cv.wait(mu, WAIT_SLICE_S):
                if not stub.parent_alive():
                    raise ParentGone()
            reply = L.IPCMessageShm.get(region.buf, msg_h + _H, "response_handle")
            result = _read_reply(region, reply)
            # data_load_complete: let the parent return and drop its references.
            cv.notify_all()
        finally:
            mu.unlock()
        if isinstance(result, str):
            return error_response(result)
        resp = make_response(result)
        if decoupled:
            started = False
            return rt.response_iterator(resp)
        return resp
    except ParentGone:
        return error_response("BLS request failed: the Triton server is gone.")
    finally:
        if started:
            registry.abandon_stream()
        owned.release(region)


def _read_reply(region, reply_handle: int):
    """Returns a ResponseData, or the error text of a failed batch."""
    p = region.payload(reply_handle)
    region.ensure_mapped(p, L.IPCMessageShm.size)
    args = L.IPCMessageShm.get(region.buf, p, "args")
    return _read_response_batch(region, args)


def _read_response_batch(region, batch_handle: int):
    B = L.ResponseBatch
    bp = region.payload(batch_handle)
    region.ensure_mapped(bp, B.size + 8)
    f = B.read(region.buf, bp)
    if f["has_error"]:
        if f["is_error_set"] and f["error"]:
            return codec.read_string(region, f["error"])
        return BLS_ERROR
    rh = struct.unpack_from("<q", region.buf, bp + B.size)[0]
    return codec.read_response(region, rh)


def on_stream_response(rt, handle: int, msg: dict) -> None:
    """ProcessBLSResponseDecoupled (monitor thread): queue the response, then release C″."""
    from .bridge import error_response, make_response
    region = rt.stub.region
    args = msg["args"]
    try:
        result = _read_response_batch(region, args)
        resp = error_response(result) if isinstance(result, str) else make_response(result)
    except Exception as e:  # noqa: BLE001
        resp = error_response(str(e) or BLS_ERROR)
    warning = rt.bls_iterators.enqueue(resp)
    if warning:
        rt.log(SITE_FILE, 0, L.LogLevel.ERROR, f"tritonstub: {warning}")
    mu = Mutex(region.addr(region.payload(msg["response_mutex"])))
    cv = Condition(region.addr(region.payload(msg["response_cond"])))
    mu.lock()
    try:
        region.buf[region.payload(args) + L.ResponseBatch.waiting_on_stub] = 1
        cv.notify_all()
    finally:
        mu.unlock()
