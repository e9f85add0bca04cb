"""Tensor: a named array with a Triton dtype (pb_tensor.h's Python side).

A tensor keeps a numpy array (``as_numpy()``), or raw little-endian bytes for what numpy cannot
hold (BF16; BYTES travel in their length-prefixed wire format). The stub builds input and BLS
output tensors with ``_from_raw`` / ``_new`` and sends ``_payload()``. The dtype rules are the
C++ stub's: ``numpy_to_triton_dtype`` below.
"""
import numpy as _np

from ...protocol.dtypes import (BF16 as _BF16, BYTES as _BYTES,
                                BYTES_DECODE_ERRORS as _BYTES_DECODE_ERRORS,
                                NUMPY_CHAIN as _NP_CHAIN,
                                NUMPY_TO_TRITON as _NP_TO_TRITON, RAW_DTYPE as _RAW_DTYPE,
                                TRITON_TO_NUMPY as _TRITON_TO_NP, deserialize_bytes,
                                serialize_bytes)
from ..runtime import TritonModelException
from ._pybind import _cv_ndarray, _cv_str, _DataType, _new_bare, _REQUIRED, _Sig
from .dlpack import (_dlpack_export, _import_dlpack, _kDLCPU, _kDLCUDA, _kDLCUDAHost, _MEM_CPU,
                     _MEM_CPU_PINNED, _MEM_GPU)

# ================================================================================================
# dtypes (the table and the BYTES format are the protocol's: protocol/dtypes.py)
# ================================================================================================

_BF16_TEXT = (
    "Tensor dtype is BF16 and cannot be converted to NumPy. Use to_dlpack() and "
    "from_dlpack() instead."
)


def triton_to_numpy_dtype(code):
    """numpy dtype of a Triton dtype code (None for INVALID and BF16)."""
    return _TRITON_TO_NP.get(int(code))


def numpy_to_triton_dtype(dtype):
    """Triton dtype code of a numpy dtype, as ``Tensor(name, array)`` decides it.

    Same rule as the C++ stub: equality with bool_, the integer and float types
    (so a non-native byte order is refused), then object_/bytes_ (any ``S``
    dtype) for BYTES.  Anything else raises ``NumPy dtype is not supported.``
    """
    code = _NP_TO_TRITON.get(dtype)
    if code is not None:
        return code
    for np_type, code in _NP_CHAIN:
        if dtype == np_type:
            return code
    if dtype == _np.object_ or dtype == _np.bytes_ or getattr(dtype, "type", None) == _np.bytes_:
        return _BYTES
    raise TritonModelException("NumPy dtype is not supported.")


def _tensor_from_dlpack(name, obj):
    """``Tensor.from_dlpack``: a tensor holding a copy of a DLPack producer's memory."""
    if name == "":
        raise TritonModelException("Tensor name cannot be an empty string.")
    dtype, dims, view = _import_dlpack(obj)
    return Tensor._make(name, dtype, dims, None if dtype == _BF16 else view.copy(), view, None)


# ================================================================================================
# Tensor
# ================================================================================================


class Tensor:
    """``Tensor(name, ndarray)``: an input or output tensor (positional arguments only).

    ``as_numpy()`` returns the array given to the constructor (made C-contiguous
    when it was not).  BYTES arrays are serialised when the tensor is made, as in
    the C++ stub; other arrays are read when the tensor is sent.

    Deliberate fixes over the C++ stub: ``triton_dtype()`` returns the dtype
    (C++ raises ``TypeError``), and ``from_dlpack`` accepts numpy arrays (C++
    crashes); GPU DLPack tensors raise ``GPU tensors are not supported by
    tritonstub yet``.
    """

    __slots__ = (
        "_name",
        "_dtype",
        "_dims",
        "_np",
        "_mem",
        "_bytes",
        "_memory_type",
        "_memory_type_id",
        "__weakref__",
    )

    def __init__(self, *args, **kwargs):
        if kwargs or len(args) != 2 or type(args[0]) is not str or not isinstance(args[1], _np.ndarray):
            args = _TENSOR_SIG.bind(args, kwargs)
        name, array = args
        if name == "":
            raise TritonModelException("Tensor name cannot be an empty string.")
        dtype = numpy_to_triton_dtype(array.dtype)
        if not array.flags.c_contiguous:
            array = _np.ascontiguousarray(array)
        self._name = name
        self._dtype = dtype
        self._dims = array.shape
        self._np = array
        if dtype == _BYTES:
            self._bytes = serialize_bytes(array)
            self._mem = None
        else:
            self._bytes = None
            self._mem = array
        self._memory_type = _MEM_CPU
        self._memory_type_id = 0

    @classmethod
    def _make(cls, name, dtype, dims, np_array, mem, raw_bytes, memory_type=0, memory_type_id=0):
        obj = _new_bare(cls)
        obj._name = name
        obj._dtype = dtype
        obj._dims = tuple(int(d) for d in dims)
        obj._np = np_array
        obj._mem = mem
        obj._bytes = raw_bytes
        obj._memory_type = memory_type
        obj._memory_type_id = memory_type_id
        return obj

    @classmethod
    def _new(cls, name, dtype, dims, array):
        """The stub's hot path: a CPU tensor of a numeric (not BF16) dtype whose ``array`` is
        already a private copy of shape ``dims`` (a tuple of ints)."""
        obj = _new_bare(cls)
        obj._name = name
        obj._dtype = dtype
        obj._dims = dims
        obj._np = array
        obj._mem = array
        obj._bytes = None
        obj._memory_type = _MEM_CPU
        obj._memory_type_id = 0
        return obj

    @classmethod
    def _from_raw(cls, name, dtype, dims, data, copy=True):
        """A CPU tensor from raw little-endian data, as the stub loads inputs and BLS outputs.

        ``dtype`` is the Triton code (1..14), ``dims`` the shape, ``data`` any
        buffer.  With ``copy`` (the C++ behaviour) ``as_numpy()`` is a writable
        array that does not share memory with ``data``; BYTES data is decoded
        into an object array of ``bytes`` and kept for re-sending.
        """
        dtype = int(dtype)
        dims = tuple(int(d) for d in dims)
        if name == "":
            raise TritonModelException("Tensor name cannot be an empty string.")
        if dtype == _BYTES:
            raw = data if type(data) is bytes else memoryview(data).cast("B").tobytes()
            try:
                items = deserialize_bytes(raw, dims)
            except _BYTES_DECODE_ERRORS as e:
                # The server's data does not frame the elements its dims promise.
                raise TritonModelException(
                    f"BYTES tensor '{name}' of dims {list(dims)}: its {len(raw)} bytes are not "
                    f"that many length-prefixed elements ({e})") from None
            return cls._make(name, dtype, dims, items, None, raw)
        raw_dtype = _RAW_DTYPE.get(dtype)
        if raw_dtype is None:
            raise TritonModelException("Dtype is invalid." if dtype == 0 else "Unsupported triton dtype.")
        count = 1
        for dim in dims:
            count *= dim
        have = memoryview(data).nbytes
        if count < 0 or count * raw_dtype.itemsize > have:
            # No data behind the dims: a GPU tensor (tritonstub reads CPU memory only), or a
            # malformed one from the server.
            raise TritonModelException(
                f"tensor '{name}' of dims {list(dims)} needs {count * raw_dtype.itemsize} bytes "
                f"and has {have}" + (" (GPU tensors are not supported by tritonstub yet)"
                                     if have == 0 else ""))
        array = _np.frombuffer(data, dtype=raw_dtype, count=count) if count else _np.empty(0, raw_dtype)
        array = array.reshape(dims)
        if copy:
            array = array.copy()
        if dtype == _BF16:
            return cls._make(name, dtype, dims, None, array, None)
        return cls._make(name, dtype, dims, array, array, None)

    def _payload(self):
        """The raw bytes to send: ``bytes`` for BYTES, else a flat uint8 view of the data."""
        if self._dtype == _BYTES:
            if self._bytes is None:
                self._bytes = serialize_bytes(self._np)
            return self._bytes
        return self._mem.reshape(-1).view(_np.uint8)

    def _byte_size(self):
        if self._dtype == _BYTES:
            return len(self._payload())
        return int(self._mem.nbytes)

    def name(self):
        """The tensor name."""
        return self._name

    def as_numpy(self):
        """The numpy array (the same object on every call)."""
        if self._memory_type == _MEM_GPU:
            raise TritonModelException("Tensor is stored in GPU and cannot be converted to NumPy.")
        if self._dtype == _BF16:
            raise TritonModelException(_BF16_TEXT)
        return self._np

    def triton_dtype(self):
        """The Triton dtype, an int-like ``TRITONSERVER_DataType`` value.

        The C++ r24.10 stub raises ``TypeError`` here (it never registered the
        enum with pybind11); tritonstub returns the dtype.
        """
        return _DataType._by_value[self._dtype]

    def to_dlpack(self):
        """A DLPack capsule (``dltensor``) viewing this tensor's memory."""
        return _dlpack_export(self)

    def is_cpu(self):
        """True for CPU (and pinned CPU) tensors."""
        return self._memory_type in (_MEM_CPU, _MEM_CPU_PINNED)

    def shape(self):
        """The dims as a list of ints."""
        return list(self._dims)

    @staticmethod
    def from_dlpack(*args, **kwargs):
        """``Tensor.from_dlpack(name, obj)``: a tensor from a DLPack capsule or producer.

        ``obj`` is a capsule named ``dltensor`` (or ``dltensor_versioned``) or an
        object with ``__dlpack__``/``__dlpack_device__`` (numpy arrays
        included: the C++ stub crashes on those, tritonstub takes them).  The
        data must be C-contiguous (all dimensions are checked; C++ skips the
        first).  The capsule is renamed ``used_dltensor`` (C++: ``used_dlpack``)
        and the producer's deleter runs when the tensor is gone.  ``as_numpy()``
        is a copy taken now; the data sent is read from the producer's memory.
        """
        if len(args) != 2 or kwargs or type(args[0]) is not str:
            args = _FROM_DLPACK_SIG.bind(args, kwargs)
        name, obj = args
        return _tensor_from_dlpack(name, obj)

    def __dlpack__(self, *args, **kwargs):
        """DLPack export; ``stream`` is accepted and ignored (CPU data)."""
        if args or kwargs:
            _DLPACK_SIG.bind(args, kwargs, self)
        return _dlpack_export(self)

    def __dlpack_device__(self):
        """``(device_type, device_id)``: ``(1, 0)`` for CPU tensors."""
        if self._memory_type == _MEM_GPU:
            return (_kDLCUDA, self._memory_type_id)
        if self._memory_type == _MEM_CPU_PINNED:
            return (_kDLCUDAHost, self._memory_type_id)
        return (_kDLCPU, self._memory_type_id)


_TENSOR_SIG = _Sig(
    "__init__",
    "c_python_backend_utils.Tensor(arg0: str, arg1: numpy.ndarray)",
    ((None, _REQUIRED, _cv_str, False), (None, _REQUIRED, _cv_ndarray, False)),
    kind="constructor",
)
_FROM_DLPACK_SIG = _Sig(
    "from_dlpack",
    # pybind11's text for this static method, its "self" included.
    "from_dlpack(self: str, arg0: object) -> c_python_backend_utils.Tensor",
    ((None, _REQUIRED, _cv_str, False), (None, _REQUIRED, None, True)),
)
_DLPACK_SIG = _Sig(
    "__dlpack__",
    "__dlpack__(self: c_python_backend_utils.Tensor, stream: object = None) -> capsule",
    (("stream", None, None, True),),
    kind="method",
)
