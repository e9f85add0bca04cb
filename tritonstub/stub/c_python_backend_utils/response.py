"""InferenceResponse, InferenceResponseSender and ResponseIterator.

A response holds output tensors or a TritonError. The sender of a request sends responses
through the runtime (pattern D of the protocol) and keeps the C++ stub's counters: after a
response with the FINAL flag it is closed, a non-decoupled request takes exactly one response,
and the first error decides what later sends raise. A ResponseIterator yields the responses of
a decoupled BLS request as the parent pushes them.
"""
from collections import deque as _deque
import json as _json
import threading as _threading

from .. import runtime as _runtime_module
from ..runtime import LOG_ERROR as _LOG_ERROR
from ..runtime import TritonModelException
from ..runtime import current_runtime as _current_runtime
from ._pybind import (_cv_instance, _cv_sequence, _cv_uint32, _new_bare, _no_constructor, _REQUIRED,
                      _Sig)
from .tensor import Tensor
from .values import TritonError

# ================================================================================================
# InferenceResponse
# ================================================================================================


_DICT_TYPE_NAME = "N8pybind114dictE"
_NO_PARAMETERS = "{}"


def _parameters_json(parameters):
    """pb_stub.cc ``PyParametersToJSON`` after ``PyDefaultArgumentToMutableType<py::dict>``:
    None is {}, keys must be str and values bool/int/str; the JSON text ``json.dumps`` makes."""
    if parameters is None:
        parameters = {}
    elif not isinstance(parameters, dict):
        raise TritonModelException("Expect %s, got %s" % (_DICT_TYPE_NAME, str(type(parameters))))
    for key, value in parameters.items():
        if not isinstance(key, str):
            raise TritonModelException(
                "Expect parameters keys to have type str, found type %s" % str(type(key)))
        if not isinstance(value, (bool, int, str)):
            raise TritonModelException(
                "Expect parameters values to have type bool/int/str, found type %s"
                % str(type(value)))
    return str(_json.dumps(parameters))


class InferenceResponse:
    """``InferenceResponse(output_tensors=[], error=None)``; from python_backend r25.02 on (the
    parent's era: ``Runtime.features``) also ``parameters={}`` and ``.parameters()``."""

    __slots__ = ("_outputs", "_error", "_is_last_response", "_id", "_parameters", "__weakref__")

    def __init__(self, *args, **kwargs):
        if (
            not kwargs
            and len(args) == 1
            and type(args[0]) is list
            and all(type(x) is Tensor or x is None for x in args[0])
        ):
            outputs, error = args[0], None
            parameters = _NO_PARAMETERS
        elif (
            not args
            and len(kwargs) == 1
            and type(kwargs.get("output_tensors")) is list
            and all(type(x) is Tensor or x is None for x in kwargs["output_tensors"])
        ):
            outputs, error = kwargs["output_tensors"], None
            parameters = _NO_PARAMETERS
        elif "response_parameters" in _current_runtime().features:
            outputs, error, parameters = _RESPONSE_SIG_PARAMETERS.bind(args, kwargs)
            parameters = _parameters_json(parameters)
        else:
            outputs, error = _RESPONSE_SIG.bind(args, kwargs)
            parameters = _NO_PARAMETERS
        for tensor in outputs:
            if tensor is None:
                raise TritonModelException("Output tensor for inference response should not be empty.")
        self._outputs = list(outputs)
        self._error = error
        self._is_last_response = True
        self._id = 0
        self._parameters = parameters

    @classmethod
    def _from_parent(cls, outputs=(), error=None, is_last_response=True, response_id=0,
                     parameters=_NO_PARAMETERS):
        """A response loaded from the parent (BLS); ``response_id`` keys BLS streams."""
        obj = _new_bare(cls)
        obj._outputs = list(outputs)
        obj._error = error
        obj._is_last_response = bool(is_last_response)
        obj._id = response_id
        obj._parameters = parameters
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

    def parameters(self):
        """The response's parameters as a JSON object text (``"{}"`` for none; r25.02+)."""
        return self._parameters


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
_RESPONSE_SIG_PARAMETERS = _Sig(
    "__init__",
    "c_python_backend_utils.InferenceResponse(output_tensors: List[c_python_backend_utils.Tensor] = [], "
    "error: c_python_backend_utils.TritonError = None, parameters: object = None)",
    (
        ("output_tensors", [], _cv_sequence(_cv_instance(Tensor)), False),
        ("error", None, _cv_instance(TritonError), True),
        ("parameters", None, None, True),
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
        if "request_cancellation" not in _current_runtime().features:
            from ...protocol.eras import needs
            raise AttributeError(
                "'c_python_backend_utils.InferenceResponseSender' object has no attribute "
                "'is_cancelled' (%s)" % needs("is_cancelled()", "request_cancellation"))
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
        "_cancelled",
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
        self._cancelled = False

    def _enqueue(self, response):
        with self._cv:
            self._buffer.append(response)
            if response._is_last_response:
                self._last_in = True
            self._cv.notify()

    def cancel(self):
        """Cancel the BLS request behind this stream (python_backend r25.04+,
        ``ResponseIterator::Cancel``): the parent cancels its Triton request if it still runs;
        responses already on their way still arrive, usually ending with a CANCELLED error.
        Does nothing once the iterator is finished or was cancelled."""
        rt = _current_runtime()
        if "bls_cancel" not in rt.features:
            raise AttributeError(
                "'c_python_backend_utils.ResponseIterator' object has no attribute 'cancel' "
                "(ResponseIterator.cancel() needs python_backend r25.04 or later, Triton 2.57+; "
                "this Triton's python backend speaks an older protocol)")
        if self._finished or self._cancelled:
            return None
        if not rt.stub_to_parent_active:
            rt.log("", 0, _LOG_ERROR, "Cannot communicate with parent service")
            return None
        rt.bls_cancel(self._id)
        self._cancelled = True
        return None

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
