"""pybind11, emulated: argument binding with pybind11's TypeError texts, and ``py::enum_``.

The C++ stub's model API is a pybind11 module, and model code can tell: a wrong argument type
raises ``TypeError`` with the ``incompatible function arguments`` text listing the signature,
``None`` is refused where the binding says ``.none(false)``, integers refuse floats, enums
compare equal to their int values and print as ``<LogLevel.INFO: 0>``. :class:`_Sig` binds
``(args, kwargs)`` against one signature with per-argument converters (``_cv_*``); a converter
raises ``_Reject`` and the signature turns that into pybind11's text. Every class of the API
reports ``c_python_backend_utils`` as its module (``_MODULE``).
"""
import operator as _operator

import numpy as _np

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
