"""Property tests: every dtype, every shape (zero-size included) survives the tensor codecs.

``write_tensor`` then ``read_tensor`` (the general reader) must give back name, dtype, dims and
the exact bytes; ``read_tensor_fast`` must agree with it whenever it takes a tensor and must
decline exactly the tensors it is not for (BYTES, BF16, zero-size). BYTES data is generated in
its wire format and must decode back to the elements.
"""
from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tritonstub.ipc.heap import Heap
from tritonstub.protocol import responses
from tritonstub.protocol.dtypes import (BF16, BYTES, NUMERIC_RAW_DTYPES, RAW_DTYPE, TRITON_DTYPES,
                                        deserialize_bytes, pack_bytes, serialize_bytes,
                                        walk_bytes)
from tritonstub.protocol.responses import ResponseData, Returned
from tritonstub.protocol.scalars import Owned
from tritonstub.protocol.tensors import read_tensor, read_tensor_fast, write_tensor

CODES = [row[0] for row in TRITON_DTYPES]
HEAP = Heap.create(bytearray(8 << 20))
EMPTY = HEAP.free_memory()

shapes = st.lists(st.integers(0, 5), min_size=0, max_size=4).map(tuple)
names = st.text(min_size=0, max_size=12)


@st.composite
def tensors(draw):
    code = draw(st.sampled_from(CODES))
    dims = draw(shapes)
    count = math.prod(dims)
    if code == BYTES:
        items = draw(st.lists(st.binary(max_size=9), min_size=count, max_size=count))
        data = serialize_bytes(np.array(items, dtype=object).reshape(dims)) if count else b""
        return draw(names), code, dims, data, items
    itemsize = RAW_DTYPE[code].itemsize
    data = draw(st.binary(min_size=count * itemsize, max_size=count * itemsize))
    if code == 1:                                      # BOOL: numpy wants 0 or 1
        data = bytes(b & 1 for b in data)
    return draw(names), code, dims, data, None


def fast(handle):
    return read_tensor_fast(HEAP.buf, HEAP.capacity, handle, NUMERIC_RAW_DTYPES,
                            lambda *parts: parts)


@settings(max_examples=300, deadline=None)
@given(tensors())
def test_tensor_round_trip_every_dtype_and_shape(t):
    name, code, dims, data, items = t
    owned = Owned()
    h = write_tensor(HEAP, name, code, dims, data, owned)
    got = read_tensor(HEAP, h)
    assert (got.name, got.dtype, got.dims) == (name, code, dims)
    assert bytes(got.data) == data
    quick = fast(h)
    if code in (BYTES, BF16) or math.prod(dims) == 0:
        assert quick is None
    else:
        q_name, q_code, q_dims, array = quick
        assert (q_name, q_code, tuple(q_dims)) == (name, code, dims)
        assert array.shape == dims and array.tobytes() == data
        assert array.flags.writeable                 # a copy, independent of the heap
        assert not np.shares_memory(array, np.frombuffer(HEAP.buf, np.uint8))
    if items is not None:
        assert deserialize_bytes(got.data).tolist() == items
    owned.release(HEAP)
    assert HEAP.free_memory() == EMPTY


@settings(max_examples=100, deadline=None)
@given(st.lists(tensors(), min_size=0, max_size=4), st.integers(0, 2**63 - 1), st.booleans())
def test_response_round_trip_both_writers(outputs, ident, last):
    """write_response and the execute fast path's writer give the same response back."""
    owned = Owned()
    outs = [(name, code, dims, data) for name, code, dims, data, _ in outputs]
    one = responses.write_response(HEAP, ResponseData(outs, None, ident, last), owned)
    block = responses.write_execute_response(HEAP, [Returned(outs, ident, last), one], owned)
    result = responses.read_execute_response(HEAP, block)
    for got in result.responses:
        assert (got.id, got.is_last_response, got.error) == (ident, last, None)
        assert [(n, c, d, bytes(x)) for n, c, d, x in got.outputs] == outs
    owned.release(HEAP)
    assert HEAP.free_memory() == EMPTY



def _objects(items):
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    return arr


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=40), st.integers(min_value=1, max_value=7))
def test_walk_bytes_finds_every_indicator_and_stops_at_a_short_tail(items, cut):
    raw = pack_bytes(items)
    assert raw == serialize_bytes(_objects(items))
    walked = list(walk_bytes(raw))
    assert [n for _, n in walked] == [len(x) for x in items]
    assert [raw[off + 4:off + 4 + n] for off, n in walked] == items
    # Truncated: every indicator but the last fits; the last is short or runs past the end.
    short = raw[:max(0, len(raw) - cut)]
    tail = list(walk_bytes(short))
    assert all(off + 4 + n <= len(short) for off, n in tail[:-1])
    if tail:
        off, n = tail[-1]
        assert (n is None and len(short) - off < 4) or off + 4 + n > len(short) or \
            tail == walked[:len(tail)]


class _BytesOnlySlices(bytearray):
    """A buffer like PyPy's mmap: a slice takes bytes only (its memoryview takes any buffer)."""

    def __setitem__(self, key, value):
        if isinstance(key, slice) and not isinstance(value, (bytes, bytearray)):
            raise TypeError(f"expected bytes, got {type(value).__name__} object")
        super().__setitem__(key, value)


def test_a_tensor_is_written_into_a_region_whose_slices_take_bytes_only():
    """The stub on PyPy 7.3: pack_tensor falls back to the region's memoryview."""
    heap = Heap.create(_BytesOnlySlices(1 << 20))
    empty = heap.free_memory()
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    owned = Owned()
    h = write_tensor(heap, "OUT", 11, (2, 3), data, owned)
    got = read_tensor(heap, h)
    assert (got.name, got.dtype, got.dims) == ("OUT", 11, (2, 3))
    assert bytes(got.data) == data.tobytes()
    owned.release(heap)
    assert heap.free_memory() == empty
