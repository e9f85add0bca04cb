"""Turn a Python exception into the text the C++ stub would have produced.

The C++ stub reports every Python exception through pybind11 2.10's
``error_already_set::what()``.  That text is what Triton clients and the server
log see, so tritonstub reproduces it exactly (docs/protocol/r24.10.md §4.4):

``<type name>: <str(exc)>``
    ``<type name>`` is the C ``tp_name`` of the exception class (for classes
    written in Python this is the bare ``__name__``; for a few static C types
    it is dotted).  If the class has a metaclass other than ``type``, pybind11
    prints the metaclass's ``tp_name`` instead; we do the same.  An empty
    ``str(exc)`` prints as ``<EMPTY MESSAGE>``.

``\\n\\nAt:\\n`` + one line per frame
    Only when the exception carries a traceback (see below for what counts).  The walk starts at the
    frame of the *deepest* traceback entry and follows ``f_back`` outward (so
    it also lists callers that are not part of the traceback), printing
    ``  <co_filename>(<frame's current line>): <co_name>\\n``.  The line is
    ``frame.f_lineno`` (``PyFrame_GetLineNumber``), not ``tb_lineno``: for a
    frame that ran a ``finally`` block after the raise it is the last line
    that ran.  Chained exceptions are not shown.

If ``str(exc)`` itself raises, the message is
``<MESSAGE UNAVAILABLE DUE TO ANOTHER EXCEPTION>`` and, after the trace,
``\\nMESSAGE UNAVAILABLE DUE TO EXCEPTION: <text of that second error>``
follows (with one more ``\\n`` in front when there was no trace).

Where the walk stops
--------------------
In the C++ stub the model's code is called from C++, so the ``f_back`` chain
ends at the first Python frame the stub called.  tritonstub is written in
Python, so the chain continues into our own frames.  Two rules restore the C++
picture:

* *hidden* frames are skipped but the walk goes on.  By default these are the
  frames of code that lives in the ``tritonstub`` package (the surface module,
  the runtime, the IPC layer: all of it was C++ in the original), except the
  fallback ``triton_python_backend_utils`` module, which is a Python file in
  real Triton too and therefore shows up in its traces.
* *stop* frames end the walk (the stop frame itself is not printed).  By
  default a frame stops the walk when its code object was registered with
  :func:`register_boundary` (or it runs :func:`call_user`).  The stub's
  dispatcher should call the model's entry points (``execute``,
  ``initialize``, ``auto_complete_config``, ``finalize``, the import) through
  :func:`call_user` or through a function it registered, so that frames
  outside the model (the stub's main loop, the entry script, ``runpy``) never
  appear.

The traceback itself is cut the same way: C++ only sees the entries added after
the exception left the model code, so the entries up to the deepest stop frame
are dropped, and when no visible entry remains there is no ``At:`` block at all
(e.g. ``SyntaxError``/``ModuleNotFoundError`` raised by the import of model.py,
whose importlib frames CPython strips).

Both rules can be replaced per call (``stop=`` and ``hide=``).
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable, Iterable, Optional, Union

__all__ = [
    "error_text",
    "exception_type_name",
    "register_boundary",
    "call_user",
    "is_internal_code",
    "EMPTY_MESSAGE",
]

EMPTY_MESSAGE = "<EMPTY MESSAGE>"
_UNAVAILABLE = "<MESSAGE UNAVAILABLE DUE TO ANOTHER EXCEPTION>"


def _prefixes(path: str) -> "tuple[str, ...]":
    forms = {path, os.path.abspath(path)}
    try:
        forms.add(os.path.realpath(path))
    except OSError:  # pragma: no cover
        pass
    return tuple(sorted(f + os.sep for f in forms))


_STUB_DIR = os.path.dirname(__file__) or os.curdir
_PKG_DIR = os.path.dirname(os.path.abspath(_STUB_DIR))
_PKG_PREFIXES = _prefixes(_PKG_DIR)
if os.path.dirname(_STUB_DIR):
    _PKG_PREFIXES += _prefixes(os.path.dirname(_STUB_DIR))
# Python code that is not the C++ stub's counterpart: the fallback pb_utils module (a Python
# file in real Triton too) and tritonstub.testing (test models and helpers may live there).
_USER_PREFIXES = _prefixes(os.path.join(_STUB_DIR, "tpbu_fallback")) + _prefixes(
    os.path.join(_PKG_DIR, "testing")
)

_boundary_codes: "set[Any]" = set()
_internal_cache: "dict[Any, bool]" = {}

FramePredicate = Callable[[Any], bool]
StopSpec = Union[None, FramePredicate, Iterable[Any]]


def register_boundary(func: Callable) -> Callable:
    """Mark ``func`` as a place where the stub hands control to model code.

    When :func:`error_text` walks outward from the deepest frame and reaches a
    frame running ``func``'s code, it stops there (that frame is not printed).
    Returns ``func`` so it can be used as a decorator.
    """
    code = getattr(func, "__code__", None)
    if code is None:
        raise TypeError("register_boundary() needs a Python function")
    _boundary_codes.add(code)
    return func


def call_user(func: Callable, *args: Any, **kwargs: Any) -> Any:
    """Call model code.  This frame is a registered boundary (see module docs)."""
    return func(*args, **kwargs)


register_boundary(call_user)


def without_internal_frames(tb: Any) -> Any:
    """The traceback chain ``tb`` minus tritonstub's own entries (C++ in the original stub,
    where they leave no frame)."""
    import types
    kept = []
    while tb is not None:
        if not is_internal_code(tb.tb_frame.f_code):
            kept.append(tb)
        tb = tb.tb_next
    out = None
    for entry in reversed(kept):
        out = types.TracebackType(out, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    return out


def install_thread_excepthook() -> None:
    """An uncaught exception in a model's thread prints as under the C++ stub: the traceback
    shows the model's frames, not the frames of our surface (``sender.send`` raising, say).
    Installed only over Python's default hook; anything a model installs replaces it."""
    import threading
    # threading.__excepthook__ is 3.10+; on 3.9 (PyPy 7.3) the hook in place at start-up is it
    default = getattr(threading, "__excepthook__", threading.excepthook)
    if threading.excepthook is not default:
        return

    def hook(args: Any) -> None:
        tb = args.exc_traceback
        if tb is not None:
            tb = without_internal_frames(tb)
            if args.exc_value is not None:
                args.exc_value.__traceback__ = tb
            args = threading.ExceptHookArgs([args.exc_type, args.exc_value, tb, args.thread])
        default(args)

    threading.excepthook = hook


def is_internal_code(code: Any) -> bool:
    """True when ``code`` belongs to tritonstub itself (hidden from traces).

    The fallback ``triton_python_backend_utils`` is not internal (the stock file
    is a Python module whose frames appear in the C++ stub's traces as well), nor
    is ``tritonstub.testing``.
    """
    cached = _internal_cache.get(code)
    if cached is not None:
        return cached
    filename = str(code.co_filename)
    forms = [filename]
    try:
        forms.append(os.path.abspath(filename))
    except (TypeError, ValueError):  # pragma: no cover
        pass
    result = False
    for path in forms:
        if path.startswith(_PKG_PREFIXES):
            result = not path.startswith(_USER_PREFIXES)
            break
    if len(_internal_cache) > 4096:
        _internal_cache.clear()
    _internal_cache[code] = result
    return result


def _default_hide(frame: Any) -> bool:
    return is_internal_code(frame.f_code)


def _default_stop(frame: Any) -> bool:
    return frame.f_code in _boundary_codes


def _stop_at_internal(frame: Any) -> bool:
    return is_internal_code(frame.f_code)


def _as_predicate(spec: StopSpec, default: FramePredicate) -> FramePredicate:
    if spec is None:
        return default
    if callable(spec):
        return spec  # type: ignore[return-value]
    codes = frozenset(spec)
    return lambda frame: frame.f_code in codes


def _c_tp_name(tp: type) -> Optional[str]:
    """Read ``PyTypeObject.tp_name`` directly (CPython only)."""
    if sys.implementation.name != "cpython":
        return None
    try:
        import ctypes

        offset = object.__basicsize__ + ctypes.sizeof(ctypes.c_ssize_t)
        raw = ctypes.c_char_p.from_address(id(tp) + offset).value
    except Exception:  # pragma: no cover - exotic interpreters
        return None
    if not raw:
        return None
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:  # pragma: no cover
        return None
    bare = tp.__name__
    if name == bare or name.endswith("." + bare):
        return name
    return None


_HEAPTYPE = 1 << 9


def _tp_name(tp: type) -> str:
    name = _c_tp_name(tp)
    if name is not None:
        return name
    if tp.__flags__ & _HEAPTYPE:
        return tp.__name__
    module = getattr(tp, "__module__", "builtins")
    if module in (None, "builtins"):
        return tp.__name__
    return "%s.%s" % (module, tp.__name__)


def exception_type_name(exc_type: type) -> str:
    """The name pybind11 2.10 prints for an exception class (``obj_class_name``)."""
    if type(exc_type) is not type:
        return _tp_name(type(exc_type))
    return _tp_name(exc_type)


def _deepest_visible(tb: Any, stop: FramePredicate, hide: FramePredicate) -> Any:
    """The deepest frame of the part of the traceback C++ would have seen, or None.

    The C++ stub only sees the traceback entries added after the exception left
    the model code it called: the entries after the deepest stop (boundary)
    frame.  If none of those is a visible frame (the error came straight from
    tritonstub code or from C, e.g. a SyntaxError in the import whose importlib
    frames CPython strips), C++ had no traceback and prints no ``At:`` block.
    """
    start = tb
    node = tb
    while node is not None:
        if stop(node.tb_frame):
            start = node.tb_next
        node = node.tb_next
    deepest = None
    visible = False
    node = start
    while node is not None:
        if not visible and not hide(node.tb_frame):
            visible = True
        deepest = node
        node = node.tb_next
    if not visible:
        return None
    return deepest.tb_frame


def _frames_text(frame: Any, stop: FramePredicate, hide: FramePredicate) -> str:
    parts = []
    while frame is not None:
        if stop(frame):
            break
        if not hide(frame):
            code = frame.f_code
            lineno = frame.f_lineno
            if lineno is None:
                lineno = -1
            parts.append("  %s(%d): %s\n" % (code.co_filename, lineno, code.co_name))
        frame = frame.f_back
    return "".join(parts)


def _format(exc: BaseException, stop: FramePredicate, hide: FramePredicate, depth: int) -> str:
    head = exception_type_name(type(exc))
    nested = ""
    try:
        message = str(exc)
    except BaseException as inner:  # noqa: BLE001 - mirrors PyObject_Str failing
        message = _UNAVAILABLE
        if depth < 4:
            nested = _format(inner, _stop_at_internal, hide, depth + 1)
        else:
            nested = exception_type_name(type(inner)) + ": " + _UNAVAILABLE
    if not message:
        message = EMPTY_MESSAGE
    text = head + ": " + message
    deepest = None
    if exc.__traceback__ is not None:
        deepest = _deepest_visible(exc.__traceback__, stop, hide)
    if deepest is not None:
        text += "\n\nAt:\n" + _frames_text(deepest, stop, hide)
    if nested:
        if deepest is None:
            text += "\n"
        text += "\nMESSAGE UNAVAILABLE DUE TO EXCEPTION: " + nested
    return text


def error_text(
    exc: BaseException,
    stop: StopSpec = None,
    hide: Optional[FramePredicate] = None,
) -> str:
    """Format ``exc`` the way pybind11 2.10 ``error_already_set::what()`` does.

    ``stop``: where the outward ``f_back`` walk ends (the matching frame is not
    printed).  ``None`` means "a frame running a registered boundary"
    (:func:`register_boundary`, :func:`call_user`); a callable is used as a
    predicate on frame objects; any other iterable is taken as a collection of
    code objects.

    ``hide``: predicate for frames that are skipped while the walk goes on.
    ``None`` means "code that belongs to tritonstub" (:func:`is_internal_code`).
    Pass ``lambda f: False`` to hide nothing.

    Call it while the exception is being handled (inside the ``except`` block),
    as pybind11 computes its text there too: the line numbers of frames that
    are still running are read at that moment.
    """
    stop_pred = _as_predicate(stop, _default_stop)
    hide_pred = hide if hide is not None else _default_hide
    return _format(exc, stop_pred, hide_pred, 0)
