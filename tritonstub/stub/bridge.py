"""Conversions between the codec's plain values and the surface's objects.

codec.py speaks RequestData / ResponseData / RawTensor (what lies in shared memory);
c_python_backend_utils speaks InferenceRequest / InferenceResponse / Tensor (what model.py
sees). This module is the only place that knows both, through the surface's documented
internal constructors (``_from_server``, ``_from_parent``, ``_from_raw``, ``_payload``).
"""
from __future__ import annotations

from typing import Iterable, Optional

import numpy as np

from . import c_python_backend_utils as pb
from . import codec


def make_tensor(raw: codec.RawTensor):
    # The codec already copied the bytes out of shared memory into fresh memory, so the array
    # can use it directly (writeable, independent of shm) without a second copy.
    return pb.Tensor._from_raw(raw.name, raw.dtype, raw.dims, raw.data, copy=not _fresh(raw.data))


def _fresh(data) -> bool:
    return isinstance(data, (bytearray, np.ndarray))


def make_request(rd: codec.RequestData, stub):
    region = stub.region
    return pb.InferenceRequest._from_server(
        request_id=rd.request_id, correlation_id=rd.correlation_id,
        inputs=[make_tensor(t) for t in rd.inputs],
        requested_output_names=rd.requested_output_names, model_name=rd.model_name,
        model_version=rd.model_version, flags=rd.flags, timeout=rd.timeout,
        preferred_memory=(rd.preferred_memory_type, rd.preferred_memory_device_id),
        trace=(rd.trace_address, rd.trace_context or ""), parameters=rd.parameters,
        request_address=rd.address, response_factory_address=rd.response_factory_address,
        is_decoupled=lambda: stub.decoupled, release_flags=1,
        release_flags_setter=lambda flags: codec.set_release_flags(region, rd, flags))


def tensor_tuple(t):
    return (t._name, t._dtype, t._dims, t._payload())


def response_data(resp, requested: Optional[Iterable[str]] = None) -> codec.ResponseData:
    """An InferenceResponse to save; pruned to ``requested`` when given (execute's return)."""
    if requested is not None:
        resp._prune(set(requested))
    err = resp._error
    if err is not None:
        return codec.ResponseData(error=(int(err._code), err._message),
                                  id=resp._id, is_last_response=resp._is_last_response)
    return codec.ResponseData(outputs=[tensor_tuple(t) for t in resp._outputs], id=resp._id,
                              is_last_response=resp._is_last_response)


def make_response(data: codec.ResponseData):
    """A BLS response from the parent."""
    if data.error is not None:
        error = pb.TritonError._create(data.error[1], data.error[0])
        return pb.InferenceResponse._from_parent((), error, data.is_last_response, data.id)
    outputs = [pb.Tensor._from_raw(name, dt, dims, buf, copy=not _fresh(buf))
               for name, dt, dims, buf in data.outputs]
    return pb.InferenceResponse._from_parent(outputs, None, data.is_last_response, data.id)


def error_response(message: str):
    return pb.InferenceResponse._error_response(message)


def request_data(req) -> codec.RequestData:
    """A model-built InferenceRequest as the codec saves it (BLS)."""
    from ..ipc.layouts import r24_10 as L
    inputs = []
    for t in req._inputs:
        if t._memory_type == L.TRITONSERVER_MemoryType.GPU:
            raise pb.TritonModelException("GPU tensors are not supported by tritonstub yet")
        inputs.append(codec.RawTensor(t._name, t._dtype, t._dims, t._payload()))
    pm = req._preferred_memory
    tr = req._trace
    return codec.RequestData(
        handle=0, inputs=inputs, requested_output_names=list(req._requested_output_names),
        request_id=req._request_id, correlation_id=req._correlation_id,
        model_name=req._model_name, model_version=req._model_version, flags=req._flags,
        timeout=req._timeout, address=0, response_factory_address=0,
        preferred_memory_type=pm._type, preferred_memory_device_id=pm._device_id,
        parameters=req._parameters, trace_address=tr._triton_trace,
        trace_context=tr._context)


def is_inference_response(obj) -> bool:
    return isinstance(obj, pb.InferenceResponse)


def sender_of(request):
    return request._sender
