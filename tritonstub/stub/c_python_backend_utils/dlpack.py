"""DLPack through ctypes: exporting a tensor's memory, importing a producer's.

Export (``Tensor.to_dlpack`` / ``__dlpack__``): a ``DLManagedTensor`` pointing at the tensor's
numpy data, wrapped in a capsule named ``dltensor``; the array is kept alive in ``_exports``
until the consumer calls the deleter (or the unconsumed capsule is destroyed). Import
(``Tensor.from_dlpack``): a capsule, or any object with ``__dlpack__``/``__dlpack_device__``; the
capsule is renamed ``used_dltensor`` as the DLPack protocol requires, its memory is viewed as a
numpy array and the producer's deleter runs when that view goes away. CPU memory only.
"""
import ctypes as _ctypes
import operator as _operator
import threading as _threading

import numpy as _np

from ...protocol.dtypes import (BF16 as _BF16, BYTES as _BYTES, RAW_DTYPE as _RAW_DTYPE,
                                ROW as _ROW)
from ..runtime import TritonModelException
from ._pybind import _CAST_ERROR

_kDLCPU, _kDLCUDA, _kDLCUDAHost = 1, 2, 3
_MEM_CPU, _MEM_CPU_PINNED, _MEM_GPU = 0, 1, 2
_GPU_TEXT = "GPU tensors are not supported by tritonstub yet"
_NO_CAPI_TEXT = ("DLPack is not available: this interpreter has no CPython C API through ctypes "
                 "(ctypes.pythonapi); run the stub on CPython to exchange tensors by DLPack")


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

# CPython's C API through ctypes; an interpreter without it (PyPy) runs the stub without DLPack
_capi = getattr(_ctypes, "pythonapi", None)
_CAPSULE_DESTRUCTOR_T = _ctypes.CFUNCTYPE(None, _ctypes.c_void_p)
if _capi is not None:
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
    if _capi is None:
        raise TritonModelException(_NO_CAPI_TEXT)
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


def _import_capsule(capsule):
    if _capi is None:
        raise TritonModelException(_NO_CAPI_TEXT)
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
    return dtype, dims, view


def _import_dlpack(obj):
    """A DLPack producer (a capsule, or an object with ``__dlpack__``) as (triton dtype, dims,
    a numpy view of its memory); the producer's memory is released with the view."""
    if _is_capsule(obj):
        return _import_capsule(obj)
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
    return _import_capsule(capsule)
