"""InferenceRequest: the requests ``execute`` receives, and the ones a model builds for BLS.

A request received from the parent carries the parent's addresses (handed back opaque when it
answers); a request built by the model sends itself with ``exec`` / ``async_exec`` through the
runtime and gets InferenceResponse objects (or a ResponseIterator) back.
"""
import json as _json

from ..runtime import TritonModelException
from ..runtime import current_runtime as _current_runtime
from ...protocol.eras import needs as _needs
from ._pybind import (_CAST_ERROR, _cv_bool, _cv_instance, _cv_int64, _cv_sequence, _cv_str,
                      _cv_uint32, _cv_uint64, _new_bare, _Reject, _REQUIRED, _Sig)
from .response import (_CancelState, InferenceResponse, InferenceResponseSender, ResponseIterator,
                       _parameters_json)
from .tensor import Tensor
from .values import InferenceTrace, PreferredMemory

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
        "_final_returned",
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
        features = _current_runtime().features
        if parameters is not None and "bls_parameters" not in features:
            raise TypeError(_needs("InferenceRequest(parameters=...)", "bls_parameters"))
        if trace is not _DEFAULT_TRACE and "request_trace" not in features:
            raise TypeError(_needs("InferenceRequest(trace=...)", "request_trace"))
        parameters_text = _parameters_json(parameters)
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
        # The PbCancel and the response sender are made on first use (most requests of a
        # non-decoupled model never need them); see ``_sender`` and ``_return_final``.
        self._is_decoupled = is_decoupled
        self._cancel_obj = None
        self._sender_obj = None
        self._returned = False
        self._final_returned = False

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
        ``_update_state(response, FINAL)``, without making a sender nobody asked for. The
        response has not reached the parent yet (``_final_returned``): until the ExecuteResponse
        carries it, the parent still owns this request's response factory."""
        s = self._sender_obj
        if s is not None or self._is_decoupled is None:
            self._sender._update_state(response, 1)
            self._final_returned = True
            return
        self._returned = self._final_returned = True
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
        if "request_trace" not in _current_runtime().features:
            raise AttributeError(
                "'c_python_backend_utils.InferenceRequest' object has no attribute 'trace' "
                "(%s)" % _needs("InferenceRequest.trace()", "request_trace"))
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
        if "request_cancellation" not in _current_runtime().features:
            raise AttributeError(
                "'c_python_backend_utils.InferenceRequest' object has no attribute "
                "'is_cancelled' (%s)" % _needs("is_cancelled()", "request_cancellation"))
        return self._cancel.query()

    def set_release_flags(self, *args, **kwargs):
        """``set_release_flags(flags)`` (positional only): e.g. RESCHEDULE for sequence batching."""
        if "request_rescheduling" not in _current_runtime().features:
            raise AttributeError(
                "'c_python_backend_utils.InferenceRequest' object has no attribute "
                "'set_release_flags' (%s)" % _needs("set_release_flags()", "request_rescheduling"))
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
