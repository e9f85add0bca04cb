"""load_model / unload_model / is_model_ready, SharedMemory, and the callback of background
futures."""
from ..runtime import TritonModelException
from ..runtime import current_runtime as _current_runtime
from ._pybind import (_CAST_ERROR, _cv_bool, _cv_str, _new_bare, _no_constructor, _Reject,
                      _REQUIRED, _Sig)


def load_model(*args, **kwargs):
    """``load_model(model_name, config="", files=None)``: files maps paths to bytes."""
    name, config, files = _LOAD_MODEL_SIG.bind(args, kwargs)
    files_map = {}
    if files is not None:
        if not isinstance(files, dict):
            raise TritonModelException(
                "failed to load model '%s', files should be a dictionary of file paths and file contents" % name
            )
        from ..exc_text import exception_type_name

        for key, value in files.items():
            try:
                key_text = _cv_str(key)
            except _Reject:
                raise RuntimeError(_CAST_ERROR) from None
            if not isinstance(value, bytes):
                raise TypeError(
                    "Object of type '%s' is not an instance of 'bytes'" % exception_type_name(type(value))
                )
            files_map[key_text] = bytes(value)
    try:
        _current_runtime().load_model(name, config, files_map)
    except TritonModelException as err:
        raise TritonModelException("Failed to load model: " + str(err)) from None


def unload_model(*args, **kwargs):
    """``unload_model(model_name, unload_dependents=False)``."""
    name, unload_dependents = _UNLOAD_MODEL_SIG.bind(args, kwargs)
    try:
        _current_runtime().unload_model(name, unload_dependents)
    except TritonModelException as err:
        raise TritonModelException("Failed to unload model: " + str(err)) from None


def is_model_ready(*args, **kwargs):
    """``is_model_ready(model_name, model_version="")`` -> bool."""
    name, version = _IS_MODEL_READY_SIG.bind(args, kwargs)
    try:
        return bool(_current_runtime().is_model_ready(name, version))
    except TritonModelException as err:
        raise TritonModelException("Failed to check model readiness: " + str(err)) from None


_LOAD_MODEL_SIG = _Sig(
    "load_model",
    "load_model(model_name: str, config: str = '', files: object = None) -> None",
    (
        ("model_name", _REQUIRED, _cv_str, False),
        ("config", "", _cv_str, False),
        ("files", None, None, True),
    ),
)
_UNLOAD_MODEL_SIG = _Sig(
    "unload_model",
    "unload_model(model_name: str, unload_dependents: bool = False) -> None",
    (("model_name", _REQUIRED, _cv_str, False), ("unload_dependents", False, _cv_bool, False)),
)
_IS_MODEL_READY_SIG = _Sig(
    "is_model_ready",
    "is_model_ready(model_name: str, model_version: str = '') -> bool",
    (("model_name", _REQUIRED, _cv_str, False), ("model_version", "", _cv_str, False)),
)


class SharedMemory:
    """The stub's shared-memory pool (tests only): ``free_memory()``."""

    __slots__ = ("__weakref__",)

    def __init__(self, *args, **kwargs):
        _no_constructor(type(self))

    def free_memory(self):
        return int(_current_runtime().free_memory())


shared_memory = _new_bare(SharedMemory)


def async_event_future_done_callback(*args, **kwargs):
    """Done-callback the stub puts on background coroutines (internal)."""
    (future,) = _FUTURE_DONE_SIG.bind(args, kwargs)
    _current_runtime().background_future_done(future)


_FUTURE_DONE_SIG = _Sig(
    "async_event_future_done_callback",
    "async_event_future_done_callback(py_future: object) -> None",
    (("py_future", _REQUIRED, None, False),),
)
