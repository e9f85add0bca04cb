"""Protocol values <-> the model API's objects.

``tritonstub.protocol`` speaks RequestData / ResponseData / RawTensor (what lies in shared
memory); the model API (c_python_backend_utils) speaks InferenceRequest / InferenceResponse /
Tensor (what model.py sees). This module is the only place that knows both, through the model
API's documented internal constructors (``_from_shm``, ``_from_parent``, ``_from_raw``,
``_new``, ``_payload``).

The execute hot path: :class:`SurfaceRequests` is the ``RequestFactory`` that
``protocol.requests.read_request`` builds the model's objects with, so a request goes from
shared memory to an InferenceRequest with no intermediate value.
"""
from __future__ import annotations

from functools import partial
from typing import Iterable, Optional

from .. import protocol
from ..protocol import requests as wire_requests
from ..protocol.requests import RequestData, RequestFactory
from ..protocol.responses import ResponseData, Returned
from ..protocol.tensors import RawTensor, is_fresh

from . import c_python_backend_utils as pb

_GPU = int(protocol.current().TRITONSERVER_MemoryType.GPU)


def make_tensor(raw: RawTensor):
    # The reader already copied the bytes out of shared memory into fresh memory, so the array
    # can use it directly (writeable, independent of shm) without a second copy.
    return pb.Tensor._from_raw(raw.name, raw.dtype, raw.dims, raw.data, copy=not is_fresh(raw.data))


class SurfaceRequests(RequestFactory):
    """Builds the requests of one ExecuteRequest as the model API's objects."""
    default_trace = pb._DEFAULT_TRACE
    tensor = staticmethod(pb.Tensor._new)
    raw_tensor = staticmethod(make_tensor)
    trace = staticmethod(pb.InferenceTrace._create)
    _preferred: dict = {}

    def __init__(self, heap, is_decoupled):
        self.heap = heap
        self.is_decoupled = is_decoupled

    def preferred_memory(self, memory_type: int, device_id: int):
        key = (memory_type, device_id)
        pm = self._preferred.get(key)
        if pm is None:
            pm = self._preferred[key] = pb.PreferredMemory._create(*key)
        return pm

    def request(self, request_id, correlation_id, inputs, output_names, model_name,
                model_version, flags, timeout, preferred_memory, trace, parameters, address,
                factory_address, is_decoupled, handle):
        # The decoupled flag the request keeps is the model's (IPCControlShm.decoupled, read
        # when it sends), not the request's own.
        return pb.InferenceRequest._from_shm(
            request_id, correlation_id, inputs, output_names, model_name, model_version, flags,
            timeout, preferred_memory, trace, parameters, address, factory_address,
            self.is_decoupled, partial(wire_requests.write_release_flags, self.heap, handle))


def load_requests(stub, batch_handle: int) -> list:
    """The requests of an ExecuteRequest (InferRequest::LoadFromSharedMemory for each)."""
    heap = stub.region
    handles = wire_requests.read_request_batch(heap, batch_handle)
    if not handles:
        return []
    factory = SurfaceRequests(heap, stub.is_decoupled)
    read = wire_requests.read_request
    out = []
    try:
        for h in handles:
            out.append(read(heap, h, factory))
    except BaseException:
        for req in out:
            req._sender._close()     # made and closed: the failed batch's error ends them all
        raise
    return out


def tensor_tuple(t):
    return (t._name, t._dtype, t._dims, t._payload())


def response_data(resp, requested: Optional[Iterable[str]] = None) -> ResponseData:
    """An InferenceResponse to save; pruned to ``requested`` when given (execute's return)."""
    if requested is not None:
        resp._prune(set(requested))
    err = resp._error
    if err is not None:
        return ResponseData(error=(int(err._code), err._message),
                            id=resp._id, is_last_response=resp._is_last_response)
    return ResponseData(outputs=[tensor_tuple(t) for t in resp._outputs], id=resp._id,
                        is_last_response=resp._is_last_response, parameters=resp._parameters)


def output_item(resp, requested) -> Returned:
    """A returned response without error, pruned to ``requested`` (the request's sorted
    names), as ``protocol.responses.write_execute_response`` takes it."""
    outs = resp._outputs
    if len(outs) != len(requested) or any(t._name not in requested for t in outs):
        resp._prune(set(requested))
        outs = resp._outputs
    return Returned([(t._name, t._dtype, t._dims, t._payload()) for t in outs], resp._id,
                    resp._is_last_response, resp._parameters)


def make_response(data: ResponseData):
    """A BLS response from the parent."""
    if data.error is not None:
        error = pb.TritonError._create(data.error[1], data.error[0])
        return pb.InferenceResponse._from_parent((), error, data.is_last_response, data.id)
    outputs = [pb.Tensor._from_raw(name, dt, dims, buf, copy=not is_fresh(buf))
               for name, dt, dims, buf in data.outputs]
    return pb.InferenceResponse._from_parent(outputs, None, data.is_last_response, data.id,
                                             data.parameters)


def error_response(message: str):
    return pb.InferenceResponse._error_response(message)


def request_data(req) -> RequestData:
    """A model-built InferenceRequest as the protocol writes it (BLS)."""
    inputs = []
    for t in req._inputs:
        if t._memory_type == _GPU:
            raise pb.TritonModelException("GPU tensors are not supported by tritonstub yet")
        inputs.append(RawTensor(t._name, t._dtype, t._dims, t._payload()))
    pm = req._preferred_memory
    if pm._type == int(pb.TRITONSERVER_MEMORY_GPU):      # PreferredMemory.MemoryType, GPU = 0
        # Deliberate difference: C++ asks Triton for GPU output buffers and receives CUDA IPC
        # handles; we can hold none, so say so before anything is sent.
        raise pb.TritonModelException(
            "GPU tensors are not supported by tritonstub yet: this BLS request asks for its "
            "outputs in GPU memory (PreferredMemory(TRITONSERVER_MEMORY_GPU)); use CPU or the "
            "default preferred memory")
    tr = req._trace
    return RequestData(
        inputs=inputs, requested_output_names=list(req._requested_output_names),
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
