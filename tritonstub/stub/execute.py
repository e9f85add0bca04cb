"""ExecuteRequest → ExecuteResponse (Stub::ProcessRequests / ProcessReturnedResponses).

The parent sends one RequestBatch; we build the model's InferenceRequest objects (inputs copied
out of shared memory), call ``execute`` (running a coroutine on the stub's event loop as the C++
stub does) and answer with ONE block::

    [IPCMessageShm: command=ExecuteResponse, args=block+48][ResponseBatch][handle per request]

A handle of 0 means "no response for that request" (decoupled models, the response sender, a
rescheduled request). Errors become ``has_error`` with the text
``Failed to process the request(s) for model '<name>', message: <error>``; the parent then sends
that error to every request not already completed through the response sender.

Fixed on purpose: a non-decoupled model that returns None (or None for a request) and never
answered that request through its response sender leaves the client waiting forever under the
C++ stub. We send an error response for that request instead, saying what to do.
"""
from __future__ import annotations

import threading

from ..errors import TritonStubError
from .. import protocol
from ..protocol.responses import (write_execute_error, write_execute_reply,
                                  write_execute_response, write_response)
from ..protocol.scalars import Owned
from .bridge import is_inference_response, load_requests, output_item, response_data, sender_of
from .exc_text import call_user
from .log import SITE_EXECUTE_FAILED
from .runtime import TritonModelException

L = protocol.current()



class ExecuteError(TritonStubError):
    """Raised for the C++ PythonBackendException texts of the execute path."""


def _is_coroutine(obj) -> bool:
    # asyncio costs ~30 ms to import: only a model that returned a coroutine pays for it.
    if type(obj).__name__ != "coroutine" and not hasattr(obj, "__await__"):
        return False
    import asyncio
    return asyncio.iscoroutine(obj)


def run_coroutine(stub, coro, in_background: bool, requests=None):
    """Stub::RunCoroutine: one event loop in a daemon thread, created on first use."""
    import asyncio
    if stub.loop is None:
        loop = asyncio.new_event_loop()
        # As in pb_stub.cc: a (visible) Python daemon thread runs the loop.
        t = threading.Thread(target=loop.run_forever, daemon=True)
        t.start()
        stub.loop = loop
    fut = asyncio.run_coroutine_threadsafe(coro, stub.loop)
    if in_background:
        rt = stub.runtime
        rt.background_futures.add(fut)
        fut.add_done_callback(rt.background_future_done)
        if requests:
            reqs = list(requests)
            fut.add_done_callback(lambda f: _end_open_requests(stub, f, reqs))
        return None
    return fut.result()


def _end_open_requests(stub, fut, requests) -> None:
    """A decoupled ``async def execute`` failed in the background (deliberate difference).

    The C++ stub only logs the traceback (we do too, pb_stub.cc:945): the requests it left open
    never get FINAL and tritonserver can never unload the model. We end each open request with
    the error a failing synchronous execute reports, as a FINAL error response.
    """
    if fut.cancelled() or fut.exception() is None:
        return
    from . import c_python_backend_utils as pb
    exc = fut.exception()
    text = (f"Failed to process the request(s) for model '{stub.name}', message: "
            f"{stub.error_text(exc)}")
    for req in requests:
        sender = req._sender
        if sender._is_closed():
            continue
        try:
            sender.send(pb.InferenceResponse(error=pb.TritonError(text)),
                        flags=L.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        except Exception:  # noqa: BLE001 - the parent may be gone; nothing else to do
            pass


def _type_str(obj) -> str:
    return str(type(obj))


def _release_kept(stub) -> None:
    """The requests end with this reply: the blocks kept from the model's sends and BLS calls
    go back first (messaging.py, take_kept), so the region is as the C++ stub leaves it."""
    runtime = getattr(stub, "runtime", None)
    if runtime is not None:
        runtime.release_kept()


def process_requests(stub, batch_handle: int, owned: Owned) -> int:
    """Run execute on one batch; returns the ExecuteResponse block handle (already filled)."""
    region = stub.region
    decoupled = stub.decoupled
    requests: list = []
    try:
        requests = load_requests(stub, batch_handle)
        board = stub.board
        for r in requests:
            board.add(r._factory_address)
        execute = getattr(stub.model_instance, "execute", None)
        if execute is None:
            raise ExecuteError(f"Python model {stub.ctx.python_model_path()} does not "
                               "implement `execute` method.")
        ret = call_user(execute, requests)
        if _is_coroutine(ret):
            if decoupled:
                run_coroutine(stub, ret, in_background=True, requests=requests)
                ret = None
            else:
                ret = run_coroutine(stub, ret, in_background=False)
        _release_kept(stub)
        items = _returned_responses(stub, requests, ret, decoupled, owned)
        if L.RESPONSES_THROUGH_SENDER:
            block = write_execute_reply(region, owned)
        else:
            block = write_execute_response(region, items, owned)
        for r, item in zip(requests, items):
            if item:                  # the parent deletes the factory of a returned response
                stub.board.discard(r._factory_address)
        for r in requests:
            if not r._returned:
                r._sender           # noqa: B018 - made now: its end cleans the factory up
        return block
    except BaseException as e:  # noqa: BLE001 - every failure goes back to the parent
        _release_kept(stub)
        text = stub.error_text(e)
        msg = f"Failed to process the request(s) for model '{stub.name}', message: {text}"
        if L.EXECUTE_ERROR_PREFIXED:
            stub.log(2, msg, line=SITE_EXECUTE_FAILED)
        else:
            # r24.04-r24.05: the parent gets the bare text; only decoupled models log the line
            if decoupled:
                stub.log(0, msg, line=SITE_EXECUTE_FAILED)
            msg = text
        # Tell the parent not to delete response factories when a FINAL already deleted one
        # (deleting it twice crashes the server). C++ checks this for decoupled models only and
        # leaves the flag uninitialised otherwise; a leaked factory beats a crash.
        # A sender closed only because execute returned its FINAL response (which then failed,
        # e.g. the region could not grow for its outputs) has sent nothing: its factory is the
        # parent's to delete, and claiming otherwise leaks it and keeps the model from unloading.
        factory_deleted = stub.factory_deleted_in_execute
        stub.factory_deleted_in_execute = False
        factory_deleted = factory_deleted or any(
            sender_of(r)._is_closed() and not r._final_returned for r in requests)
        block = write_execute_error(region, msg, factory_deleted, owned)
        for r in requests:
            sender = sender_of(r)
            if L.STUB_DELETES_FACTORY_ON_FINAL:
                # before r24.10 the parent leaves every factory to the stub, failed batch or
                # not (C++: the sender's destructor), so it is released here, once
                sender._delete_response_factory()
            sender._close()
            # The parent deletes them all (or, with factory_deleted, leaks the open ones, as
            # C++ does), or we just did: none is ours to release any more.
            stub.board.discard(r._factory_address)
        return block


def _returned_responses(stub, requests, ret, decoupled: bool, owned: Owned) -> list:
    """ProcessReturnedResponses: validate the return value; one item per request for
    :func:`protocol.responses.write_execute_response` (error responses are saved here, as handles)."""
    region = stub.region
    if ret is None:
        if decoupled:
            return []
        if not L.NONE_RESPONSES_ALLOWED:
            raise ExecuteError(f"Expected a list in the execute return, found type "
                               f"'{_type_str(ret)}'.")
        return [_missing_response(stub, r, owned) for r in requests]
    if decoupled:
        raise ExecuteError(f"Python model '{stub.name}' is using the decoupled mode and the "
                           "execute function must return None.")
    if not isinstance(ret, list):
        raise ExecuteError(f"Expected a list in the execute return, found type "
                           f"'{_type_str(ret)}'.")
    if len(ret) != len(requests):
        raise ExecuteError(
            "Number of InferenceResponse objects do not match the number of InferenceRequest "
            f"objects. InferenceRequest(s) size is:{len(requests)}, and InferenceResponse(s) "
            f"size is:{len(ret)}\n")
    for req, resp in zip(requests, ret):
        if resp is None:
            if L.NONE_RESPONSES_ALLOWED or \
                    req._release_flags == L.TRITONSERVER_REQUEST_RELEASE_RESCHEDULE:
                continue
            # before r24.06 a non-decoupled request has no response sender to answer later
            raise ExecuteError("Expected an 'InferenceResponse' object in the execute function "
                               f"return list, found type '{_type_str(resp)}'.")
        if req._release_flags == L.TRITONSERVER_REQUEST_RELEASE_RESCHEDULE:
            raise ExecuteError("Expected a None object in the execute function return list "
                               f"for reschduled request, found type '{_type_str(resp)}'.")
        if not is_inference_response(resp):
            raise ExecuteError("Expected an 'InferenceResponse' object in the execute function "
                               f"return list, found type '{_type_str(resp)}'.")
        try:
            req._return_final(resp)
        except TritonModelException as e:
            # C++ raises its PythonBackendException text (no type prefix), and tells the parent
            # not to delete factories a FINAL already deleted.
            if req._sender._is_closed():
                stub.factory_deleted_in_execute = True
            raise ExecuteError(str(e)) from None
    if L.RESPONSES_THROUGH_SENDER:
        # Before r24.10 every returned response goes through the request's response sender
        # (its state was updated above), and the ExecuteResponse carries none.
        for req, resp in zip(requests, ret):
            if resp is None:
                _missing_response(stub, req, owned)
                continue
            resp._prune(set(req._requested_output_names))
            try:
                stub.runtime.send_response(sender_of(req), resp,
                                           L.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            except TritonModelException as e:
                raise ExecuteError(str(e)) from None      # C++: PythonBackendException
        return []
    items = []
    for req, resp in zip(requests, ret):
        if resp is None:
            items.append(_missing_response(stub, req, owned))
        elif resp._error is None:
            items.append(output_item(resp, req._requested_output_names))
        else:
            items.append(write_response(region, response_data(resp), owned))
    return items


def _missing_response(stub, request, owned: Owned) -> int:
    """No response for this request: handle 0, as in C++.

    A non-decoupled model may still answer through the request's response sender after
    ``execute`` returns (r24.06+), so nothing is decided here. The sender is marked instead:
    if it is garbage-collected without having sent anything (nobody kept it to answer later),
    it sends this error with FINAL, where the C++ stub would leave the client waiting.
    """
    sender = sender_of(request)
    if (sender._is_closed() or sender._responses_sent() > 0
            or request._release_flags == L.TRITONSERVER_REQUEST_RELEASE_RESCHEDULE):
        return 0
    sender._abandon_error = (
        f"Python model '{stub.name}' returned no response for a request and did not send "
        "one through the request's response sender: a non-decoupled model must return an "
        "InferenceResponse for every request (or send one with "
        "request.get_response_sender().send(response, flags=TRITONSERVER_RESPONSE_COMPLETE_"
        "FINAL)). tritonstub reports this instead of leaving the client waiting.")
    return 0
