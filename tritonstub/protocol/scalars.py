"""Strings, maps, errors and handle arrays (pb_string.h, pb_map.h, pb_error.h).

Every function takes a heap (``buf``, ``capacity``, ``payload``, ``ensure_mapped``,
``construct``; see ``tritonstub.ipc.heap``) and handles, and returns values. Readers copy the
bytes out: the peer keeps its reference until we answer, so no Load/ref-count traffic is needed.
Writers Construct each object (ref count 1) and append its handle to an :class:`Owned` list that
the caller releases once the peer is done with the objects.

A string has two forms. *Standalone* (``PbString::Create``): a ``StringShm {data, length}`` whose
``data`` is the handle of a separate ``Construct<char>(length)``. *Embedded* (inside a tensor
block): the ``StringShm`` is followed directly by the bytes and ``data`` is meaningless.
"""
from __future__ import annotations

import struct
from typing import Dict, Sequence, Tuple

from . import current

L = current()
H = L.OWNERSHIP_HEADER
_STR = L.StringShm.struct


class Owned(list):
    """Handles we Construct'ed and must release once the peer is done with them."""

    def release(self, heap) -> None:
        if self:
            handles = list(self)
            self.clear()
            heap.release_many(handles)


# ------------------------------------------------------------------ handle arrays
def read_handles(heap, offset: int, n: int) -> Tuple[int, ...]:
    """``n`` handles (i64) stored at byte ``offset`` (after a header struct)."""
    if not n:
        return ()
    heap.ensure_mapped(offset, 8 * n)
    return struct.unpack_from(f"<{n}q", heap.buf, offset)


def write_handles(heap, offset: int, handles: Sequence[int]) -> None:
    pack_handles(heap.buf, offset, handles)


def pack_handles(buf, offset: int, handles: Sequence[int]) -> None:
    """``handles`` (i64) at byte ``offset`` of ``buf``: :func:`write_handles` for a block's
    ``fill``, which has the buffer and no heap."""
    if handles:
        struct.pack_into(f"<{len(handles)}q", buf, offset, *handles)


# ------------------------------------------------------------------ strings
def read_string(heap, handle: int) -> str:
    """PbString::LoadFromSharedMemory (standalone form)."""
    p = heap.payload(handle)
    heap.ensure_mapped(p, L.StringShm.size)
    data, length = _STR.unpack_from(heap.buf, p)
    if length == 0:
        return ""
    dp = heap.payload(data)
    heap.ensure_mapped(dp, length)
    return heap.buf[dp:dp + length].decode("utf-8", "surrogateescape")


def string_reader(heap):
    """A fast :func:`read_string` for the heap's current buffer: bounds checked inline,
    anything beyond the buffer through the checked path (which remaps, or raises with the
    offset)."""
    buf, cap = heap.buf, heap.capacity
    least = H + L.StringShm.size

    def string(h: int) -> str:
        if 0 < h and h + least <= cap:
            data, length = _STR.unpack_from(buf, h + H)
            if length == 0:
                return ""
            dp = data + H
            if 0 < dp and dp + length <= cap:
                return buf[dp:dp + length].decode("utf-8", "surrogateescape")
        return read_string(heap, h)
    return string


def write_string(heap, text, owned: Owned) -> int:
    """PbString::Create (standalone): a StringShm plus a Construct<char>(len) with the bytes."""
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else bytes(text)
    h = heap.construct(L.StringShm.size)
    owned.append(h)
    dh = heap.construct(len(data))
    owned.append(dh)
    pack_string(heap.buf, h, dh, data)
    return h


#: The two block sizes of a standalone string of n bytes, for a caller that Constructs them
#: together with other blocks (then :func:`pack_string` fills them).
def string_sizes(n: int) -> Tuple[int, int]:
    return L.StringShm.size, n


def pack_string(buf, h: int, dh: int, data: bytes) -> None:
    """Fill the two blocks of a standalone string (``h``: StringShm, ``dh``: the bytes)."""
    _STR.pack_into(buf, h + H, dh, len(data))
    if data:
        buf[dh + H:dh + H + len(data)] = data


# ------------------------------------------------------------------ maps
def read_map(heap, handle: int) -> Dict[str, str]:
    """PbMap::LoadFromSharedMemory: a DictShm of PairShm(key, value) standalone strings."""
    p = heap.payload(handle)
    heap.ensure_mapped(p, L.DictShm.size)
    n = L.DictShm.get(heap.buf, p, "length")
    values = L.DictShm.get(heap.buf, p, "values")
    vp = heap.payload(values)
    heap.ensure_mapped(vp, n * L.PairShm.size)
    out: Dict[str, str] = {}
    for i in range(n):
        base = vp + i * L.PairShm.size
        k = read_string(heap, L.PairShm.get(heap.buf, base, "key"))
        v = read_string(heap, L.PairShm.get(heap.buf, base, "value"))
        out[k] = v
    return out


def write_map(heap, mapping: Dict[str, object], owned: Owned) -> int:
    """PbMap::Create (the parent's InitializeRequest; load_model's files)."""
    h = heap.construct(L.DictShm.size)
    owned.append(h)
    items = list(mapping.items())
    ph = heap.construct(max(1, len(items)) * L.PairShm.size)
    owned.append(ph)
    L.DictShm.write(heap.buf, h + H, length=len(items), values=ph)
    for i, (k, v) in enumerate(items):
        kh = write_string(heap, k, owned)
        vh = write_string(heap, v, owned)
        L.PairShm.write(heap.buf, ph + H + i * L.PairShm.size, key=kh, value=vh)
    return h


# ------------------------------------------------------------------ errors
def write_error(heap, code: int, message: str, owned: Owned) -> int:
    """PbError::SaveToSharedMemory: PbErrorShm {code, message StringShm} (before r23.09: the
    message string alone, the code dropped)."""
    mh = write_string(heap, message, owned)
    if not L.ERRORS_CARRY_CODES:
        return mh
    h = heap.construct(L.PbErrorShm.size)
    owned.append(h)
    L.PbErrorShm.write(heap.buf, h + H, error_code=int(code), message_shm_handle=mh)
    return h


def read_error(heap, handle: int) -> Tuple[int, str]:
    """PbError::LoadFromSharedMemory: (TRITONSERVER_Error_Code, message); before r23.09 the
    handle names the message and the code is INTERNAL."""
    if not L.ERRORS_CARRY_CODES:
        return int(L.TRITONSERVER_Error_Code.INTERNAL), read_string(heap, handle)
    p = heap.payload(handle)
    heap.ensure_mapped(p, L.PbErrorShm.size)
    code = L.PbErrorShm.get(heap.buf, p, "error_code")
    msg = read_string(heap, L.PbErrorShm.get(heap.buf, p, "message_shm_handle"))
    return code, msg


def write_bytes(heap, data, owned: Owned) -> int:
    """A Construct<char>(len) holding ``data`` (no header)."""
    h = heap.construct(len(data))
    owned.append(h)
    if len(data):
        heap.buf[h + H:h + H + len(data)] = data
    return h
