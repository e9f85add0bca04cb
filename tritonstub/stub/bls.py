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

from .. import protocol
from ..errors import TritonStubError
from ..ipc import handshake, libc
from ..ipc.handshake import PeerGone
from ..protocol import control
from ..protocol.requests import (pack_request_batch, request_batch_size, request_plan,
                                 write_request, write_request_batch)
from ..protocol.responses import read_response_batch
from ..protocol.scalars import Owned

L = protocol.current()

C = L.PYTHONSTUB_CommandType
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
        command = C.InferStreamExecRequest if decoupled else C.InferExecRequest
        plan = request_plan(data)
        if plan is None:                        # r24.03: strings inside the request block
            with region.locked():               # one hold of shm_mutex for every block
                msg_h, mu_h, cv_h = rt.messenger.ipc_message(command, 0, owned, inline=True)
                rh = write_request(region, data, owned)
                batch = write_request_batch(region, [rh], owned)
            control.set_args(region, msg_h, batch)
        else:
            # The IPCMessageShm with its mutex and condition, the request's blocks and the
            # RequestBatch, in the C++ stub's order: kept from the last call of this shape
            # (messaging.py, take_kept) or Construct'ed in one run.
            sizes, fill = plan
            sizes = [L.IPCMessageShm.size, libc.MUTEX_SIZE, libc.COND_SIZE] + sizes + \
                [request_batch_size(1)]
            owned.extend(rt.messenger.blocks(sizes))
            msg_h, mu_h, cv_h, batch = owned[0], owned[1], owned[2], owned[-1]
            buf = region.buf
            control.pack_ipc_message(buf, msg_h, command, batch, mu_h, cv_h)
            pack_request_batch(buf, batch, [fill(buf, owned[3:-1])])
        mu, cv = handshake.sync_objects(region, region.payload(mu_h), region.payload(cv_h),
                                        plan is not None)
        registry = rt.__dict__.get("bls_iterators") if decoupled else None
        if registry is not None:
            registry.begin_stream()  # its later responses may overtake the first one
            started = True
        # For the heartbeat helper (salvage.py): from the push until our last notify, a parent
        # thread may be waiting for us.
        board = stub.board
        mu.lock()
        board.begin_bls()
        try:
            rt.messenger.push_request(msg_h)
            # The parent writes response_handle *before* it runs the inference and notifies
            # only when the response is complete, with no flag to test: like the C++ stub we
            # wait for the notification (we hold the mutex since before the push, so it cannot
            # be missed), in one-second slices so a dead parent cannot keep us here.
            handshake.wait_notify(mu, cv, stub.parent_alive)
            try:
                reply = control.read_response_handle(region, msg_h)
                result = read_response_batch(region, control.read_command(region, reply)[1],
                                             BLS_ERROR)
            except TritonStubError as e:
                result = f"BLS request failed: the server's reply is malformed: {e}"
            finally:
                # data_load_complete: let the parent return and drop its references (a reply
                # we could not read included: the parent waits for this notify).
                cv.notify_all()
        finally:
            mu.unlock()
            board.end_bls()
        if plan is not None:
            rt.messenger.keep(sizes, owned)
        if isinstance(result, str):
            return error_response(result)
        resp = make_response(result)
        if decoupled:
            started = False
            return rt.response_iterator(resp)
        return resp
    except PeerGone:
        return error_response("BLS request failed: the Triton server is gone.")
    finally:
        if started:
            registry.abandon_stream()
        owned.release(region)


def on_stream_response(rt, handle: int, msg: control.IPCMessage) -> None:
    """ProcessBLSResponseDecoupled (monitor thread): queue the response, then release C″."""
    region = rt.stub.region
    # Hold a reference on what we read and write into (the parent may release its own as soon
    # as it sees the flag, or early if it is broken): a handle that is not an object is refused
    # here, and none of them can be freed under us.
    held = [h for h in (handle, msg.args, msg.response_mutex, msg.response_cond) if h]
    for i, h in enumerate(held):
        try:
            region.load(h)
        except BaseException:
            region.release_many(held[:i])
            raise
    try:
        _stream_response(rt, region, msg)
    finally:
        region.release_many(held)


def _stream_response(rt, region, msg: control.IPCMessage) -> None:
    from .bridge import error_response, make_response
    args = msg.args
    try:
        result = read_response_batch(region, args, BLS_ERROR)
        resp = error_response(result) if isinstance(result, str) else make_response(result)
    except Exception as e:  # noqa: BLE001
        resp = error_response(str(e) or BLS_ERROR)
    warning = rt.bls_iterators.enqueue(resp)
    if warning:
        rt.log(SITE_FILE, 0, L.LogLevel.ERROR, f"tritonstub: {warning}")
    # The parent's handles, and we write into what they name: checked as whole objects.
    mu, cv = handshake.peer_sync_objects(region, msg.response_mutex, msg.response_cond)
    flag = control.mailbox(L.ResponseBatch, region.object_payload(args, L.ResponseBatch.size)).flag
    handshake.answer_flag(region, mu, cv, flag, rt.stub.parent_alive, rounds=1)
