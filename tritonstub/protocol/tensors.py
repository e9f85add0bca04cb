"""Tensors (pb_tensor.h, pb_memory.h): one reader, one writer.

A tensor travels as ONE Construct'ed block in the *embedded* form::

    TensorShm {memory, dtype, dims_count} | i64 dims[dims_count]
    | StringShm {data (unused), length} name bytes | MemoryShm {...} data bytes

with no padding anywhere. ``memory`` is 0 in that form; a non-zero ``memory`` is the handle of
a *standalone* MemoryShm (what the parent uses for BLS outputs), data following it. GPU memory
is described but never read here (tritonstub is CPU-only).

Readers copy the data out (``as_numpy()`` is then writeable and independent of shared memory,
as the C++ stub's ``py::array`` copies are). :func:`read_tensor` handles every case and returns a
:class:`RawTensor`; :func:`read_tensor_fast` handles the common one (an embedded CPU tensor of a
numeric dtype, inside the current buffer) with two ``struct`` calls and one numpy copy and hands
the pieces to a factory, so the stub builds the model's ``Tensor`` straight from shared memory;
it returns None for everything else and the caller falls back to :func:`read_tensor`.

:func:`tensor_head` gives the whole header of one tensor (TensorShm, dims, StringShm, name,
MemoryShm) as one precompiled struct per (rank, name length): the execute fast path writes a
tensor with one ``pack_into`` and one copy.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np

from . import current
from .dtypes import BYTES, RAW_DTYPE
from .scalars import Owned

L = current()
H = L.OWNERSHIP_HEADER
MAX_DIMS = 64                    # a sanity bound: Triton's own limit is far lower
_MEM_CPU = int(L.TRITONSERVER_MemoryType.CPU)
_MEM_GPU = int(L.TRITONSERVER_MemoryType.GPU)
_T = L.TensorShm
_M = L.MemoryShm
_U64 = struct.Struct("<Q")

# The field orders the precompiled structs below rely on, checked at import.
assert _T.names == ("memory", "dtype", "dims_count")
assert L.StringShm.names == ("data", "length")
# MemoryShm changed with the CUDA memory pool (r23.11): its fields are found by name, and a CPU
# tensor's MemoryShm is written as (fields before byte_size, byte_size, fields after it).
_M_TYPE = _M.names.index("memory_type")
_M_SIZE = _M.names.index("byte_size")
_M_CPU = tuple(_MEM_CPU if n == "memory_type" else False if _M.fields[n].type == "bool" else 0
               for n in _M.names)
_M_BEFORE, _M_AFTER = _M_CPU[:_M_SIZE], _M_CPU[_M_SIZE + 1:]


@dataclass
class RawTensor:
    """A tensor as it lies in shared memory: name, Triton dtype, dims and a copy of the bytes."""
    name: str
    dtype: int
    dims: Tuple[int, ...]
    data: object                     # bytes-like; bytearray/ndarray when freshly copied out
    memory_type: int = _MEM_CPU
    memory_type_id: int = 0


def is_fresh(data) -> bool:
    """True for data a reader copied out (a model may own it without another copy)."""
    return isinstance(data, (bytearray, np.ndarray))


# ------------------------------------------------------------------ reading
def read_tensor(heap, handle: int) -> RawTensor:
    """PbTensor::LoadFromSharedMemory, any form; the data is copied out (CPU memory only)."""
    p = heap.payload(handle)
    heap.ensure_mapped(p, _T.size)
    memory, dtype, ndims = _T.struct.unpack_from(heap.buf, p)
    if ndims > MAX_DIMS:
        from ..errors import ProtocolError
        raise ProtocolError(f"tensor at handle {handle} claims {ndims} dims")
    heap.ensure_mapped(p, _T.size + L.TENSOR_DIM * ndims + L.StringShm.size)
    buf = heap.buf
    dims = struct.unpack_from(f"<{ndims}q", buf, p + _T.size) if ndims else ()
    name_off = p + _T.size + L.TENSOR_DIM * ndims
    name_len = _U64.unpack_from(buf, name_off + L.StringShm.length)[0]
    heap.ensure_mapped(name_off, L.StringShm.size + name_len)
    buf = heap.buf
    s = name_off + L.StringShm.size
    name = bytes(buf[s:s + name_len]).decode("utf-8", "surrogateescape")
    if memory == 0:
        mp = s + name_len                        # embedded MemoryShm, no padding
    else:
        mp = heap.payload(memory)                # standalone MemoryShm (e.g. BLS outputs)
    heap.ensure_mapped(mp, _M.size)
    m = _M.read(heap.buf, mp)
    mtype, mtype_id, nbytes = m["memory_type"], m["memory_type_id"], m["byte_size"]
    if mtype == _MEM_GPU:
        _check_dims(handle, name, dtype, dims, nbytes)
        return RawTensor(name, dtype, tuple(dims), b"", mtype, mtype_id)
    d = mp + _M.size
    heap.ensure_mapped(d, nbytes)
    _check_dims(handle, name, dtype, dims, nbytes)
    # One copy into fresh, writable memory; numpy's copy is several times faster than
    # bytearray() for large tensors.
    data = np.frombuffer(heap.buf, np.uint8, count=nbytes, offset=d).copy() if nbytes \
        else bytearray()
    return RawTensor(name, dtype, tuple(dims), data, mtype, mtype_id)


def _check_dims(handle: int, name: str, dtype: int, dims, nbytes: int) -> None:
    """The shape must be one the data can fill: no negative dim, and for a fixed-size dtype
    exactly ``product(dims) * itemsize`` bytes (what Triton checks of every input)."""
    from ..errors import ProtocolError
    if any(x < 0 for x in dims):
        raise ProtocolError(f"tensor '{name}' at handle {handle} has a negative dim: "
                            f"{list(dims)}")
    itemsize = _ITEMSIZE.get(dtype)
    if itemsize is None:
        return                  # BYTES (its own framing is checked when decoded) or unknown
    count = 1
    for x in dims:
        count *= x
    if count * itemsize != nbytes:
        raise ProtocolError(f"tensor '{name}' at handle {handle}: dims {list(dims)} of "
                            f"{itemsize}-byte elements need {count * itemsize} bytes, its "
                            f"memory holds {nbytes}")


_ITEMSIZE = {code: dt.itemsize for code, dt in RAW_DTYPE.items() if code != BYTES}
_DIMS_NAME: dict = {}


def _dims_and_name(ndims: int) -> struct.Struct:
    st = _DIMS_NAME.get(ndims)
    if st is None:
        st = _DIMS_NAME[ndims] = struct.Struct(f"<{ndims}q" + L.StringShm.body)
    return st


def read_tensor_fast(buf, cap: int, handle: int, numeric: dict, new_tensor):
    """The common case of :func:`read_tensor`, or None.

    An embedded CPU tensor whose dtype is in ``numeric`` (code -> numpy dtype of the raw data),
    whose byte size matches its dims, wholly inside ``buf[:cap]``: returns
    ``new_tensor(name, dtype, dims, array)`` with ``array`` a fresh copy, shaped. Anything
    else (BYTES, BF16, zero-size, standalone or GPU memory, beyond the buffer) returns None.
    """
    tp = handle + H
    if handle <= 0 or tp + _T.size > cap:
        return None
    memory, dtype, ndims = _T.struct.unpack_from(buf, tp)
    np_dtype = numeric.get(dtype)
    if memory or np_dtype is None or ndims > MAX_DIMS:
        return None
    st = _dims_and_name(ndims)
    s = tp + _T.size
    if s + st.size > cap:
        return None
    v = st.unpack_from(buf, s)
    name_len = v[-1]
    s += st.size
    mp = s + name_len
    if mp + _M.size > cap:
        return None
    m = _M.struct.unpack_from(buf, mp)
    nbytes = m[_M_SIZE]
    d = mp + _M.size
    dims = v[:ndims]
    count = 1
    for x in dims:
        if x < 0:
            return None
        count *= x
    if m[_M_TYPE] != _MEM_CPU or d + nbytes > cap or count <= 0 or count * np_dtype.itemsize != nbytes:
        return None
    arr = np.frombuffer(buf, np_dtype, count, d).copy()
    if ndims != 1:
        arr = arr.reshape(dims)
    return new_tensor(buf[s:mp].decode("utf-8", "surrogateescape"), dtype, dims, arr)


# ------------------------------------------------------------------ writing
def tensor_block_size(name: bytes, ndims: int, nbytes: int) -> int:
    return (_T.size + L.TENSOR_DIM * ndims + L.StringShm.size + len(name) + _M.size + nbytes)


def tensor_parts(name: str, data):
    """(name as bytes, data as a byte-addressed buffer) for the writers."""
    bname = name.encode("utf-8", "surrogateescape")
    mv = data if isinstance(data, (bytes, bytearray)) else memoryview(data).cast("B")
    return bname, mv


_HEADS: dict = {}


def tensor_head(ndims: int, name_len: int) -> struct.Struct:
    """TensorShm, dims, embedded StringShm, name bytes, MemoryShm: one struct per shape.

    Pack with :func:`pack_tensor`; the data follows at ``payload + head.size``."""
    key = (ndims, name_len)
    st = _HEADS.get(key)
    if st is None:
        st = _HEADS[key] = struct.Struct(
            "<" + _T.body + f"{ndims}q" + L.StringShm.body + f"{name_len}s" + _M.body)
    return st


def pack_tensor(buf, handle: int, head: struct.Struct, bname: bytes, dtype: int,
                dims: Sequence[int], payload, nbytes: int) -> None:
    """Fill a Construct'ed tensor block (still private to us: no lock needed)."""
    p = handle + H
    head.pack_into(buf, p, 0, dtype, len(dims), *dims, 0, len(bname), bname,
                   *_M_BEFORE, nbytes, *_M_AFTER)
    if nbytes:
        d = p + head.size
        try:
            buf[d:d + nbytes] = payload
        except TypeError:      # PyPy: an mmap slice takes bytes only; its memoryview takes any buffer
            memoryview(buf)[d:d + nbytes] = payload


def write_tensor(heap, name: str, dtype: int, dims: Sequence[int], data, owned: Owned) -> int:
    """PbTensor::SaveToSharedMemory (embedded form). ``data``: any C-contiguous buffer."""
    bname, mv = tensor_parts(name, data)
    nbytes = len(mv)
    head = tensor_head(len(dims), len(bname))
    h = heap.construct(head.size + nbytes)
    owned.append(h)
    pack_tensor(heap.buf, h, head, bname, int(dtype), dims, mv, nbytes)
    return h
