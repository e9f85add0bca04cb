"""The Python surface a model sees: tritonstub.stub.c_python_backend_utils (+ runtime seam)."""
import asyncio
import calendar
import concurrent.futures
import ctypes
import gc
import json
import os
import re
import struct
import threading
import time
import weakref

import numpy as np
import pytest

from tritonstub.stub import c_python_backend_utils as pb
from tritonstub.stub import runtime as rtm
from tritonstub.stub.runtime import (
    MetricFamilyInfo,
    MetricInfo,
    NoRuntime,
    ResponseIteratorMap,
    Runtime,
    TritonModelException,
    current_runtime,
    format_stub_log_line,
    send_message_error_text,
    set_runtime,
)

TME = pb.TritonModelException
HERE = os.path.abspath(__file__)


def line_of(marker):
    with open(HERE) as f:
        for number, text in enumerate(f, 1):
            if text.rstrip().endswith("# <" + marker + ">"):
                return number
    raise AssertionError(marker)


# ================================================================================================
# A fake runtime that records every call
# ================================================================================================


class FakeRuntime(Runtime):
    def __init__(self):
        self.stub_name = "fake_0_0"
        self.initialized = True
        self.finalizing = False
        self.stub_to_parent_active = True
        self.calls = []
        self.errors = {}
        self.cancelled = False
        self.bls_result = None
        self.next_address = 1000
        self.values = {}
        self.background_futures = set()
        self.bls_iterators = ResponseIteratorMap()

    def _record(self, name, *args):
        self.calls.append((name,) + args)
        err = self.errors.get(name)
        if err is not None:
            raise TritonModelException(send_message_error_text(self.stub_name, err))

    def names(self):
        return [c[0] for c in self.calls]

    def _address(self):
        self.next_address += 8
        return self.next_address

    def log(self, filename, line, level, message):
        self.calls.append(("log", filename, line, level, message))

    def bls_exec(self, request, decoupled):
        self.calls.append(("bls_exec", request, decoupled))
        if isinstance(self.bls_result, Exception):
            raise self.bls_result
        return self.bls_result

    def bls_payload_cleanup(self, iterator_id):
        self.calls.append(("bls_payload_cleanup", iterator_id))
        self.bls_iterators.erase(iterator_id)

    def send_response(self, sender, response, flags):
        self.calls.append(("send_response", sender, response, flags))
        err = self.errors.get("send_response")
        if err is not None:
            raise TritonModelException(err)

    def factory_cleanup(self, factory_address):
        self.calls.append(("factory_cleanup", factory_address))

    def is_cancelled(self, request_address, factory_address):
        self.calls.append(("is_cancelled", request_address, factory_address))
        return self.cancelled

    def metric_family_new(self, family):
        self._record("metric_family_new", family)
        return self._address()

    def metric_family_delete(self, family):
        self._record("metric_family_delete", family)

    def metric_new(self, metric):
        self._record("metric_new", metric)
        return self._address()

    def metric_delete(self, metric):
        self._record("metric_delete", metric)

    def metric_value(self, metric):
        self._record("metric_value", metric)
        return self.values.get(metric.metric_address, 0.0)

    def metric_increment(self, metric, value):
        self._record("metric_increment", metric, value)
        self.values[metric.metric_address] = self.values.get(metric.metric_address, 0.0) + value

    def metric_set(self, metric, value):
        self._record("metric_set", metric, value)
        self.values[metric.metric_address] = value

    def metric_observe(self, metric, value):
        self._record("metric_observe", metric, value)

    def load_model(self, name, config, files):
        self._record("load_model", name, config, files)

    def unload_model(self, name, unload_dependents):
        self._record("unload_model", name, unload_dependents)

    def is_model_ready(self, name, version):
        self._record("is_model_ready", name, version)
        return True

    def free_memory(self):
        return 12345


@pytest.fixture
def rt():
    fake = FakeRuntime()
    previous = set_runtime(fake)
    yield fake
    set_runtime(previous)


@pytest.fixture(autouse=True)
def _restore_default_runtime():
    set_runtime(None)
    yield
    set_runtime(None)


def server_request(
    inputs=(),
    requested=("OUT",),
    decoupled=False,
    request_address=0x1000,
    factory_address=0x2000,
    **kw,
):
    return pb.InferenceRequest._from_server(
        request_id=kw.pop("request_id", "rid"),
        correlation_id=kw.pop("correlation_id", 0),
        inputs=list(inputs),
        requested_output_names=requested,
        model_name=kw.pop("model_name", "m"),
        request_address=request_address,
        response_factory_address=factory_address,
        is_decoupled=decoupled,
        **kw,
    )


# ================================================================================================
# Module surface
# ================================================================================================

SECTION6_DIR = (
    "COUNTER GAUGE HISTOGRAM InferenceRequest InferenceResponse InferenceResponseSender "
    "InferenceTrace Logger MemoryType Metric MetricFamily MetricKind PreferredMemory "
    "ResponseIterator SharedMemory TRITONSERVER_MEMORY_CPU TRITONSERVER_MEMORY_GPU Tensor "
    "TritonError TritonModelException async_event_future_done_callback is_model_ready "
    "load_model shared_memory unload_model"
).split()


def test_dir_has_every_section6_name():
    names = set(dir(pb))
    for name in SECTION6_DIR:
        assert name in names, name


def test_classes_live_in_c_python_backend_utils():
    for name in ("Tensor", "TritonError", "InferenceRequest", "InferenceResponse", "Logger",
                 "MetricFamily", "Metric", "InferenceResponseSender", "ResponseIterator"):
        assert getattr(pb, name).__module__ == "c_python_backend_utils"
    assert pb.TritonModelException.__module__ == "c_python_backend_utils"
    assert issubclass(pb.TritonModelException, Exception)
    assert pb.TritonModelException is TritonModelException
    assert repr(pb.Tensor("x", np.zeros(1))).startswith("<c_python_backend_utils.Tensor object at 0x")


def test_no_constructor_classes():
    for cls in (pb.InferenceResponseSender, pb.Metric, pb.Logger, pb.SharedMemory, pb.InferenceTrace):
        with pytest.raises(TypeError) as info:
            cls()
        assert str(info.value) == "c_python_backend_utils.%s: No constructor defined!" % cls.__name__


def test_pybind_objects_have_no_dynamic_attributes():
    t = pb.Tensor("x", np.zeros(1))
    with pytest.raises(AttributeError):
        t.foo = 1


# ================================================================================================
# Enums and TritonError
# ================================================================================================


def test_error_codes():
    expected = ["UNKNOWN", "INTERNAL", "NOT_FOUND", "INVALID_ARG", "UNAVAILABLE", "UNSUPPORTED",
                "ALREADY_EXISTS", "CANCELLED"]
    for value, name in enumerate(expected):
        code = getattr(pb.TritonError, name)
        assert int(code) == value
        assert code == value
        assert code.name == name and code.value == value
        assert repr(code) == "<__ErrorCode.%s: %d>" % (name, value)
        assert str(code) == "__ErrorCode." + name
        assert hash(code) == value
    enum_type = getattr(pb.TritonError, "__ErrorCode")
    assert enum_type.__name__ == "__ErrorCode"
    assert list(enum_type.__members__) == expected
    assert enum_type(4) is pb.TritonError.UNAVAILABLE
    assert repr(enum_type(9)) == "<__ErrorCode.???: 9>"
    assert pb.TritonError.INTERNAL != None  # noqa: E711
    assert [1, 2][pb.TritonError.INTERNAL] == 2


def test_triton_error():
    err = pb.TritonError("bad")
    assert err.message() == "bad"
    assert err.code() is pb.TritonError.INTERNAL
    err = pb.TritonError(message="m", code=pb.TritonError.NOT_FOUND)
    assert int(err.code()) == 2
    with pytest.raises(TypeError) as info:
        pb.TritonError(None)
    assert str(info.value) == (
        "__init__(): incompatible constructor arguments. The following argument types are supported:\n"
        "    1. c_python_backend_utils.TritonError(message: str, code: "
        "c_python_backend_utils.TritonError.__ErrorCode = <__ErrorCode.INTERNAL: 1>)\n\n"
        "Invoked with: None"
    )
    with pytest.raises(TypeError):
        pb.TritonError("x", 3)  # an int is not an __ErrorCode
    with pytest.raises(TypeError) as info:
        pb.TritonError("x", code=None)
    assert info.value.args[0].endswith("Invoked with: 'x'; kwargs: code=None")
    assert pb.TritonError._create("parent text", 5).code() is pb.TritonError.UNSUPPORTED


def test_other_enums():
    assert int(pb.TRITONSERVER_MEMORY_GPU) == 0 and int(pb.TRITONSERVER_MEMORY_CPU) == 1
    assert pb.MemoryType.TRITONSERVER_MEMORY_CPU is pb.TRITONSERVER_MEMORY_CPU
    assert repr(pb.TRITONSERVER_MEMORY_CPU) == "<MemoryType.TRITONSERVER_MEMORY_CPU: 1>"
    assert [int(k) for k in (pb.COUNTER, pb.GAUGE, pb.HISTOGRAM)] == [0, 1, 2]
    assert pb.MetricFamily.HISTOGRAM is pb.MetricKind.HISTOGRAM is pb.HISTOGRAM
    assert [int(x) for x in (pb.Logger.INFO, pb.Logger.WARNING, pb.Logger.ERROR, pb.Logger.VERBOSE)] == [0, 1, 2, 3]
    assert pb.Logger.LogLevel.VERBOSE is pb.Logger.VERBOSE
    assert repr(pb.Logger.WARNING) == "<LogLevel.WARNING: 1>"


def test_preferred_memory_and_trace():
    pm = pb.PreferredMemory(pb.TRITONSERVER_MEMORY_CPU)
    assert (pm._type, pm._device_id) == (1, 0)
    pm = pb.PreferredMemory(preferred_memory_type=pb.TRITONSERVER_MEMORY_GPU, preferred_device_id=3)
    assert (pm._type, pm._device_id) == (0, 3)
    with pytest.raises(TypeError):
        pb.PreferredMemory(1)
    assert pb.InferenceTrace._create(0, "").get_context() is None
    assert pb.InferenceTrace._create(7, "ctx").get_context() == "ctx"


# ================================================================================================
# Tensors: dtypes
# ================================================================================================

NUMERIC = [
    (np.bool_, 1), (np.uint8, 2), (np.uint16, 3), (np.uint32, 4), (np.uint64, 5), (np.int8, 6),
    (np.int16, 7), (np.int32, 8), (np.int64, 9), (np.float16, 10), (np.float32, 11), (np.float64, 12),
]
SHAPES = [(), (0,), (3,), (2, 3), (0, 3), (2, 0, 4), (1, 1, 5)]


def sample(np_type, shape):
    count = int(np.prod(shape)) if shape else 1
    values = (np.arange(count) % 7) - 2
    if np_type is np.bool_:
        return (values % 2 == 0).reshape(shape)
    return values.astype(np_type).reshape(shape)


@pytest.mark.parametrize("np_type,code", NUMERIC, ids=[c[0].__name__ for c in NUMERIC])
@pytest.mark.parametrize("shape", SHAPES, ids=[str(s) for s in SHAPES])
def test_numeric_round_trip(np_type, code, shape):
    arr = sample(np_type, shape)
    t = pb.Tensor("x", arr)
    assert t.name() == "x"
    assert t.as_numpy() is arr
    assert t.triton_dtype() == code and int(t.triton_dtype()) == code
    assert t.shape() == list(shape)
    assert t.is_cpu()
    assert bytes(t._payload()) == arr.tobytes()
    assert t._byte_size() == arr.nbytes
    back = pb.Tensor._from_raw("x", code, shape, bytes(t._payload()))
    out = back.as_numpy()
    assert out.dtype == np.dtype(np_type) and out.shape == shape
    assert np.array_equal(out, arr)
    assert out.flags.writeable and out.flags.c_contiguous
    assert back.as_numpy() is out
    assert back.triton_dtype() == code


def test_loaded_tensor_is_a_copy():
    raw = bytearray(np.arange(4, dtype=np.int32).tobytes())
    t = pb.Tensor._from_raw("in", 8, [4], raw)
    raw[0] = 99
    assert t.as_numpy()[0] == 0
    t.as_numpy()[1] = 5
    assert t.as_numpy()[1] == 5


def test_fp16_values():
    arr = np.array([1.5, -2.25, 65504.0], dtype=np.float16)
    t = pb.Tensor._from_raw("h", 10, [3], arr.tobytes())
    assert t.as_numpy().dtype == np.float16
    assert t.as_numpy().tolist() == [1.5, -2.25, 65504.0]


def test_triton_dtype_enum_is_int_like():
    dt = pb.Tensor("x", np.zeros(1, np.float32)).triton_dtype()
    assert dt == 11 and int(dt) == 11 and dt.name == "TRITONSERVER_TYPE_FP32"


def test_noncontiguous_array_is_made_contiguous():
    arr = np.arange(12, dtype=np.int32).reshape(3, 4).T
    t = pb.Tensor("x", arr)
    assert t.as_numpy() is not arr
    assert t.as_numpy().flags.c_contiguous
    assert np.array_equal(t.as_numpy(), arr)
    assert t.shape() == [4, 3]
    assert bytes(t._payload()) == np.ascontiguousarray(arr).tobytes()


def test_output_data_is_read_when_sent():
    arr = np.zeros(3, np.float32)
    t = pb.Tensor("x", arr)
    arr[1] = 7
    assert np.frombuffer(bytes(t._payload()), np.float32)[1] == 7


@pytest.mark.parametrize(
    "arr",
    [np.array(["a"]), np.zeros(2, np.complex64), np.zeros(2, dtype=">i4"), np.zeros(2, "V4"),
     np.zeros(2, "M8[s]")],
    ids=["unicode", "complex", "bigendian", "void", "datetime"],
)
def test_unsupported_numpy_dtypes(arr):
    with pytest.raises(TME) as info:
        pb.Tensor("x", arr)
    assert str(info.value) == "NumPy dtype is not supported."


def test_tensor_constructor_checks():
    with pytest.raises(TME) as info:
        pb.Tensor("", np.zeros(1))
    assert str(info.value) == "Tensor name cannot be an empty string."
    with pytest.raises(TypeError) as info:
        pb.Tensor("x", [1, 2])
    assert str(info.value) == (
        "__init__(): incompatible constructor arguments. The following argument types are supported:\n"
        "    1. c_python_backend_utils.Tensor(arg0: str, arg1: numpy.ndarray)\n\n"
        "Invoked with: 'x', [1, 2]"
    )
    with pytest.raises(TypeError):
        pb.Tensor(name="x", numpy_array=np.zeros(1))
    with pytest.raises(TypeError):
        pb.Tensor("x")
    with pytest.raises(TypeError):
        pb.Tensor(None, np.zeros(1))
    assert pb.Tensor(b"bytes-name", np.zeros(1)).name() == "bytes-name"


def test_bf16_tensor():
    raw = np.array([0x3F80, 0x4000, 0xC040, 0x0000], dtype="<u2").tobytes()  # 1, 2, -3, 0
    t = pb.Tensor._from_raw("b", 14, [2, 2], raw)
    assert t.triton_dtype() == 14
    assert t.shape() == [2, 2]
    with pytest.raises(TME) as info:
        t.as_numpy()
    assert str(info.value) == (
        "Tensor dtype is BF16 and cannot be converted to NumPy. Use to_dlpack() and from_dlpack() instead."
    )
    assert bytes(t._payload()) == raw


# ================================================================================================
# BYTES
# ================================================================================================


def wire(items):
    return b"".join(struct.pack("<I", len(x)) + x for x in items)


def test_bytes_tensor_object_array():
    arr = np.array([[b"ab", "c"], [1, b"\x00\x00"]], dtype=object)
    t = pb.Tensor("s", arr)
    assert t.triton_dtype() == 13
    assert t.as_numpy() is arr
    assert t._payload() == wire([b"ab", b"c", b"1", b"\x00\x00"])
    back = pb.Tensor._from_raw("s", 13, [2, 2], t._payload())
    out = back.as_numpy()
    assert out.dtype == object and out.shape == (2, 2)
    assert out.tolist() == [[b"ab", b"c"], [b"1", b"\x00\x00"]]
    assert all(type(x) is bytes for x in out.ravel())


def test_bytes_tensor_s_array_strips_trailing_nuls():
    arr = np.array([b"a\x00b", b"cd\x00"], dtype="S3")
    t = pb.Tensor("s", arr)
    assert t.triton_dtype() == 13
    assert t._payload() == wire([b"a\x00b", b"cd"])


def test_bytes_serialised_at_construction():
    arr = np.array([b"a"], dtype=object)
    t = pb.Tensor("s", arr)
    arr[0] = b"zzz"
    assert t._payload() == wire([b"a"])


def test_bytes_zero_size():
    t = pb.Tensor("s", np.zeros((0, 3), dtype=object))
    assert t._payload() == b"" and t._byte_size() == 0 and t.shape() == [0, 3]
    back = pb.Tensor._from_raw("s", 13, [0, 3], b"")
    assert back.as_numpy().shape == (0, 3) and back.as_numpy().dtype == object


def test_serialize_matches_reference_many_shapes():
    rng = np.random.default_rng(0)
    for count in (1, 5, 31, 32, 33, 200, 1000):
        for uniform in (False, True):
            lengths = [7] * count if uniform else rng.integers(0, 50, count).tolist()
            items = [bytes(rng.integers(0, 256, n, dtype=np.uint8)) for n in lengths]
            arr = np.empty(count, dtype=object)
            arr[:] = items
            data = pb.serialize_bytes(arr)
            assert data == wire(items)
            assert pb.deserialize_bytes(data).tolist() == items
            assert pb.deserialize_bytes(np.frombuffer(data, np.uint8)).tolist() == items
            assert pb.deserialize_bytes(memoryview(data), (count,)).tolist() == items


def test_deserialize_uniform_empty_items():
    data = wire([b""] * 100)
    out = pb.deserialize_bytes(data, (10, 10))
    assert out.shape == (10, 10) and out.ravel().tolist() == [b""] * 100


def test_deserialize_errors():
    with pytest.raises(struct.error):
        pb.deserialize_bytes(b"\x05\x00\x00\x00ab")
    with pytest.raises(struct.error):
        pb.deserialize_bytes(wire([b"ab"]) + b"\x01")
    with pytest.raises(ValueError):
        pb.deserialize_bytes(wire([b"a", b"b", b"c"]), (2,))


def test_dtype_table():
    assert [row[0] for row in pb.TRITON_DTYPES] == list(range(1, 15))
    assert pb.triton_to_numpy_dtype(11) == np.float32
    assert pb.triton_to_numpy_dtype(14) is None
    assert pb.numpy_to_triton_dtype(np.dtype("S5")) == 13
    assert pb.numpy_to_triton_dtype(np.dtype(np.intc)) == 8
    with pytest.raises(TME):
        pb.numpy_to_triton_dtype(np.dtype("<U2"))


# ================================================================================================
# DLPack
# ================================================================================================


def capsule_name(capsule):
    get_name = ctypes.PYFUNCTYPE(ctypes.c_char_p, ctypes.py_object)(("PyCapsule_GetName", ctypes.pythonapi))
    return get_name(capsule)


def capsule_dltensor(capsule):
    get_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
        ("PyCapsule_GetPointer", ctypes.pythonapi)
    )
    return pb._DLManagedTensor.from_address(get_pointer(capsule, capsule_name(capsule))).dl_tensor


@pytest.mark.parametrize("np_type,code", NUMERIC, ids=[c[0].__name__ for c in NUMERIC])
def test_dlpack_numpy_round_trip(np_type, code):
    arr = sample(np_type, (2, 3))
    t = pb.Tensor("x", arr)
    assert t.__dlpack_device__() == (1, 0)
    out = np.from_dlpack(t)
    assert out.dtype == arr.dtype and np.array_equal(out, arr)
    assert np.shares_memory(out, arr)
    back = pb.Tensor.from_dlpack("y", arr)
    assert back.name() == "y" and back.triton_dtype() == code and back.shape() == [2, 3]
    assert np.array_equal(back.as_numpy(), arr)
    assert not np.shares_memory(back.as_numpy(), arr)  # C++: as_numpy() is a copy
    assert bytes(back._payload()) == arr.tobytes()


def test_dlpack_zero_size_and_scalar():
    for arr in (np.zeros((0, 3), np.float32), np.array(3.5, np.float64)):
        t = pb.Tensor("x", arr)
        assert np.from_dlpack(t).shape == arr.shape
        back = pb.Tensor.from_dlpack("y", arr)
        assert back.shape() == list(arr.shape) and np.array_equal(back.as_numpy(), arr)


def test_dlpack_export_lifetime():
    arr = np.arange(4, dtype=np.int32)
    t = pb.Tensor("x", arr)
    cap = t.to_dlpack()
    assert capsule_name(cap) == b"dltensor"
    assert len(pb._exports) == 1
    del cap
    gc.collect()
    assert len(pb._exports) == 0
    out = np.from_dlpack(t)
    ref = weakref.ref(t)
    del t
    gc.collect()
    assert ref() is not None  # the consumer keeps the tensor alive
    assert out.tolist() == [0, 1, 2, 3]
    del out
    gc.collect()
    assert ref() is None and len(pb._exports) == 0


def test_dlpack_import_lifetime_and_capsule_rename():
    src = np.arange(6, dtype=np.float32)
    ref = weakref.ref(src)
    cap = src.__dlpack__()
    t = pb.Tensor.from_dlpack("x", cap)
    assert capsule_name(cap) == b"used_dltensor"
    del src, cap
    gc.collect()
    assert ref() is not None  # the producer's memory lives while the tensor does
    assert np.frombuffer(bytes(t._payload()), np.float32).tolist() == [0, 1, 2, 3, 4, 5]
    del t
    gc.collect()
    assert ref() is None  # deleter ran


def test_dlpack_without_cpythons_c_api_says_what_to_do(monkeypatch):
    """PyPy has no ctypes.pythonapi: the stub runs there without DLPack, and says so."""
    from tritonstub.stub.c_python_backend_utils import dlpack
    monkeypatch.setattr(dlpack, "_capi", None)
    arr = np.arange(3, dtype=np.float32)
    for attempt in (lambda: pb.Tensor("x", arr).to_dlpack(),
                    lambda: pb.Tensor.from_dlpack("y", arr),
                    lambda: pb.Tensor.from_dlpack("y", arr.__dlpack__())):
        with pytest.raises(TME, match="DLPack is not available.*run the stub on CPython"):
            attempt()
    assert pb.Tensor("x", arr).as_numpy().tolist() == [0.0, 1.0, 2.0]


def test_dlpack_used_capsule_refused():
    cap = np.arange(3).__dlpack__()
    pb.Tensor.from_dlpack("x", cap)
    with pytest.raises(TME):
        pb.Tensor.from_dlpack("x", cap)


def test_dlpack_bf16_round_trip():
    raw = np.array([0x3F80, 0x4000, 0xC040, 0x7F80, 0, 1], dtype="<u2").tobytes()
    t = pb.Tensor._from_raw("b", 14, [2, 3], raw)
    cap = t.to_dlpack()
    dl = capsule_dltensor(cap)
    assert (dl.dtype.code, dl.dtype.bits, dl.dtype.lanes) == (4, 16, 1)
    assert (dl.device.device_type, dl.device.device_id, dl.ndim) == (1, 0, 2)
    back = pb.Tensor.from_dlpack("c", cap)
    assert capsule_name(cap) == b"used_dltensor"
    assert back.triton_dtype() == 14 and back.shape() == [2, 3]
    assert bytes(back._payload()) == raw
    with pytest.raises(TME):
        back.as_numpy()
    again = pb.Tensor.from_dlpack("d", back)  # through __dlpack__/__dlpack_device__
    assert bytes(again._payload()) == raw


def test_dlpack_errors():
    with pytest.raises(TME) as info:
        pb.Tensor.from_dlpack("x", np.arange(12).reshape(3, 4).T)
    assert str(info.value) == (
        "DLPack tensor is not contiguous. Only contiguous DLPack tensors that are stored in C-Order are supported."
    )
    with pytest.raises(TME):  # C++ misses the outermost dimension; we do not
        pb.Tensor.from_dlpack("x", np.arange(10)[::2])
    ok = pb.Tensor.from_dlpack("x", np.arange(8).reshape(2, 4)[:1])
    assert ok.shape() == [1, 4]
    with pytest.raises(TME) as info:
        pb.Tensor.from_dlpack("x", object())
    assert str(info.value) == (
        "Provided tensor is not supported. Tensor must be a DLPack capsule         "
        "or have `__dlpack__` and `__dlpack_device__` attributes"
    )
    with pytest.raises(TME) as info:
        pb.Tensor.from_dlpack("", np.zeros(1))
    assert str(info.value) == "Tensor name cannot be an empty string."
    with pytest.raises(TME) as info:
        pb.Tensor("s", np.array([b"a"], dtype=object)).to_dlpack()
    assert str(info.value) == "DLPack does not have support for string tensors."

    class Gpu:
        def __dlpack__(self, stream=None):
            raise AssertionError

        def __dlpack_device__(self):
            return (2, 0)

    with pytest.raises(TME) as info:
        pb.Tensor.from_dlpack("x", Gpu())
    assert str(info.value) == "GPU tensors are not supported by tritonstub yet"

    class Weird(Gpu):
        def __dlpack_device__(self):
            return (7, 0)

    with pytest.raises(TME) as info:
        pb.Tensor.from_dlpack("x", Weird())
    assert str(info.value) == "DLDevice type 7 is not support by Python backend."


def test_dlpack_dunder_signature():
    t = pb.Tensor("x", np.zeros(2))
    assert capsule_name(t.__dlpack__(stream=None)) == b"dltensor"
    assert capsule_name(t.__dlpack__(None)) == b"dltensor"
    with pytest.raises(TypeError):
        t.__dlpack__(max_version=(1, 0))


# ================================================================================================
# InferenceRequest
# ================================================================================================


def test_request_constructor_and_accessors():
    t = pb.Tensor("IN", np.zeros(2, np.float32))
    req = pb.InferenceRequest(
        model_name="other", inputs=[t], requested_output_names=["B", "A", "B"],
        parameters={"k": 1, "s": "v", "b": True}, correlation_id="seq-1", request_id="r1",
        flags=1, timeout=500,
    )
    assert req.inputs() == [t] and req.inputs()[0] is t and req.inputs() is not req.inputs()
    assert req.requested_output_names() == {"A", "B"}
    assert isinstance(req.requested_output_names(), set)
    assert req._requested_output_names == ("A", "B")
    assert req.parameters() == json.dumps({"k": 1, "s": "v", "b": True})
    assert req.correlation_id() == "seq-1"
    assert req.request_id() == "r1"
    assert req.flags() == 1
    req.set_flags(2)
    assert req.flags() == 2
    assert req.timeout() == 500
    assert req.trace().get_context() is None
    assert req._model_name == "other" and req._model_version == -1
    assert req._preferred_memory._type == 2
    assert req.get_response_sender() is req.get_response_sender()
    defaults = pb.InferenceRequest(model_name="m", inputs=[], requested_output_names=[])
    assert defaults.parameters() == "{}" and defaults.correlation_id() == 0 and defaults.request_id() == ""


def test_request_positional():
    t = pb.Tensor("IN", np.zeros(1))
    req = pb.InferenceRequest("id", 5, [t], ["O"], "m", 3)
    assert req.correlation_id() == 5 and req._model_version == 3


def test_request_validation_texts():
    t = pb.Tensor("IN", np.zeros(1))
    base = dict(model_name="m", inputs=[t], requested_output_names=["O"])
    cases = [
        (dict(parameters={"a": 1.5}), "Expect parameters values to have type bool/int/str, found type <class 'float'>"),
        (dict(parameters={1: 1}), "Expect parameters keys to have type str, found type <class 'int'>"),
        (dict(parameters=[1]), "Expect N8pybind114dictE, got <class 'list'>"),
        (dict(correlation_id=1.5), "Correlation ID must be integer or string"),
        (dict(inputs=[t, None], request_id="q"),
         "Input tensor for request with id 'q' and model name 'm' should not be empty."),
        (dict(requested_output_names=["O", ""]),
         "Requested output name for request with id '' and model name 'm' should not be empty."),
    ]
    for extra, text in cases:
        kwargs = dict(base)
        kwargs.update(extra)
        with pytest.raises(TME) as info:
            pb.InferenceRequest(**kwargs)
        assert str(info.value) == text
    with pytest.raises(RuntimeError):
        pb.InferenceRequest(correlation_id=-1, **base)
    for bad in (dict(requested_output_names={"O"}), dict(model_name=None), dict(flags=-1),
                dict(timeout=1.0), dict(correlation_id=None), dict(inputs=[1]),
                dict(model_version=1.0)):
        kwargs = dict(base)
        kwargs.update(bad)
        with pytest.raises(TypeError) as info:
            pb.InferenceRequest(**kwargs)
        assert info.value.args[0].startswith("__init__(): incompatible constructor arguments.")
    with pytest.raises(TypeError):
        pb.InferenceRequest(model_name="m", inputs=[t])


def test_server_request_fields():
    setter_calls = []
    trace = pb.InferenceTrace._create(0xABC, "tctx")
    req = server_request(
        correlation_id=7, flags=3, timeout=9, trace=trace, parameters='{"x": 1}',
        release_flags_setter=setter_calls.append,
    )
    assert req.correlation_id() == 7 and req.flags() == 3 and req.timeout() == 9
    assert req.trace() is trace and req.trace().get_context() == "tctx"
    assert req.parameters() == '{"x": 1}'
    assert req._release_flags == 1
    req.set_release_flags(2)
    assert req._release_flags == 2 and setter_calls == [2]
    with pytest.raises(TypeError):
        req.set_release_flags(flags=2)
    with pytest.raises(TypeError):
        req.set_release_flags(-1)


def test_stub_built_request_set_release_flags():
    req = pb.InferenceRequest(model_name="m", inputs=[], requested_output_names=[])
    req.set_release_flags(2)
    assert req._release_flags == 2


# ================================================================================================
# BLS
# ================================================================================================


def test_bls_refused_outside_execute():
    req = pb.InferenceRequest(model_name="m", inputs=[], requested_output_names=[])
    with pytest.raises(TME) as info:
        req.exec()
    assert str(info.value) == "BLS is only supported during the 'execute' function."


def test_bls_refused_while_finalizing(rt):
    rt.finalizing = True
    req = pb.InferenceRequest(model_name="m", inputs=[], requested_output_names=[])
    with pytest.raises(TME):
        req.exec()
    rt.finalizing = False
    rt.initialized = False
    with pytest.raises(TME):
        req.exec(decoupled=True)


def test_bls_exec(rt):
    out = pb.Tensor("OUT", np.ones(2))
    rt.bls_result = pb.InferenceResponse._from_parent([out])
    req = pb.InferenceRequest(model_name="m", inputs=[], requested_output_names=["OUT"])
    resp = req.exec()
    assert resp is rt.bls_result
    assert rt.calls[-1] == ("bls_exec", req, False)
    with pytest.raises(TypeError):
        req.exec(decoupled=None)
    with pytest.raises(TypeError):
        req.exec(decoupled="yes")
    assert req.exec(0) is rt.bls_result
    assert isinstance(req.exec(1), pb.ResponseIterator)


def test_bls_exec_error_becomes_error_response(rt):
    rt.bls_result = TritonModelException("local failure")
    req = pb.InferenceRequest(model_name="m", inputs=[], requested_output_names=[])
    resp = req.exec()
    assert resp.has_error()
    assert resp.error().message() == "local failure"
    assert resp.error().code() == pb.TritonError.INTERNAL
    assert resp.output_tensors() == []


def test_bls_async_exec(rt):
    rt.bls_result = pb.InferenceResponse._from_parent([])
    req = pb.InferenceRequest(model_name="m", inputs=[], requested_output_names=[])

    async def main():
        fut = req.async_exec()
        return await fut

    assert asyncio.run(main()) is rt.bls_result
    with pytest.raises(RuntimeError):
        req.async_exec()

    rt.initialized = False

    async def refused():
        return await req.async_exec()

    with pytest.raises(TME):
        asyncio.run(refused())


def test_bls_decoupled_iterator(rt):
    first = pb.InferenceResponse._from_parent([pb.Tensor("O", np.zeros(1))], None, False, 77)
    last = pb.InferenceResponse._from_parent([], None, True, 77)
    rt.bls_result = first
    req = pb.InferenceRequest(model_name="m", inputs=[], requested_output_names=[])
    it = req.exec(decoupled=True)
    assert isinstance(it, pb.ResponseIterator)
    assert len(rt.bls_iterators) == 1

    def later():
        time.sleep(0.05)
        rt.bls_iterators.enqueue(last)

    thread = threading.Thread(target=later)
    thread.start()
    assert list(it) == [first, last]
    thread.join()
    assert [c for c in rt.calls if c[0] == "bls_payload_cleanup"] == [("bls_payload_cleanup", 77)]
    assert len(rt.bls_iterators) == 0
    assert list(it) == [first, last]  # iterating again starts over
    with pytest.raises(StopIteration) as info:
        next(it)
    assert str(info.value) == "Iteration is done for the responses."


def test_bls_decoupled_runtime_may_return_iterator(rt):
    resp = pb.InferenceResponse._from_parent([], None, True, 5)
    rt.bls_result = pb.ResponseIterator(resp)
    req = pb.InferenceRequest(model_name="m", inputs=[], requested_output_names=[])
    assert req.exec(decoupled=True) is rt.bls_result


def test_bls_decoupled_error_response_is_last(rt):
    rt.bls_result = TritonModelException("nope")
    req = pb.InferenceRequest(model_name="m", inputs=[], requested_output_names=[])
    responses = list(req.exec(decoupled=True))
    assert len(responses) == 1 and responses[0].error().message() == "nope"


def test_response_iterator_map_rebuilds():
    registry = ResponseIteratorMap()
    a = pb.InferenceResponse._from_parent([], None, False, 9)
    b = pb.InferenceResponse._from_parent([], None, True, 9)
    registry.enqueue(b)  # a later response arrives before exec() returned
    it = registry.get_response_iterator(a)
    assert list(it) == [a, b]


def _stream_error(stale_id):
    return pb.InferenceResponse._from_parent([], pb.TritonError._create("late failure", 1), True, stale_id)


def test_unmatched_error_response_goes_to_the_only_open_stream():
    """The parent leaves ResponseShm.id unset on error responses: such a response whose id
    matches no stream ends the one stream still open."""
    registry = ResponseIteratorMap()
    first = pb.InferenceResponse._from_parent([], None, False, 7)
    done = pb.InferenceResponse._from_parent([], None, True, 8)
    it = registry.get_response_iterator(first)
    registry.get_response_iterator(done)              # a finished stream does not compete
    assert registry.enqueue(_stream_error(0xDEADBEEF)) is None
    got = list(it)
    assert got[0] is first and got[1].error().message() == "late failure" and len(got) == 2


def test_an_error_response_that_overtakes_the_first_response_ends_that_stream():
    """The callee's responses do not wait for the caller: a stream's error response (no id) can
    reach the monitor thread before exec(decoupled=True) has read its first response. While that
    stream is starting it is kept for it, not dropped as unroutable (a caller would wait for
    ever; seen in a full-suite run of test_bls.py's raise_after_sends hazard)."""
    registry = ResponseIteratorMap()
    registry.begin_stream()
    assert registry.enqueue(_stream_error(0)) is None      # no stream open yet: kept
    first = pb.InferenceResponse._from_parent([], None, False, 5)
    got = list(registry.get_response_iterator(first))
    assert got[0] is first and got[1].error().message() == "late failure" and len(got) == 2


def test_an_early_error_response_is_not_kept_when_no_stream_is_starting():
    registry = ResponseIteratorMap()
    warning = registry.enqueue(_stream_error(0))
    assert "0 streams are open" in warning
    registry.begin_stream()
    assert registry.abandon_stream() == []                 # the exec failed: nothing was kept
    first = pb.InferenceResponse._from_parent([], None, True, 6)
    assert list(registry.get_response_iterator(first)) == [first]


def test_unmatched_error_response_with_several_open_streams():
    registry = ResponseIteratorMap()
    its = [registry.get_response_iterator(pb.InferenceResponse._from_parent([], None, False, i))
           for i in (1, 2)]
    # Nobody is waiting on either: it cannot be routed; it is kept under its stale id (as C++).
    warning = registry.enqueue(_stream_error(99))
    assert "2 streams are open" in warning and "late failure" in warning
    assert len(registry) == 3
    # The second stream's consumer waits for its next response: that one gets the next error.
    next(its[1])
    got = []
    waiter = threading.Thread(target=lambda: got.append(next(its[1])))
    waiter.start()
    deadline = time.monotonic() + 5
    while not its[1]._is_waiting() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert registry.enqueue(_stream_error(12345)) is None
    waiter.join(5)
    assert got and got[0].error().message() == "late failure"
    assert not its[0]._is_waiting() and its[0]._open()
    # End the first stream (a dropped open iterator waits for its stream's end, as in C++).
    registry.enqueue(pb.InferenceResponse._from_parent([], None, True, 1))
    assert len(list(its[0])) == 2


def test_user_built_response_iterator():
    resp = pb.InferenceResponse([pb.Tensor("x", np.zeros(1))])
    it = pb.ResponseIterator(resp)
    assert list(it) == [resp]
    with pytest.raises(TypeError):
        pb.ResponseIterator(None)


# ================================================================================================
# InferenceResponse
# ================================================================================================


def test_inference_response():
    t = pb.Tensor("x", np.zeros(1))
    r = pb.InferenceResponse([t])
    assert r.output_tensors() == [t] and not r.has_error() and r.error() is None
    assert r.output_tensors() is not r.output_tensors()
    r = pb.InferenceResponse(output_tensors=(t,), error=pb.TritonError("e", pb.TritonError.NOT_FOUND))
    assert r.has_error() and r.error().code() == 2
    assert pb.InferenceResponse().output_tensors() == []
    with pytest.raises(TME) as info:
        pb.InferenceResponse([t, None])
    assert str(info.value) == "Output tensor for inference response should not be empty."
    for bad in ((t,), None, 1):
        with pytest.raises(TypeError):
            pb.InferenceResponse(bad if bad != (t,) else (x for x in [t]))
    with pytest.raises(TypeError):
        pb.InferenceResponse([], error="text")
    a = pb.InferenceResponse()
    a._outputs.append(t)
    assert pb.InferenceResponse().output_tensors() == []  # no shared default list


def test_prune():
    a, b = pb.Tensor("A", np.zeros(1)), pb.Tensor("B", np.zeros(1))
    r = pb.InferenceResponse([a, b])
    r._prune({"B"})
    assert r.output_tensors() == [b]


# ================================================================================================
# InferenceResponseSender
# ================================================================================================


def test_sender_flag_checks(rt):
    sender = server_request(decoupled=True).get_response_sender()
    with pytest.raises(TME) as info:
        sender.send(pb.InferenceResponse(), flags=2)
    assert str(info.value) == "Unable to send response. Unsupported flag provided."
    with pytest.raises(TME) as info:
        sender.send()
    assert str(info.value) == (
        "Inference Response object must be provided when the response flags is set to zero."
    )
    with pytest.raises(TypeError):
        sender.send(pb.InferenceResponse(), flags=-1)
    with pytest.raises(TypeError):
        sender.send("not a response")


def test_sender_non_decoupled(rt):
    sender = server_request(decoupled=False).get_response_sender()
    with pytest.raises(TME) as info:
        sender.send(flags=1)
    assert str(info.value) == (
        "Unable to send response. Non-decoupled model cannot send complete final before sending a response."
    )
    r = pb.InferenceResponse()
    sender.send(r)
    with pytest.raises(TME) as info:
        sender.send(pb.InferenceResponse())
    assert str(info.value) == "Unable to send response. Non-decoupled model cannot send more than one response."
    sender.send(flags=1)
    with pytest.raises(TME) as info:
        sender.send(flags=1)
    assert str(info.value) == "Unable to send response. Response sender has been closed."
    sends = [c for c in rt.calls if c[0] == "send_response"]
    assert [(c[2], c[3]) for c in sends] == [(r, 0), (None, 1)]
    assert sender._is_closed() and sender._responses_sent() == 2


def test_sender_decoupled(rt):
    req = server_request(decoupled=lambda: True, requested=("A",))
    sender = req.get_response_sender()
    a, b = pb.Tensor("A", np.zeros(1)), pb.Tensor("B", np.zeros(1))
    r1 = pb.InferenceResponse([a, b])
    sender.send(r1)
    assert r1.output_tensors() == [a]  # pruned in place
    sender.send(pb.InferenceResponse())
    sender.send(pb.InferenceResponse(), flags=1)
    with pytest.raises(TME) as info:
        sender.send(pb.InferenceResponse())
    assert str(info.value) == "Unable to send response. Response sender has been closed."
    assert [c[0] for c in rt.calls] == ["send_response"] * 3
    assert rt.calls[0][1] is sender
    assert (sender._request_address, sender._factory_address) == (0x1000, 0x2000)


def test_sender_of_stub_built_request(rt):
    sender = pb.InferenceRequest(model_name="m", inputs=[], requested_output_names=[]).get_response_sender()
    with pytest.raises(TME) as info:
        sender.send(pb.InferenceResponse())
    assert str(info.value) == (
        "Unable to send response. Response sender has no reference to the decoupled state of the model."
    )


def test_sender_runtime_error_propagates(rt):
    rt.errors["send_response"] = "parent said no"
    sender = server_request(decoupled=True).get_response_sender()
    with pytest.raises(TME) as info:
        sender.send(pb.InferenceResponse())
    assert str(info.value) == "parent said no"


def test_sender_factory_cleanup_on_delete(rt):
    req = server_request(decoupled=True, factory_address=0x55)
    del req
    gc.collect()
    assert ("factory_cleanup", 0x55) in rt.calls

    rt.calls.clear()
    req = server_request(decoupled=True, factory_address=0x56)
    sender = req.get_response_sender()
    sender.send(flags=1)
    del req, sender
    gc.collect()
    assert ("factory_cleanup", 0x56) not in rt.calls

    rt.calls.clear()
    req = server_request(decoupled=False, factory_address=0x57)
    req.get_response_sender()._update_state(pb.InferenceResponse(), 1)  # returned from execute
    del req
    gc.collect()
    assert rt.calls == []

    req = server_request(decoupled=False, factory_address=0x58)
    req.get_response_sender()._close()  # execute raised
    del req
    gc.collect()
    assert rt.calls == []

    req = pb.InferenceRequest(model_name="m", inputs=[], requested_output_names=[])
    del req
    gc.collect()
    assert rt.calls == []


# ================================================================================================
# Cancellation
# ================================================================================================


def test_cancellation(rt):
    req = server_request(request_address=0x10, factory_address=0x20)
    sender = req.get_response_sender()
    assert req.is_cancelled() is False
    assert rt.calls[-1] == ("is_cancelled", 0x10, 0x20)
    rt.cancelled = True
    assert sender.is_cancelled() is True
    rt.cancelled = False
    count = len(rt.calls)
    assert req.is_cancelled() is True  # cached, shared with the sender
    assert len(rt.calls) == count


def test_cancellation_of_stub_built_request_is_local(rt):
    req = pb.InferenceRequest(model_name="m", inputs=[], requested_output_names=[])
    assert req.is_cancelled() is False
    assert rt.calls == []


def test_cancellation_without_worker(rt):
    rt.stub_to_parent_active = False
    req = server_request()
    assert req.is_cancelled() is False
    assert rt.calls == [("log", "pb_cancel.cc", 72, 2, "Cannot communicate with parent service")]


# ================================================================================================
# Logger
# ================================================================================================


def test_logger_uses_caller_file_and_line(rt):
    pb.Logger.log_info("info msg")  # <log-info>
    pb.Logger.log("warn msg", pb.Logger.WARNING)  # <log-warn>
    pb.Logger.log(message="err msg", level=pb.Logger.ERROR)  # <log-error>
    pb.Logger.log_verbose("v")  # <log-verbose>
    pb.Logger.log_warn("w")
    pb.Logger.log_error("e")
    pb.Logger.log("default level")
    code_file = test_logger_uses_caller_file_and_line.__code__.co_filename
    assert rt.calls[0] == ("log", code_file, line_of("log-info"), 0, "info msg")
    assert rt.calls[1] == ("log", code_file, line_of("log-warn"), 1, "warn msg")
    assert rt.calls[2] == ("log", code_file, line_of("log-error"), 2, "err msg")
    assert rt.calls[3] == ("log", code_file, line_of("log-verbose"), 3, "v")
    assert [c[3] for c in rt.calls[4:]] == [1, 2, 0]
    with pytest.raises(TypeError):
        pb.Logger.log("x", 1)
    with pytest.raises(TypeError):
        pb.Logger.log_info(None)


def test_logger_stub_local_stderr(capfd):
    pb.Logger.log_info("hello there")  # <stderr-info>
    pb.Logger.log_verbose("verbose")
    pb.Logger.log_warn("careful")
    pb.Logger.log_error("bad")
    err = capfd.readouterr().err.splitlines()
    pattern = r"^%s\d{4} \d\d:\d\d:\d\d\.\d{6} %d test_pb_api\.py:(\d+)\]  %s$"
    m = re.match(pattern % ("I", os.getpid(), "hello there"), err[0])
    assert m and int(m.group(1)) == line_of("stderr-info")
    assert re.match(pattern % ("I", os.getpid(), "verbose"), err[1])
    assert re.match(pattern % ("W", os.getpid(), "careful"), err[2])
    assert re.match(pattern % ("E", os.getpid(), "bad"), err[3])


def test_stub_log_line_format():
    now = calendar.timegm((2026, 3, 4, 5, 6, 7)) * 10**9 + 123456789
    assert format_stub_log_line(0, "/m/x/1/model.py", 14, "msg", pid=42, now_ns=now) == (
        "I0304 05:06:07.123456 42 model.py:14]  msg\n"
    )
    assert format_stub_log_line(3, "pb_stub.cc", 1, "v", pid=1, now_ns=now).startswith("I0304")
    assert format_stub_log_line(1, "a", 1, "", pid=1, now_ns=now).startswith("W")
    assert format_stub_log_line(2, "a", 1, "", pid=1, now_ns=now).startswith("E")


# ================================================================================================
# Custom metrics
# ================================================================================================


def test_metric_family_and_metrics(rt):
    fam = pb.MetricFamily("requests", "desc", pb.MetricFamily.COUNTER)
    assert rt.names() == ["metric_family_new"]  # once (C++ twice)
    fam_addr = fam._address
    assert rt.calls[0][1] == MetricFamilyInfo("requests", "desc", 0, 0)
    m = fam.Metric(labels={"model": "m", "v": "1"})
    assert rt.calls[-1] == ("metric_new", MetricInfo(0, fam_addr, '{"model": "m", "v": "1"}', None))
    m.increment(2)
    m.increment(0.5)
    assert rt.calls[-1] == ("metric_increment", MetricInfo(m._address, fam_addr, '{"model": "m", "v": "1"}', None), 0.5)
    assert m.value() == 2.5
    m.set(4)
    m.observe(1.0)
    with pytest.raises(TypeError):
        m.increment("1")
    plain = fam.Metric()
    assert rt.calls[-1][1].labels == "null"
    rt.calls.clear()
    del fam
    gc.collect()
    assert rt.names() == ["metric_delete", "metric_delete", "metric_family_delete"]
    assert rt.calls[-1][1] == MetricFamilyInfo("requests", "desc", 0, fam_addr)
    with pytest.raises(TME) as info:
        m.increment(1)
    assert str(info.value) == (
        "Failed to increment metric value: Invalid metric operation as the corresponding 'MetricFamily' "
        "has been deleted. The 'MetricFamily' object should be deleted AFTER its corresponding 'Metric' "
        "objects have been deleted."
    )
    with pytest.raises(TME) as info:
        plain.value()
    assert str(info.value).startswith("Failed to get metric value: Invalid metric operation")
    rt.calls.clear()
    del m, plain
    gc.collect()
    assert rt.calls == []  # already deleted with their family


def test_metric_checks(rt):
    counter = pb.MetricFamily("c", "d", pb.COUNTER)
    hist = pb.MetricFamily("h", "d", pb.HISTOGRAM)
    cases = [
        (lambda: counter.Metric(labels=[1]), "Failed to create metric. Labels must be a dictionary."),
        (lambda: counter.Metric(buckets=(1.0,)), "Failed to create metric. Buckets must be a list."),
        (lambda: counter.Metric(buckets=[1.0]), "Failed to create metric. Unexpected buckets found."),
        (lambda: hist.Metric(), "Failed to create metric. Missing required buckets."),
    ]
    for make, text in cases:
        with pytest.raises(TME) as info:
            make()
        assert str(info.value) == text
    h = hist.Metric(labels={"a": "b"}, buckets=[0.1, 1, 10])
    assert rt.calls[-1][1].buckets == [0.1, 1.0, 10.0]
    h.observe(0.5)
    with pytest.raises(RuntimeError):
        hist.Metric(buckets=["x"])
    with pytest.raises(TypeError):
        pb.MetricFamily("n", "d", 0)
    with pytest.raises(TypeError):
        pb.MetricFamily(None, "d", pb.GAUGE)


def test_metric_parent_errors(rt):
    rt.errors["metric_family_new"] = "Family name already exists with different type"
    with pytest.raises(TME) as info:
        pb.MetricFamily("x", "d", pb.GAUGE)
    assert str(info.value) == (
        "Error when creating MetricFamily: Failed to process the request for model 'fake_0_0', "
        "message: Family name already exists with different type"
    )
    del rt.errors["metric_family_new"]
    fam = pb.MetricFamily("x", "d", pb.GAUGE)
    rt.errors["metric_new"] = "bad labels"
    with pytest.raises(TME) as info:
        fam.Metric(labels={"a": 1})
    assert str(info.value) == (
        "Error when creating Metric: Failed to process the request for model 'fake_0_0', message: bad labels"
    )
    del rt.errors["metric_new"]
    m = fam.Metric()
    for op, prefix, call in (
        ("metric_increment", "Failed to increment metric value: ", lambda: m.increment(1)),
        ("metric_set", "Failed to set metric value: ", lambda: m.set(1)),
        ("metric_observe", "Failed to observe metric value: ", lambda: m.observe(1)),
        ("metric_value", "Failed to get metric value: ", lambda: m.value()),
    ):
        rt.errors[op] = "nope"
        with pytest.raises(TME) as info:
            call()
        assert str(info.value) == prefix + "Failed to process the request for model 'fake_0_0', message: nope"
        del rt.errors[op]


def test_metric_delete_errors_go_to_stderr(rt, capfd):
    fam = pb.MetricFamily("x", "d", pb.GAUGE)
    fam.Metric()
    rt.errors["metric_delete"] = "m gone"
    rt.errors["metric_family_delete"] = "f gone"
    del fam
    gc.collect()
    err = capfd.readouterr().err
    assert "Error when deleting Metric: Failed to process the request for model 'fake_0_0', message: m gone\n" in err
    assert "Error when deleting MetricFamily: Failed to process the request for model 'fake_0_0', message: f gone\n" in err


def test_metrics_without_parent():
    with pytest.raises(TME) as info:
        pb.MetricFamily("x", "d", pb.GAUGE)
    assert str(info.value) == (
        "Error when creating MetricFamily: Failed to process the request for model '', "
        "message: Cannot communicate with parent service"
    )


# ================================================================================================
# Model control, shared memory, background futures
# ================================================================================================


def test_model_control(rt):
    pb.load_model("a")
    pb.load_model(model_name="b", config='{"backend": "python"}', files={"file:1/model.py": b"x"})
    assert rt.calls == [
        ("load_model", "a", "", {}),
        ("load_model", "b", '{"backend": "python"}', {"file:1/model.py": b"x"}),
    ]
    with pytest.raises(TME) as info:
        pb.load_model("c", files=[1])
    assert str(info.value) == (
        "failed to load model 'c', files should be a dictionary of file paths and file contents"
    )
    with pytest.raises(TypeError) as info:
        pb.load_model("c", files={"p": "not bytes"})
    assert str(info.value) == "Object of type 'str' is not an instance of 'bytes'"
    with pytest.raises(RuntimeError):
        pb.load_model("c", files={1: b""})
    pb.unload_model("a", unload_dependents=True)
    assert rt.calls[-1] == ("unload_model", "a", True)
    assert pb.is_model_ready("a") is True
    assert rt.calls[-1] == ("is_model_ready", "a", "")
    pb.is_model_ready("a", "2")
    assert rt.calls[-1] == ("is_model_ready", "a", "2")
    with pytest.raises(TypeError):
        pb.load_model(None)
    with pytest.raises(TypeError):
        pb.unload_model("a", None)
    for name, call, prefix in (
        ("load_model", lambda: pb.load_model("x"), "Failed to load model: "),
        ("unload_model", lambda: pb.unload_model("x"), "Failed to unload model: "),
        ("is_model_ready", lambda: pb.is_model_ready("x"), "Failed to check model readiness: "),
    ):
        rt.errors[name] = "core says no"
        with pytest.raises(TME) as info:
            call()
        assert str(info.value) == prefix + "Failed to process the request for model 'fake_0_0', message: core says no"


def test_shared_memory(rt):
    assert pb.shared_memory.free_memory() == 12345
    assert isinstance(pb.shared_memory, pb.SharedMemory)


def test_background_future_done(rt):
    fut = concurrent.futures.Future()
    rt.background_futures.add(fut)
    fut.set_exception(ValueError("bg failed"))
    pb.async_event_future_done_callback(fut)
    assert fut not in rt.background_futures
    assert rt.calls == [("log", "pb_stub.cc", 945, 2, "ValueError: bg failed\n")]
    ok = concurrent.futures.Future()
    ok.set_result(None)
    rt.calls.clear()
    pb.async_event_future_done_callback(ok)
    assert ("log", "pb_stub.cc", 930) == rt.calls[0][:3]  # not in the set: removal fails, logged
    with pytest.raises(TypeError):
        pb.async_event_future_done_callback(None)


# ================================================================================================
# Runtime seam
# ================================================================================================


def test_runtime_switching():
    assert isinstance(current_runtime(), NoRuntime)
    fake = FakeRuntime()
    previous = set_runtime(fake)
    assert current_runtime() is fake
    assert set_runtime(None) is fake
    assert current_runtime() is previous
    with pytest.raises(TypeError):
        set_runtime(object())


def test_send_message_error_text():
    assert send_message_error_text("n", "boom") == "Failed to process the request for model 'n', message: boom"
    assert send_message_error_text("n", None) == "Failed to process the request for model 'n'."


def test_no_runtime_behaviour():
    no = rtm.NoRuntime("name")
    with pytest.raises(TME):
        no.send_response(None, None, 1)
    assert no.free_memory() == 0
    assert no.is_cancelled(1, 2) is False


def test_inject_into_pb_utils():
    import types

    mod = types.ModuleType("triton_python_backend_utils")
    pb._inject_into_pb_utils(mod, lambda: "/m/x/1")
    for name in ("TritonError", "TritonModelException", "Tensor", "InferenceRequest", "InferenceResponse",
                 "Logger", "PreferredMemory", "TRITONSERVER_MEMORY_GPU", "TRITONSERVER_MEMORY_CPU",
                 "MetricFamily", "load_model", "unload_model", "is_model_ready"):
        assert getattr(mod, name) is getattr(pb, name)
    assert mod.get_model_dir() == "/m/x/1"
