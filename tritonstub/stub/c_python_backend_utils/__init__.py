"""``c_python_backend_utils``: the Python surface a model sees, in pure Python.

The C++ stub builds this module with pybind11 (python_backend r24.10).  This package
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
    size; ``t._dtype`` (int), ``t._dims`` (tuple), ``t._name``.
InferenceRequest
    ``InferenceRequest._from_shm(...)`` builds a request received from the
    parent (the stub's hot path; ``_from_server`` takes the same in looser form).  Fields read by a BLS runtime: ``_request_id``, ``_correlation_id``
    (int or str), ``_inputs``, ``_requested_output_names`` (sorted tuple, the
    std::set order), ``_model_name``, ``_model_version``, ``_flags``,
    ``_timeout``, ``_preferred_memory`` (``_type``: 0 GPU, 1 CPU, 2 default;
    ``_device_id``), ``_trace`` (``_triton_trace``, ``_context``),
    ``_parameters`` (JSON text), ``_request_address``, ``_factory_address``,
    ``_release_flags``.
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

Modules: ``_pybind`` (pybind11's argument checking and enums, emulated), ``values``
(TritonError, PreferredMemory, InferenceTrace), ``dlpack``, ``tensor``, ``response``
(InferenceResponse, InferenceResponseSender, ResponseIterator), ``request``, ``logger``,
``metrics``, ``model_control``. This module gathers the public names (and the internal ones the
stub and the tests use) under the one name model.py imports.
"""

from ...protocol.dtypes import TRITON_DTYPES, deserialize_bytes, serialize_bytes
from ..runtime import TritonModelException
from ._pybind import (COUNTER, GAUGE, HISTOGRAM, TRITONSERVER_MEMORY_CPU, TRITONSERVER_MEMORY_GPU,
                      MemoryType, MetricKind, _MODULE)
from .dlpack import _DLManagedTensor, _exports
from .logger import Logger
from .metrics import Metric, MetricFamily
from .model_control import (SharedMemory, async_event_future_done_callback, is_model_ready,
                            load_model, shared_memory, unload_model)
from .request import _DEFAULT_TRACE, InferenceRequest
from .response import InferenceResponse, InferenceResponseSender, ResponseIterator
from .tensor import Tensor, numpy_to_triton_dtype, triton_to_numpy_dtype
from .values import InferenceTrace, PreferredMemory, TritonError

_GLOBALS = globals()

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
del _cls, _func


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
