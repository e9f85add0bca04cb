"""``c_python_backend_utils``: the Python surface a model sees, in pure Python.

The C++ stub builds this module with pybind11 (python_backend r24.10).  This file
reproduces its names, signatures, checks and error texts (docs/protocol/r24.10.md §4.3,
§5, §6), without touching shared memory: every operation that needs the parent
goes through :func:`tritonstub.stub.runtime.current_runtime`.

The stub registers this module as ``sys.modules["c_python_backend_utils"]`` and
copies the usual names into ``triton_python_backend_utils`` with
:func:`_inject_into_pb_utils`.

Argument handling follows pybind11: wrong argument types raise ``TypeError``
with pybind11's ``incompatible function arguments`` text, ``None`` is refused
where the binding says ``.none(false)``, integers refuse floats, and so on.

Where the C++ stub is broken we do the right thing instead, and say so in the
docstring concerned (docs/protocol/r24.10.md §8):

* ``Tensor.triton_dtype()`` works (C++ raises ``TypeError``);
* ``Tensor.from_dlpack`` with a numpy array (or any producer) works; the
  consumed capsule is renamed ``used_dltensor`` as DLPack requires;
* the DLPack contiguity check also checks the outermost dimension;
* ``MetricFamily`` registers the family once (C++ registers it twice and leaks
  the first);
* ``is_cancelled()`` on a request the model built itself answers False locally;
* ``set_release_flags`` on a request the model built stores the flags (C++
  dereferences a null pointer).

Internal interface for the stub (all names start with ``_``)
------------------------------------------------------------
Tensor
    ``Tensor._from_raw(name, dtype, dims, data, copy=True)`` builds a tensor
    from raw little-endian bytes (BYTES: the length-prefixed wire format), the
    way the C++ stub loads inputs and BLS outputs.  ``t._payload()`` returns the
    raw bytes to send (a uint8 array or ``bytes``), ``t._byte_size()`` their
    size; ``t._dtype`` (int), ``t._dims`` (tuple), ``t._name``.  ``t._shm`` is a
    free slot for the stub (e.g. the handle of a tensor already in shm).
InferenceRequest
    ``InferenceRequest._from_server(...)`` builds a request received from the
    parent.  Fields read by a BLS runtime: ``_request_id``, ``_correlation_id``
    (int or str), ``_inputs``, ``_requested_output_names`` (sorted tuple, the
    std::set order), ``_model_name``, ``_model_version``, ``_flags``,
    ``_timeout``, ``_preferred_memory`` (``_type``: 0 GPU, 1 CPU, 2 default;
    ``_device_id``), ``_trace`` (``_triton_trace``, ``_context``),
    ``_parameters`` (JSON text), ``_request_address``, ``_factory_address``,
    ``_release_flags``.  ``_shm`` is a free slot.
InferenceResponse
    ``_outputs`` (list), ``_error`` (TritonError or None), ``_is_last_response``,
    ``_id``; ``InferenceResponse._from_parent(...)``,
    ``InferenceResponse._error_response(text)``, ``r._prune(names)``.
InferenceResponseSender
    ``_update_state(response, flags)`` (the C++ ``UpdateStateAndCounters``,
    used for responses returned from ``execute``), ``_close()``,
    ``_is_closed()``, ``_request_address``, ``_factory_address``.
ResponseIterator
    ``_enqueue(response)``, ``_get_existing_responses()``, ``_id``.
TritonError
    ``TritonError._create(message, code_int)``.
"""
import ctypes as _ctypes
import json as _json
import operator as _operator
import os as _os
import sys as _sys
import threading as _threading
from collections import deque as _deque

import numpy as _np

from . import runtime as _runtime_module
from .runtime import LOG_ERROR as _LOG_ERROR
from .runtime import MetricFamilyInfo as _MetricFamilyInfo
from .runtime import MetricInfo as _MetricInfo
from .runtime import TritonModelException
from .runtime import current_runtime as _current_runtime

_MODULE = "c_python_backend_utils"

# ================================================================================================
# pybind11-style argument checking
# ================================================================================================


class _Reject(Exception):
    """A value the pybind11 type caster would not load."""


_REQUIRED = object()
_MISSING = object()


class _Sig:
    """One pybind11 overload: parameter list plus the texts of its TypeError."""

    __slots__ = ("name", "line", "params", "index", "kind")

    def __init__(self, name, line, params, kind="function"):
        self.name = name
        self.line = line
        self.params = params
        self.index = {p[0]: i for i, p in enumerate(params) if p[0] is not None}
        self.kind = kind

    def bind(self, args, kwargs, self_obj=_MISSING):
        params = self.params
        nparams = len(params)
        if len(args) > nparams:
            self.fail(args, kwargs, self_obj)
        values = list(args)
        values.extend([_MISSING] * (nparams - len(args)))
        if kwargs:
            for key, value in kwargs.items():
                idx = self.index.get(key)
                if idx is None or values[idx] is not _MISSING:
                    self.fail(args, kwargs, self_obj)
                values[idx] = value
        bad = False
        for i in range(nparams):
            _, default, conv, none_ok = params[i]
            value = values[i]
            if value is _MISSING:
                if default is _REQUIRED:
                    bad = True
                    break
                values[i] = default
                continue
            if value is None and not none_ok:
                bad = True
                break
            if conv is not None:
                try:
                    values[i] = conv(value)
                except _Reject:
                    bad = True
                    break
        if bad:
            self.fail(args, kwargs, self_obj)
        return values

    def message(self, args, kwargs, self_obj=_MISSING):
        if self.kind == "constructor":
            head = "__init__(): incompatible constructor arguments."
        else:
            head = "%s(): incompatible function arguments." % self.name
        line = self.line
        if self.kind != "constructor" and line.startswith(self.name + "("):
            line = line[len(self.name):]       # pybind11 lists overloads without the name
        text = head + " The following argument types are supported:\n    1. " + line + "\n"
        text += "\nInvoked with: "
        shown = []
        if self_obj is not _MISSING and self.kind == "method":
            shown.append(self_obj)
        shown.extend(args)
        reprs = []
        for arg in shown:
            try:
                reprs.append(repr(arg))
            except Exception:
                reprs.append("<repr raised Error>")
        text += ", ".join(reprs)
        if kwargs:
            if reprs:
                text += "; "
            text += "kwargs: "
            items = []
            for key, value in kwargs.items():
                try:
                    value_repr = repr(value)
                except Exception:
                    value_repr = "<repr raised Error>"
                items.append("%s=%s" % (key, value_repr))
            text += ", ".join(items)
        return text

    def fail(self, args, kwargs, self_obj=_MISSING):
        raise TypeError(self.message(args, kwargs, self_obj))


def _cv_str(value):
    if type(value) is str:
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "surrogateescape")
    raise _Reject


def _cv_bool(value):
    if value is True or value is False:
        return value
    if value is None:
        raise _Reject
    nb_bool = getattr(type(value), "__bool__", None)
    if nb_bool is None or isinstance(value, (str, bytes, bytearray, list, tuple, dict)):
        raise _Reject
    try:
        result = nb_bool(value)
    except Exception:
        raise _Reject from None
    if result is True or result is False:
        return result
    raise _Reject


def _int_conv(low, high):
    def conv(value):
        if isinstance(value, float):
            raise _Reject
        if isinstance(value, int):
            result = int(value)
        else:
            try:
                result = _operator.index(value)
            except TypeError:
                raise _Reject from None
        if result < low or result > high:
            raise _Reject
        return result

    return conv


_cv_uint32 = _int_conv(0, 0xFFFFFFFF)
_cv_uint64 = _int_conv(0, 0xFFFFFFFFFFFFFFFF)
_cv_int64 = _int_conv(-(1 << 63), (1 << 63) - 1)


def _cv_float(value):
    if isinstance(value, float):
        return float(value)
    if isinstance(value, (str, bytes, bytearray)):
        raise _Reject
    tp = type(value)
    if hasattr(tp, "__float__") or hasattr(tp, "__index__"):
        try:
            return float(value)
        except Exception:
            raise _Reject from None
    raise _Reject


def _cv_instance(cls):
    def conv(value):
        if value is None or isinstance(value, cls):
            return value
        raise _Reject

    return conv


def _cv_sequence(elem):
    def conv(value):
        if isinstance(value, (str, bytes, dict)):
            raise _Reject
        tp = type(value)
        if not hasattr(tp, "__getitem__") or not hasattr(tp, "__len__"):
            raise _Reject
        try:
            items = list(value)
        except Exception:
            raise _Reject from None
        return [elem(item) for item in items]

    return conv


def _cv_ndarray(value):
    if isinstance(value, _np.ndarray):
        return value
    raise _Reject


_CAST_ERROR = (
    "Unable to cast Python instance to C++ type (#define "
    "PYBIND11_DETAILED_ERROR_MESSAGES or compile in debug mode for details)"
)


def _no_constructor(cls):
    raise TypeError("%s.%s: No constructor defined!" % (_MODULE, cls.__name__))


def _new_bare(cls):
    return object.__new__(cls)


# ================================================================================================
# pybind11-style enums
# ================================================================================================


class _PbEnum:
    """An ``py::enum_`` of a plain C++ enum: compares equal to its int value."""

    __slots__ = ("_value",)
    _members = {}
    _by_value = {}
    _sig = None

    def __new__(cls, *args, **kwargs):
        (value,) = cls._sig.bind(args, kwargs)
        member = cls._by_value.get(value)
        if member is not None:
            return member
        obj = object.__new__(cls)
        obj._value = value
        return obj

    def __init__(self, *args, **kwargs):
        pass

    @classmethod
    def _define(cls, name, qualname, members):
        cls.__name__ = name
        cls.__qualname__ = qualname
        cls.__module__ = _MODULE
        cls._members = {}
        cls._by_value = {}
        cls._sig = _Sig(
            "__init__",
            "%s.%s(value: int)" % (_MODULE, qualname),
            (("value", _REQUIRED, _int_conv(-(1 << 31), (1 << 31) - 1), False),),
            kind="constructor",
        )
        for member_name, value in members:
            obj = object.__new__(cls)
            obj._value = value
            cls._members[member_name] = obj
            cls._by_value.setdefault(value, obj)
            setattr(cls, member_name, obj)
        cls.__members__ = dict(cls._members)

    @property
    def name(self):
        for key, member in type(self)._members.items():
            if member._value == self._value:
                return key
        return "???"

    @property
    def value(self):
        return self._value

    def __int__(self):
        return self._value

    def __index__(self):
        return self._value

    def __repr__(self):
        return "<%s.%s: %d>" % (type(self).__name__, self.name, self._value)

    def __str__(self):
        return "%s.%s" % (type(self).__name__, self.name)

    def __eq__(self, other):
        return other is not None and self._value == other

    def __ne__(self, other):
        return other is None or not (self._value == other)

    def __hash__(self):
        return self._value

    def __getstate__(self):
        return self._value

    def __reduce__(self):
        return (type(self), (self._value,))


class _ErrorCode(_PbEnum):
    __slots__ = ()


_ErrorCode._define(
    "__ErrorCode",
    "TritonError.__ErrorCode",
    (
        ("UNKNOWN", 0),
        ("INTERNAL", 1),
        ("NOT_FOUND", 2),
        ("INVALID_ARG", 3),
        ("UNAVAILABLE", 4),
        ("UNSUPPORTED", 5),
        ("ALREADY_EXISTS", 6),
        ("CANCELLED", 7),
    ),
)


class MemoryType(_PbEnum):
    """``PreferredMemory.MemoryType``: TRITONSERVER_MEMORY_GPU = 0, TRITONSERVER_MEMORY_CPU = 1.

    Not the ``TRITONSERVER_MemoryType`` numbering (there CPU is 0 and GPU 2).
    """

    __slots__ = ()


MemoryType._define("MemoryType", "MemoryType", (("TRITONSERVER_MEMORY_GPU", 0), ("TRITONSERVER_MEMORY_CPU", 1)))
TRITONSERVER_MEMORY_GPU = MemoryType.TRITONSERVER_MEMORY_GPU
TRITONSERVER_MEMORY_CPU = MemoryType.TRITONSERVER_MEMORY_CPU


class _LogLevel(_PbEnum):
    __slots__ = ()


_LogLevel._define("LogLevel", "Logger.LogLevel", (("INFO", 0), ("WARNING", 1), ("ERROR", 2), ("VERBOSE", 3)))


class MetricKind(_PbEnum):
    """Kind of a custom metric family: COUNTER 0, GAUGE 1, HISTOGRAM 2."""

    __slots__ = ()


MetricKind._define("MetricKind", "MetricKind", (("COUNTER", 0), ("GAUGE", 1), ("HISTOGRAM", 2)))
COUNTER = MetricKind.COUNTER
GAUGE = MetricKind.GAUGE
HISTOGRAM = MetricKind.HISTOGRAM


class _DataType(_PbEnum):
    """The ``TRITONSERVER_DataType`` values that ``Tensor.triton_dtype()`` returns."""

    __slots__ = ()


_DataType._define(
    "TRITONSERVER_DataType",
    "TRITONSERVER_DataType",
    (
        ("TRITONSERVER_TYPE_INVALID", 0),
        ("TRITONSERVER_TYPE_BOOL", 1),
        ("TRITONSERVER_TYPE_UINT8", 2),
        ("TRITONSERVER_TYPE_UINT16", 3),
        ("TRITONSERVER_TYPE_UINT32", 4),
        ("TRITONSERVER_TYPE_UINT64", 5),
        ("TRITONSERVER_TYPE_INT8", 6),
        ("TRITONSERVER_TYPE_INT16", 7),
        ("TRITONSERVER_TYPE_INT32", 8),
        ("TRITONSERVER_TYPE_INT64", 9),
        ("TRITONSERVER_TYPE_FP16", 10),
        ("TRITONSERVER_TYPE_FP32", 11),
        ("TRITONSERVER_TYPE_FP64", 12),
        ("TRITONSERVER_TYPE_BYTES", 13),
        ("TRITONSERVER_TYPE_BF16", 14),
    ),
)

# ================================================================================================
# TritonError, PreferredMemory, InferenceTrace
# ================================================================================================


class TritonError:
    """``TritonError(message, code=TritonError.INTERNAL)``: an error carried by a response.

    ``code()`` returns a ``TritonError.__ErrorCode`` (UNKNOWN 0 .. CANCELLED 7),
    ``message()`` the text.
    """

    __slots__ = ("_message", "_code", "__weakref__")

    def __init__(self, *args, **kwargs):
        message, code = _TRITON_ERROR_SIG.bind(args, kwargs)
        self._message = message
        self._code = code

    @classmethod
    def _create(cls, message, code=1):
        """An error with any numeric code, as loaded from the parent."""
        obj = _new_bare(cls)
        obj._message = message
        obj._code = _ErrorCode(int(code))
        return obj

    def code(self, *args, **kwargs):
        if args or kwargs:
            _sig_method("code", "TritonError", "c_python_backend_utils.TritonError.__ErrorCode").fail(args, kwargs, self)
        return self._code

    def message(self, *args, **kwargs):
        if args or kwargs:
            _sig_method("message", "TritonError", "str").fail(args, kwargs, self)
        return self._message


setattr(TritonError, "__ErrorCode", _ErrorCode)
for _name, _member in _ErrorCode._members.items():
    setattr(TritonError, _name, _member)

_TRITON_ERROR_SIG = _Sig(
    "__init__",
    "c_python_backend_utils.TritonError(message: str, code: "
    "c_python_backend_utils.TritonError.__ErrorCode = <__ErrorCode.INTERNAL: 1>)",
    (
        ("message", _REQUIRED, _cv_str, False),
        ("code", _ErrorCode.INTERNAL, _cv_instance(_ErrorCode), False),
    ),
    kind="constructor",
)


def _sig_method(name, cls_name, ret, params=(), extra=""):
    """The overload text of a method taking only ``self`` (plus ``params``)."""
    line = "%s(self: c_python_backend_utils.%s%s) -> %s" % (name, cls_name, extra, ret)
    return _Sig(name, line, tuple(params), kind="method")


class PreferredMemory:
    """``PreferredMemory(preferred_memory_type, preferred_device_id=0)`` for BLS outputs."""

    __slots__ = ("_type", "_device_id", "__weakref__")

    def __init__(self, *args, **kwargs):
        memory_type, device_id = _PREFERRED_MEMORY_SIG.bind(args, kwargs)
        self._type = int(memory_type)
        self._device_id = device_id

    @classmethod
    def _create(cls, memory_type=2, device_id=0):
        obj = _new_bare(cls)
        obj._type = int(memory_type)
        obj._device_id = int(device_id)
        return obj


_PREFERRED_MEMORY_SIG = _Sig(
    "__init__",
    "c_python_backend_utils.PreferredMemory(preferred_memory_type: "
    "c_python_backend_utils.MemoryType, preferred_device_id: int = 0)",
    (
        ("preferred_memory_type", _REQUIRED, _cv_instance(MemoryType), False),
        ("preferred_device_id", 0, _cv_int64, False),
    ),
    kind="constructor",
)


class InferenceTrace:
    """The trace of a request: ``get_context()`` returns the trace context or None."""

    __slots__ = ("_triton_trace", "_context", "__weakref__")

    def __init__(self, *args, **kwargs):
        _no_constructor(type(self))

    @classmethod
    def _create(cls, triton_trace=0, context=""):
        obj = _new_bare(cls)
        obj._triton_trace = int(triton_trace)
        obj._context = context
        return obj

    def get_context(self):
        if self._context != "":
            return self._context
        return None


# ================================================================================================
# dtypes and the BYTES wire format
# ================================================================================================

from ..protocol.dtypes import BF16 as _BF16
from ..protocol.dtypes import BYTES as _BYTES
from ..protocol.dtypes import NUMPY_CHAIN as _NP_CHAIN
from ..protocol.dtypes import NUMPY_TO_TRITON as _NP_TO_TRITON
from ..protocol.dtypes import RAW_DTYPE as _RAW_DTYPE
from ..protocol.dtypes import ROW as _ROW
from ..protocol.dtypes import TRITON_TO_NUMPY as _TRITON_TO_NP
from ..protocol.dtypes import TRITON_DTYPES, deserialize_bytes, serialize_bytes  # noqa: F401

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


# ================================================================================================
# DLPack, with ctypes
# ================================================================================================

_kDLCPU, _kDLCUDA, _kDLCUDAHost = 1, 2, 3
_MEM_CPU, _MEM_CPU_PINNED, _MEM_GPU = 0, 1, 2
_GPU_TEXT = "GPU tensors are not supported by tritonstub yet"


class _DLDevice(_ctypes.Structure):
    _fields_ = [("device_type", _ctypes.c_int32), ("device_id", _ctypes.c_int32)]


class _DLDataType(_ctypes.Structure):
    _fields_ = [("code", _ctypes.c_uint8), ("bits", _ctypes.c_uint8), ("lanes", _ctypes.c_uint16)]


class _DLTensor(_ctypes.Structure):
    _fields_ = [
        ("data", _ctypes.c_void_p),
        ("device", _DLDevice),
        ("ndim", _ctypes.c_int32),
        ("dtype", _DLDataType),
        ("shape", _ctypes.POINTER(_ctypes.c_int64)),
        ("strides", _ctypes.POINTER(_ctypes.c_int64)),
        ("byte_offset", _ctypes.c_uint64),
    ]


_DELETER_T = _ctypes.CFUNCTYPE(None, _ctypes.c_void_p)


class _DLManagedTensor(_ctypes.Structure):
    _fields_ = [("dl_tensor", _DLTensor), ("manager_ctx", _ctypes.c_void_p), ("deleter", _DELETER_T)]


class _DLPackVersion(_ctypes.Structure):
    _fields_ = [("major", _ctypes.c_uint32), ("minor", _ctypes.c_uint32)]


class _DLManagedTensorVersioned(_ctypes.Structure):
    _fields_ = [
        ("version", _DLPackVersion),
        ("manager_ctx", _ctypes.c_void_p),
        ("deleter", _DELETER_T),
        ("flags", _ctypes.c_uint64),
        ("dl_tensor", _DLTensor),
    ]


_NAME_DLTENSOR = b"dltensor"
_NAME_USED = b"used_dltensor"
_NAME_VERSIONED = b"dltensor_versioned"
_NAME_USED_VERSIONED = b"used_dltensor_versioned"
_name_keep = [
    _ctypes.create_string_buffer(_NAME_USED),
    _ctypes.create_string_buffer(_NAME_USED_VERSIONED),
]

_capi = _ctypes.pythonapi
_CapsuleIsValidObj = _ctypes.PYFUNCTYPE(_ctypes.c_int, _ctypes.py_object, _ctypes.c_char_p)(
    ("PyCapsule_IsValid", _capi)
)
_CapsuleGetPointerObj = _ctypes.PYFUNCTYPE(_ctypes.c_void_p, _ctypes.py_object, _ctypes.c_char_p)(
    ("PyCapsule_GetPointer", _capi)
)
_CapsuleSetNameObj = _ctypes.PYFUNCTYPE(_ctypes.c_int, _ctypes.py_object, _ctypes.c_void_p)(
    ("PyCapsule_SetName", _capi)
)
_CapsuleIsValidRaw = _ctypes.PYFUNCTYPE(_ctypes.c_int, _ctypes.c_void_p, _ctypes.c_char_p)(
    ("PyCapsule_IsValid", _capi)
)
_CapsuleGetPointerRaw = _ctypes.PYFUNCTYPE(_ctypes.c_void_p, _ctypes.c_void_p, _ctypes.c_char_p)(
    ("PyCapsule_GetPointer", _capi)
)
_CAPSULE_DESTRUCTOR_T = _ctypes.CFUNCTYPE(None, _ctypes.c_void_p)
_CapsuleNew = _ctypes.PYFUNCTYPE(
    _ctypes.py_object, _ctypes.c_void_p, _ctypes.c_char_p, _CAPSULE_DESTRUCTOR_T
)(("PyCapsule_New", _capi))

_exports = {}
_exports_lock = _threading.RLock()


def _release_export(address):
    with _exports_lock:
        entry = _exports.pop(address, None)
    del entry


def _dl_deleter(address):
    try:
        _release_export(address)
    except BaseException:
        pass


def _capsule_destructor(capsule):
    try:
        if _CapsuleIsValidRaw(capsule, _NAME_DLTENSOR):
            address = _CapsuleGetPointerRaw(capsule, _NAME_DLTENSOR)
            if address:
                _release_export(address)
    except BaseException:
        pass


_DL_DELETER = _DELETER_T(_dl_deleter)
_CAPSULE_DESTRUCTOR = _CAPSULE_DESTRUCTOR_T(_capsule_destructor)


def _dlpack_export(tensor):
    if tensor._dtype == _BYTES:
        raise TritonModelException("DLPack does not have support for string tensors.")
    row = _ROW.get(tensor._dtype)
    if row is None:
        raise TritonModelException('DType code "%d" is not supported.' % tensor._dtype)
    if tensor._memory_type == _MEM_GPU:
        raise TritonModelException(_GPU_TEXT)
    mem = tensor._mem
    dims = tensor._dims
    ndim = len(dims)
    shape = (_ctypes.c_int64 * max(ndim, 1))(*dims)
    managed = _DLManagedTensor()
    managed.dl_tensor.data = mem.ctypes.data
    managed.dl_tensor.device.device_type = _kDLCUDAHost if tensor._memory_type == _MEM_CPU_PINNED else _kDLCPU
    managed.dl_tensor.device.device_id = tensor._memory_type_id
    managed.dl_tensor.ndim = ndim
    managed.dl_tensor.dtype.code = row[6]
    managed.dl_tensor.dtype.bits = row[7]
    managed.dl_tensor.dtype.lanes = 1
    managed.dl_tensor.shape = _ctypes.cast(shape, _ctypes.POINTER(_ctypes.c_int64))
    managed.dl_tensor.strides = None
    managed.dl_tensor.byte_offset = 0
    managed.manager_ctx = None
    managed.deleter = _DL_DELETER
    address = _ctypes.addressof(managed)
    with _exports_lock:
        _exports[address] = (managed, shape, tensor, mem)
    return _CapsuleNew(address, _NAME_DLTENSOR, _CAPSULE_DESTRUCTOR)


class _DLImport:
    """Keeps an imported DLPack tensor alive; its deleter runs when the last view dies."""

    def __init__(self, address, deleter, data, shape, typestr):
        self._address = address
        self._deleter = deleter
        self.__array_interface__ = {
            "data": (data, False),
            "shape": tuple(shape),
            "typestr": typestr,
            "version": 3,
        }

    def __del__(self):
        deleter = self._deleter
        self._deleter = None
        if deleter:
            try:
                deleter(self._address)
            except BaseException:
                pass


def _dl_to_triton(code, bits, lanes):
    if lanes != 1:
        return 0
    if code == 2:
        return {16: 10, 32: 11, 64: 12}.get(bits, 0)
    if code == 0:
        return {8: 6, 16: 7, 32: 8, 64: 9}.get(bits, 0)
    if code == 1:
        return {8: 2, 16: 3, 32: 4, 64: 5}.get(bits, 0)
    if code == 6:
        return 1 if bits == 8 else 0
    if code == 4:
        if bits != 16:
            raise TritonModelException("Expected BF16 tensor to have 16 bits, but had: %d" % bits)
        return _BF16
    return 0


def _is_capsule(obj):
    return type(obj).__name__ == "PyCapsule" and type(obj).__module__ == "builtins"


def _tensor_from_capsule(name, capsule):
    if _CapsuleIsValidObj(capsule, _NAME_DLTENSOR):
        address = _CapsuleGetPointerObj(capsule, _NAME_DLTENSOR)
        managed = _DLManagedTensor.from_address(address)
        used = _name_keep[0]
    elif _CapsuleIsValidObj(capsule, _NAME_VERSIONED):
        address = _CapsuleGetPointerObj(capsule, _NAME_VERSIONED)
        managed = _DLManagedTensorVersioned.from_address(address)
        used = _name_keep[1]
    else:
        raise TritonModelException(
            "DLPack capsule is not usable: expected an unconsumed capsule named 'dltensor'."
        )
    dl = managed.dl_tensor
    ndim = dl.ndim
    dims = tuple(int(dl.shape[i]) for i in range(ndim))
    if dl.strides:
        expected = 1
        count = 1
        for dim in dims:
            count *= dim
        if count != 0:
            for i in range(ndim - 1, -1, -1):
                if dims[i] != 1:
                    if int(dl.strides[i]) != expected:
                        raise TritonModelException(
                            "DLPack tensor is not contiguous. Only contiguous DLPack tensors that "
                            "are stored in C-Order are supported."
                        )
                    expected *= dims[i]
    device_type = dl.device.device_type
    if device_type == _kDLCUDA:
        raise TritonModelException(_GPU_TEXT)
    if device_type not in (_kDLCPU, _kDLCUDAHost):
        raise TritonModelException("DLDevice type %d is not support by Python backend." % device_type)
    dtype = _dl_to_triton(dl.dtype.code, dl.dtype.bits, dl.dtype.lanes)
    if dtype == 0:
        raise TritonModelException("Dtype is invalid.")
    raw_dtype = _RAW_DTYPE[dtype]
    count = 1
    for dim in dims:
        count *= dim
    nbytes = count * raw_dtype.itemsize
    data = (dl.data or 0) + dl.byte_offset
    deleter = managed.deleter
    _CapsuleSetNameObj(capsule, _ctypes.addressof(used))
    if nbytes == 0:
        view = _np.empty(dims, dtype=raw_dtype)
        if deleter:
            deleter(address)
    else:
        keeper = _DLImport(address, deleter, data, dims, raw_dtype.str)
        view = _np.asarray(keeper)
    return Tensor._make(
        name,
        dtype,
        dims,
        None if dtype == _BF16 else view.copy(),
        view,
        None,
    )


def _tensor_from_dlpack(name, obj):
    if name == "":
        raise TritonModelException("Tensor name cannot be an empty string.")
    if _is_capsule(obj):
        return _tensor_from_capsule(name, obj)
    if not hasattr(obj, "__dlpack__") or not hasattr(obj, "__dlpack_device__"):
        raise TritonModelException(
            "Provided tensor is not supported. Tensor must be a DLPack capsule         "
            "or have `__dlpack__` and `__dlpack_device__` attributes"
        )
    device = obj.__dlpack_device__()
    try:
        device_type = int(_operator.index(device[0]))
        int(_operator.index(device[1]))
        if len(device) != 2:
            raise ValueError
    except Exception:
        raise RuntimeError(_CAST_ERROR) from None
    if device_type == _kDLCUDA:
        raise TritonModelException(_GPU_TEXT)
    if device_type not in (_kDLCPU, _kDLCUDAHost):
        raise TritonModelException("DLDevice type %d is not support by Python backend." % device_type)
    capsule = obj.__dlpack__(stream=None)
    if not _is_capsule(capsule):
        raise TypeError(
            "Unable to convert function return value to a Python type! "
            "__dlpack__() must return a PyCapsule"
        )
    return _tensor_from_capsule(name, capsule)


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
        "_shm",
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
        self._shm = None

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
        obj._shm = None
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
        obj._shm = None
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
            return cls._make(name, dtype, dims, deserialize_bytes(raw, dims), None, raw)
        raw_dtype = _RAW_DTYPE.get(dtype)
        if raw_dtype is None:
            raise TritonModelException("Dtype is invalid." if dtype == 0 else "Unsupported triton dtype.")
        count = 1
        for dim in dims:
            count *= dim
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

# ================================================================================================
# InferenceResponse
# ================================================================================================


class InferenceResponse:
    """``InferenceResponse(output_tensors=[], error=None)``."""

    __slots__ = ("_outputs", "_error", "_is_last_response", "_id", "_shm", "__weakref__")

    def __init__(self, *args, **kwargs):
        if (
            not kwargs
            and len(args) == 1
            and type(args[0]) is list
            and all(type(x) is Tensor or x is None for x in args[0])
        ):
            outputs, error = args[0], None
        elif (
            not args
            and len(kwargs) == 1
            and type(kwargs.get("output_tensors")) is list
            and all(type(x) is Tensor or x is None for x in kwargs["output_tensors"])
        ):
            outputs, error = kwargs["output_tensors"], None
        else:
            outputs, error = _RESPONSE_SIG.bind(args, kwargs)
        for tensor in outputs:
            if tensor is None:
                raise TritonModelException("Output tensor for inference response should not be empty.")
        self._outputs = list(outputs)
        self._error = error
        self._is_last_response = True
        self._id = 0
        self._shm = None

    @classmethod
    def _from_parent(cls, outputs=(), error=None, is_last_response=True, response_id=0):
        """A response loaded from the parent (BLS); ``response_id`` keys BLS streams."""
        obj = _new_bare(cls)
        obj._outputs = list(outputs)
        obj._error = error
        obj._is_last_response = bool(is_last_response)
        obj._id = response_id
        obj._shm = None
        return obj

    @classmethod
    def _error_response(cls, message, code=1):
        return cls._from_parent((), TritonError._create(message, code), True, 0)

    def _prune(self, requested_output_names):
        """Drop outputs whose name is not requested, in place (C++ ``PruneOutputTensors``)."""
        names = requested_output_names
        self._outputs[:] = [t for t in self._outputs if t._name in names]

    def output_tensors(self):
        """The output tensors (a new list, the same Tensor objects)."""
        return list(self._outputs)

    def has_error(self):
        return self._error is not None

    def error(self):
        """The TritonError, or None."""
        return self._error


_RESPONSE_SIG = _Sig(
    "__init__",
    "c_python_backend_utils.InferenceResponse(output_tensors: List[c_python_backend_utils.Tensor] = [], "
    "error: c_python_backend_utils.TritonError = None)",
    (
        ("output_tensors", [], _cv_sequence(_cv_instance(Tensor)), False),
        ("error", None, _cv_instance(TritonError), True),
    ),
    kind="constructor",
)


class _CancelState:
    """The C++ ``PbCancel`` shared by a request and its response sender."""

    __slots__ = ("request_address", "factory_address", "cancelled", "closed", "lock")

    def __init__(self, request_address, factory_address):
        self.request_address = request_address
        self.factory_address = factory_address
        self.cancelled = False
        # Set once the response factory is gone (FINAL sent, or the stub closed the sender):
        # asking the parent about a deleted factory crashes tritonserver, so answer locally.
        self.closed = False
        self.lock = _threading.Lock()

    def query(self):
        if self.cancelled or self.closed:
            return self.cancelled
        with self.lock:
            if self.cancelled or self.closed:
                return self.cancelled
            if self.request_address == 0 and self.factory_address == 0:
                return False
            rt = _current_runtime()
            if not rt.stub_to_parent_active:
                rt.log("pb_cancel.cc", 72, _LOG_ERROR, "Cannot communicate with parent service")
                return False
            result = bool(rt.is_cancelled(self.request_address, self.factory_address))
            if result:
                self.cancelled = True
            return result


# ================================================================================================
# InferenceResponseSender
# ================================================================================================


class InferenceResponseSender:
    """The response sender of a request: ``send(response=None, flags=0)``, ``is_cancelled()``.

    Only flags 0 and 1 (``TRITONSERVER_RESPONSE_COMPLETE_FINAL``) are accepted;
    a non-decoupled model may send one response (and a FINAL after it); FINAL
    closes the sender.  When the sender goes away without ever having sent
    FINAL (and was not closed by the stub) the response factory is cleaned up
    through the runtime, as the C++ destructor does.
    """

    __slots__ = (
        "_request_address",
        "_factory_address",
        "_is_decoupled",
        "_requested",
        "_cancel",
        "_lock",
        "_closed",
        "_sent",
        "_factory_deleted",
        "_abandon_error",
        "__weakref__",
    )

    def __init__(self, *args, **kwargs):
        _no_constructor(type(self))

    @classmethod
    def _create(cls, request_address, factory_address, is_decoupled, requested_output_names, cancel):
        """``is_decoupled``: None (request built by the model), a bool, or a callable read at send time."""
        obj = _new_bare(cls)
        obj._request_address = request_address
        obj._factory_address = factory_address
        obj._is_decoupled = is_decoupled
        obj._requested = requested_output_names
        obj._cancel = cancel
        obj._lock = _threading.Lock()
        obj._closed = False
        obj._sent = 0
        obj._factory_deleted = False
        obj._abandon_error = None
        return obj

    def _decoupled(self):
        flag = self._is_decoupled
        if callable(flag):
            return bool(flag())
        return bool(flag)

    def _update_state(self, response, flags):
        """The C++ ``UpdateStateAndCounters``: state checks, then count the response."""
        if self._is_decoupled is None:
            raise TritonModelException(
                "Unable to send response. Response sender has no reference to the decoupled state of the model."
            )
        decoupled = self._decoupled()
        with self._lock:
            if not decoupled:
                if response is not None and self._sent > 0:
                    raise TritonModelException(
                        "Unable to send response. Non-decoupled model cannot send more than one response."
                    )
                if response is None and flags == 1 and self._sent == 0:
                    raise TritonModelException(
                        "Unable to send response. Non-decoupled model cannot send complete final "
                        "before sending a response."
                    )
            if self._closed:
                raise TritonModelException("Unable to send response. Response sender has been closed.")
            if flags == 1:
                self._factory_deleted = True
                self._closed = True
                self._cancel.closed = True
            self._sent += 1

    def _close(self):
        with self._lock:
            self._closed = True
            self._factory_deleted = True
            self._cancel.closed = True

    def _is_closed(self):
        with self._lock:
            return self._closed

    def _responses_sent(self):
        """How many responses/flags went through this sender (incl. one returned from execute)."""
        with self._lock:
            return self._sent

    def _delete_response_factory(self):
        with self._lock:
            already = self._factory_deleted
            self._factory_deleted = True
        if not already and self._factory_address:
            _current_runtime().factory_cleanup(self._factory_address)

    def send(self, *args, **kwargs):
        """Send a response and/or flags for this request."""
        # The common calls, send(r), send(r, flags=F), send(flags=F), skip the generic binding.
        flags = kwargs.get("flags") if kwargs.keys() == {"flags"} else 0 if not kwargs else None
        response = args[0] if len(args) == 1 else None
        if not (len(args) <= 1 and type(flags) is int and (flags == 0 or flags == 1)
                and (response is None or type(response) is InferenceResponse)):
            response, flags = _SEND_SIG.bind(args, kwargs, self)
        if flags != 1 and flags != 0:
            raise TritonModelException("Unable to send response. Unsupported flag provided.")
        if flags == 0 and response is None:
            raise TritonModelException(
                "Inference Response object must be provided when the response flags is set to zero."
            )
        self._update_state(response, flags)
        if response is not None:
            response._prune(self._requested)
        _current_runtime().send_response(self, response, flags)

    def is_cancelled(self):
        """Whether the request was cancelled (the answer is cached once True)."""
        return self._cancel.query()

    def __del__(self):
        try:
            text = self._abandon_error
            if text is not None and not self._closed and self._sent == 0:
                # The stub marked this request (non-decoupled, execute returned no response
                # for it) and nobody kept the sender to answer later: answer with an error
                # instead of leaving the client waiting (the C++ stub leaves it waiting).
                self._closed = self._factory_deleted = True
                _current_runtime().abandoned_response(self._request_address,
                                                      self._factory_address, text)
                return
            self._delete_response_factory()
        except BaseException:
            pass


_SEND_SIG = _Sig(
    "send",
    "send(self: c_python_backend_utils.InferenceResponseSender, response: "
    "c_python_backend_utils.InferenceResponse = None, flags: int = 0) -> None",
    (
        ("response", None, _cv_instance(InferenceResponse), True),
        ("flags", 0, _cv_uint32, False),
    ),
    kind="method",
)

# ================================================================================================
# InferenceRequest
# ================================================================================================

_DEFAULT_PREFERRED_MEMORY = PreferredMemory._create(2, 0)
_DEFAULT_TRACE = InferenceTrace._create(0, "")
_DICT_TYPE_NAME = "N8pybind114dictE"


class InferenceRequest:
    """A request: received in ``execute`` or built by the model for BLS.

    ``InferenceRequest(request_id='', correlation_id=0, inputs, requested_output_names,
    model_name, model_version=-1, flags=0, timeout=0, preferred_memory=PreferredMemory(...),
    trace=InferenceTrace(), parameters=None)``.
    """

    __slots__ = (
        "_request_id",
        "_correlation_id",
        "_inputs",
        "_requested_output_names",
        "_model_name",
        "_model_version",
        "_flags",
        "_timeout",
        "_preferred_memory",
        "_trace",
        "_parameters",
        "_request_address",
        "_factory_address",
        "_release_flags",
        "_release_flags_setter",
        "_is_decoupled",
        "_cancel_obj",
        "_sender_obj",
        "_returned",
        "_shm",
        "__weakref__",
    )

    def __init__(self, *args, **kwargs):
        (
            request_id,
            correlation_id,
            inputs,
            requested_output_names,
            model_name,
            model_version,
            flags,
            timeout,
            preferred_memory,
            trace,
            parameters,
        ) = _REQUEST_SIG.bind(args, kwargs)
        if parameters is None:
            parameters = {}
        elif not isinstance(parameters, dict):
            raise TritonModelException(
                "Expect %s, got %s" % (_DICT_TYPE_NAME, str(type(parameters)))
            )
        for key, value in parameters.items():
            if not isinstance(key, str):
                raise TritonModelException(
                    "Expect parameters keys to have type str, found type %s" % str(type(key))
                )
            if not isinstance(value, (bool, int, str)):
                raise TritonModelException(
                    "Expect parameters values to have type bool/int/str, found type %s" % str(type(value))
                )
        parameters_text = str(_json.dumps(parameters))
        if isinstance(correlation_id, int):
            try:
                correlation_id = _cv_uint64(correlation_id)
            except _Reject:
                raise RuntimeError(_CAST_ERROR) from None
        elif isinstance(correlation_id, str):
            correlation_id = str.__str__(correlation_id)
        else:
            raise TritonModelException("Correlation ID must be integer or string")
        for tensor in inputs:
            if tensor is None:
                raise TritonModelException(
                    "Input tensor for request with id '%s' and model name '%s' should not be empty."
                    % (request_id, model_name)
                )
        names = sorted(set(requested_output_names))
        for output_name in names:
            if output_name == "":
                raise TritonModelException(
                    "Requested output name for request with id '%s' and model name '%s' should not be empty."
                    % (request_id, model_name)
                )
        self._init(
            request_id, correlation_id, inputs, names, model_name, model_version, flags, timeout,
            preferred_memory, trace, parameters_text, 0, 0, None, 1, None,
        )

    def _init(
        self, request_id, correlation_id, inputs, names, model_name, model_version, flags, timeout,
        preferred_memory, trace, parameters_text, request_address, factory_address, is_decoupled,
        release_flags, release_flags_setter,
    ):
        self._request_id = request_id
        self._correlation_id = correlation_id
        self._inputs = list(inputs)
        self._requested_output_names = tuple(names)
        self._model_name = model_name
        self._model_version = model_version
        self._flags = flags
        self._timeout = timeout
        self._preferred_memory = preferred_memory
        self._trace = trace
        self._parameters = parameters_text
        self._request_address = request_address
        self._factory_address = factory_address
        self._release_flags = release_flags
        self._release_flags_setter = release_flags_setter
        self._shm = None
        # The PbCancel and the response sender are made on first use (most requests of a
        # non-decoupled model never need them); see ``_sender`` and ``_return_final``.
        self._is_decoupled = is_decoupled
        self._cancel_obj = None
        self._sender_obj = None
        self._returned = False

    @classmethod
    def _from_shm(cls, request_id, correlation_id, inputs, names, model_name, model_version,
                  flags, timeout, preferred_memory, trace, parameters_text, request_address,
                  factory_address, is_decoupled, release_flags_setter):
        """The stub's hot path: ``_from_server`` with its arguments already in final form
        (``names`` a sorted tuple without duplicates, ``preferred_memory`` and ``trace``
        objects, ints for the numbers). Unlike ``_from_server`` the response sender is not
        made here: the caller must make it (touch ``_sender``) for every request whose
        response was not returned through ``_return_final``, or the factory is never
        cleaned up when the request goes away."""
        obj = _new_bare(cls)
        obj._init(request_id, correlation_id, inputs, names, model_name, model_version, flags,
                  timeout, preferred_memory, trace, parameters_text, request_address,
                  factory_address, is_decoupled, 1, release_flags_setter)
        return obj

    @property
    def _cancel(self):
        c = self._cancel_obj
        if c is None:
            c = self._cancel_obj = _CancelState(self._request_address, self._factory_address)
            if self._returned:
                c.closed = True
        return c

    @property
    def _sender(self):
        s = self._sender_obj
        if s is None:
            s = self._sender_obj = InferenceResponseSender._create(
                self._request_address, self._factory_address, self._is_decoupled,
                frozenset(self._requested_output_names), self._cancel
            )
            if self._returned:
                # execute returned this request's response (FINAL) before the sender existed
                s._closed = s._factory_deleted = True
                s._sent = 1
        return s

    def _return_final(self, response):
        """Account for ``response`` returned from a non-decoupled execute: the sender's
        ``_update_state(response, FINAL)``, without making a sender nobody asked for."""
        s = self._sender_obj
        if s is not None or self._is_decoupled is None:
            self._sender._update_state(response, 1)
            return
        self._returned = True
        c = self._cancel_obj
        if c is not None:
            c.closed = True

    @classmethod
    def _from_server(
        cls,
        *,
        request_id="",
        correlation_id=0,
        inputs=(),
        requested_output_names=(),
        model_name="",
        model_version=-1,
        flags=0,
        timeout=0,
        preferred_memory=None,
        trace=None,
        parameters="",
        request_address=0,
        response_factory_address=0,
        is_decoupled=False,
        release_flags=1,
        release_flags_setter=None,
    ):
        """A request received from the parent in ``ExecuteRequest``.

        ``is_decoupled`` is a bool or a zero-argument callable that returns the
        model's current decoupled flag (C++ keeps a pointer to
        ``IPCControlShm.decoupled``).  ``release_flags_setter(flags)``, when
        given, is called by ``set_release_flags`` (C++ writes the flags to the
        request's shm block; the parent reads them back after execute).
        """
        obj = _new_bare(cls)
        if preferred_memory is None:
            preferred_memory = _DEFAULT_PREFERRED_MEMORY
        elif not isinstance(preferred_memory, PreferredMemory):
            preferred_memory = PreferredMemory._create(*preferred_memory)
        if trace is None:
            trace = _DEFAULT_TRACE
        elif not isinstance(trace, InferenceTrace):
            trace = InferenceTrace._create(*trace)
        obj._init(
            request_id, correlation_id, inputs, sorted(set(requested_output_names)), model_name,
            int(model_version), int(flags), int(timeout), preferred_memory, trace, parameters,
            int(request_address), int(response_factory_address), is_decoupled, int(release_flags),
            release_flags_setter,
        )
        obj._sender  # noqa: B018 - made now: dropping the request cleans its factory up
        return obj

    def inputs(self):
        """The input tensors (a new list, the same Tensor objects)."""
        return list(self._inputs)

    def request_id(self):
        return self._request_id

    def correlation_id(self):
        """The correlation id: an int, or a str when the client sent a string."""
        return self._correlation_id

    def flags(self):
        return self._flags

    def set_flags(self, *args, **kwargs):
        """Change the request flags (local to this object)."""
        (flags,) = _SET_FLAGS_SIG.bind(args, kwargs, self)
        self._flags = flags

    def timeout(self):
        """The timeout in microseconds."""
        return self._timeout

    def parameters(self):
        """The request parameters as JSON text."""
        return self._parameters

    def trace(self):
        return self._trace

    def requested_output_names(self):
        """The requested output names (a new ``set``)."""
        return set(self._requested_output_names)

    def get_response_sender(self):
        """The request's InferenceResponseSender (the same object every time)."""
        return self._sender

    def is_cancelled(self):
        """Whether the request was cancelled.

        A request built by the model (no parent addresses) answers False
        locally; the C++ stub asks the parent, which then throws.
        """
        return self._cancel.query()

    def set_release_flags(self, *args, **kwargs):
        """``set_release_flags(flags)`` (positional only): e.g. RESCHEDULE for sequence batching."""
        (flags,) = _SET_RELEASE_FLAGS_SIG.bind(args, kwargs, self)
        self._release_flags = flags
        setter = self._release_flags_setter
        if setter is not None:
            setter(flags)

    def _exec(self, decoupled):
        rt = _current_runtime()
        if not rt.initialized or rt.finalizing:
            raise TritonModelException("BLS is only supported during the 'execute' function.")
        try:
            response = rt.bls_exec(self, decoupled)
        except TritonModelException as err:
            response = InferenceResponse._error_response(str(err))
        if decoupled and not isinstance(response, ResponseIterator):
            return rt.response_iterator(response)
        return response

    def exec(self, *args, **kwargs):
        """Run this request on another model (BLS); ``decoupled=True`` gives a ResponseIterator."""
        decoupled = False
        if args or kwargs:
            (decoupled,) = _EXEC_SIG.bind(args, kwargs, self)
        return self._exec(decoupled)

    def async_exec(self, *args, **kwargs):
        """Like ``exec`` but runs in the loop's default executor and returns an awaitable future."""
        decoupled = False
        if args or kwargs:
            (decoupled,) = _ASYNC_EXEC_SIG.bind(args, kwargs, self)
        import asyncio

        loop = asyncio.get_running_loop()
        return loop.run_in_executor(None, self._exec, decoupled)


_REQUEST_SIG = _Sig(
    "__init__",
    "c_python_backend_utils.InferenceRequest(request_id: str = '', correlation_id: object = 0, "
    "inputs: List[triton::backend::python::PbTensor], requested_output_names: List[str], "
    "model_name: str, model_version: int = -1, flags: int = 0, timeout: int = 0, "
    "preferred_memory: c_python_backend_utils.PreferredMemory = "
    "<c_python_backend_utils.PreferredMemory object at %#x>, "
    "trace: c_python_backend_utils.InferenceTrace = "
    "<c_python_backend_utils.InferenceTrace object at %#x>, parameters: object = None)"
    # pybind11 prints the C++ type of the inputs vector and the defaults' reprs as of the
    # module's creation (the classes' __module__ is set at the end of this file).
    % (id(_DEFAULT_PREFERRED_MEMORY), id(_DEFAULT_TRACE)),
    (
        ("request_id", "", _cv_str, False),
        ("correlation_id", 0, None, False),
        ("inputs", _REQUIRED, _cv_sequence(_cv_instance(Tensor)), False),
        ("requested_output_names", _REQUIRED, _cv_sequence(_cv_str), False),
        ("model_name", _REQUIRED, _cv_str, False),
        ("model_version", -1, _cv_int64, False),
        ("flags", 0, _cv_uint32, False),
        ("timeout", 0, _cv_uint64, False),
        ("preferred_memory", _DEFAULT_PREFERRED_MEMORY, _cv_instance(PreferredMemory), False),
        ("trace", _DEFAULT_TRACE, _cv_instance(InferenceTrace), False),
        ("parameters", None, None, True),
    ),
    kind="constructor",
)
_SET_FLAGS_SIG = _Sig(
    "set_flags",
    "set_flags(self: c_python_backend_utils.InferenceRequest, arg0: int) -> None",
    ((None, _REQUIRED, _cv_uint32, False),),
    kind="method",
)
_SET_RELEASE_FLAGS_SIG = _Sig(
    "set_release_flags",
    "set_release_flags(self: c_python_backend_utils.InferenceRequest, arg0: int) -> None",
    ((None, _REQUIRED, _cv_uint32, False),),
    kind="method",
)
_EXEC_SIG = _Sig(
    "exec",
    "exec(self: c_python_backend_utils.InferenceRequest, decoupled: bool = False) -> object",
    (("decoupled", False, _cv_bool, False),),
    kind="method",
)
_ASYNC_EXEC_SIG = _Sig(
    "async_exec",
    "async_exec(self: c_python_backend_utils.InferenceRequest, decoupled: bool = False) -> object",
    (("decoupled", False, _cv_bool, False),),
    kind="method",
)

# ================================================================================================
# ResponseIterator
# ================================================================================================


class ResponseIterator:
    """Iterates the responses of a decoupled BLS call (``exec(decoupled=True)``).

    The last response (``is_last_response``) is yielded too.  Once finished,
    ``iter()`` restarts from the first response.  When finished (or destroyed)
    the parent's payload is released through the runtime.
    """

    __slots__ = (
        "_id",
        "_buffer",
        "_responses",
        "_cv",
        "_finished",
        "_cleared",
        "_idx",
        "_last_in",
        "_waiters",
        "__weakref__",
    )

    def __init__(self, *args, **kwargs):
        (response,) = _ITERATOR_SIG.bind(args, kwargs)
        if response is None:
            _ITERATOR_SIG.fail(args, kwargs)
        self._id = response._id
        self._buffer = _deque([response])
        self._responses = []
        self._cv = _threading.Condition(_threading.Lock())
        self._finished = False
        self._cleared = False
        self._idx = 0
        self._last_in = bool(response._is_last_response)
        self._waiters = 0

    def _enqueue(self, response):
        with self._cv:
            self._buffer.append(response)
            if response._is_last_response:
                self._last_in = True
            self._cv.notify()

    def _open(self):
        """Whether more responses are still expected (no last response has arrived yet)."""
        return not self._last_in and not self._finished

    def _is_waiting(self):
        return self._waiters > 0

    def _get_existing_responses(self):
        with self._cv:
            responses = list(self._buffer)
            self._buffer.clear()
            self._finished = True
            self._cleared = True
        return responses

    def _clear(self):
        if self._id:
            _current_runtime().bls_payload_cleanup(self._id)
        with self._cv:
            self._buffer.clear()
            self._cv.notify_all()
        self._cleared = True

    def __iter__(self):
        if self._finished and self._idx >= len(self._responses):
            self._idx = 0
        return self

    def __next__(self):
        if self._finished:
            if not self._cleared:
                self._clear()
            if self._idx < len(self._responses):
                response = self._responses[self._idx]
                self._idx += 1
                return response
            raise StopIteration("Iteration is done for the responses.")
        with self._cv:
            self._waiters += 1
            try:
                while not self._buffer:
                    # Slices: a stub whose server is gone stops waiting (the runtime raises).
                    if not self._cv.wait(1.0):
                        _current_runtime().check_parent_alive()
            finally:
                self._waiters -= 1
            response = self._buffer.popleft()
            self._finished = bool(response._is_last_response)
            self._responses.append(response)
        if self._finished:
            self._idx = len(self._responses)
            self._clear()
        return response

    def __del__(self):
        try:
            if not self._finished:
                while True:
                    try:
                        self.__next__()
                    except StopIteration:
                        break
            if not self._cleared:
                self._clear()
        except BaseException:
            pass


_runtime_module.ResponseIteratorMap.iterator_type = ResponseIterator

_ITERATOR_SIG = _Sig(
    "__init__",
    "c_python_backend_utils.ResponseIterator(arg0: c_python_backend_utils.InferenceResponse)",
    ((None, _REQUIRED, _cv_instance(InferenceResponse), True),),
    kind="constructor",
)

# ================================================================================================
# Logger
# ================================================================================================

_GLOBALS = globals()


def _caller_frame():
    frame = _sys._getframe(1)
    while frame is not None and frame.f_globals is _GLOBALS:
        frame = frame.f_back
    return frame


def _emit(message, level):
    frame = _caller_frame()
    if frame is None:
        filename, line = "", 0
    else:
        filename, line = frame.f_code.co_filename, frame.f_lineno or 0
    _current_runtime().log(filename, line, int(level), message)


class Logger:
    """``Logger.log(message, level=Logger.INFO)`` and ``log_info/log_warn/log_error/log_verbose``.

    The file and line are those of the Python caller.
    """

    __slots__ = ()
    LogLevel = _LogLevel
    INFO = _LogLevel.INFO
    WARNING = _LogLevel.WARNING
    ERROR = _LogLevel.ERROR
    VERBOSE = _LogLevel.VERBOSE

    def __init__(self, *args, **kwargs):
        _no_constructor(type(self))

    @staticmethod
    def log(*args, **kwargs):
        message, level = _LOG_SIG.bind(args, kwargs)
        _emit(message, level)

    @staticmethod
    def log_info(*args, **kwargs):
        (message,) = _LOG_INFO_SIG.bind(args, kwargs)
        _emit(message, _LogLevel.INFO)

    @staticmethod
    def log_warn(*args, **kwargs):
        (message,) = _LOG_WARN_SIG.bind(args, kwargs)
        _emit(message, _LogLevel.WARNING)

    @staticmethod
    def log_error(*args, **kwargs):
        (message,) = _LOG_ERROR_SIG.bind(args, kwargs)
        _emit(message, _LogLevel.ERROR)

    @staticmethod
    def log_verbose(*args, **kwargs):
        (message,) = _LOG_VERBOSE_SIG.bind(args, kwargs)
        _emit(message, _LogLevel.VERBOSE)


_LOG_SIG = _Sig(
    "log",
    "log(message: str, level: c_python_backend_utils.Logger.LogLevel = <LogLevel.INFO: 0>) -> None",
    (("message", _REQUIRED, _cv_str, True), ("level", _LogLevel.INFO, _cv_instance(_LogLevel), False)),
)
_LOG_INFO_SIG = _Sig("log_info", "log_info(message: str) -> None", (("message", _REQUIRED, _cv_str, True),))
_LOG_WARN_SIG = _Sig("log_warn", "log_warn(message: str) -> None", (("message", _REQUIRED, _cv_str, True),))
_LOG_ERROR_SIG = _Sig("log_error", "log_error(message: str) -> None", (("message", _REQUIRED, _cv_str, True),))
_LOG_VERBOSE_SIG = _Sig(
    "log_verbose", "log_verbose(message: str) -> None", (("message", _REQUIRED, _cv_str, True),)
)

# ================================================================================================
# Custom metrics
# ================================================================================================


def _stderr(text):
    data = text.encode("utf-8", "surrogateescape")
    try:
        while data:
            data = data[_os.write(2, data):]
    except OSError:
        pass


class Metric:
    """One metric of a MetricFamily: ``increment(v)``, ``set(v)``, ``observe(v)``, ``value()``."""

    __slots__ = ("_labels", "_buckets", "_family_address", "_address", "_cleared", "__weakref__")

    def __init__(self, *args, **kwargs):
        _no_constructor(type(self))

    def _info(self):
        return _MetricInfo(self._address, self._family_address, self._labels, self._buckets)

    def _check(self):
        if self._cleared:
            raise TritonModelException(
                "Invalid metric operation as the corresponding 'MetricFamily' has been deleted. "
                "The 'MetricFamily' object should be deleted AFTER its corresponding 'Metric' "
                "objects have been deleted."
            )

    def _clear(self):
        if getattr(self, "_cleared", True):
            return
        self._cleared = True
        try:
            _current_runtime().metric_delete(self._info())
        except TritonModelException as err:
            _stderr("Error when deleting Metric: %s\n" % err)

    def _operate(self, sig, args, kwargs, prefix, op):
        (value,) = sig.bind(args, kwargs, self)
        try:
            self._check()
            getattr(_current_runtime(), op)(self._info(), value)
        except TritonModelException as err:
            raise TritonModelException(prefix + str(err)) from None

    def increment(self, *args, **kwargs):
        self._operate(_INCREMENT_SIG, args, kwargs, "Failed to increment metric value: ", "metric_increment")

    def set(self, *args, **kwargs):
        self._operate(_SET_SIG, args, kwargs, "Failed to set metric value: ", "metric_set")

    def observe(self, *args, **kwargs):
        self._operate(_OBSERVE_SIG, args, kwargs, "Failed to observe metric value: ", "metric_observe")

    def value(self):
        try:
            self._check()
            return float(_current_runtime().metric_value(self._info()))
        except TritonModelException as err:
            raise TritonModelException("Failed to get metric value: " + str(err)) from None

    def __del__(self):
        try:
            self._clear()
        except BaseException:
            pass


def _metric_op_sig(name):
    return _Sig(
        name,
        "%s(self: c_python_backend_utils.Metric, arg0: float) -> None" % name,
        ((None, _REQUIRED, _cv_float, True),),
        kind="method",
    )


_INCREMENT_SIG = _metric_op_sig("increment")
_SET_SIG = _metric_op_sig("set")
_OBSERVE_SIG = _metric_op_sig("observe")


class MetricFamily:
    """``MetricFamily(name, description, kind)``; ``.Metric(labels=None, buckets=None)``.

    The C++ stub sends the creation request twice (constructor and factory) and
    leaks the first family; tritonstub creates it once.  Metrics stay alive
    while their family lives (the family keeps them, as in C++); deleting the
    family deletes its metrics first.
    """

    __slots__ = ("_name", "_description", "_kind", "_address", "_metrics", "_lock", "__weakref__")

    COUNTER = MetricKind.COUNTER
    GAUGE = MetricKind.GAUGE
    HISTOGRAM = MetricKind.HISTOGRAM

    def __init__(self, *args, **kwargs):
        name, description, kind = _METRIC_FAMILY_SIG.bind(args, kwargs)
        try:
            address = _current_runtime().metric_family_new(
                _MetricFamilyInfo(name, description, int(kind), 0)
            )
        except TritonModelException as err:
            raise TritonModelException("Error when creating MetricFamily: " + str(err)) from None
        self._name = name
        self._description = description
        self._kind = int(kind)
        self._metrics = {}
        self._lock = _threading.Lock()
        self._address = int(address)

    def Metric(self, *args, **kwargs):  # noqa: N802 - the C++ name
        labels, buckets = _METRIC_SIG.bind(args, kwargs, self)
        if labels is not None and not isinstance(labels, dict):
            raise TritonModelException("Failed to create metric. Labels must be a dictionary.")
        labels_text = str(_json.dumps(labels))
        bucket_values = None
        if buckets is not None:
            if not isinstance(buckets, list):
                raise TritonModelException("Failed to create metric. Buckets must be a list.")
            if self._kind in (0, 1):
                raise TritonModelException("Failed to create metric. Unexpected buckets found.")
            try:
                bucket_values = [_cv_float(b) for b in buckets]
            except _Reject:
                raise RuntimeError(_CAST_ERROR) from None
        elif self._kind == 2:
            raise TritonModelException("Failed to create metric. Missing required buckets.")
        metric = _new_bare(Metric)
        metric._labels = labels_text
        metric._buckets = bucket_values
        metric._family_address = self._address
        metric._cleared = True
        try:
            address = _current_runtime().metric_new(_MetricInfo(0, self._address, labels_text, bucket_values))
        except TritonModelException as err:
            raise TritonModelException("Error when creating Metric: " + str(err)) from None
        metric._address = int(address)
        metric._cleared = False
        with self._lock:
            self._metrics.setdefault(metric._address, metric)
        return metric

    def __del__(self):
        address = getattr(self, "_address", None)
        if address is None:
            return
        try:
            with self._lock:
                metrics = list(self._metrics.values())
                self._metrics.clear()
            for metric in metrics:
                metric._clear()
            try:
                _current_runtime().metric_family_delete(
                    _MetricFamilyInfo(self._name, self._description, self._kind, address)
                )
            except TritonModelException as err:
                _stderr("Error when deleting MetricFamily: %s\n" % err)
        except BaseException:
            pass


_METRIC_FAMILY_SIG = _Sig(
    "__init__",
    "c_python_backend_utils.MetricFamily(name: str, description: str, kind: c_python_backend_utils.MetricKind)",
    (
        ("name", _REQUIRED, _cv_str, False),
        ("description", _REQUIRED, _cv_str, False),
        ("kind", _REQUIRED, _cv_instance(MetricKind), False),
    ),
    kind="constructor",
)
_METRIC_SIG = _Sig(
    "Metric",
    "Metric(self: c_python_backend_utils.MetricFamily, labels: object = None, buckets: object = None) "
    "-> c_python_backend_utils.Metric",
    (("labels", None, None, True), ("buckets", None, None, True)),
    kind="method",
)

# ================================================================================================
# Model control, shared memory, background futures
# ================================================================================================


def load_model(*args, **kwargs):
    """``load_model(model_name, config="", files=None)``: files maps paths to bytes."""
    name, config, files = _LOAD_MODEL_SIG.bind(args, kwargs)
    files_map = {}
    if files is not None:
        if not isinstance(files, dict):
            raise TritonModelException(
                "failed to load model '%s', files should be a dictionary of file paths and file contents" % name
            )
        from .exc_text import exception_type_name

        for key, value in files.items():
            try:
                key_text = _cv_str(key)
            except _Reject:
                raise RuntimeError(_CAST_ERROR) from None
            if not isinstance(value, bytes):
                raise TypeError(
                    "Object of type '%s' is not an instance of 'bytes'" % exception_type_name(type(value))
                )
            files_map[key_text] = bytes(value)
    try:
        _current_runtime().load_model(name, config, files_map)
    except TritonModelException as err:
        raise TritonModelException("Failed to load model: " + str(err)) from None


def unload_model(*args, **kwargs):
    """``unload_model(model_name, unload_dependents=False)``."""
    name, unload_dependents = _UNLOAD_MODEL_SIG.bind(args, kwargs)
    try:
        _current_runtime().unload_model(name, unload_dependents)
    except TritonModelException as err:
        raise TritonModelException("Failed to unload model: " + str(err)) from None


def is_model_ready(*args, **kwargs):
    """``is_model_ready(model_name, model_version="")`` -> bool."""
    name, version = _IS_MODEL_READY_SIG.bind(args, kwargs)
    try:
        return bool(_current_runtime().is_model_ready(name, version))
    except TritonModelException as err:
        raise TritonModelException("Failed to check model readiness: " + str(err)) from None


_LOAD_MODEL_SIG = _Sig(
    "load_model",
    "load_model(model_name: str, config: str = '', files: object = None) -> None",
    (
        ("model_name", _REQUIRED, _cv_str, False),
        ("config", "", _cv_str, False),
        ("files", None, None, True),
    ),
)
_UNLOAD_MODEL_SIG = _Sig(
    "unload_model",
    "unload_model(model_name: str, unload_dependents: bool = False) -> None",
    (("model_name", _REQUIRED, _cv_str, False), ("unload_dependents", False, _cv_bool, False)),
)
_IS_MODEL_READY_SIG = _Sig(
    "is_model_ready",
    "is_model_ready(model_name: str, model_version: str = '') -> bool",
    (("model_name", _REQUIRED, _cv_str, False), ("model_version", "", _cv_str, False)),
)


class SharedMemory:
    """The stub's shared-memory pool (tests only): ``free_memory()``."""

    __slots__ = ("__weakref__",)

    def __init__(self, *args, **kwargs):
        _no_constructor(type(self))

    def free_memory(self):
        return int(_current_runtime().free_memory())


shared_memory = _new_bare(SharedMemory)


def async_event_future_done_callback(*args, **kwargs):
    """Done-callback the stub puts on background coroutines (internal)."""
    (future,) = _FUTURE_DONE_SIG.bind(args, kwargs)
    _current_runtime().background_future_done(future)


_FUTURE_DONE_SIG = _Sig(
    "async_event_future_done_callback",
    "async_event_future_done_callback(py_future: object) -> None",
    (("py_future", _REQUIRED, None, False),),
)

# ================================================================================================
# Wiring
# ================================================================================================

_PB_UTILS_NAMES = (
    "TritonError",
    "TritonModelException",
    "Tensor",
    "InferenceRequest",
    "InferenceResponse",
    "Logger",
    "PreferredMemory",
    "TRITONSERVER_MEMORY_GPU",
    "TRITONSERVER_MEMORY_CPU",
    "MetricFamily",
    "load_model",
    "unload_model",
    "is_model_ready",
)


def _inject_into_pb_utils(pb_utils, get_model_dir=None):
    """Copy the names the C++ stub injects into ``triton_python_backend_utils``.

    ``get_model_dir`` (a zero-argument callable returning the version
    directory) becomes ``pb_utils.get_model_dir`` when given.
    """
    for attr in _PB_UTILS_NAMES:
        setattr(pb_utils, attr, _GLOBALS[attr])
    if get_model_dir is not None:
        pb_utils.get_model_dir = get_model_dir


for _cls in (
    TritonError,
    PreferredMemory,
    InferenceTrace,
    Tensor,
    InferenceResponse,
    InferenceResponseSender,
    InferenceRequest,
    ResponseIterator,
    Logger,
    Metric,
    MetricFamily,
    SharedMemory,
):
    _cls.__module__ = _MODULE
for _func in (load_model, unload_model, is_model_ready, async_event_future_done_callback):
    _func.__module__ = _MODULE
del _cls, _func, _name, _member


# dir() of the C++ embedded module: its public names only (our helpers stay importable, but a
# model listing the module sees what it would see under the C++ stub).
_CPP_DIR = (
    "COUNTER", "GAUGE", "HISTOGRAM", "InferenceRequest", "InferenceResponse",
    "InferenceResponseSender", "InferenceTrace", "Logger", "MemoryType", "Metric",
    "MetricFamily", "MetricKind", "PreferredMemory", "ResponseIterator", "SharedMemory",
    "TRITONSERVER_MEMORY_CPU", "TRITONSERVER_MEMORY_GPU", "Tensor", "TritonError",
    "TritonModelException", "async_event_future_done_callback", "is_model_ready", "load_model",
    "shared_memory", "unload_model",
    "__doc__", "__loader__", "__name__", "__package__", "__spec__",
)


def __dir__():
    return sorted(_CPP_DIR)
