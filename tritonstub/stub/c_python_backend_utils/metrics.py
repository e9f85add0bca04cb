"""MetricFamily and Metric: custom metrics, each operation one request to the parent."""
import json as _json
import os as _os
import threading as _threading

from ..runtime import MetricInfo as _MetricInfo
from ..runtime import TritonModelException
from ..runtime import current_runtime as _current_runtime
from ..runtime import MetricFamilyInfo as _MetricFamilyInfo
from ._pybind import (_CAST_ERROR, _cv_float, _cv_instance, _cv_str, MetricKind, _new_bare,
                      _no_constructor, _Reject, _REQUIRED, _Sig)


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
        _need_histograms("Metric.observe()")
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


def _need_histograms(what):
    """Histograms came with python_backend r24.08: an older parent cannot make one."""
    if "metric_histogram" not in _current_runtime().features:
        raise TritonModelException(
            "%s needs python_backend r24.08 or later (Triton 2.49+): this Triton's python "
            "backend speaks an older protocol, without histogram metrics" % what)


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
        if int(kind) == int(MetricKind.HISTOGRAM):
            _need_histograms("MetricFamily.HISTOGRAM")
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
