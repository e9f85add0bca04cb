"""Harness types <-> the protocol's plain values (RequestData, ResponseData), both directions:
the parent writes a client's InferRequest for the stub and reads the stub's responses back, and
for BLS it reads the stub's request and writes the callee's responses."""
from __future__ import annotations

import json
from typing import Dict, List, Optional

import numpy as np

from .. import protocol
from ..protocol.dtypes import deserialize_bytes, serialize_bytes
from ..protocol.requests import RequestData
from ..protocol.responses import ResponseData
from ..protocol.tensors import RawTensor
from .types import DATATYPES, InferError, InferRequest, InferResponse, InferTensor

L = protocol.current()
_DT = L.TRITONSERVER_DataType
_CODE = L.TRITONSERVER_Error_Code


def dtype_number(datatype: str) -> int:
    return int(_DT[datatype])


def dtype_name(number: int) -> str:
    return _DT(number).name


def tensor_bytes(t: InferTensor):
    if t.datatype == "BYTES":
        return serialize_bytes(t.array)
    arr = np.ascontiguousarray(t.array, dtype=DATATYPES[t.datatype])
    return arr.reshape(-1).view(np.uint8)


def tensor_from_wire(name: str, dtype: int, dims, data) -> InferTensor:
    datatype = dtype_name(dtype)
    dims = tuple(int(d) for d in dims)
    if datatype == "BYTES":
        return InferTensor(name, datatype, deserialize_bytes(data, dims))
    raw = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8).copy()
    return InferTensor(name, datatype, raw.view(DATATYPES[datatype]).reshape(dims))


def parameters_json(parameters: Dict[str, object]) -> str:
    """The request parameters as the parent writes them (TritonJson, compact)."""
    return json.dumps(parameters or {}, separators=(",", ":"), ensure_ascii=False)


def request_data(request: InferRequest, output_names: List[str], model_version: int) -> RequestData:
    """A client's request as the parent saves it for the stub. Requested output names are those
    the core resolved (every output of the model when the client named none), sorted."""
    inputs = [RawTensor(t.name, dtype_number(t.datatype), tuple(t.shape), tensor_bytes(t))
              for t in request.inputs]
    return RequestData(inputs=inputs, requested_output_names=sorted(set(output_names)),
                       request_id=request.request_id, correlation_id=request.correlation_id,
                       model_name=request.model_name, model_version=model_version,
                       flags=int(request.flags), timeout=int(request.timeout_us),
                       parameters=parameters_json(request.parameters),
                       preferred_memory_type=int(L.PreferredMemoryType.kDefault))


def request_from_data(data: RequestData) -> InferRequest:
    """A BLS request the stub wrote, as a harness request."""
    inputs = [tensor_from_wire(t.name, t.dtype, t.dims, t.data) for t in data.inputs]
    try:
        parameters = json.loads(data.parameters or "{}")
    except ValueError:
        parameters = {}
    return InferRequest(data.model_name, inputs, list(data.requested_output_names) or None,
                        "" if data.model_version < 0 else str(data.model_version),
                        data.request_id, data.correlation_id, int(data.flags), parameters,
                        int(data.timeout))


def response_from_data(resp: Optional[ResponseData], model_name: str, model_version: str,
                       request_id: str, final: bool) -> InferResponse:
    if resp is None:
        return InferResponse(model_name, model_version, request_id, final=final)
    if resp.error is not None:
        code, message = resp.error
        try:
            name = _CODE(code).name
        except ValueError:
            name = "UNKNOWN"
        return InferResponse(model_name, model_version, request_id, error=InferError(name, message),
                             final=final)
    outputs = [tensor_from_wire(n, d, dims, data) for n, d, dims, data in resp.outputs]
    try:                        # r25.02+: the response's parameters ("{}" in older eras)
        parameters = json.loads(resp.parameters or "{}")
    except ValueError:
        parameters = {}
    return InferResponse(model_name, model_version, request_id, outputs=outputs, final=final,
                         parameters=parameters if isinstance(parameters, dict) else {})


def data_from_response(resp: InferResponse, ident: int = 0) -> ResponseData:
    if resp.error is not None:
        return ResponseData(error=(int(_CODE[resp.error.code]), resp.error.message), id=ident,
                            is_last_response=resp.final)
    outputs = [(t.name, dtype_number(t.datatype), tuple(t.shape), bytes(tensor_bytes(t)))
               for t in resp.outputs]
    return ResponseData(outputs=outputs, id=ident, is_last_response=resp.final,
                        parameters=parameters_json(resp.parameters))
