"""The seam between the Python surface a model sees and the stub's IPC machinery.

``c_python_backend_utils`` (the surface) never touches shared memory.  Every
operation that needs the parent process goes through the :class:`Runtime`
object returned by :func:`current_runtime`.  The shared-memory stub installs
its implementation with :func:`set_runtime`; until then a :class:`NoRuntime`
answers: it logs to stderr in the stub-local format and refuses everything
that needs a parent.

Conventions every implementation follows
----------------------------------------
* Errors the parent reports are raised as :class:`TritonModelException` whose
  text is what the C++ ``Stub::SendMessage`` would produce (use
  :func:`send_message_error_text`); the surface adds the operation prefix
  (``Error when creating Metric: `` and so on), exactly like the C++ classes.
* Methods may block (they wait for the parent) but must release the GIL while
  they wait (ctypes calls into libc do) so other model threads keep running.
* ``factory_cleanup`` and ``bls_payload_cleanup`` may be called from
  ``__del__`` methods, i.e. from any thread and at garbage-collection time.
  They must not raise and should only enqueue work for a worker thread, like
  the C++ ``Stub::EnqueueCleanupId``.

This module is imported on the stub's start-up path: keep it free of heavy
imports (no numpy).
"""
from __future__ import annotations

import abc
import os
import threading
import time
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from ..stublog import ERROR, INFO, VERBOSE, WARNING, format_line, write_line

__all__ = [
    "TritonModelException",
    "LOG_INFO",
    "LOG_WARNING",
    "LOG_ERROR",
    "LOG_VERBOSE",
    "MetricFamilyInfo",
    "MetricInfo",
    "Runtime",
    "NoRuntime",
    "ResponseIteratorMap",
    "current_runtime",
    "set_runtime",
    "format_stub_log_line",
    "write_stub_log",
    "send_message_error_text",
]


class TritonModelException(Exception):
    """Raised for every stub-side API error (``c_python_backend_utils.TritonModelException``).

    It is defined here, next to the seam, so runtime implementations can raise
    it without importing the numpy-based surface; ``c_python_backend_utils``
    re-exports this very class.
    """


TritonModelException.__module__ = "c_python_backend_utils"

LOG_INFO, LOG_WARNING, LOG_ERROR, LOG_VERBOSE = INFO, WARNING, ERROR, VERBOSE

#: A stub-local log line (docs/protocol/r24.10.md §2.5) and its writer, from tritonstub.stublog.
format_stub_log_line = format_line
write_stub_log = write_line


def send_message_error_text(stub_name: str, error: Optional[str]) -> str:
    """The text ``Stub::SendMessage`` raises when the parent sets ``has_error``.

    ``error`` is the parent's message, or None when ``is_error_set`` was 0.
    """
    if error is None:
        return "Failed to process the request for model '%s'." % stub_name
    return "Failed to process the request for model '%s', message: %s" % (stub_name, error)


class MetricFamilyInfo(NamedTuple):
    """What ``MetricFamilyShm`` carries: name, description, kind (0 counter, 1 gauge, 2 histogram), address."""

    name: str
    description: str
    kind: int
    address: int


class MetricInfo(NamedTuple):
    """What ``MetricShm`` carries, minus the per-call ``operation_value``.

    ``labels`` is the ``json.dumps`` of the labels dict (``"null"`` for none);
    ``buckets`` is None unless the family is a histogram.
    """

    metric_address: int
    family_address: int
    labels: str
    buckets: Optional[List[float]]


class ResponseIteratorMap:
    """The C++ ``Stub::response_iterator_map_``: BLS stream iterators keyed by response id.

    A runtime uses it for decoupled BLS: :meth:`get_response_iterator` when
    ``exec(decoupled=True)`` returns its first response, :meth:`enqueue` for
    every later response the parent pushes (command 11), :meth:`erase` when the
    iterator is cleaned up (command 17) and :meth:`clear` at finalize.  The map
    holds strong references, as the C++ one does.

    The iterators are the model API's ``ResponseIterator``; the model API sets
    :attr:`iterator_type` when it is imported (responses only come from it), so this
    module does not import the model API back.
    """

    iterator_type: Any = None      # c_python_backend_utils.ResponseIterator

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._map: Dict[Any, Any] = {}
        # exec(decoupled=True) calls whose first response has not been wrapped yet, and the
        # id-less error responses that arrived meanwhile (see begin_stream).
        self._starting = 0
        self._early_errors: List[Any] = []

    def begin_stream(self) -> None:
        """An ``exec(decoupled=True)`` is about to be sent.

        The parent may push the stream's later responses (monitor thread) before the caller has
        read the first one: the callee's response callbacks do not wait for the caller. Those
        with an id are kept under it; an error response has none, so while a stream is starting
        and no other is open it is kept for the iterator that :meth:`get_response_iterator`
        makes next, instead of being dropped as unroutable.
        """
        with self._lock:
            self._starting += 1

    def abandon_stream(self) -> List[Any]:
        """The started ``exec`` made no iterator (it failed): the error responses kept for it."""
        with self._lock:
            self._starting = max(0, self._starting - 1)
            early, self._early_errors = (self._early_errors, []) if not self._starting else ([], self._early_errors)
            return early

    def get_response_iterator(self, response: Any) -> Any:
        """Return the iterator for ``response``'s id, (re)creating it around ``response`` first."""
        key = response._id
        with self._lock:
            old = self._map.get(key)
            it = self.iterator_type(response)
            if old is not None:
                for queued in old._get_existing_responses():
                    it._enqueue(queued)
            if self._starting:
                self._starting -= 1
                for early in self._early_errors:
                    it._enqueue(early)
                self._early_errors = []
            self._map[key] = it
            return it

    def enqueue(self, response: Any) -> Optional[str]:
        """Route a later BLS stream response to its iterator (or start one).

        Deliberate difference: the python backend writes ``ResponseShm.id`` only for responses
        without error (InferResponse::SaveToSharedMemory), so a stream's later *error* response
        carries a stale id and, under the C++ stub, reaches no iterator: the caller waits
        forever. An error response whose id matches no iterator goes to the one stream still
        open (or, with several open, to the one stream being waited on). Returns a warning
        text when it cannot be routed (then it is kept under its id, as C++ does).
        """
        key = response._id
        with self._lock:
            it = self._map.get(key)
            if it is None and response._error is not None:
                it, n_open = self._orphan_target()
                if it is None and n_open == 0 and self._starting:
                    self._early_errors.append(response)  # for the stream being started
                    return None
                if it is None:
                    warning = (f"an error response of a BLS stream carries no stream id (the python "
                               f"backend leaves it unset) and {n_open} streams are "
                               f"open: it cannot be routed ({response._error._message})")
                    self._map[key] = self.iterator_type(response)
                    return warning
            if it is not None:
                it._enqueue(response)
            else:
                self._map[key] = self.iterator_type(response)
        return None

    def _orphan_target(self) -> Tuple[Any, int]:
        """(the iterator an unmatched error response belongs to, or None; open streams)."""
        open_its = [it for it in self._map.values() if it._open()]
        if len(open_its) == 1:
            return open_its[0], 1
        waiting = [it for it in open_its if it._is_waiting()]
        return (waiting[0] if len(waiting) == 1 else None), len(open_its)

    def erase(self, key: Any) -> None:
        with self._lock:
            self._map.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            items = self._map
            self._map = {}
        items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._map)


class Runtime(abc.ABC):
    """IPC operations the Python surface needs, plus the stub state it checks.

    State attributes (plain attributes or properties):

    ``stub_name``
        argv[8]: the model name (auto-complete stub) or the instance name.
        Used in ``model '<name>'`` error texts.
    ``initialized``
        True once ``initialize()`` returned (C++ ``Stub::initialized_``).
    ``finalizing``
        True once finalize started.  BLS is allowed only when
        ``initialized and not finalizing``.
    ``stub_to_parent_active``
        True while the stub->parent worker runs.  When False, cancellation
        queries answer False after logging ``Cannot communicate with parent
        service``; log routing is :meth:`log`'s business.
    """

    stub_name: str = ""
    initialized: bool = False
    finalizing: bool = False
    stub_to_parent_active: bool = False
    #: What the parent's protocol era adds to the model API (``protocol.eras.features``):
    #: "response_parameters" (r25.02+), "bls_cancel" (r25.04+), "user_model_readiness" (r26.03+).
    features: frozenset = frozenset()

    def check_parent_alive(self) -> None:
        """Raise :class:`TritonModelException` when the server this stub serves is gone (long
        waits in the surface call it between slices). No server, nothing to check."""

    # --- logging -----------------------------------------------------------------------

    @abc.abstractmethod
    def log(self, filename: str, line: int, level: int, message: str) -> None:
        """Emit one log record (``LogRequest``, command 16, or stderr).

        ``filename`` is the full path of the Python caller (the core prints its
        basename), ``level`` one of :data:`LOG_INFO` .. :data:`LOG_VERBOSE`.
        While the worker runs the record goes to the parent; otherwise it is
        written with :func:`write_stub_log`.  Must not raise.
        """

    # --- BLS ---------------------------------------------------------------------------

    @abc.abstractmethod
    def bls_exec(self, request: Any, decoupled: bool) -> Any:
        """Run one BLS request (commands 8/9) and return the first ``InferenceResponse``.

        The surface has already checked ``initialized``/``finalizing``.
        ``request`` is a ``c_python_backend_utils.InferenceRequest``; read its
        ``_*`` fields (documented on the class).  A parent-side failure is
        returned as an error response (``InferenceResponse._error_response``);
        a local failure may be raised as :class:`TritonModelException`, which
        the surface turns into an error response like the C++ ``Exec`` does.
        Responses built for a decoupled call carry ``_id`` (the parent's
        InferPayload address) and ``_is_last_response``.  For
        ``decoupled=True`` the surface wraps the returned response with
        :meth:`response_iterator`; returning a ``ResponseIterator`` directly is
        accepted too (it is then passed through unchanged).
        """

    def response_iterator(self, response: Any) -> Any:
        """Wrap the first response of ``exec(decoupled=True)`` in a ``ResponseIterator``.

        The default keeps a :class:`ResponseIteratorMap` in ``self.bls_iterators``.
        """
        registry = self.__dict__.get("bls_iterators")
        if registry is None:
            registry = ResponseIteratorMap()
            self.bls_iterators = registry
        return registry.get_response_iterator(response)

    @abc.abstractmethod
    def bls_payload_cleanup(self, iterator_id: Any) -> None:
        """A BLS stream iterator is done with ``iterator_id`` (command 17).

        Never called with id 0/None.  Must not raise; should only enqueue.  The
        default registry entry must be dropped here (``bls_iterators.erase``).
        """

    # --- decoupled responses -------------------------------------------------------------

    @abc.abstractmethod
    def send_response(self, sender: Any, response: Any, flags: int) -> None:
        """Send one response through the request's response factory (command 12).

        ``sender`` is the ``InferenceResponseSender`` (read ``_request_address``,
        ``_factory_address``); ``response`` an already pruned
        ``InferenceResponse`` or None; ``flags`` 0 or 1 (FINAL).  All state
        checks are done.  Raise :class:`TritonModelException` with the parent's
        text, or ``An error occurred while sending a response.`` when the parent
        reported an error without text.
        """

    def abandoned_response(self, request_address: int, factory_address: int, text: str) -> None:
        """A request of a non-decoupled model was dropped without any response (see
        ``InferenceResponseSender.__del__``): answer it with an error ``text`` and FINAL.
        The default just cleans the response factory up."""
        self.factory_cleanup(factory_address)

    @abc.abstractmethod
    def factory_cleanup(self, factory_address: int) -> None:
        """Delete a response factory the model never finished (command 18).

        Called from ``InferenceResponseSender.__del__``; never with 0.  Must not
        raise; should only enqueue.
        """

    @abc.abstractmethod
    def is_cancelled(self, request_address: int, factory_address: int) -> bool:
        """Ask the parent whether the request was cancelled (command 30).

        Called only while ``stub_to_parent_active`` and never with both
        addresses 0; the surface caches a True answer.
        """

    # --- custom metrics -------------------------------------------------------------------

    @abc.abstractmethod
    def metric_family_new(self, family: MetricFamilyInfo) -> int:
        """Create a TRITONSERVER_MetricFamily (command 19); return its address."""

    @abc.abstractmethod
    def metric_family_delete(self, family: MetricFamilyInfo) -> None:
        """Delete a metric family (command 20)."""

    @abc.abstractmethod
    def metric_new(self, metric: MetricInfo) -> int:
        """Create a metric in ``metric.family_address`` (command 21); return its address."""

    @abc.abstractmethod
    def metric_delete(self, metric: MetricInfo) -> None:
        """Delete a metric (command 22)."""

    @abc.abstractmethod
    def metric_value(self, metric: MetricInfo) -> float:
        """Read a metric's value (command 23)."""

    @abc.abstractmethod
    def metric_increment(self, metric: MetricInfo, value: float) -> None:
        """Increment a metric (command 24)."""

    @abc.abstractmethod
    def metric_set(self, metric: MetricInfo, value: float) -> None:
        """Set a metric (command 25)."""

    @abc.abstractmethod
    def metric_observe(self, metric: MetricInfo, value: float) -> None:
        """Observe a histogram value (command 26)."""

    # --- model control ---------------------------------------------------------------------

    @abc.abstractmethod
    def load_model(self, name: str, config: str, files: Dict[str, bytes]) -> None:
        """Load a model (command 27)."""

    @abc.abstractmethod
    def unload_model(self, name: str, unload_dependents: bool) -> None:
        """Unload a model (command 28)."""

    @abc.abstractmethod
    def is_model_ready(self, name: str, version: str) -> bool:
        """Ask whether a model version is ready (command 29)."""

    # --- misc ---------------------------------------------------------------------------------

    @abc.abstractmethod
    def free_memory(self) -> int:
        """Free bytes in the shared-memory region (``SharedMemory.free_memory``)."""

    def background_future_done(self, future: Any) -> None:
        """Done-callback of a background coroutine (decoupled ``async def execute``).

        The C++ stub logs a failed coroutine as the joined
        ``traceback.TracebackException.format()`` at ERROR (pb_stub.cc:945) and
        drops the future from its ``background_futures`` set (kept here in
        ``self.background_futures`` when the implementation has one).
        """
        try:
            try:
                exc = future.exception()
                if exc is not None:
                    import traceback

                    text = "".join(traceback.TracebackException.from_exception(exc).format())
                    self.log("pb_stub.cc", 945, LOG_ERROR, text)
            except TritonModelException as err:
                self.log("pb_stub.cc", 949, LOG_ERROR, str(err))
            except BaseException as err:  # noqa: BLE001
                from .exc_text import error_text

                self.log("pb_stub.cc", 952, LOG_ERROR, error_text(err))
        finally:
            futures = getattr(self, "background_futures", None)
            if futures is not None:
                try:
                    futures.remove(future)
                except BaseException as err:  # noqa: BLE001
                    from .exc_text import error_text

                    self.log(
                        "pb_stub.cc", 930, LOG_ERROR,
                        "Cannot remove future from background; " + error_text(err),
                    )


class NoRuntime(Runtime):
    """The runtime in effect when no parent is wired (unit tests, plain imports).

    * ``log`` writes the stub-local stderr line.
    * BLS is refused by the surface's own check (``initialized`` is False), so
      the model sees ``BLS is only supported during the 'execute' function.``
    * response sending, metrics and model control raise
      :class:`TritonModelException` (the C++ stub would block forever waiting
      for a parent that does not listen).
    * cleanups are no-ops and ``free_memory()`` is 0.
    """

    NO_PARENT = "Cannot communicate with parent service"

    def __init__(self, stub_name: str = "") -> None:
        self.stub_name = stub_name

    def _fail(self) -> "TritonModelException":
        return TritonModelException(send_message_error_text(self.stub_name, self.NO_PARENT))

    def log(self, filename: str, line: int, level: int, message: str) -> None:
        write_stub_log(level, filename, line, message)

    def bls_exec(self, request: Any, decoupled: bool) -> Any:
        raise TritonModelException("BLS is only supported during the 'execute' function.")

    def bls_payload_cleanup(self, iterator_id: Any) -> None:
        registry = self.__dict__.get("bls_iterators")
        if registry is not None:
            registry.erase(iterator_id)

    def send_response(self, sender: Any, response: Any, flags: int) -> None:
        raise TritonModelException(
            "Unable to send response. The stub is not connected to a Triton parent process."
        )

    def factory_cleanup(self, factory_address: int) -> None:
        return None

    def is_cancelled(self, request_address: int, factory_address: int) -> bool:
        return False

    def metric_family_new(self, family: MetricFamilyInfo) -> int:
        raise self._fail()

    def metric_family_delete(self, family: MetricFamilyInfo) -> None:
        raise self._fail()

    def metric_new(self, metric: MetricInfo) -> int:
        raise self._fail()

    def metric_delete(self, metric: MetricInfo) -> None:
        raise self._fail()

    def metric_value(self, metric: MetricInfo) -> float:
        raise self._fail()

    def metric_increment(self, metric: MetricInfo, value: float) -> None:
        raise self._fail()

    def metric_set(self, metric: MetricInfo, value: float) -> None:
        raise self._fail()

    def metric_observe(self, metric: MetricInfo, value: float) -> None:
        raise self._fail()

    def load_model(self, name: str, config: str, files: Dict[str, bytes]) -> None:
        raise self._fail()

    def unload_model(self, name: str, unload_dependents: bool) -> None:
        raise self._fail()

    def is_model_ready(self, name: str, version: str) -> bool:
        raise self._fail()

    def free_memory(self) -> int:
        return 0


_default_runtime: Runtime = NoRuntime()
_runtime: Runtime = _default_runtime


def current_runtime() -> Runtime:
    """The runtime the surface uses right now (a :class:`NoRuntime` until one is set)."""
    return _runtime


def set_runtime(rt: Optional[Runtime]) -> Runtime:
    """Install ``rt`` (None restores the default :class:`NoRuntime`); return the previous one."""
    global _runtime
    previous = _runtime
    if rt is None:
        rt = _default_runtime
    elif not isinstance(rt, Runtime):
        raise TypeError("set_runtime() needs a Runtime, got %r" % (type(rt),))
    _runtime = rt
    return previous
