"""The decoders' malformed-input paths: a handle, offset, length or count that does not fit the
heap is refused with a tritonstub error that names the offset, never read past the buffer.

Each case writes a well-formed object with the protocol's own writer, corrupts one field through
the layout tables, and reads it back. (The fuzz test of issue 15 drives the whole stub; these pin
each decoder's checks one by one, on a bytearray heap, in milliseconds.)
"""
from __future__ import annotations

import numpy as np
import pytest

from tritonstub.errors import BadHandle, ProtocolError, TritonStubError
from tritonstub.ipc.heap import Heap
from tritonstub.protocol import control, current, requests, scalars, tensors
from tritonstub.protocol.requests import RequestData
from tritonstub.protocol.scalars import Owned
from tritonstub.protocol.tensors import RawTensor

L = current()
H = L.OWNERSHIP_HEADER
SIZE = 1 << 20
C = L.PYTHONSTUB_CommandType


@pytest.fixture
def heap():
    return Heap.create(bytearray(SIZE))


BAD_HANDLES = [0, -16, SIZE, SIZE + 4096, (1 << 62)]


def _raw(name="IN", data=np.arange(4, dtype=np.int32), dtype=8):
    return RawTensor(name, dtype, tuple(data.shape), bytearray(data.tobytes()))


# ---- strings, maps, errors --------------------------------------------------------------------


@pytest.mark.parametrize("handle", BAD_HANDLES)
def test_a_string_handle_outside_the_heap_is_refused(heap, handle):
    with pytest.raises(BadHandle):
        scalars.read_string(heap, handle)
    with pytest.raises(BadHandle):
        scalars.string_reader(heap)(handle)


@pytest.mark.parametrize("field, value", [("length", SIZE), ("length", (1 << 63) - 1),
                                          ("data", SIZE + 64), ("data", -H - 8)])
def test_a_string_whose_bytes_lie_outside_the_heap_is_refused(heap, field, value):
    h = scalars.write_string(heap, "hello", Owned())
    L.StringShm.set(heap.buf, h + H, field, value)
    with pytest.raises(BadHandle):
        scalars.read_string(heap, h)
    with pytest.raises(BadHandle):
        scalars.string_reader(heap)(h)


@pytest.mark.parametrize("field, value", [("length", 0xFFFFFFFF), ("values", SIZE + 8)])
def test_a_map_with_an_impossible_count_or_table_is_refused(heap, field, value):
    h = scalars.write_map(heap, {"a": "1", "b": "2"}, Owned())
    L.DictShm.set(heap.buf, h + H, field, value)
    with pytest.raises(BadHandle):
        scalars.read_map(heap, h)


def test_a_map_entry_naming_a_bad_string_is_refused(heap):
    h = scalars.write_map(heap, {"a": "1"}, Owned())
    pairs = L.DictShm.get(heap.buf, h + H, "values")
    L.PairShm.set(heap.buf, pairs + H, "value", SIZE * 2)
    with pytest.raises(BadHandle):
        scalars.read_map(heap, h)


def test_an_error_whose_message_handle_is_bad_is_refused(heap):
    h = scalars.write_error(heap, 3, "boom", Owned())
    L.PbErrorShm.set(heap.buf, h + H, "message_shm_handle", 0)
    with pytest.raises(BadHandle):
        scalars.read_error(heap, h)


@pytest.mark.parametrize("n", [SIZE // 8, 1 << 40])
def test_a_handle_array_past_the_heap_is_refused(heap, n):
    with pytest.raises(BadHandle):
        scalars.read_handles(heap, 64, n)


# ---- tensors ------------------------------------------------------------------------------------


def _tensor(heap):
    t = _raw()
    return tensors.write_tensor(heap, t.name, t.dtype, t.dims, t.data, Owned())


def _numeric():
    return {8: np.dtype(np.int32)}


def _name_offset(heap, h):
    ndims = L.TensorShm.get(heap.buf, h + H, "dims_count")
    return h + H + L.TensorShm.size + L.TENSOR_DIM * ndims


def _memory_offset(heap, h):
    n = _name_offset(heap, h)
    return n + L.StringShm.size + L.StringShm.get(heap.buf, n, "length")


def test_a_well_formed_tensor_reads_back(heap):
    h = _tensor(heap)
    assert tensors.read_tensor(heap, h).name == "IN"
    assert tensors.read_tensor_fast(heap.buf, heap.capacity, h, _numeric(), lambda *a: a)[0] == "IN"


@pytest.mark.parametrize("corrupt, error", [
    ("dims_count", ProtocolError),         # more dims than any tensor has
    ("name_length", BadHandle),           # a name running past the heap
    ("byte_size", BadHandle),             # data running past the heap
    ("memory", BadHandle),                # a standalone MemoryShm handle outside the heap
])
def test_a_corrupt_tensor_is_refused_and_the_fast_reader_declines_it(heap, corrupt, error):
    h = _tensor(heap)
    buf = heap.buf
    if corrupt == "dims_count":
        L.TensorShm.set(buf, h + H, "dims_count", tensors.MAX_DIMS + 1)
    elif corrupt == "name_length":
        L.StringShm.set(buf, _name_offset(heap, h), "length", SIZE)
    elif corrupt == "byte_size":
        L.MemoryShm.set(buf, _memory_offset(heap, h), "byte_size", SIZE)
    else:
        L.TensorShm.set(buf, h + H, "memory", SIZE + 16)
    with pytest.raises(error):
        tensors.read_tensor(heap, h)
    assert tensors.read_tensor_fast(buf, heap.capacity, h, _numeric(), lambda *a: a) is None


@pytest.mark.parametrize("handle", BAD_HANDLES)
def test_a_tensor_handle_outside_the_heap_is_refused(heap, handle):
    with pytest.raises(BadHandle):
        tensors.read_tensor(heap, handle)
    assert tensors.read_tensor_fast(heap.buf, heap.capacity, handle, _numeric(), lambda *a: a) is None


# ---- requests, batches, commands ----------------------------------------------------------------


def _request(heap):
    owned = Owned()
    r = RequestData(inputs=[_raw()], requested_output_names=["OUT"], request_id="r",
                    model_name="m", model_version=1)
    return requests.write_request(heap, r, owned), owned


@pytest.mark.parametrize("count", [1 << 20, 0xFFFFFFFF])
def test_a_batch_claiming_more_requests_than_fit_is_refused(heap, count):
    h, owned = _request(heap)
    batch = requests.write_request_batch(heap, [h], owned)
    L.RequestBatch.set(heap.buf, batch + H, "batch_size", count)
    with pytest.raises(BadHandle):
        requests.read_request_batch(heap, batch)


@pytest.mark.parametrize("field, value", [
    ("input_count", 1 << 30), ("requested_output_count", 1 << 30),
    ("model_name_shm_handle", SIZE + 8), ("request_id_shm_handle", 0),
    ("correlation_id_shm_handle", SIZE * 4), ("trace_shm_handle", SIZE * 4),
])
def test_a_request_with_a_corrupt_field_is_refused(heap, field, value):
    h, _ = _request(heap)
    L.InferRequestShm.set(heap.buf, h + H, field, value)
    with pytest.raises(TritonStubError) as e:
        requests.read_request(heap, h)
    assert isinstance(e.value, (BadHandle, ProtocolError)), e.value


def test_a_request_naming_a_bad_input_tensor_is_refused(heap):
    h, _ = _request(heap)
    n_out = L.InferRequestShm.get(heap.buf, h + H, "requested_output_count")
    # the handle table follows the struct: outputs' names first, then inputs
    scalars.write_handles(heap, h + H + L.InferRequestShm.size + 8 * n_out, [SIZE + 256])
    with pytest.raises(BadHandle):
        requests.read_request(heap, h)


@pytest.mark.parametrize("handle", BAD_HANDLES)
def test_a_command_handle_outside_the_heap_is_refused(heap, handle):
    with pytest.raises(BadHandle) as e:
        control.read_command(heap, handle)
    assert str(handle) in str(e.value) or "outside" in str(e.value)


@pytest.mark.parametrize("dims", [(5,), (-4,), (3,), (-1, -4), (2, 3), (1 << 62, 4)])
def test_a_tensor_whose_dims_do_not_fit_its_data_is_refused(heap, dims):
    """Four INT32s (16 bytes) under dims that need another size, or a negative dim: refused
    with a ProtocolError that names the tensor (not a numpy error); the fast reader declines."""
    data = np.arange(4, dtype=np.int32).reshape((4,) if len(dims) == 1 else (2, 2))
    h = tensors.write_tensor(heap, "IN", 8, data.shape, bytearray(data.tobytes()), Owned())
    for i, d in enumerate(dims):
        heap.buf[h + H + L.TensorShm.size + 8 * i:h + H + L.TensorShm.size + 8 * i + 8] = \
            int(d).to_bytes(8, "little", signed=True)
    with pytest.raises(ProtocolError, match="tensor 'IN'"):
        tensors.read_tensor(heap, h)
    assert tensors.read_tensor_fast(heap.buf, heap.capacity, h, _numeric(), lambda *a: a) is None
