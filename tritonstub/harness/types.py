"""The harness's data-plane types: what every front end (CLI, pytest, gRPC, HTTP) hands the engine
and gets back. Plain data, no I/O; names follow Triton's (KServe v2 / TRITONSERVER_*).

- :class:`InferTensor`: a name, a Triton datatype (``"FP32"``, ``"BYTES"`` ...) and a numpy array
  (BYTES: an object array of ``bytes``; BF16: a uint16 array holding the raw bits).
- :class:`InferRequest`: what a client sends (one request: inputs, requested outputs, id,
  correlation id, sequence flags, parameters, timeout).
- :class:`InferResponse`: one response (outputs or an error; ``final`` as Triton's
  ``TRITONSERVER_RESPONSE_COMPLETE_FINAL`` flag; an empty final response has no outputs).
- :class:`InferError`: an error with Triton's status code (``TRITONSERVER_Error_Code`` names), the
  one thing every front end maps to its own status (gRPC code, HTTP status, CLI exit status).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from ..errors import TritonStubError

#: TRITONSERVER_Error_Code, by name (the harness's and the model API's TritonError codes).
ERROR_CODES = ("UNKNOWN", "INTERNAL", "NOT_FOUND", "INVALID_ARG", "UNAVAILABLE",
               "UNSUPPORTED", "ALREADY_EXISTS", "CANCELLED")

#: Triton datatype -> numpy dtype (BYTES: object; BF16: raw bits in uint16).
DATATYPES: Dict[str, np.dtype] = {
    "BOOL": np.dtype(bool), "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32), "UINT64": np.dtype(np.uint64), "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16), "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object), "BF16": np.dtype(np.uint16),
}

#: config.pbtxt ``TYPE_*`` -> Triton datatype.
CONFIG_TYPES = {f"TYPE_{k}": k for k in DATATYPES if k != "BYTES"}
CONFIG_TYPES["TYPE_STRING"] = "BYTES"


def datatype_of(array: np.ndarray) -> str:
    """The Triton datatype of a numpy array (object, str and bytes arrays are BYTES)."""
    kind = array.dtype
    if kind == object or kind.kind in "SU":
        return "BYTES"
    for name, dt in DATATYPES.items():
        if name not in ("BYTES", "BF16") and dt == kind:
            return name
    raise InferError("INVALID_ARG", f"numpy dtype {kind} has no Triton datatype")


class InferError(TritonStubError):
    """An inference or repository error as Triton reports it: ``code`` (a TRITONSERVER_Error_Code
    name) and ``message`` (the exact text Triton gives)."""

    def __init__(self, code: str, message: str):
        if code not in ERROR_CODES:
            raise ValueError(f"unknown Triton error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"InferError({self.code!r}, {self.message!r})"


@dataclass
class InferTensor:
    name: str
    datatype: str
    array: np.ndarray

    @property
    def shape(self) -> List[int]:
        return [int(d) for d in self.array.shape]

    @classmethod
    def of(cls, name: str, value, datatype: Optional[str] = None) -> "InferTensor":
        """A tensor from anything numpy takes (str/bytes lists become BYTES)."""
        array = value if isinstance(value, np.ndarray) else np.asarray(value)
        if datatype is None:
            datatype = datatype_of(array)
        if datatype == "BYTES" and array.dtype != object:
            array = np.array([v.encode() if isinstance(v, str) else bytes(v)
                              for v in array.reshape(-1)], dtype=object).reshape(array.shape)
        elif datatype != "BYTES" and array.dtype != DATATYPES[datatype]:
            array = array.astype(DATATYPES[datatype])
        return cls(name, datatype, array)


@dataclass
class InferRequest:
    """One inference request as a client sends it (fields as in KServe v2 / TRITONSERVER)."""

    model_name: str
    inputs: List[InferTensor] = field(default_factory=list)
    #: None: every output of the model (Triton's default); else these names in this order.
    requested_outputs: Optional[List[str]] = None
    model_version: str = ""
    request_id: str = ""
    #: 0 = none; an int (uint64) or a str (string correlation ids).
    correlation_id: Union[int, str] = 0
    #: TRITONSERVER_RequestFlag bits: 1 = SEQUENCE_START, 2 = SEQUENCE_END.
    flags: int = 0
    parameters: Dict[str, Union[str, int, bool]] = field(default_factory=dict)
    timeout_us: int = 0
    priority: int = 0

    @classmethod
    def make(cls, model_name: str, inputs: Optional[Mapping[str, object]] = None,
             **fields) -> "InferRequest":
        """``InferRequest.make("add_sub", {"INPUT0": a, "INPUT1": b}, request_id="1")``."""
        tensors = [v if isinstance(v, InferTensor) else InferTensor.of(k, v)
                   for k, v in (inputs or {}).items()]
        return cls(model_name, tensors, **fields)

    def input(self, name: str) -> Optional[InferTensor]:
        for t in self.inputs:
            if t.name == name:
                return t
        return None


@dataclass
class InferResponse:
    """One response. ``error`` set: no outputs. ``final``: the last response of its request."""

    model_name: str
    model_version: str
    request_id: str = ""
    outputs: List[InferTensor] = field(default_factory=list)
    error: Optional[InferError] = None
    final: bool = True
    parameters: Dict[str, Union[str, int, bool]] = field(default_factory=dict)

    def output(self, name: str) -> InferTensor:
        if self.error is not None:
            raise KeyError(f"response is an error ({self.error.code}): {self.error.message}")
        for t in self.outputs:
            if t.name == name:
                return t
        raise KeyError(f"response has no output {name!r} (outputs: {[t.name for t in self.outputs]})")

    def as_numpy(self, name: str) -> np.ndarray:
        return self.output(name).array

    def __getitem__(self, name: str) -> np.ndarray:
        return self.as_numpy(name)

    @property
    def empty_final(self) -> bool:
        """A FINAL flag with no response (``send(flags=FINAL)`` with no response object)."""
        return self.final and self.error is None and not self.outputs and not self.parameters


@dataclass
class ModelIndexEntry:
    """RepositoryIndex entry: name, version, state (READY / UNAVAILABLE / LOADING / UNLOADING or
    "" when not loaded) and the reason of an UNAVAILABLE state."""
    name: str
    version: str = ""
    state: str = ""
    reason: str = ""


@dataclass
class LogRecord:
    """One log line as the server logs it: level ``I``/``W``/``E``/``V``, the file and line the
    stub reported (basename, as Triton prints it), the message, and the formatted line."""
    level: str
    filename: str
    line: int
    message: str
    text: str


ResponseCallback = "Callable[[InferResponse], None]"
Responses = Sequence[InferResponse]
