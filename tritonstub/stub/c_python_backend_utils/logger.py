"""Logger: log lines that reach the Triton log with the caller's file and line.

The file and line are those of the first frame outside this package, so a helper of the model
API that logs on the model's behalf is never named as the caller.
"""
import sys as _sys

from ..runtime import current_runtime as _current_runtime
from ._pybind import _cv_instance, _cv_str, _LogLevel, _no_constructor, _REQUIRED, _Sig

_PACKAGE = __name__.rpartition(".")[0]      # tritonstub.stub.c_python_backend_utils
_PREFIX = _PACKAGE + "."


def _caller_frame():
    """The first frame outside this package (its modules log on the model's behalf)."""
    frame = _sys._getframe(1)
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if name != _PACKAGE and not name.startswith(_PREFIX):
            break
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
