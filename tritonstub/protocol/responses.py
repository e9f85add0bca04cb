"""Responses: ResponseShm, the ExecuteResponse block and the ResponseBatch of BLS replies.

A response (infer_response.h) is a ``ResponseShm {outputs_size, error, has_error, is_error_set,
id, is_last_response}`` followed by the handles of its output tensors; an error response has no
outputs and ``error`` names a PbErrorShm. ``id`` is the parent's InferPayload address for BLS
streams, passed back opaque.

The stub answers an ExecuteRequest with ONE block (``Stub::ProcessRequests``)::

    [IPCMessageShm: command=ExecuteResponse, args=block+48][ResponseBatch][handle per request]

``args`` points inside the block itself (its "handle" is 48 bytes past the block's, so its
payload is the ResponseBatch). A response handle of 0 means "no response for that request". A
failed batch sets ``has_error`` with ``error`` naming a standalone *string* (not a PbError), and
``is_response_factory_deleted`` tells the parent not to delete factories a FINAL already
deleted. :func:`write_execute_response` saves the whole batch in one round of Constructs (one
hold of the lock), each object written with one precompiled struct; the field orders those
structs rely on are asserted at import.

A BLS reply (command InferExecResponse / InferStreamExecResponse, from the parent) carries a
ResponseBatch with one ResponseShm handle, or ``has_error`` and a string.

From r25.02 on, ``ResponseShm`` has a ``parameters`` handle after ``outputs_size``: every
response without an error carries a standalone string there, the JSON object of its parameters
(``"{}"`` for none); error responses leave it unset. Eras before r25.02 have no such field: a
response's parameters are then not sent (the model API refuses non-empty ones, see
``stub/c_python_backend_utils/response.py``). The codec tells the eras apart by its table
(:data:`HAS_PARAMETERS`).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

from . import current
from .scalars import (Owned, pack_handles, pack_string, read_error, read_handles, read_string, string_sizes,
                      write_error, write_handles, write_string)
from .tensors import pack_tensor, read_tensor, tensor_head, tensor_parts

L = current()
H = L.OWNERSHIP_HEADER
_S = L.ResponseShm
_B = L.ResponseBatch
_BATCH = L.EXECUTE_RESPONSE_BATCH_OFFSET
_HANDLES = L.EXECUTE_RESPONSE_HANDLES_OFFSET
_EXECUTE_RESPONSE = int(L.PYTHONSTUB_CommandType.ExecuteResponse)

#: r25.02+: ResponseShm.parameters (a JSON string handle on every response without an error).
HAS_PARAMETERS = "parameters" in _S.fields
NO_PARAMETERS = "{}"          # json.dumps({}): what a response without parameters carries
assert _S.names == (("outputs_size",) + (("parameters",) if HAS_PARAMETERS else ())
                    + ("error", "has_error", "is_error_set", "id", "is_last_response"))
assert L.IPCMessageShm.names[:2] == ("command", "args")
assert _B.names[:2] == ("waiting_on_stub", "batch_size")
_N_IPC = len(L.IPCMessageShm.names)
_N_BATCH = len(_B.names)


@dataclass
class ResponseData:
    """An InferResponse as plain values: output tensors or an error."""
    outputs: List[Tuple[str, int, Tuple[int, ...], object]] = field(default_factory=list)
    error: Optional[Tuple[int, str]] = None      # (TRITONSERVER_Error_Code, message)
    id: int = 0
    is_last_response: bool = True
    #: The response's parameters as a JSON object (r25.02+; "{}" for none, and what a reader
    #: of an older era's response reports).
    parameters: str = NO_PARAMETERS


class Returned(NamedTuple):
    """One response ``execute`` returned, for :func:`write_execute_response`: outputs as
    ``(name, triton dtype, dims, payload)`` with ``payload`` C-contiguous bytes-like."""
    outputs: Sequence[Tuple[str, int, Tuple[int, ...], object]]
    id: int
    is_last_response: bool
    parameters: str = NO_PARAMETERS


def _head(m: int, params: int, error: int, has_error: bool, ident: int, last: bool) -> tuple:
    """ResponseShm's values in table order (``params`` is dropped where the era has none)."""
    if HAS_PARAMETERS:
        return (m, params, error, has_error, has_error, ident, last)
    return (m, error, has_error, has_error, ident, last)


@dataclass
class ExecuteResult:
    """An ExecuteResponse block as the parent reads it."""
    responses: List[Optional[ResponseData]]
    error: Optional[str] = None
    is_response_factory_deleted: bool = False


# ------------------------------------------------------------------ one response
def write_response(heap, resp: ResponseData, owned: Owned) -> int:
    """InferResponse::SaveToSharedMemory: ResponseShm then the output tensor handles."""
    if resp.error is not None:
        h = heap.construct(_S.size)
        owned.append(h)
        eh = write_error(heap, resp.error[0], resp.error[1], owned)
        _S.struct.pack_into(heap.buf, h + H,
                            *_head(0, 0, eh, True, resp.id, resp.is_last_response))
        return h
    # One lock hold for all the blocks of this response; the copies happen after, unlocked.
    sizes, fill = response_plan(resp)
    handles = heap.construct_many(sizes)
    owned.extend(handles)
    return fill(heap.buf, handles)


def response_plan(resp: ResponseData):
    """A response without error as ``(sizes, fill)``: the sizes of its blocks in Construct
    order, and ``fill(buf, handles)``, which writes them once Construct'ed and returns the
    response's handle. For :func:`write_response`, and for a caller that puts more blocks in
    the same Construct run (``control.write_response_send``)."""
    plan = []
    sizes = [_S.size + 8 * len(resp.outputs)]
    for name, dtype, dims, data in resp.outputs:
        bname, mv = tensor_parts(name, data)
        head = tensor_head(len(dims), len(bname))
        plan.append((head, bname, int(dtype), dims, mv, len(mv)))
        sizes.append(head.size + len(mv))
    pdata = b""
    if HAS_PARAMETERS:
        pdata = (resp.parameters or NO_PARAMETERS).encode()
        sizes.extend(string_sizes(len(pdata)))

    def fill(buf, handles) -> int:
        h = handles[0]
        tensor_handles = handles[1:1 + len(plan)]
        for th, (head, bname, dtype, dims, mv, nbytes) in zip(tensor_handles, plan):
            pack_tensor(buf, th, head, bname, dtype, dims, mv, nbytes)
        params = 0
        if HAS_PARAMETERS:
            params = handles[1 + len(plan)]
            pack_string(buf, params, handles[2 + len(plan)], pdata)
        _S.struct.pack_into(buf, h + H,
                            *_head(len(plan), params, 0, False, resp.id, resp.is_last_response))
        pack_handles(buf, h + H + _S.size, tensor_handles)
        return h
    return sizes, fill


def read_response(heap, handle: int) -> ResponseData:
    """InferResponse::LoadFromSharedMemory (tensor data copied out)."""
    p = heap.payload(handle)
    heap.ensure_mapped(p, _S.size)
    f = _S.read(heap.buf, p)
    if f["has_error"]:
        err = (L.TRITONSERVER_Error_Code.INTERNAL, "")
        if f["is_error_set"]:
            err = read_error(heap, f["error"])
        return ResponseData(error=err, id=f["id"], is_last_response=f["is_last_response"])
    outs = []
    for th in read_handles(heap, p + _S.size, f["outputs_size"]):
        t = read_tensor(heap, th)
        outs.append((t.name, t.dtype, t.dims, t.data))
    params = read_string(heap, f["parameters"]) if HAS_PARAMETERS else NO_PARAMETERS
    return ResponseData(outputs=outs, id=f["id"], is_last_response=f["is_last_response"],
                        parameters=params)


# ------------------------------------------------------------------ the ExecuteResponse block
_RESPONSE_HEADS: dict = {}
_BATCH_HEADS: dict = {}


def _response_head(n: int) -> struct.Struct:
    st = _RESPONSE_HEADS.get(n)
    if st is None:
        st = _RESPONSE_HEADS[n] = struct.Struct("<" + _S.body + f"{n}q")
    return st


def _batch_head(n: int) -> struct.Struct:
    """IPCMessageShm + ResponseBatch + n handles: the whole ExecuteResponse block."""
    st = _BATCH_HEADS.get(n)
    if st is None:
        st = _BATCH_HEADS[n] = struct.Struct("<" + L.IPCMessageShm.body + _B.body + f"{n}q")
        assert st.size == _HANDLES + 8 * n
    return st


def write_execute_response(heap, items: Sequence[Union[int, Returned]], owned: Owned) -> int:
    """Stub::ProcessReturnedResponses' saving part: returns the ExecuteResponse block.

    ``items`` has one entry per request: an int (a response already saved, 0 for none) or a
    :class:`Returned`.
    """
    if L.EXECUTE_RESPONSE_SEPARATE:
        return _write_execute_response_separate(heap, items, owned)
    sizes: List[int] = []
    plan = []
    pdatas = []
    for it in items:
        if type(it) is int:
            continue
        outputs = it[0]
        sizes.append(_S.size + 8 * len(outputs))
        for name, dtype, dims, payload in outputs:
            bname = name.encode("utf-8", "surrogateescape")
            st = tensor_head(len(dims), len(bname))
            nbytes = len(payload)
            plan.append((st, bname, dtype, dims, payload, nbytes))
            sizes.append(st.size + nbytes)
        if HAS_PARAMETERS:          # its two blocks follow the response's tensors
            pdata = (it[3] or NO_PARAMETERS).encode()
            pdatas.append(pdata)
            sizes.extend(string_sizes(len(pdata)))
    n = len(items)
    batch = _batch_head(n)
    sizes.append(batch.size)
    got = heap.construct_many(sizes)
    owned.extend(got)
    buf = heap.buf
    handles = []
    k = 0                                  # next block in ``got``
    j = 0                                  # next tensor in ``plan``
    r = 0                                  # next parameters string in ``pdatas``
    for it in items:
        if type(it) is int:
            handles.append(it)
            continue
        rh = got[k]
        m = len(it[0])
        ths = got[k + 1:k + 1 + m]
        k += 1 + m
        for th in ths:
            st, bname, dtype, dims, payload, nbytes = plan[j]
            j += 1
            pack_tensor(buf, th, st, bname, dtype, dims, payload, nbytes)
        params = 0
        if HAS_PARAMETERS:
            params = got[k]
            pack_string(buf, params, got[k + 1], pdatas[r])
            k += 2
            r += 1
        _response_head(m).pack_into(buf, rh + H, *_head(m, params, 0, False, it[1], it[2]),
                                    *ths)
        handles.append(rh)
    bh = got[k]
    batch.pack_into(buf, bh + H, _EXECUTE_RESPONSE, bh + _BATCH, *([0] * (_N_IPC - 2)),
                    0, n, *([0] * (_N_BATCH - 2)), *handles)
    return bh


_HAS_FACTORY_DELETED = "is_response_factory_deleted" in _B.fields     # r24.10+


def write_execute_error(heap, message: str, factory_deleted: bool, owned: Owned) -> int:
    """The ExecuteResponse block of a failed batch: no handles, ``error`` a string."""
    if L.EXECUTE_RESPONSE_SEPARATE:
        return write_execute_reply(heap, owned, message)
    block = heap.construct(_HANDLES)
    owned.append(block)
    eh = write_string(heap, message, owned)
    _B.pack(heap.buf, block + H + _BATCH, batch_size=0, has_error=True, is_error_set=True,
            error=eh, is_response_factory_deleted=bool(factory_deleted))
    L.IPCMessageShm.pack(heap.buf, block + H, command=_EXECUTE_RESPONSE, args=block + _BATCH)
    return block


def _write_execute_response_separate(heap, items, owned: Owned) -> int:
    """Era A (r24.04-r24.05): the IPCMessageShm's ``args`` is a block of its own holding the
    ResponseBatch and one response handle per request."""
    handles = []
    for it in items:
        if type(it) is int:
            handles.append(it)
        else:
            handles.append(write_response(heap, ResponseData(
                outputs=list(it[0]), id=it[1], is_last_response=it[2], parameters=it[3]), owned))
    batch = heap.construct(_B.size + 8 * len(handles))
    owned.append(batch)
    _B.pack(heap.buf, batch + H, batch_size=len(handles))
    write_handles(heap, batch + H + _B.size, handles)
    msg = heap.construct(L.IPCMessageShm.size)
    owned.append(msg)
    L.IPCMessageShm.pack(heap.buf, msg + H, command=_EXECUTE_RESPONSE, args=batch)
    return msg


def write_execute_reply(heap, owned: Owned, error: Optional[str] = None) -> int:
    """Era B (r24.06-r24.09) ExecuteResponse: the responses went through the response sender, so
    this is an IPCMessageShm whose ``args`` is a ResponseBatch block of its own (the parent
    Loads it by that handle), with no response handles; ``error`` fails the batch."""
    batch = heap.construct(_B.size)
    owned.append(batch)
    eh = write_string(heap, error, owned) if error is not None else 0
    _B.pack(heap.buf, batch + H, batch_size=0, has_error=error is not None,
            is_error_set=error is not None, error=eh)
    msg = heap.construct(L.IPCMessageShm.size)
    owned.append(msg)
    L.IPCMessageShm.pack(heap.buf, msg + H, command=_EXECUTE_RESPONSE, args=batch)
    return msg


def read_execute_response(heap, block: int) -> ExecuteResult:
    """The parent's side of the ExecuteResponse block (``block``: the IPCMessageShm handle)."""
    p = heap.payload(block)
    heap.ensure_mapped(p, L.IPCMessageShm.size)
    args = L.IPCMessageShm.get(heap.buf, p, "args")
    bp = heap.payload(args)
    heap.ensure_mapped(bp, _B.size)
    f = _B.read(heap.buf, bp)
    error = None
    if f["has_error"]:
        error = read_string(heap, f["error"]) if f["is_error_set"] and f["error"] else ""
    responses = [read_response(heap, h) if h else None
                 for h in read_handles(heap, bp + _B.size, f["batch_size"])]
    return ExecuteResult(responses, error, bool(f.get("is_response_factory_deleted")))


# ------------------------------------------------------------------ BLS replies
def write_response_batch(heap, response: Union[int, str], owned: Owned) -> int:
    """The ResponseBatch of a BLS reply: one response handle, or the error text of a failed
    request (the parent's side). The batch's mutex/condition are left zero (unused there)."""
    h = heap.construct(_B.size + 8)
    owned.append(h)
    if isinstance(response, str):
        eh = write_string(heap, response, owned)
        _B.pack(heap.buf, h + H, batch_size=0, has_error=True, is_error_set=True, error=eh)
    else:
        _B.pack(heap.buf, h + H, batch_size=1)
        write_handles(heap, h + H + _B.size, [response])
    return h


def read_response_batch(heap, batch_handle: int, default_error: str) -> Union[ResponseData, str]:
    """A BLS reply's ResponseBatch: the response, or the error text (``default_error`` when the
    parent set no text)."""
    bp = heap.payload(batch_handle)
    heap.ensure_mapped(bp, _B.size + 8)
    f = _B.read(heap.buf, bp)
    if f["has_error"]:
        if f["is_error_set"] and f["error"]:
            return read_string(heap, f["error"])
        return default_error
    return read_response(heap, read_handles(heap, bp + _B.size, 1)[0])


def set_waiting_on_stub(heap, batch_handle: int, value: bool = True) -> None:
    """ResponseBatch.waiting_on_stub: the stub's "copied, you may go on" for a stream reply."""
    _B.set(heap.buf, heap.payload(batch_handle), "waiting_on_stub", bool(value))
