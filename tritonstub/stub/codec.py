"""Message codecs: python_backend objects in a region <-> plain Python values.

Reading. Everything the parent hands us (requests, tensors, strings, maps, BLS responses) is
**copied out** while the parent still holds its own reference (it does until we reply or notify),
so reading needs no Load/ref-count traffic and no lock: only the bytes. That is also what the C++
stub ends up doing for CPU tensors (``py::array`` copies), so semantics match: ``as_numpy()`` is
writeable and independent of shared memory. (Execute requests are read by
``bridge.load_requests``, straight into the model's objects, with the readers of this module.)

Writing. Every object we build is Construct'ed (ref count 1) and its handle recorded in an
:class:`Owned` list; the caller releases the list once the parent has loaded the objects (after
the release message, or after the notify of a ping-pong). Layouts come from the version table.
"""
from __future__ import annotations

import json
import struct

import numpy as _np
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from .. import protocol
from ..ipc.region import Region

L = protocol.current()

_H = L.OWNERSHIP_HEADER
_I64 = struct.Struct("<q")
_U64 = struct.Struct("<Q")


class Owned(list):
    """Handles we Construct'ed and must release once the peer is done with them."""

    def release(self, region: Region) -> None:
        if self:
            handles = list(self)
            self.clear()
            region.release_many(handles)


# ------------------------------------------------------------------ strings and maps
def read_string(region: Region, handle: int) -> str:
    """PbString::LoadFromSharedMemory (standalone form)."""
    p = region.payload(handle)
    region.ensure_mapped(p, L.StringShm.size)
    data, length = L.StringShm.struct.unpack_from(region.buf, p)
    if length == 0:
        return ""
    dp = region.payload(data)
    region.ensure_mapped(dp, length)
    return region.buf[dp:dp + length].decode("utf-8", "surrogateescape")


def create_string(region: Region, text, owned: Owned) -> int:
    """PbString::Create (standalone): a StringShm plus a Construct<char>(len) with the bytes."""
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else bytes(text)
    h = region.construct(L.StringShm.size)
    owned.append(h)
    dh = region.construct(len(data))
    owned.append(dh)
    buf = region.buf
    p = h + _H
    L.StringShm.pack(buf, p, data=dh, length=len(data))
    if data:
        buf[dh + _H:dh + _H + len(data)] = data
    return h


def read_map(region: Region, handle: int) -> Dict[str, str]:
    """PbMap::LoadFromSharedMemory: a DictShm of PairShm(key, value) standalone strings."""
    p = region.payload(handle)
    region.ensure_mapped(p, L.DictShm.size)
    n = L.DictShm.get(region.buf, p, "length")
    values = L.DictShm.get(region.buf, p, "values")
    vp = region.payload(values)
    region.ensure_mapped(vp, n * L.PairShm.size)
    out: Dict[str, str] = {}
    for i in range(n):
        base = vp + i * L.PairShm.size
        k = read_string(region, L.PairShm.get(region.buf, base, "key"))
        v = read_string(region, L.PairShm.get(region.buf, base, "value"))
        out[k] = v
    return out


def create_map(region: Region, mapping: Dict[str, object], owned: Owned) -> int:
    """PbMap::Create (used by the harness for InitializeRequest and by load_model's files)."""
    h = region.construct(L.DictShm.size)
    owned.append(h)
    items = list(mapping.items())
    ph = region.construct(max(1, len(items)) * L.PairShm.size)
    owned.append(ph)
    L.DictShm.write(region.buf, h + _H, length=len(items), values=ph)
    for i, (k, v) in enumerate(items):
        kh = create_string(region, k, owned)
        vh = create_string(region, v, owned)
        L.PairShm.write(region.buf, ph + _H + i * L.PairShm.size, key=kh, value=vh)
    return h


def create_error(region: Region, code: int, message: str, owned: Owned) -> int:
    """PbError::SaveToSharedMemory: PbErrorShm {code, message StringShm}."""
    mh = create_string(region, message, owned)
    h = region.construct(L.PbErrorShm.size)
    owned.append(h)
    L.PbErrorShm.write(region.buf, h + _H, error_code=int(code), message_shm_handle=mh)
    return h


def read_error(region: Region, handle: int) -> Tuple[int, str]:
    p = region.payload(handle)
    region.ensure_mapped(p, L.PbErrorShm.size)
    code = L.PbErrorShm.get(region.buf, p, "error_code")
    msg = read_string(region, L.PbErrorShm.get(region.buf, p, "message_shm_handle"))
    return code, msg


# ------------------------------------------------------------------ tensors
@dataclass
class RawTensor:
    """A tensor as it lies in shared memory: name, Triton dtype, dims and a copy of the bytes."""
    name: str
    dtype: int
    dims: Tuple[int, ...]
    data: bytes
    memory_type: int = L.TRITONSERVER_MemoryType.CPU
    memory_type_id: int = 0


def read_tensor(region: Region, handle: int) -> RawTensor:
    """PbTensor::LoadFromSharedMemory; the data is copied out (CPU memory only)."""
    T = L.TensorShm
    p = region.payload(handle)
    region.ensure_mapped(p, T.size)
    memory, dtype, ndims = T.struct.unpack_from(region.buf, p)
    if ndims > 64:
        from ..errors import ProtocolError
        raise ProtocolError(f"tensor at handle {handle} claims {ndims} dims")
    region.ensure_mapped(p, T.size + 8 * ndims + L.StringShm.size)
    buf = region.buf
    dims = struct.unpack_from(f"<{ndims}q", buf, p + T.size) if ndims else ()
    name_off = p + T.size + L.TENSOR_DIM * ndims
    name_len = _U64.unpack_from(buf, name_off + L.StringShm.length)[0]
    region.ensure_mapped(name_off, L.StringShm.size + name_len)
    buf = region.buf
    s = name_off + L.StringShm.size
    name = bytes(buf[s:s + name_len]).decode("utf-8", "surrogateescape")
    if memory == 0:
        mp = s + name_len                        # embedded MemoryShm, no padding
    else:
        mp = region.payload(memory)              # standalone MemoryShm (e.g. BLS outputs)
    region.ensure_mapped(mp, L.MemoryShm.size)
    m = L.MemoryShm.read(region.buf, mp)
    mtype, mtype_id, nbytes = m["memory_type"], m["memory_type_id"], m["byte_size"]
    if mtype == L.TRITONSERVER_MemoryType.GPU:
        return RawTensor(name, dtype, tuple(dims), b"", mtype, mtype_id)
    d = mp + L.MemoryShm.size
    region.ensure_mapped(d, nbytes)
    # One copy into fresh, writable memory (numpy arrays made from it are writeable and
    # independent of shm, like the C++ stub's). numpy's copy is several times faster than
    # bytearray() for large tensors.
    data = _np.frombuffer(region.buf, _np.uint8, count=nbytes, offset=d).copy() if nbytes \
        else bytearray()
    return RawTensor(name, dtype, tuple(dims), data, mtype, mtype_id)


def tensor_block_size(name: bytes, ndims: int, nbytes: int) -> int:
    return (L.TensorShm.size + L.TENSOR_DIM * ndims + L.StringShm.size + len(name)
            + L.MemoryShm.size + nbytes)


def save_tensor(region: Region, name: str, dtype: int, dims: Sequence[int], data,
                owned: Owned) -> int:
    """PbTensor::SaveToSharedMemory (embedded form): one block with dims, name, memory, data.

    ``data`` is any C-contiguous buffer (bytes, numpy array memoryview).
    """
    bname, mv = _tensor_parts(name, data)
    h = region.construct(tensor_block_size(bname, len(dims), len(mv)))
    owned.append(h)
    _fill_tensor(region.buf, h, bname, dtype, dims, mv)
    return h


def _tensor_parts(name: str, data):
    bname = name.encode("utf-8", "surrogateescape")
    mv = data if isinstance(data, (bytes, bytearray)) else memoryview(data).cast("B")
    return bname, mv


_HEAD_STRUCTS: dict = {}


def _head_struct(ndims: int) -> struct.Struct:
    """TensorShm + dims + the embedded StringShm header as one struct (cached per rank)."""
    st = _HEAD_STRUCTS.get(ndims)
    if st is None:
        fmt = L.TensorShm.struct.format + f"{ndims}q" + L.StringShm.body
        st = _HEAD_STRUCTS[ndims] = struct.Struct(fmt)
    return st


_MEM_CPU = int(L.TRITONSERVER_MemoryType.CPU)


def _fill_tensor(buf, h: int, bname: bytes, dtype: int, dims: Sequence[int], mv) -> None:
    """Write a Construct'ed tensor block. The block is still private to us: no lock needed.

    Layout: TensorShm{memory=0, dtype, dims_count}, i64 dims[], StringShm{data (unused in this
    embedded form: 0), length} + name bytes, MemoryShm + data (no padding anywhere).
    """
    nbytes = len(mv)
    ndims = len(dims)
    p = h + _H
    _head_struct(ndims).pack_into(buf, p, 0, int(dtype), ndims, *dims, 0, len(bname))
    s = p + L.TensorShm.size + L.TENSOR_DIM * ndims + L.StringShm.size
    buf[s:s + len(bname)] = bname
    m = s + len(bname)
    L.MemoryShm.pack(buf, m, memory_type=_MEM_CPU, byte_size=nbytes)
    if nbytes:
        d = m + L.MemoryShm.size
        buf[d:d + nbytes] = mv


# ------------------------------------------------------------------ requests
@dataclass
class RequestData:
    """Everything an InferRequestShm holds (what save_request writes for BLS)."""
    inputs: List[RawTensor]
    requested_output_names: List[str]
    request_id: str
    correlation_id: object          # int or str
    model_name: str
    model_version: int
    flags: int
    timeout: int
    address: int
    response_factory_address: int
    preferred_memory_type: int
    preferred_memory_device_id: int
    parameters: str
    trace_address: int = 0
    trace_context: Optional[str] = None


_STR = L.StringShm.struct


def string_reader(region: Region):
    """A fast read_string for the current mapping: bounds checked inline, anything beyond the
    mapping through the checked, remapping path (which raises with the offset)."""
    buf, cap = region.buf, region.capacity

    def string(h: int) -> str:
        if 0 < h and h + 32 <= cap:
            data, length = _STR.unpack_from(buf, h + _H)
            if length == 0:
                return ""
            dp = data + _H
            if 0 < dp and dp + length <= cap:
                return buf[dp:dp + length].decode("utf-8", "surrogateescape")
        return read_string(region, h)
    return string


def write_release_flags(region: Region, request_handle: int, flags: int) -> None:
    """InferRequest::SetReleaseFlags: the parent reads them back after execute."""
    L.InferRequestShm.set(region.buf, request_handle + _H, "request_release_flags", int(flags))


# ------------------------------------------------------------------ responses
@dataclass
class ResponseData:
    """An InferResponse to save: output tensors or an error."""
    outputs: List[Tuple[str, int, Tuple[int, ...], object]] = field(default_factory=list)
    error: Optional[Tuple[int, str]] = None      # (TRITONSERVER_Error_Code, message)
    id: int = 0
    is_last_response: bool = True


def save_response(region: Region, resp: ResponseData, owned: Owned) -> int:
    """InferResponse::SaveToSharedMemory: ResponseShm then the output tensor handles."""
    S = L.ResponseShm
    if resp.error is not None:
        h = region.construct(S.size)
        owned.append(h)
        eh = create_error(region, resp.error[0], resp.error[1], owned)
        S.write(region.buf, h + _H, outputs_size=0, error=eh, has_error=True, is_error_set=True,
                id=resp.id, is_last_response=resp.is_last_response)
        return h
    # One lock hold for all the blocks of this response; the copies happen after, unlocked.
    parts = [(_tensor_parts(name, data), dt, dims) for name, dt, dims, data in resp.outputs]
    n = len(parts)
    sizes = [S.size + 8 * n] + [tensor_block_size(bname, len(dims), len(mv))
                                for (bname, mv), dt, dims in parts]
    handles = region.construct_many(sizes)
    owned.extend(handles)
    h, tensor_handles = handles[0], handles[1:]
    buf = region.buf
    for th, ((bname, mv), dt, dims) in zip(tensor_handles, parts):
        _fill_tensor(buf, th, bname, dt, dims, mv)
    S.pack(buf, h + _H, outputs_size=n, id=resp.id, is_last_response=resp.is_last_response)
    if n:
        struct.pack_into(f"<{n}q", buf, h + _H + S.size, *tensor_handles)
    return h


# ------------------------------------------------------------------ the execute hot path
# The ExecuteResponse of a batch is saved in ONE Construct round (one hold of shm_mutex): the
# responses, their tensors, then the batch block. Every object is written with one precompiled
# struct built from the layout tables (header fields in table order, then the variable parts),
# cached per shape. The field orders these structs rely on are checked here at import.
assert L.TensorShm.names == ("memory", "dtype", "dims_count")
assert L.StringShm.names == ("data", "length")
assert L.MemoryShm.names == ("gpu_pointer_offset", "use_cuda_shared_pool",
                                     "cuda_pool_offset", "memory_type", "memory_type_id",
                                     "byte_size", "memory_release_id")
assert L.ResponseShm.names == ("outputs_size", "error", "has_error", "is_error_set",
                                       "id", "is_last_response")
assert L.IPCMessageShm.names[:2] == ("command", "args")
assert L.ResponseBatch.names[:2] == ("waiting_on_stub", "batch_size")


def _fmt(layout) -> str:
    return layout.body


_TENSOR_HEADS: dict = {}
_RESPONSE_HEADS: dict = {}
_BATCH_HEADS: dict = {}


def _tensor_head(ndims: int, name_len: int) -> struct.Struct:
    """TensorShm, dims, embedded StringShm, name bytes, MemoryShm: one struct per shape."""
    key = (ndims, name_len)
    st = _TENSOR_HEADS.get(key)
    if st is None:
        st = _TENSOR_HEADS[key] = struct.Struct(
            "<" + _fmt(L.TensorShm) + f"{ndims}q" + _fmt(L.StringShm) + f"{name_len}s"
            + _fmt(L.MemoryShm))
    return st


def _response_head(n: int) -> struct.Struct:
    st = _RESPONSE_HEADS.get(n)
    if st is None:
        st = _RESPONSE_HEADS[n] = struct.Struct("<" + _fmt(L.ResponseShm) + f"{n}q")
    return st


def _batch_head(n: int) -> struct.Struct:
    """IPCMessageShm + ResponseBatch + n handles: the whole ExecuteResponse block."""
    st = _BATCH_HEADS.get(n)
    if st is None:
        st = _BATCH_HEADS[n] = struct.Struct("<" + _fmt(L.IPCMessageShm) + _fmt(L.ResponseBatch)
                                             + f"{n}q")
        assert st.size == L.EXECUTE_RESPONSE_HANDLES_OFFSET + 8 * n
    return st


_N_IPC = len(L.IPCMessageShm.names)
_N_BATCH = len(L.ResponseBatch.names)


def save_execute_response(region: Region, items: Sequence, owned: Owned) -> int:
    """Stub::ProcessReturnedResponses' saving part: returns the ExecuteResponse block.

    ``items`` has one entry per request: an int (a response handle already saved, 0 for
    none) or ``(outputs, id, is_last_response)`` with outputs ``(name, triton dtype, dims,
    payload)`` where ``payload`` is a C-contiguous bytes-like object (``len`` = byte size).
    The block is
    ``[IPCMessageShm: ExecuteResponse][ResponseBatch: batch_size][handle per request]``.
    """
    sizes: List[int] = []
    plan = []
    for it in items:
        if type(it) is not tuple:
            continue
        outputs = it[0]
        sizes.append(L.ResponseShm.size + 8 * len(outputs))
        for name, dtype, dims, payload in outputs:
            bname = name.encode("utf-8", "surrogateescape")
            st = _tensor_head(len(dims), len(bname))
            nbytes = len(payload)
            plan.append((st, bname, dtype, dims, payload, nbytes))
            sizes.append(st.size + nbytes)
    n = len(items)
    batch = _batch_head(n)
    sizes.append(batch.size)
    got = region.construct_many(sizes)
    owned.extend(got)
    buf = region.buf
    handles = []
    k = 0                                  # next block in ``got``
    j = 0                                  # next tensor in ``plan``
    for it in items:
        if type(it) is not tuple:
            handles.append(it)
            continue
        rh = got[k]
        m = len(it[0])
        ths = got[k + 1:k + 1 + m]
        k += 1 + m
        for th in ths:
            st, bname, dtype, dims, payload, nbytes = plan[j]
            j += 1
            p = th + _H
            st.pack_into(buf, p, 0, dtype, len(dims), *dims, 0, len(bname), bname,
                         0, False, 0, _MEM_CPU, 0, nbytes, 0)
            if nbytes:
                d = p + st.size
                buf[d:d + nbytes] = payload
        _response_head(m).pack_into(buf, rh + _H, m, 0, False, False, it[1], it[2], *ths)
        handles.append(rh)
    bh = got[k]
    batch.pack_into(buf, bh + _H, int(L.PYTHONSTUB_CommandType.ExecuteResponse),
                    bh + L.EXECUTE_RESPONSE_BATCH_OFFSET, *([0] * (_N_IPC - 2)),
                    0, n, *([0] * (_N_BATCH - 2)), *handles)
    return bh


def read_response(region: Region, handle: int) -> ResponseData:
    """InferResponse::LoadFromSharedMemory (BLS responses from the parent)."""
    S = L.ResponseShm
    p = region.payload(handle)
    region.ensure_mapped(p, S.size)
    f = S.read(region.buf, p)
    if f["has_error"]:
        err = (L.TRITONSERVER_Error_Code.INTERNAL, "")
        if f["is_error_set"]:
            err = read_error(region, f["error"])
        return ResponseData(error=err, id=f["id"], is_last_response=f["is_last_response"])
    n = f["outputs_size"]
    region.ensure_mapped(p, S.size + 8 * n)
    handles = struct.unpack_from(f"<{n}q", region.buf, p + S.size) if n else ()
    outs = []
    for th in handles:
        t = read_tensor(region, th)
        outs.append((t.name, t.dtype, t.dims, t.data))
    return ResponseData(outputs=outs, id=f["id"], is_last_response=f["is_last_response"])


def dumps_config(obj) -> str:
    return json.dumps(obj)


def _create_correlation_id(region: Region, corr, owned: Owned) -> int:
    """CorrelationId::SaveToSharedMemory: the string is always written ("" for numeric ids)."""
    is_str = isinstance(corr, str)
    sh = create_string(region, corr if is_str else "", owned)
    h = region.construct(L.CorrelationIdShm.size)
    owned.append(h)
    L.CorrelationIdShm.write(region.buf, h + _H, id_string_shm_handle=sh,
                             id_uint=0 if is_str else int(corr),
                             id_type=int(L.CorrelationIdDataType.STRING if is_str
                                         else L.CorrelationIdDataType.UINT64))
    return h


def _create_trace(region: Region, triton_trace: int, context: str, owned: Owned) -> int:
    sh = create_string(region, context or "", owned)
    h = region.construct(L.InferenceTraceShm.size)
    owned.append(h)
    L.InferenceTraceShm.write(region.buf, h + _H, trace_context_shm_handle=sh,
                              triton_trace=int(triton_trace))
    return h


def save_request(region: Region, req: RequestData, owned: Owned) -> int:
    """InferRequest::SaveToSharedMemory (BLS requests; the harness's server requests)."""
    R = L.InferRequestShm
    in_handles = [save_tensor(region, t.name, t.dtype, t.dims, t.data, owned) for t in req.inputs]
    n_out, n_in = len(req.requested_output_names), len(in_handles)
    h = region.construct(R.size + 8 * (n_out + n_in))
    owned.append(h)
    out_handles = [create_string(region, n, owned) for n in req.requested_output_names]
    corr = _create_correlation_id(region, req.correlation_id, owned)
    model_name = create_string(region, req.model_name, owned)
    request_id = create_string(region, req.request_id, owned)
    params = create_string(region, req.parameters, owned)
    trace = _create_trace(region, req.trace_address, req.trace_context or "", owned)
    buf = region.buf
    p = h + _H
    R.write(buf, p, input_count=n_in, requested_output_count=n_out,
            model_version=int(req.model_version), flags=int(req.flags), address=req.address,
            response_factory_address=req.response_factory_address, is_decoupled=False,
            timeout=int(req.timeout), preferred_memory_type=int(req.preferred_memory_type),
            preferred_memory_device_id=int(req.preferred_memory_device_id),
            trace_shm_handle=trace, request_release_flags=L.TRITONSERVER_REQUEST_RELEASE_ALL,
            correlation_id_shm_handle=corr, model_name_shm_handle=model_name,
            request_id_shm_handle=request_id, parameters_shm_handle=params)
    if n_out:
        struct.pack_into(f"<{n_out}q", buf, p + R.size, *out_handles)
    if n_in:
        struct.pack_into(f"<{n_in}q", buf, p + R.size + 8 * n_out, *in_handles)
    return h
