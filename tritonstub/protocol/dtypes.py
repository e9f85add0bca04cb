"""Triton's data types and the BYTES tensor format, as they appear on the wire.

``TRITON_DTYPES`` has one row per ``TRITONSERVER_DataType`` code: the name, the model-config
name, the numpy dtype (None for BF16, which numpy lacks), the item size, the array-interface
typestr of the raw bytes (BF16 travels as ``<u2``), and the DLPack type code and bits.

A BYTES tensor's data is, for each element in C order, a little-endian u32 length followed by
that many bytes (no padding, no terminator). The packer and unpacker below take a vectorised
path when every element has the same length, which is the common case for large batches; they
give exactly the bytes (and the errors) of the stock ``serialize_byte_tensor`` /
``deserialize_bytes_tensor``.
"""
from __future__ import annotations

import struct

import numpy as np

#: One row per Triton dtype: (code, name, config name, numpy dtype or None, item size or None,
#: array-interface typestr of the raw data, DLPack type code, DLPack bits).
TRITON_DTYPES = (
    (1, "BOOL", "TYPE_BOOL", np.dtype(np.bool_), 1, "|b1", 6, 8),
    (2, "UINT8", "TYPE_UINT8", np.dtype(np.uint8), 1, "|u1", 1, 8),
    (3, "UINT16", "TYPE_UINT16", np.dtype(np.uint16), 2, "<u2", 1, 16),
    (4, "UINT32", "TYPE_UINT32", np.dtype(np.uint32), 4, "<u4", 1, 32),
    (5, "UINT64", "TYPE_UINT64", np.dtype(np.uint64), 8, "<u8", 1, 64),
    (6, "INT8", "TYPE_INT8", np.dtype(np.int8), 1, "|i1", 0, 8),
    (7, "INT16", "TYPE_INT16", np.dtype(np.int16), 2, "<i2", 0, 16),
    (8, "INT32", "TYPE_INT32", np.dtype(np.int32), 4, "<i4", 0, 32),
    (9, "INT64", "TYPE_INT64", np.dtype(np.int64), 8, "<i8", 0, 64),
    (10, "FP16", "TYPE_FP16", np.dtype(np.float16), 2, "<f2", 2, 16),
    (11, "FP32", "TYPE_FP32", np.dtype(np.float32), 4, "<f4", 2, 32),
    (12, "FP64", "TYPE_FP64", np.dtype(np.float64), 8, "<f8", 2, 64),
    (13, "BYTES", "TYPE_STRING", np.dtype(np.object_), None, None, None, None),
    (14, "BF16", "TYPE_BF16", None, 2, "<u2", 4, 16),
)

BOOL, BYTES, BF16 = 1, 13, 14          # the codes the codecs single out
ROW = {row[0]: row for row in TRITON_DTYPES}
TRITON_TO_NUMPY = {row[0]: row[3] for row in TRITON_DTYPES if row[3] is not None}
NUMPY_TO_TRITON = {row[3]: row[0] for row in TRITON_DTYPES if row[3] is not None}
NUMPY_CHAIN = tuple((row[3].type, row[0]) for row in TRITON_DTYPES if row[0] <= 12)
RAW_DTYPE = {row[0]: np.dtype(row[5]) for row in TRITON_DTYPES if row[5] is not None}

NUMERIC_RAW_DTYPES = {code: dt for code, dt in RAW_DTYPE.items() if code not in (BYTES, BF16)}


_U32 = np.dtype("<u4")
_U32_STRUCT = struct.Struct("<I")
_MAX_U32 = 0xFFFFFFFF
_SMALL = 32


def _bytes_items(arr):
    """The flat C-order list of ``bytes`` a BYTES tensor serialises (stock rules)."""
    items = arr.ravel(order="C").tolist()
    if arr.dtype.kind == "S":
        return items
    for item in items:
        if type(item) is not bytes:
            return [x if type(x) is bytes else str(x).encode("utf-8") for x in items]
    return items


def _pack(items):
    count = len(items)
    lengths = list(map(len, items))
    if max(lengths) > _MAX_U32:
        struct.pack("<I", max(lengths))
    if count < _SMALL:
        head = struct.pack("<%dI" % count, *lengths)
        parts = [None] * (2 * count)
        parts[0::2] = [head[i : i + 4] for i in range(0, 4 * count, 4)]
        parts[1::2] = items
        return b"".join(parts)
    first = lengths[0]
    if lengths.count(first) == count:
        out = np.empty((count, 4 + first), dtype=np.uint8)
        out[:, :4] = np.frombuffer(first.to_bytes(4, "little"), dtype=np.uint8)
        if first:
            out[:, 4:] = np.frombuffer(b"".join(items), dtype=np.uint8).reshape(count, first)
        return out.tobytes()
    heads = np.array(lengths, dtype=_U32).view("V4").tolist()
    parts = [None] * (2 * count)
    parts[0::2] = heads
    parts[1::2] = items
    return b"".join(parts)


def serialize_bytes(arr):
    """Serialise a BYTES array to the Triton wire format (docs/protocol/r24.10.md §5).

    For each element in C order: a u32 little-endian length, then the bytes.
    ``bytes`` elements are taken as they are, anything else as
    ``str(x).encode('utf-8')``; ``S`` arrays use the element values with their
    trailing NULs stripped (numpy's ``.item()``).  Gives exactly the bytes of
    the stock ``serialize_byte_tensor`` (``b""`` for an empty array).
    """
    if not isinstance(arr, np.ndarray):
        arr = np.asarray(arr, dtype=object)
    if arr.size == 0:
        return b""
    if arr.dtype != np.object_ and arr.dtype.type != np.bytes_:
        raise TypeError("serialize_bytes() needs an object or bytes_ array, got dtype %s" % arr.dtype)
    return _pack(_bytes_items(arr))


def pack_bytes(items):
    """The BYTES wire format of a list of ``bytes`` elements (``b""`` for none): what
    :func:`serialize_bytes` writes, for a caller that already holds the elements."""
    return _pack(items) if items else b""


def walk_bytes(buf):
    """Walk the length indicators of a BYTES buffer without copying an element.

    Yields ``(offset, length)`` for each indicator, ``offset`` being where the indicator
    starts (its element's bytes start at ``offset + 4``). Where fewer than 4 bytes remain,
    yields ``(offset, None)`` and stops. The caller decides what a short buffer or an element
    running past the end means (a validator counts, a decoder refuses); the walk stops after an
    element that runs past the end.
    """
    view = memoryview(buf).cast("B")
    size = len(view)
    offset = 0
    unpack = _U32_STRUCT.unpack_from
    while offset < size:
        if offset + 4 > size:
            yield offset, None
            return
        (length,) = unpack(view, offset)
        yield offset, length
        offset += 4 + length


def _unpack_error(offset, need, size):
    return struct.error(
        "unpack_from requires a buffer of at least %d bytes for unpacking %d bytes at offset %d "
        "(actual buffer size is %d)" % (offset + need, need, offset, size)
    )


def _unpack(data):
    size = len(data)
    if size >= 4 * _SMALL:
        first = int.from_bytes(data[0:4], "little")
        stride = 4 + first
        if size % stride == 0:
            count = size // stride
            grid = np.frombuffer(data, dtype=np.uint8).reshape(count, stride)
            heads = np.ascontiguousarray(grid[:, :4]).view(_U32).reshape(count)
            if bool((heads == first).all()):
                if first == 0:
                    return [b""] * count
                return np.ascontiguousarray(grid[:, 4:]).view("V%d" % first).reshape(count).tolist()
    items = []
    append = items.append
    offset = 0
    start = length = 0
    unpack = _U32_STRUCT.unpack_from
    while offset < size:
        (length,) = unpack(data, offset)
        start = offset + 4
        offset = start + length
        append(data[start:offset])
    if offset > size:
        raise _unpack_error(start, length, size)
    return items


#: What :func:`deserialize_bytes` raises for data that does not frame its elements.
BYTES_DECODE_ERRORS = (struct.error, ValueError)


def deserialize_bytes(buf, shape=None):
    """Decode the BYTES wire format into an object array of ``bytes``.

    ``buf`` is anything with the buffer protocol (bytes, memoryview, a uint8
    array); the result is reshaped to ``shape`` when given (1-D otherwise).  A
    truncated buffer raises ``struct.error`` like the stock
    ``deserialize_bytes_tensor``; a count that does not fit ``shape`` raises
    numpy's ``ValueError``.
    """
    if type(buf) is not bytes:
        buf = memoryview(buf).cast("B").tobytes() if not isinstance(buf, bytes) else bytes(buf)
    items = _unpack(buf)
    out = np.empty(len(items), dtype=object)
    if items:
        out[:] = items
    if shape is not None:
        out = out.reshape(shape)
    return out
