"""The wire formats of `tritonstub serve`, in one place: KServe v2 gRPC messages and HTTP/JSON
bodies <-> the harness types (:mod:`tritonstub.harness.types`).

Theory of operation
-------------------
The engine takes and gives numpy arrays (:class:`~tritonstub.harness.types.InferTensor`). The
front ends only translate. What tritonserver 2.51 decides *in its front ends* is decided here,
with the same texts (server ``src/grpc/infer_handler.cc`` ``InferGRPCToInput`` /
``SetInferenceRequestMetadata``, ``src/http_server.cc`` ``ParseJsonTritonIO`` /
``ReadDataFromJson`` / ``WriteDataToJson``); what the core decides (unknown model, input names,
datatypes and shapes) is the engine's, so both front ends show the same text.

Tensor bytes (both protocols' binary forms): little-endian, C order; BOOL one byte per element;
BF16 the raw 16 bits; BYTES each element as a 4-byte little-endian length and the bytes, no
terminator (``raw_input_contents``, ``raw_output_contents``, the HTTP binary-data extension).
Triton's gRPC front end always answers with ``raw_output_contents``; so do we.

One check of the core is done here, because it needs the bytes the engine never sees: the byte
size of an input against its shape ("input byte size mismatch ...", "unexpected number of string
elements ...", core ``infer_request.cc``). The engine checks name, datatype and shape first in
Triton; :func:`decode_bytes` therefore raises :class:`DeferredInputError`, which the front ends
turn into a zero-filled placeholder of the declared shape so the engine's own checks run first
(see :func:`tritonstub.serve.dataplane.check_before_deferred`).
"""
from __future__ import annotations

import math
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..protocol.dtypes import pack_bytes, serialize_bytes, walk_bytes
from ..harness.types import DATATYPES, InferError, InferRequest, InferResponse, InferTensor

#: TRITONSERVER_Error_Code name -> grpc.StatusCode name (server grpc_utils.cc CodeToStatus).
GRPC_CODES = {
    "UNKNOWN": "UNKNOWN", "INTERNAL": "INTERNAL", "NOT_FOUND": "NOT_FOUND",
    "INVALID_ARG": "INVALID_ARGUMENT", "UNAVAILABLE": "UNAVAILABLE",
    "UNSUPPORTED": "UNIMPLEMENTED", "ALREADY_EXISTS": "ALREADY_EXISTS", "CANCELLED": "CANCELLED",
}

#: TRITONSERVER_Error_Code name -> HTTP status (server http_server.cc HttpCodeFromError).
HTTP_CODES = {
    "INTERNAL": 500, "NOT_FOUND": 404, "UNAVAILABLE": 503, "UNSUPPORTED": 501,
    "UNKNOWN": 400, "INVALID_ARG": 400, "ALREADY_EXISTS": 400, "CANCELLED": 400,
}

#: Request parameters starting with ``triton_`` that a client may send (server common.h).
TRITON_RESERVED_REQUEST_PARAMS = ("triton_enable_empty_final_response",)

#: Element size in bytes of each fixed-size datatype.
ELEMENT_SIZE = {k: v.itemsize for k, v in DATATYPES.items() if k != "BYTES"}


def log_request(request_id: str) -> str:
    """The prefix the core puts on a request's errors (``InferenceRequest::LogRequest``)."""
    return f"[request id: {request_id or '<id_unknown>'}] "


def version_number(version: str) -> int:
    """``GetModelVersionFromString``: "" is -1 (latest); else what ``std::stol`` reads (leading
    blanks, a sign, digits; the rest ignored), >= 0, or Triton's text."""
    if version == "":
        return -1
    m = re.match(r"\s*([+-]?\d+)", version)
    if m is None or not -2**63 <= int(m.group(1)) < 2**63:
        raise InferError(
            "INVALID_ARG",
            f"failed to get model version from specified version string '{version}' "
            f"(details: stol), version should be an integral value > 0")
    number = int(m.group(1))
    if number < 0:
        raise InferError("INVALID_ARG", f"invalid model version specified '{version}' , "
                                        "version should be an integral value > 0")
    return number


def dims_text(shape: Sequence[int]) -> str:
    """``DimsListToString``: ``[1,16]``."""
    return "[" + ",".join(str(int(d)) for d in shape) + "]"


# ------------------------------------------------------------------- tensor bytes

class DeferredInputError(InferError):
    """An input whose bytes do not fit its shape. Triton reports this only after the core has
    checked the input's name, datatype and shape, so the front end sends the engine a placeholder
    of the declared shape and raises this error only when the engine accepts the request."""


def element_count(shape: Sequence[int]) -> int:
    return int(math.prod(int(d) for d in shape)) if len(shape) else 1


def decode_bytes(name: str, datatype: str, shape: Sequence[int], raw: bytes, *,
                 model_name: str, request_id: str = "") -> InferTensor:
    """One input's bytes -> an InferTensor of ``shape``. A byte count that does not fit raises
    :class:`DeferredInputError` with the core's text; an unknown datatype raises INVALID_ARG."""
    if datatype not in DATATYPES:
        raise InferError("INVALID_ARG", f"invalid datatype for input {name}")
    count = element_count(shape)
    if datatype == "BYTES":
        # core ValidateBytesInputs: walks the length indicators and counts the elements
        n, found = len(raw), 0
        elems: List[bytes] = []
        for off, size in walk_bytes(raw):
            if size is None:
                raise DeferredInputError(
                    "INVALID_ARG",
                    f"{log_request(request_id)}incomplete string length indicator for inference "
                    f"input '{name}' for model '{model_name}', expecting 4 bytes but only "
                    f"{n - off} bytes available. Please make sure the string length indicator "
                    "is in one buffer.")
            found += 1
            if found > count:
                raise DeferredInputError(
                    "INVALID_ARG",
                    f"{log_request(request_id)}unexpected number of string elements {found} for "
                    f"inference input '{name}' for model '{model_name}', expecting {count}")
            if off + 4 + size > n:
                raise DeferredInputError(
                    "INVALID_ARG",
                    f"{log_request(request_id)}expected {count} string elements for inference "
                    f"input '{name}' for model '{model_name}', got {found}")
            elems.append(bytes(raw[off + 4:off + 4 + size]))
        if found != count:
            raise DeferredInputError(
                "INVALID_ARG",
                f"{log_request(request_id)}expected {count} string elements for inference input "
                f"'{name}' for model '{model_name}', got {found}")
        array = np.empty(count, dtype=object)
        array[:] = elems
        return InferTensor(name, datatype, array.reshape(shape))
    expected = count * ELEMENT_SIZE[datatype]
    if len(raw) != expected:
        raise DeferredInputError(
            "INVALID_ARG",
            f"{log_request(request_id)}input byte size mismatch for input '{name}' for model "
            f"'{model_name}'. Expected {expected}, got {len(raw)}")
    dtype = DATATYPES[datatype].newbyteorder("<") if DATATYPES[datatype].itemsize > 1 \
        else DATATYPES[datatype]
    array = np.frombuffer(raw, dtype=dtype).reshape(shape)
    if datatype == "BOOL":
        array = array.astype(bool)          # any non-zero byte is true, as the stub reads it
    return InferTensor(name, datatype, array)


def placeholder(name: str, datatype: str, shape: Sequence[int]) -> InferTensor:
    """A zero-filled tensor of the declared shape (see :class:`DeferredInputError`)."""
    shape = [max(int(d), 0) for d in shape]
    if datatype == "BYTES":
        array = np.empty(element_count(shape), dtype=object)
        array[:] = [b""] * array.size
        return InferTensor(name, datatype, array.reshape(shape))
    return InferTensor(name, datatype, np.zeros(shape, dtype=DATATYPES[datatype]))


def encode_tensor(tensor: InferTensor) -> bytes:
    """An output's bytes as Triton sends them (raw_output_contents / HTTP binary data)."""
    return bytes(tensor_bytes(tensor))


def tensor_bytes(tensor: InferTensor):
    """:func:`encode_tensor`'s bytes, as a view of the array where it can be (no copy)."""
    if tensor.datatype == "BYTES":
        return serialize_bytes(tensor.array)
    array = np.ascontiguousarray(tensor.array)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return memoryview(array.reshape(-1)).cast("B")


# ------------------------------------------------------------------- request parameters

def parameters_to_request(request: InferRequest, params: Mapping[str, Any],
                          grpc_choice: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    """Apply KServe request parameters to ``request`` as Triton does: ``sequence_id``,
    ``sequence_start``/``sequence_end``, ``priority``, ``timeout`` go to the request's fields;
    ``triton_*`` keys are reserved; the rest become the request's parameters. ``grpc_choice``
    names each value's protobuf oneof (gRPC's type checks); HTTP passes None. Returns the
    ``triton_*`` state parameters (``triton_enable_empty_final_response``)."""
    state: Dict[str, Any] = {}
    flags = 0
    for key, value in params.items():
        choice = grpc_choice.get(key) if grpc_choice is not None else None
        if key == "sequence_id":
            if grpc_choice is not None and choice not in ("int64_param", "string_param"):
                raise InferError("INVALID_ARG", "invalid value type for 'sequence_id' parameter, "
                                                "expected int64_param or string_param.")
            request.correlation_id = value
        elif key == "sequence_start":
            if grpc_choice is not None and choice != "bool_param":
                raise InferError("INVALID_ARG", "invalid value type for 'sequence_start' "
                                                "parameter, expected bool_param.")
            flags |= 1 if value else 0
        elif key == "sequence_end":
            if grpc_choice is not None and choice != "bool_param":
                raise InferError("INVALID_ARG", "invalid value type for 'sequence_end' "
                                                "parameter, expected bool_param.")
            flags |= 2 if value else 0
        elif key == "priority":
            if grpc_choice is not None and choice not in ("int64_param", "uint64_param"):
                raise InferError("INVALID_ARG", "invalid value type for 'priority' parameter, "
                                                "expected int64_param or uint64_param.")
            if int(value) < 0:
                raise InferError("INVALID_ARG", "invalid value for 'priority', expected value >= 0.")
            request.priority = int(value)
        elif key == "timeout":
            if grpc_choice is not None and choice != "int64_param":
                raise InferError("INVALID_ARG", "invalid value type for 'timeout' parameter, "
                                                "expected int64_param.")
            request.timeout_us = int(value)
        elif key.startswith("triton_"):
            if key not in TRITON_RESERVED_REQUEST_PARAMS:
                raise InferError(
                    "INVALID_ARG",
                    "parameter keys starting with 'triton_' are reserved for Triton usage. Only "
                    "the following keys starting with 'triton_' are allowed: "
                    + " ".join(TRITON_RESERVED_REQUEST_PARAMS))
            if grpc_choice is not None and choice != "bool_param":
                raise InferError("INVALID_ARG", f"invalid value type for '{key}' parameter, "
                                                "expected bool_param.")
            state[key] = bool(value)
        else:
            if grpc_choice is not None and choice not in (
                    "int64_param", "bool_param", "string_param", "double_param"):
                raise InferError("INVALID_ARG", f"invalid value type for '{key}' parameter, "
                                                "expected int64_param, bool_param, or string_param.")
            request.parameters[key] = value
    request.flags = flags
    return state


# ------------------------------------------------------------------- gRPC (protobuf)

def pb_modules():
    """tritonclient's generated ``service_pb2``, ``service_pb2_grpc`` and ``model_config_pb2``."""
    from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc
    return service_pb2, service_pb2_grpc, model_config_pb2


def _pb_param_value(param) -> Tuple[Optional[str], Any]:
    choice = param.WhichOneof("parameter_choice")
    return choice, (getattr(param, choice) if choice else None)


#: typed contents field -> (the datatype Triton says it carries, the datatypes it may fill)
_CONTENTS = (
    ("bool_contents", "BOOL", ("BOOL",)),
    ("int_contents", "INT32", ("INT8", "INT16", "INT32")),
    ("int64_contents", "INT64", ("INT64",)),
    ("uint_contents", "UINT32", ("UINT8", "UINT16", "UINT32")),
    ("uint64_contents", "UINT64", ("UINT64",)),
    ("fp32_contents", "FP32", ("FP32",)),
    ("fp64_contents", "FP64", ("FP64",)),
    ("bytes_contents", "BYTES", ("BYTES",)),
)


def _typed_contents(io, model_name: str) -> Tuple[Optional[np.ndarray], int]:
    """``InferGRPCToInput``'s walk over typed contents. Returns the elements (or None when every
    list is empty) and their byte size as Triton counts it."""
    datatype = io.datatype
    found: Optional[np.ndarray] = None
    byte_size = 0
    for field, carries, fills in _CONTENTS:
        values = getattr(io.contents, field)
        if not len(values):
            continue
        tensor_dt = datatype if (datatype in fills and field in ("int_contents", "uint_contents")) \
            else carries
        if byte_size != 0:
            raise InferError(
                "INVALID_ARG",
                f"unexpected explicit tensor data for input tensor '{io.name}' for model "
                f"'{model_name}', binary data was already supplied.")
        if tensor_dt != datatype:
            raise InferError(
                "INVALID_ARG",
                f"unexpected explicit tensor data for input tensor '{io.name}' for model "
                f"'{model_name}' of type '{tensor_dt}', expected datatype "
                f"'{datatype if datatype in DATATYPES else '<invalid>'}'")
        if datatype == "BYTES":
            found = np.empty(len(values), dtype=object)
            found[:] = list(values)
            byte_size = sum(4 + len(v) for v in values)
        else:
            found = np.asarray(list(values), dtype=DATATYPES[datatype])
            byte_size = found.nbytes
    return found, byte_size


def request_from_pb(msg) -> Tuple[InferRequest, Dict[str, Any], List[DeferredInputError]]:
    """ModelInferRequest -> (InferRequest, triton_* state parameters, deferred byte-size errors).

    Raises InferError with Triton's front-end texts (no data for an input, contents and raw
    contents both given, typed contents of the wrong type, parameter types)."""
    request = InferRequest(msg.model_name, model_version=msg.model_version, request_id=msg.id)
    params = {k: _pb_param_value(v) for k, v in msg.parameters.items()}
    state = parameters_to_request(request, {k: v for k, (c, v) in params.items()},
                                  {k: c for k, (c, v) in params.items()})
    deferred: List[DeferredInputError] = []
    raw_index = 0
    for io in msg.inputs:
        if "shared_memory_region" in io.parameters:
            raise InferError("INVALID_ARG", f"Unable to find shared memory region: "
                                            f"'{io.parameters['shared_memory_region'].string_param}'")
        shape = list(io.shape)
        if io.HasField("contents") and len(msg.raw_input_contents):
            raise InferError(
                "INVALID_ARG",
                f"contents field must not be specified when using raw_input_contents for "
                f"'{io.name}' for model '{msg.model_name}'")
        if io.HasField("contents"):
            values, _ = _typed_contents(io, msg.model_name)
            if io.datatype not in DATATYPES:
                request.inputs.append(_tensor_or_placeholder(
                    io.name, io.datatype, shape, b"", msg.model_name, msg.id, deferred))
                continue
            if values is None:
                values = np.zeros(0, dtype=DATATYPES[io.datatype])
            raw = serialize_bytes(values) if io.datatype == "BYTES" else \
                values.astype(DATATYPES[io.datatype].newbyteorder("<")).tobytes()
        elif raw_index < len(msg.raw_input_contents):
            raw = msg.raw_input_contents[raw_index]
            raw_index += 1
        else:
            raise InferError(
                "INVALID_ARG",
                f"unable to find data for input tensor '{io.name}' for model "
                f"'{msg.model_name}' in request.")
        request.inputs.append(_tensor_or_placeholder(
            io.name, io.datatype, shape, raw, msg.model_name, msg.id, deferred))
    if len(msg.outputs):
        request.requested_outputs = [o.name for o in msg.outputs]
    return request, state, deferred


def _tensor_or_placeholder(name, datatype, shape, raw, model_name, request_id, deferred):
    if datatype not in DATATYPES:
        # TRITONSERVER_StringToDataType gives TYPE_INVALID; the engine's datatype check then
        # says "data-type is 'INVALID'" as the core does
        return InferTensor(name, "INVALID", np.zeros([max(int(d), 0) for d in shape]))
    if any(int(d) < 0 for d in shape):
        raise InferError(
            "INVALID_ARG",
            f"{log_request(request_id)}All input dimensions should be specified for input "
            f"'{name}' for model '{model_name}', got {dims_text(shape)}")
    try:
        return decode_bytes(name, datatype, shape, raw, model_name=model_name,
                            request_id=request_id)
    except DeferredInputError as e:
        deferred.append(e)
        return placeholder(name, datatype, shape)


def response_to_pb(response: InferResponse, out=None):
    """InferResponse (no error) -> ModelInferResponse (raw_output_contents, as Triton)."""
    service_pb2, _, _ = pb_modules()
    msg = out if out is not None else service_pb2.ModelInferResponse()
    _response_head(response, msg)
    for t in response.outputs:
        msg.raw_output_contents.append(encode_tensor(t))
    return msg


#: ModelInferResponse.raw_output_contents: field 6, length-delimited (wire type 2)
_RAW_OUTPUT_CONTENTS_TAG = bytes([6 << 3 | 2])


def response_to_wire(response: InferResponse) -> bytes:
    """``response_to_pb(response).SerializeToString()``, byte for byte, made with one copy of
    each output. raw_output_contents is the message's last field (protobuf writes fields in
    number order): the rest of the message is serialized by protobuf, and each output follows as
    tag, length, bytes. The other way copies an output three times (``tobytes``, the append,
    the serializer), which at 16 MiB outputs was a third of the server's CPU."""
    service_pb2, _, _ = pb_modules()
    head = service_pb2.ModelInferResponse()
    _response_head(response, head)
    parts = [head.SerializeToString()]
    for t in response.outputs:
        raw = tensor_bytes(t)
        parts += (_RAW_OUTPUT_CONTENTS_TAG, _varint(len(raw)), raw)
    return b"".join(parts)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _response_head(response: InferResponse, msg) -> None:
    """Everything of the ModelInferResponse but raw_output_contents."""
    msg.model_name = response.model_name
    msg.model_version = str(response.model_version)
    msg.id = response.request_id
    set_pb_parameters(msg.parameters, response.parameters)
    for t in response.outputs:
        o = msg.outputs.add()
        o.name = t.name
        o.datatype = t.datatype
        o.shape.extend(t.shape)


def set_pb_parameters(target, params: Mapping[str, Any]) -> None:
    for k, v in params.items():
        if isinstance(v, bool):
            target[k].bool_param = v
        elif isinstance(v, int):
            target[k].int64_param = v
        elif isinstance(v, float):
            target[k].double_param = v
        else:
            target[k].string_param = str(v)


def response_from_pb(msg) -> InferResponse:
    """ModelInferResponse -> InferResponse (for tests and clients of ours)."""
    outputs = []
    for i, o in enumerate(msg.outputs):
        raw = msg.raw_output_contents[i] if i < len(msg.raw_output_contents) else b""
        outputs.append(decode_bytes(o.name, o.datatype, list(o.shape), raw,
                                    model_name=msg.model_name))
    params = {k: _pb_param_value(v)[1] for k, v in msg.parameters.items()}
    return InferResponse(msg.model_name, msg.model_version, msg.id, outputs, parameters=params)


def config_to_pb(config: Mapping[str, Any]):
    """The model's config (Triton's JSON form, as a dict) -> inference.ModelConfig, as Triton's
    ``JsonStringToMessage`` reads it."""
    from google.protobuf import json_format
    _, _, model_config_pb2 = pb_modules()
    return json_format.ParseDict(config, model_config_pb2.ModelConfig(), ignore_unknown_fields=True)


def metadata_to_pb(metadata: Mapping[str, Any]):
    from google.protobuf import json_format
    service_pb2, _, _ = pb_modules()
    return json_format.ParseDict(dict(metadata), service_pb2.ModelMetadataResponse(),
                                 ignore_unknown_fields=True)


def statistics_to_pb(stats: Mapping[str, Any]):
    """Triton's statistics JSON ({"model_stats": [...]}, or one entry) -> ModelStatisticsResponse."""
    from google.protobuf import json_format
    service_pb2, _, _ = pb_modules()
    body = dict(stats) if "model_stats" in stats else {"model_stats": [dict(stats)]}
    return json_format.ParseDict(body, service_pb2.ModelStatisticsResponse(),
                                 ignore_unknown_fields=True)


# ------------------------------------------------------------------- HTTP (JSON)

def json_data_to_raw(name: str, datatype: str, shape: Sequence[int], data: Any) -> bytes:
    """``ReadDataFromJson``: a (nested) JSON list -> the tensor's bytes, with Triton's texts."""
    if datatype == "FP16":
        raise InferError("INVALID_ARG", "receiving FP16 data via JSON is not supported. Please "
                                        f"use the binary data format for input {name}")
    if datatype == "BF16":
        raise InferError("INVALID_ARG", "receiving BF16 data via JSON is not supported. Please "
                                        f"use the binary data format for input {name}")
    if datatype not in DATATYPES:
        raise InferError("INVALID_ARG", f"invalid datatype for input {name}")
    flat: List[Any] = []

    def walk(node):
        if isinstance(node, list):
            for x in node:
                walk(x)
        else:
            flat.append(node)
    walk(data)
    count = element_count(shape)
    mismatch = InferError("INTERNAL", "Unable to parse 'data': Shape does not match true shape "
                                      "of 'data' field")
    if datatype == "BYTES":
        parts = []
        for v in flat:
            if not isinstance(v, str):
                raise InferError("INTERNAL", "Unable to parse 'data': attempt to access JSON "
                                             "non-string as string")
            parts.append(v.encode("utf-8", "surrogateescape"))
        return pack_bytes(parts)
    if len(flat) > count:
        raise InferError("INTERNAL", "Unable to parse 'data': Shape does not match true shape "
                                     "of 'data' field")
    if len(flat) != count:
        raise mismatch
    for v in flat:
        if datatype == "BOOL":
            if not isinstance(v, bool):
                raise InferError("INTERNAL", "Unable to parse 'data': attempt to access JSON "
                                             "non-boolean as boolean")
        elif datatype.startswith(("INT", "UINT")):
            if isinstance(v, bool) or not isinstance(v, int):
                kind = "unsigned integer" if datatype.startswith("U") else "signed integer"
                raise InferError("INTERNAL", f"Unable to parse 'data': attempt to access JSON "
                                             f"non-{kind} as {kind}")
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            raise InferError("INTERNAL", "Unable to parse 'data': attempt to access JSON "
                                         "non-number as number")
    dtype = DATATYPES[datatype]
    if datatype.startswith(("INT", "UINT")):
        array = np.array([int(v) for v in flat], dtype=np.int64 if datatype != "UINT64"
                         else np.uint64).astype(dtype)
    else:
        array = np.asarray(flat, dtype=dtype)
    return array.astype(dtype.newbyteorder("<") if dtype.itemsize > 1 else dtype).tobytes()


def tensor_to_json_data(tensor: InferTensor) -> List[Any]:
    """``WriteDataToJson``: an output's flat list of JSON values."""
    if tensor.datatype == "FP16":
        raise InferError("INVALID_ARG", "sending FP16 data via JSON is not supported. Please use "
                                        "the binary data format for output")
    if tensor.datatype == "BF16":
        raise InferError("INVALID_ARG", "sending BF16 data via JSON is not supported. Please use "
                                        "the binary data format for output")
    flat = tensor.array.reshape(-1)
    if tensor.datatype == "BYTES":
        return [(v if isinstance(v, (bytes, bytearray)) else str(v).encode())
                .decode("utf-8", "replace") for v in flat]
    return flat.tolist()
