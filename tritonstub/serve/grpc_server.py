"""KServe v2 gRPC (``inference.GRPCInferenceService``) over the harness engine.

A thin front end, as MLServer's ``grpc/servicers.py``: each RPC converts the protobuf message
(:mod:`.convert`), asks the engine, converts back, and maps an :class:`InferError` to the gRPC
status Triton uses for its code (``grpc_utils.cc`` ``CodeToStatus``) with the same text. The
generated modules are tritonclient's (``tritonclient.grpc.service_pb2``/``_grpc``): the client
and this server then share one compiled copy of ``grpc_service.proto`` and ``model_config.proto``
(docs/serve.md says why).

ModelStreamInfer follows ``stream_infer_handler.cc``: requests are read in order and submitted
as they come; responses of any request are written as they come; a request the server rejects
answers with ``error_message`` (and the request's id) and the stream goes on; every response
carries ``triton_final_response``; an empty final flag of a decoupled model is sent only when
the request asked for it (``triton_enable_empty_final_response``). When the client cancels the
stream, every in-flight request is cancelled.
"""
from __future__ import annotations

import logging
import queue
import threading
from concurrent import futures
from typing import Any, Callable, List, Optional, Tuple

import grpc

from ..harness.types import InferError, InferResponse
from . import convert, dataplane
from .metadata import SERVER_EXTENSIONS, SERVER_NAME, SERVER_VERSION

log = logging.getLogger("tritonstub.serve.grpc")

service_pb2, service_pb2_grpc, model_config_pb2 = convert.pb_modules()

#: Triton's default --grpc-infer-allocation-pool-size is unrelated; this is our worker count.
DEFAULT_WORKERS = 16
#: Triton accepts messages of any size (INT32_MAX); grpcio's default is 4 MiB.
MAX_MESSAGE_BYTES = 2**31 - 1
#: How often a unary call checks that its client is still there while the model runs.
POLL_S = 0.5


def _abort(context, err: InferError):
    context.abort(getattr(grpc.StatusCode, convert.GRPC_CODES.get(err.code, "UNKNOWN")),
                  err.message)


def _rpc(fn):
    """Run an RPC body; an InferError becomes Triton's status, anything else INTERNAL."""
    def wrapper(self, request, context):
        try:
            return fn(self, request, context)
        except InferError as e:
            _abort(context, e)
        except Exception as e:  # noqa: BLE001 - the server must stay up; say what went wrong
            if isinstance(e, grpc.RpcError) or type(e).__name__ == "_AbortionError":
                raise
            log.exception("%s failed", fn.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")
    wrapper.__name__ = fn.__name__
    return wrapper


class Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    """GRPCInferenceService over ``engine`` (a :class:`tritonstub.harness.Engine`)."""

    def __init__(self, engine, *, live: Callable[[], bool] = lambda: True):
        self.engine = engine
        self._live = live

    # ---------------------------------------------------------------- health, metadata
    @_rpc
    def ServerLive(self, request, context):
        return service_pb2.ServerLiveResponse(live=self._live())

    @_rpc
    def ServerReady(self, request, context):
        return service_pb2.ServerReadyResponse(ready=self._live())

    @_rpc
    def ModelReady(self, request, context):
        convert.version_number(request.version)
        return service_pb2.ModelReadyResponse(
            ready=bool(self.engine.is_ready(request.name, request.version)))

    @_rpc
    def ServerMetadata(self, request, context):
        return service_pb2.ServerMetadataResponse(
            name=SERVER_NAME, version=SERVER_VERSION, extensions=SERVER_EXTENSIONS)

    @_rpc
    def ModelMetadata(self, request, context):
        convert.version_number(request.version)
        model = self.engine.model(request.name, request.version)
        return convert.metadata_to_pb(model.metadata())

    @_rpc
    def ModelConfig(self, request, context):
        convert.version_number(request.version)
        model = self.engine.model(request.name, request.version)
        return service_pb2.ModelConfigResponse(config=convert.config_to_pb(model.config))

    @_rpc
    def ModelStatistics(self, request, context):
        return convert.statistics_to_pb(
            dataplane.statistics(self.engine, request.name, request.version))

    # ---------------------------------------------------------------- repository
    @_rpc
    def RepositoryIndex(self, request, context):
        if request.repository_name:
            raise InferError("UNSUPPORTED", "'repository_name' specification is not supported")
        out = service_pb2.RepositoryIndexResponse()
        for e in self.engine.index():
            if request.ready and e.state != "READY":
                continue
            out.models.add(name=e.name, version=e.version, state=e.state, reason=e.reason)
        return out

    @_rpc
    def RepositoryModelLoad(self, request, context):
        if request.repository_name:
            raise InferError("UNSUPPORTED", "'repository_name' specification is not supported")
        config: Optional[str] = None
        files = {}
        for key, param in request.parameters.items():
            choice = param.WhichOneof("parameter_choice")
            if key == "config":
                if choice != "string_param":
                    raise InferError("INVALID_ARG", f"invalid value type for load parameter "
                                                    f"'{key}', expected string_param.")
                config = param.string_param
            elif key.startswith("file:"):
                if choice != "bytes_param":
                    raise InferError("INVALID_ARG", f"invalid value type for load parameter "
                                                    f"'{key}', expected bytes_param.")
                files[key] = param.bytes_param
            else:
                raise InferError("INVALID_ARG", f"unrecognized load parameter '{key}'.")
        dataplane.load(self.engine, request.model_name, config, files)
        return service_pb2.RepositoryModelLoadResponse()

    @_rpc
    def RepositoryModelUnload(self, request, context):
        if request.repository_name:
            raise InferError("UNSUPPORTED", "'repository_name' specification is not supported")
        dependents = False
        if "unload_dependents" in request.parameters:
            param = request.parameters["unload_dependents"]
            if param.WhichOneof("parameter_choice") != "bool_param":
                raise InferError("INVALID_ARG", "invalid value type for 'unload_dependents' "
                                                "parameter, expected bool_param.")
            dependents = param.bool_param
        dataplane.unload(self.engine, request.model_name, dependents)
        return service_pb2.RepositoryModelUnloadResponse()

    # ---------------------------------------------------------------- inference
    def _prepare(self, msg, *, stream: bool):
        """ModelInferRequest -> (InferRequest, state params, model), in Triton's order: the
        version string, the model, the transaction policy, then the request's contents."""
        convert.version_number(msg.model_version)
        model = self.engine.model(msg.model_name, msg.model_version)
        if not stream and model.decoupled:
            raise InferError("UNSUPPORTED", "ModelInfer RPC doesn't support models with "
                                            "decoupled transaction policy")
        request, state, deferred = convert.request_from_pb(msg)
        dataplane.check_before_deferred(self.engine, model, request, deferred)
        return request, state, model

    @_rpc
    def ModelInfer(self, request, context):
        infer_request, _, _ = self._prepare(request, stream=False)
        call = self.engine.submit(infer_request)
        # a client that cancels or goes away cancels the request, as Triton does
        context.add_callback(call.cancel)
        while not call.wait(POLL_S):
            if not context.is_active():
                call.cancel()
                raise InferError("CANCELLED", "the client cancelled the request")
        response = dataplane.single_response(list(call.responses))
        if response.error is not None:
            raise response.error
        return convert.response_to_wire(response)       # serialized: see _method_handlers

    def ModelStreamInfer(self, request_iterator, context):
        out: "queue.Queue[Optional[Any]]" = queue.Queue()
        lock = threading.Lock()
        calls: List[Any] = []
        pending = [0]             # requests submitted and not yet final
        reading = [True]

        def finish_one():
            with lock:
                pending[0] -= 1
                if not reading[0] and pending[0] == 0:
                    out.put(None)

        def cancel_all():
            with lock:
                for c in list(calls):
                    try:
                        c.cancel()
                    except Exception:  # noqa: BLE001 - best effort on a dead stream
                        log.debug("cancel failed", exc_info=True)
            out.put(None)

        context.add_callback(cancel_all)

        def reader():
            try:
                for msg in request_iterator:
                    self._stream_one(msg, out, lock, calls, pending, finish_one)
            except Exception as e:  # noqa: BLE001 - a broken read ends the stream
                if context.is_active():
                    log.debug("stream read ended: %s", e)
            finally:
                with lock:
                    reading[0] = False
                    if pending[0] == 0:
                        out.put(None)

        threading.Thread(target=reader, name="tritonstub-grpc-stream", daemon=True).start()
        while True:
            item = out.get()
            if item is None:
                return
            yield item

    def _stream_one(self, msg, out, lock, calls, pending, finish_one) -> None:
        try:
            infer_request, state, model = self._prepare(msg, stream=True)
        except InferError as e:
            out.put(_stream_error(msg, e.message))
            return
        empty_final = bool(state.get("triton_enable_empty_final_response", False))
        decoupled = bool(model.decoupled)

        def on_response(resp: InferResponse) -> None:
            try:
                item = _stream_response(msg, resp, decoupled, empty_final)
                if item is not None:
                    out.put(item)
            finally:
                if resp.final:
                    finish_one()

        with lock:
            pending[0] += 1
        try:
            call = self.engine.submit(infer_request, on_response)
        except InferError as e:
            out.put(_stream_error(msg, e.message))
            finish_one()
            return
        with lock:
            calls.append(call)
            calls[:] = [c for c in calls if not getattr(c, "done", False)]


def _stream_error(msg, text: str):
    r = service_pb2.ModelStreamInferResponse(error_message=text)
    r.infer_response.id = msg.id
    return r


def _stream_response(msg, resp: InferResponse, decoupled: bool, empty_final: bool):
    """One engine response -> the ModelStreamInferResponse Triton writes (or None)."""
    if resp.error is None and resp.empty_final:
        # a flag-only final: sent for a decoupled model that asked for it, never for a
        # non-decoupled one (stream_infer_handler.cc: empty_final needs is_decoupled_)
        if not (decoupled and empty_final):
            return None
        r = service_pb2.ModelStreamInferResponse()
        r.infer_response.id = msg.id
        r.infer_response.model_name = msg.model_name
        r.infer_response.model_version = msg.model_version
    elif resp.error is not None:
        r = service_pb2.ModelStreamInferResponse(error_message=resp.error.message)
        r.infer_response.id = msg.id
        r.infer_response.model_name = msg.model_name
        r.infer_response.model_version = msg.model_version
    else:
        r = service_pb2.ModelStreamInferResponse()
        convert.response_to_pb(resp, r.infer_response)
    r.infer_response.parameters["triton_final_response"].bool_param = bool(resp.final)
    return r


_HANDLER_KINDS = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def _method_handlers(servicer) -> grpc.GenericRpcHandler:
    """The service's handlers, made from its descriptor as the generated
    ``add_GRPCInferenceServiceServicer_to_server`` makes them, but for ModelInfer's serializer:
    ModelInfer returns the bytes :func:`convert.response_to_wire` made."""
    service = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    handlers = {}
    for m in service.methods:
        serialize = getattr(service_pb2, m.output_type.name).SerializeToString
        if m.name == "ModelInfer":
            serialize = bytes
        handlers[m.name] = _HANDLER_KINDS[(m.client_streaming, m.server_streaming)](
            getattr(servicer, m.name),
            request_deserializer=getattr(service_pb2, m.input_type.name).FromString,
            response_serializer=serialize)
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


def start(engine, host: str = "127.0.0.1", port: int = 0, *, workers: int = DEFAULT_WORKERS,
          live: Callable[[], bool] = lambda: True) -> Tuple[grpc.Server, int]:
    """Start a grpc.Server with the servicer on ``host:port`` (0: the OS picks); returns the
    server and the bound port."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tritonstub-grpc"),
        options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                 ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                 ("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((_method_handlers(Servicer(engine, live=live)),))
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind gRPC to {host}:{port}")
    server.start()
    return server, bound
