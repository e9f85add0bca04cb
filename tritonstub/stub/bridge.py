"""Conversions between the codec's plain values and the surface's objects.

codec.py speaks RequestData / ResponseData / RawTensor (what lies in shared memory);
c_python_backend_utils speaks InferenceRequest / InferenceResponse / Tensor (what model.py
sees). This module is the only place that knows both, through the surface's documented
internal constructors (``_from_server``, ``_from_parent``, ``_from_raw``, ``_payload``).
"""
from __future__ import annotations

import struct
from functools import partial
from typing import Iterable, Optional

import numpy as np

from .. import protocol
from ..protocol.dtypes import NUMERIC_RAW_DTYPES

from . import c_python_backend_utils as pb
from . import codec

L = protocol.current()


def make_tensor(raw: codec.RawTensor):
    # The codec already copied the bytes out of shared memory into fresh memory, so the array
    # can use it directly (writeable, independent of shm) without a second copy.
    return pb.Tensor._from_raw(raw.name, raw.dtype, raw.dims, raw.data, copy=not _fresh(raw.data))


def _fresh(data) -> bool:
    return isinstance(data, (bytearray, np.ndarray))


# ------------------------------------------------------------------ the execute hot path
# ``load_requests`` reads a RequestBatch straight into surface objects: one precompiled struct
# per object (from the layout tables), CPU tensors copied out with one numpy call, no
# intermediate RequestData/RawTensor. Tensors out of the common case (a standalone or GPU
# MemoryShm, BYTES/BF16/empty tensors, beyond the current mapping) take codec.read_tensor.
_R = L.InferRequestShm
_REQ = _R.struct
_RI = {name: i for i, name in enumerate(_R.names)}
_I_IN, _I_OUT = _RI["input_count"], _RI["requested_output_count"]
_I_VERSION, _I_FLAGS, _I_TIMEOUT = _RI["model_version"], _RI["flags"], _RI["timeout"]
_I_ADDR, _I_FACTORY = _RI["address"], _RI["response_factory_address"]
_I_PMT, _I_PMD = _RI["preferred_memory_type"], _RI["preferred_memory_device_id"]
_I_TRACE, _I_CORR = _RI["trace_shm_handle"], _RI["correlation_id_shm_handle"]
_I_NAME, _I_ID, _I_PARAMS = (_RI["model_name_shm_handle"], _RI["request_id_shm_handle"],
                             _RI["parameters_shm_handle"])
_TS = L.TensorShm.struct
_MS = L.MemoryShm.struct
_MI = {name: i for i, name in enumerate(L.MemoryShm.names)}
_M_TYPE, _M_SIZE = _MI["memory_type"], _MI["byte_size"]
_CORR = L.CorrelationIdShm.struct
_TRACE = L.InferenceTraceShm.struct
_H = L.OWNERSHIP_HEADER
_CPU = int(L.TRITONSERVER_MemoryType.CPU)
_STRING_ID = int(L.CorrelationIdDataType.STRING)
_FAST_DTYPES = NUMERIC_RAW_DTYPES
_DIMS_NAME: dict = {}
_PREFERRED: dict = {}


def _dims_and_name(ndims: int) -> struct.Struct:
    st = _DIMS_NAME.get(ndims)
    if st is None:
        st = _DIMS_NAME[ndims] = struct.Struct(f"<{ndims}q" + L.StringShm.struct.format[1:])
    return st


def load_requests(stub, batch_handle: int) -> list:
    """The requests of an ExecuteRequest (InferRequest::LoadFromSharedMemory for each)."""
    region = stub.region
    p = region.payload(batch_handle)
    region.ensure_mapped(p, L.RequestBatch.size)
    n = L.RequestBatch.get(region.buf, p, "batch_size")
    if not n:
        return []
    region.ensure_mapped(p, L.RequestBatch.size + 8 * n)
    handles = struct.unpack_from(f"<{n}q", region.buf, p + L.RequestBatch.size)
    out = []
    try:
        for h in handles:
            out.append(_load_request(region, h, stub.is_decoupled))
    except BaseException:
        for req in out:
            req._sender._close()     # made and closed: the failed batch's error ends them all
        raise
    return out


def _load_request(region, h: int, decoupled):
    """InferRequest::LoadFromSharedMemory (inputs copied out, as the C++ stub's numpy arrays)."""
    p = region.payload(h)
    region.ensure_mapped(p, _R.size)
    f = _REQ.unpack_from(region.buf, p)
    n_out, n_in = f[_I_OUT], f[_I_IN]
    region.ensure_mapped(p, _R.size + 8 * (n_out + n_in))
    buf, cap = region.buf, region.capacity
    hs = struct.unpack_from(f"<{n_out + n_in}q", buf, p + _R.size)

    string = codec.string_reader(region)
    names = tuple(sorted({string(x) for x in hs[:n_out]})) if n_out else ()
    inputs = []
    for th in hs[n_out:]:
        t = _load_tensor(buf, cap, th)
        inputs.append(t if t is not None else make_tensor(codec.read_tensor(region, th)))
    corr = 0
    ch = f[_I_CORR]
    if ch:
        cp = region.payload(ch)
        region.ensure_mapped(cp, L.CorrelationIdShm.size)
        id_string, id_uint, id_type = _CORR.unpack_from(region.buf, cp)
        corr = string(id_string) if id_type == _STRING_ID else id_uint
    trace = pb._DEFAULT_TRACE
    th = f[_I_TRACE]
    if th:
        tp = region.payload(th)
        region.ensure_mapped(tp, L.InferenceTraceShm.size)
        ctx_h, trace_addr = _TRACE.unpack_from(region.buf, tp)
        ctx = string(ctx_h) if ctx_h else ""
        if trace_addr or ctx:
            trace = pb.InferenceTrace._create(trace_addr, ctx)
    key = (f[_I_PMT], f[_I_PMD])
    pm = _PREFERRED.get(key)
    if pm is None:
        pm = _PREFERRED[key] = pb.PreferredMemory._create(*key)
    params_h = f[_I_PARAMS]
    return pb.InferenceRequest._from_shm(
        string(f[_I_ID]), corr, inputs, names, string(f[_I_NAME]), f[_I_VERSION], f[_I_FLAGS],
        f[_I_TIMEOUT], pm, trace, string(params_h) if params_h else "{}", f[_I_ADDR],
        f[_I_FACTORY], decoupled, partial(codec.write_release_flags, region, h))


def _load_tensor(buf, cap: int, th: int):
    """PbTensor::LoadFromSharedMemory for an embedded CPU tensor of a numeric dtype, else None."""
    tp = th + _H
    if th <= 0 or tp + 24 > cap:
        return None
    memory, dtype, ndims = _TS.unpack_from(buf, tp)
    np_dtype = _FAST_DTYPES.get(dtype)
    if memory or np_dtype is None or ndims > 64:
        return None
    st = _dims_and_name(ndims)
    s = tp + L.TensorShm.size
    if s + st.size > cap:
        return None
    v = st.unpack_from(buf, s)
    name_len = v[-1]
    s += st.size
    mp = s + name_len
    if mp + L.MemoryShm.size > cap:
        return None
    m = _MS.unpack_from(buf, mp)
    nbytes = m[_M_SIZE]
    d = mp + L.MemoryShm.size
    dims = v[:ndims]
    count = 1
    for x in dims:
        count *= x
    if m[_M_TYPE] != _CPU or d + nbytes > cap or count <= 0 or count * np_dtype.itemsize != nbytes:
        return None
    arr = np.frombuffer(buf, np_dtype, count, d).copy()
    if ndims != 1:
        arr = arr.reshape(dims)
    return pb.Tensor._new(buf[s:mp].decode("utf-8", "surrogateescape"), dtype, dims, arr)


def tensor_tuple(t):
    return (t._name, t._dtype, t._dims, t._payload())


def response_data(resp, requested: Optional[Iterable[str]] = None) -> codec.ResponseData:
    """An InferenceResponse to save; pruned to ``requested`` when given (execute's return)."""
    if requested is not None:
        resp._prune(set(requested))
    err = resp._error
    if err is not None:
        return codec.ResponseData(error=(int(err._code), err._message),
                                  id=resp._id, is_last_response=resp._is_last_response)
    return codec.ResponseData(outputs=[tensor_tuple(t) for t in resp._outputs], id=resp._id,
                              is_last_response=resp._is_last_response)


def output_item(resp, requested) -> tuple:
    """A returned response without error, pruned to ``requested`` (the request's sorted
    names), as :func:`codec.save_execute_response` takes it."""
    outs = resp._outputs
    if len(outs) != len(requested) or any(t._name not in requested for t in outs):
        resp._prune(set(requested))
        outs = resp._outputs
    return ([(t._name, t._dtype, t._dims, t._payload()) for t in outs], resp._id,
            resp._is_last_response)


def make_response(data: codec.ResponseData):
    """A BLS response from the parent."""
    if data.error is not None:
        error = pb.TritonError._create(data.error[1], data.error[0])
        return pb.InferenceResponse._from_parent((), error, data.is_last_response, data.id)
    outputs = [pb.Tensor._from_raw(name, dt, dims, buf, copy=not _fresh(buf))
               for name, dt, dims, buf in data.outputs]
    return pb.InferenceResponse._from_parent(outputs, None, data.is_last_response, data.id)


def error_response(message: str):
    return pb.InferenceResponse._error_response(message)


def request_data(req) -> codec.RequestData:
    """A model-built InferenceRequest as the codec saves it (BLS)."""
    inputs = []
    for t in req._inputs:
        if t._memory_type == L.TRITONSERVER_MemoryType.GPU:
            raise pb.TritonModelException("GPU tensors are not supported by tritonstub yet")
        inputs.append(codec.RawTensor(t._name, t._dtype, t._dims, t._payload()))
    pm = req._preferred_memory
    if pm._type == int(pb.TRITONSERVER_MEMORY_GPU):      # PreferredMemory.MemoryType, GPU = 0
        # Deliberate difference: C++ asks Triton for GPU output buffers and receives CUDA IPC
        # handles; we can hold none, so say so before anything is sent.
        raise pb.TritonModelException(
            "GPU tensors are not supported by tritonstub yet: this BLS request asks for its "
            "outputs in GPU memory (PreferredMemory(TRITONSERVER_MEMORY_GPU)); use CPU or the "
            "default preferred memory")
    tr = req._trace
    return codec.RequestData(
        inputs=inputs, requested_output_names=list(req._requested_output_names),
        request_id=req._request_id, correlation_id=req._correlation_id,
        model_name=req._model_name, model_version=req._model_version, flags=req._flags,
        timeout=req._timeout, address=0, response_factory_address=0,
        preferred_memory_type=pm._type, preferred_memory_device_id=pm._device_id,
        parameters=req._parameters, trace_address=tr._triton_trace,
        trace_context=tr._context)


def is_inference_response(obj) -> bool:
    return isinstance(obj, pb.InferenceResponse)


def sender_of(request):
    return request._sender
