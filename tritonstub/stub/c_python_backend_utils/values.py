"""TritonError, PreferredMemory and InferenceTrace: the small value types of the model API."""
from ._pybind import (_cv_instance, _cv_int64, _cv_str, _ErrorCode, MemoryType, _new_bare,
                      _no_constructor, _REQUIRED, _Sig)


def _features():
    from ..runtime import current_runtime
    return current_runtime().features


class TritonError:
    """``TritonError(message, code=TritonError.INTERNAL)``: an error carried by a response.

    ``code()`` returns a ``TritonError.__ErrorCode`` (UNKNOWN 0 .. CANCELLED 7),
    ``message()`` the text.
    """

    __slots__ = ("_message", "_code", "__weakref__")

    def __init__(self, *args, **kwargs):
        message, code = _TRITON_ERROR_SIG.bind(args, kwargs)
        if (len(args) > 1 or "code" in kwargs) and "error_codes" not in _features():
            from ...protocol.eras import needs
            raise TypeError(needs("TritonError(message, code)", "error_codes")
                            + ", whose errors carry only a message")
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
del _name, _member

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
