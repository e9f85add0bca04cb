"""Requests: RequestBatch and InferRequestShm (infer_request.h), read and write.

The parent's ExecuteRequest carries a ``RequestBatch {batch_size, gpu_buffers_handle}`` followed
by one InferRequestShm handle per request. An InferRequestShm is followed by the handles of its
requested output names (standalone strings) and then of its input tensors; the correlation id
(CorrelationIdShm: a number, or a string when ``id_type`` is STRING), the trace
(InferenceTraceShm), the model name, the request id and the parameters JSON are separate objects
it points to. The stub writes the same structs for a BLS request (``InferRequest::Exec``), with
``address`` and ``response_factory_address`` 0; the parent fills them with its own pointers,
which the stub passes back opaque when it answers through the response sender.

:func:`read_request` is the per-request fast path of the stub: one ``struct`` call for the
InferRequestShm, one for the handle array, the tensors through ``tensors.read_tensor_fast``, and
the model's objects built by a :class:`RequestFactory` the caller passes in, so no intermediate
value is made. :class:`RequestData` with :data:`DATA_FACTORY` is the plain-value form, for the
harness and the tests, read by the same code.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

from . import current
from .dtypes import NUMERIC_RAW_DTYPES
from .scalars import (Owned, pack_handles, pack_string, read_handles, string_reader, write_handles,
                      write_string)
from .tensors import (RawTensor, pack_tensor, read_tensor, read_tensor_fast, tensor_head,
                      tensor_parts, write_tensor)

L = current()
H = L.OWNERSHIP_HEADER
_R = L.InferRequestShm
_RB = L.RequestBatch
_RI = {name: i for i, name in enumerate(_R.names)}
_I_IN, _I_OUT = _RI["input_count"], _RI["requested_output_count"]
_I_VERSION, _I_FLAGS, _I_TIMEOUT = _RI["model_version"], _RI["flags"], _RI["timeout"]
_I_ADDR, _I_FACTORY = _RI["address"], _RI["response_factory_address"]
_I_PMT, _I_PMD = _RI["preferred_memory_type"], _RI["preferred_memory_device_id"]
_TRACE_POINTER = L.TRACE_IS_POINTER            # before r24.03: a raw pointer, no context
_HAS_TRACE = L.HAS_TRACE                        # r23.07: no trace at all
_TRACE_FIELD = "trace" if _TRACE_POINTER else "trace_shm_handle"
_I_TRACE = _RI[_TRACE_FIELD] if _HAS_TRACE else None
#: r24.03: the correlation id is a u64 in the struct and the three strings are embedded after
#: the handle arrays; r24.04+: handles to a CorrelationIdShm and three standalone strings.
_INLINE = L.INLINE_REQUEST_STRINGS
_I_CORR = _RI["correlation_id"] if _INLINE else _RI["correlation_id_shm_handle"]
_I_NAME, _I_ID, _I_PARAMS = ((None, None, None) if _INLINE else (
    _RI["model_name_shm_handle"], _RI["request_id_shm_handle"], _RI["parameters_shm_handle"]))
_EMBEDDED = L.StringShm.struct
#: r23.11+: the request carries release flags (rescheduling); r23.10 and before have none.
HAS_RELEASE_FLAGS = "request_release_flags" in _R.fields
_RELEASE = {"request_release_flags": L.TRITONSERVER_REQUEST_RELEASE_ALL} if HAS_RELEASE_FLAGS \
    else {}
_I_DECOUPLED = _RI["is_decoupled"]
_STRING_ID = int(L.CorrelationIdDataType.STRING)
_UINT64_ID = int(L.CorrelationIdDataType.UINT64)
assert L.CorrelationIdShm.names == ("id_string_shm_handle", "id_uint", "id_type")
assert L.InferenceTraceShm.names == ("trace_context_shm_handle", "triton_trace")


@dataclass
class RequestData:
    """Everything an InferRequestShm holds, as plain values."""
    inputs: List[RawTensor]
    requested_output_names: List[str]
    request_id: str = ""
    correlation_id: object = 0          # int or str
    model_name: str = ""
    model_version: int = -1
    flags: int = 0
    timeout: int = 0
    address: int = 0
    response_factory_address: int = 0
    preferred_memory_type: int = 0
    preferred_memory_device_id: int = 0
    parameters: str = "{}"
    trace_address: int = 0
    trace_context: Optional[str] = None
    is_decoupled: bool = False
    handle: int = field(default=0, compare=False)    # where it was read from


class RequestFactory:
    """What :func:`read_request` builds its result with. Override every method.

    ``numeric`` maps the dtypes read on the fast path to the numpy dtype of their raw data.
    """
    numeric = NUMERIC_RAW_DTYPES
    default_trace: object = None

    def tensor(self, name: str, dtype: int, dims: Tuple[int, ...], array):
        """A numeric CPU tensor; ``array`` is a fresh, shaped copy."""
        raise NotImplementedError

    def raw_tensor(self, raw: RawTensor):
        """Any other tensor, as :func:`tensors.read_tensor` returns it."""
        raise NotImplementedError

    def trace(self, address: int, context: str):
        raise NotImplementedError

    def preferred_memory(self, memory_type: int, device_id: int):
        raise NotImplementedError

    def request(self, request_id, correlation_id, inputs, output_names, model_name,
                model_version, flags, timeout, preferred_memory, trace, parameters, address,
                factory_address, is_decoupled, handle):
        raise NotImplementedError


class _DataFactory(RequestFactory):
    def tensor(self, name, dtype, dims, array):
        return RawTensor(name, dtype, tuple(dims), array.reshape(-1).view("u1"))

    def raw_tensor(self, raw):
        return raw

    def trace(self, address, context):
        return (address, context)

    def preferred_memory(self, memory_type, device_id):
        return (memory_type, device_id)

    def request(self, request_id, correlation_id, inputs, output_names, model_name,
                model_version, flags, timeout, preferred_memory, trace, parameters, address,
                factory_address, is_decoupled, handle):
        address_, context = trace if trace is not None else (0, None)
        return RequestData(list(inputs), list(output_names), request_id, correlation_id,
                           model_name, model_version, flags, timeout, address, factory_address,
                           preferred_memory[0], preferred_memory[1], parameters, address_,
                           context, is_decoupled, handle)


#: builds :class:`RequestData` (output names sorted and deduplicated, as the stub sees them)
DATA_FACTORY = _DataFactory()


# ------------------------------------------------------------------ RequestBatch
def read_request_batch(heap, batch_handle: int) -> Tuple[int, ...]:
    """The InferRequestShm handles of an ExecuteRequest's RequestBatch."""
    p = heap.payload(batch_handle)
    heap.ensure_mapped(p, _RB.size)
    n = _RB.get(heap.buf, p, "batch_size")
    return read_handles(heap, p + _RB.size, n)


def write_request_batch(heap, request_handles: Sequence[int], owned: Owned) -> int:
    """A RequestBatch naming ``request_handles`` (the parent's ExecuteRequest; BLS: one)."""
    h = heap.construct(request_batch_size(len(request_handles)))
    owned.append(h)
    pack_request_batch(heap.buf, h, request_handles)
    return h


def request_batch_size(n: int) -> int:
    return _RB.size + 8 * n


def pack_request_batch(buf, h: int, request_handles: Sequence[int]) -> None:
    """Fill a Construct'ed RequestBatch block of :func:`request_batch_size` bytes."""
    _RB.pack(buf, h + H, batch_size=len(request_handles), gpu_buffers_handle=0)
    pack_handles(buf, h + H + _RB.size, request_handles)


# ------------------------------------------------------------------ InferRequestShm
def read_request(heap, h: int, factory: RequestFactory = DATA_FACTORY):
    """InferRequest::LoadFromSharedMemory (inputs copied out, as the C++ stub's numpy arrays).

    Requested output names are returned sorted and deduplicated (a ``std::set`` in C++)."""
    p = heap.payload(h)
    heap.ensure_mapped(p, _R.size)
    f = _R.struct.unpack_from(heap.buf, p)
    n_out, n_in = f[_I_OUT], f[_I_IN]
    hs = read_handles(heap, p + _R.size, n_out + n_in)
    buf, cap = heap.buf, heap.capacity

    string = string_reader(heap)
    names = tuple(sorted({string(x) for x in hs[:n_out]})) if n_out else ()
    numeric, new_tensor = factory.numeric, factory.tensor
    inputs = []
    for th in hs[n_out:]:
        t = read_tensor_fast(buf, cap, th, numeric, new_tensor)
        inputs.append(t if t is not None else factory.raw_tensor(read_tensor(heap, th)))
    corr = 0
    ch = f[_I_CORR]
    if _INLINE:
        corr = ch
    elif ch:
        cp = heap.payload(ch)
        heap.ensure_mapped(cp, L.CorrelationIdShm.size)
        id_string, id_uint, id_type = L.CorrelationIdShm.struct.unpack_from(heap.buf, cp)
        corr = string(id_string) if id_type == _STRING_ID else id_uint
    trace = factory.default_trace
    th = f[_I_TRACE] if _HAS_TRACE else 0
    if _TRACE_POINTER:
        if th:
            trace = factory.trace(th, "")
    elif th:
        tp = heap.payload(th)
        heap.ensure_mapped(tp, L.InferenceTraceShm.size)
        ctx_h, trace_addr = L.InferenceTraceShm.struct.unpack_from(heap.buf, tp)
        ctx = string(ctx_h) if ctx_h else ""
        if trace_addr or ctx:
            trace = factory.trace(trace_addr, ctx)
    if _INLINE:
        off = p + _R.size + 8 * (n_out + n_in)
        model_name, off = _read_embedded(heap, off)
        request_id, off = _read_embedded(heap, off)
        params, off = _read_embedded(heap, off)
    else:
        model_name, request_id = string(f[_I_NAME]), string(f[_I_ID])
        params_h = f[_I_PARAMS]
        params = string(params_h) if params_h else "{}"
    return factory.request(
        request_id, corr, inputs, names, model_name, f[_I_VERSION], f[_I_FLAGS],
        f[_I_TIMEOUT], factory.preferred_memory(f[_I_PMT], f[_I_PMD]), trace,
        params or "{}", f[_I_ADDR], f[_I_FACTORY], f[_I_DECOUPLED], h)


def _read_embedded(heap, off: int) -> Tuple[str, int]:
    """An embedded string at byte ``off`` (r24.03): (text, where the next one starts)."""
    heap.ensure_mapped(off, _EMBEDDED.size)
    length = _EMBEDDED.unpack_from(heap.buf, off)[1]
    start = off + _EMBEDDED.size
    heap.ensure_mapped(start, length)
    return bytes(heap.buf[start:start + length]).decode("utf-8", "surrogateescape"), \
        start + length


def _write_correlation_id(heap, corr, owned: Owned) -> int:
    """CorrelationId::SaveToSharedMemory: the string is always written ("" for numeric ids)."""
    is_str = isinstance(corr, str)
    sh = write_string(heap, corr if is_str else "", owned)
    h = heap.construct(L.CorrelationIdShm.size)
    owned.append(h)
    L.CorrelationIdShm.pack(heap.buf, h + H, id_string_shm_handle=sh,
                            id_uint=0 if is_str else int(corr),
                            id_type=_STRING_ID if is_str else _UINT64_ID)
    return h


def _write_trace(heap, triton_trace: int, context: str, owned: Owned) -> int:
    sh = write_string(heap, context or "", owned)
    h = heap.construct(L.InferenceTraceShm.size)
    owned.append(h)
    L.InferenceTraceShm.pack(heap.buf, h + H, trace_context_shm_handle=sh,
                             triton_trace=int(triton_trace))
    return h


def write_request(heap, req: RequestData, owned: Owned) -> int:
    """InferRequest::SaveToSharedMemory (BLS requests; the harness's execute requests)."""
    if _INLINE:
        return _write_request_inline(heap, req, owned)
    # Every block in one Construct run (one hold of the allocator's lock), in the order the
    # objects were always built: the same handles as one Construct each, for a fraction of
    # the Python.
    sizes, fill = request_plan(req)
    handles = heap.construct_many(sizes)
    owned.extend(handles)
    return fill(heap.buf, handles)


def request_plan(req: RequestData):
    """A request's blocks as ``(sizes, fill)``: the sizes to Construct, in the order the C++
    stub builds them, and ``fill(buf, handles)``, which writes them and returns the request's
    handle (the InferRequestShm). None where the strings are embedded (r24.03)."""
    if _INLINE:
        return None
    corr = req.correlation_id
    corr_is_str = isinstance(corr, str)
    def enc(text) -> bytes:             # as write_string encodes
        return text.encode("utf-8", "surrogateescape") if isinstance(text, str) else bytes(text)
    tensors = []
    sizes = []
    for t in req.inputs:
        bname, mv = tensor_parts(t.name, t.data)
        head = tensor_head(len(t.dims), len(bname))
        tensors.append((head, bname, int(t.dtype), t.dims, mv, len(mv)))
        sizes.append(head.size + len(mv))
    n_out, n_in = len(req.requested_output_names), len(tensors)
    sizes.append(_R.size + 8 * (n_out + n_in))
    strings = [enc(n) for n in req.requested_output_names]
    strings.append(enc(corr if corr_is_str else ""))
    strings += [enc(req.model_name), enc(req.request_id), enc(req.parameters),
                enc(req.trace_context or "")]
    string_size = L.StringShm.size
    for i, data in enumerate(strings):
        sizes += (string_size, len(data))
        if i == n_out:
            sizes.append(L.CorrelationIdShm.size)       # after the id's string
    sizes.append(L.InferenceTraceShm.size)              # after the trace context's string

    def fill(buf, handles) -> int:
        in_handles = handles[:n_in]
        for th, (head, bname, dtype, dims, mv, nbytes) in zip(in_handles, tensors):
            pack_tensor(buf, th, head, bname, dtype, dims, mv, nbytes)
        h = handles[n_in]
        k = n_in + 1
        string_handles = []
        for i, data in enumerate(strings):
            pack_string(buf, handles[k], handles[k + 1], data)
            string_handles.append(handles[k])
            k += 2
            if i == n_out:
                corr_h = handles[k]
                L.CorrelationIdShm.pack(buf, corr_h + H, id_string_shm_handle=string_handles[-1],
                                        id_uint=0 if corr_is_str else int(corr),
                                        id_type=_STRING_ID if corr_is_str else _UINT64_ID)
                k += 1
        trace = handles[k]
        L.InferenceTraceShm.pack(buf, trace + H, trace_context_shm_handle=string_handles[-1],
                                 triton_trace=int(req.trace_address))
        out_handles = string_handles[:n_out]
        model_name, request_id, params = string_handles[n_out + 1:n_out + 4]
        p = h + H
        _R.pack(buf, p, input_count=n_in, requested_output_count=n_out,
                model_version=int(req.model_version), flags=int(req.flags), address=req.address,
                response_factory_address=req.response_factory_address,
                is_decoupled=bool(req.is_decoupled), timeout=int(req.timeout),
                preferred_memory_type=int(req.preferred_memory_type),
                preferred_memory_device_id=int(req.preferred_memory_device_id),
                trace_shm_handle=trace, request_release_flags=L.TRITONSERVER_REQUEST_RELEASE_ALL,
                correlation_id_shm_handle=corr_h, model_name_shm_handle=model_name,
                request_id_shm_handle=request_id, parameters_shm_handle=params)
        pack_handles(buf, p + _R.size, out_handles + in_handles)
        return h
    return sizes, fill


def _write_request_inline(heap, req: RequestData, owned: Owned) -> int:
    """r24.03's InferRequestShm: a u64 correlation id, the strings embedded in the block."""
    if isinstance(req.correlation_id, str):
        from ..errors import ProtocolError
        raise ProtocolError("string correlation ids need python_backend r24.04 or later "
                            "(Triton 2.45+); this parent speaks r24.03")
    in_handles = [write_tensor(heap, t.name, t.dtype, t.dims, t.data, owned) for t in req.inputs]
    out_handles = [write_string(heap, n, owned) for n in req.requested_output_names]
    n_out, n_in = len(out_handles), len(in_handles)
    texts = [s.encode("utf-8", "surrogateescape")
             for s in (req.model_name, req.request_id, req.parameters or "{}")]
    head = _R.size + 8 * (n_out + n_in)
    h = heap.construct(head + sum(_EMBEDDED.size + len(t) for t in texts))
    owned.append(h)
    trace = {} if not _HAS_TRACE else {_TRACE_FIELD: int(req.trace_address)} if _TRACE_POINTER \
        else {_TRACE_FIELD: _write_trace(heap, req.trace_address, req.trace_context or "", owned)}
    p = h + H
    _R.pack(heap.buf, p, correlation_id=int(req.correlation_id or 0), input_count=n_in,
            requested_output_count=n_out, model_version=int(req.model_version),
            flags=int(req.flags), address=req.address,
            response_factory_address=req.response_factory_address,
            is_decoupled=bool(req.is_decoupled), timeout=int(req.timeout),
            preferred_memory_type=int(req.preferred_memory_type),
            preferred_memory_device_id=int(req.preferred_memory_device_id),
            **_RELEASE, **trace)
    write_handles(heap, p + _R.size, out_handles + in_handles)
    off = head
    for t in texts:
        # C++ stores the string's own handle in ``data`` (meaningless when embedded)
        _EMBEDDED.pack_into(heap.buf, p + off, h + off, len(t))
        heap.buf[p + off + _EMBEDDED.size:p + off + _EMBEDDED.size + len(t)] = t
        off += _EMBEDDED.size + len(t)
    return h


def write_release_flags(heap, request_handle: int, flags: int) -> None:
    """InferRequest::SetReleaseFlags: the parent reads them back after execute (r23.11+)."""
    if not HAS_RELEASE_FLAGS:
        from ..errors import ProtocolError
        raise ProtocolError(f"request release flags need python_backend r23.11 or later "
                            f"(Triton 2.40+); this parent speaks {L.VERSION}")
    # A write into the parent's block: the handle must be a whole request object.
    _R.set(heap.buf, heap.object_payload(request_handle, _R.size), "request_release_flags",
           int(flags))


def read_release_flags(heap, request_handle: int) -> int:
    if not HAS_RELEASE_FLAGS:
        return L.TRITONSERVER_REQUEST_RELEASE_ALL
    return _R.get(heap.buf, heap.payload(request_handle), "request_release_flags")
