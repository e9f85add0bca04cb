"""The harness: tritonserver's side of the python backend in Python (docs/harness.md).

``Engine`` loads a repository of python models and runs them through real stub processes
(ours, the C++ one, or any executable); the CLI, the pytest fixtures and ``tritonstub serve`` are
thin layers over it.
"""
from .types import (InferError, InferRequest, InferResponse, InferTensor, LogRecord,  # noqa: F401
                    ModelIndexEntry)


def __getattr__(name):
    # The engine pulls in protobuf (config.pbtxt); load it only when asked for.
    if name in ("Engine", "Call", "Model"):
        from . import engine
        return getattr(engine, name)
    raise AttributeError(name)
