"""The Runtime the real stub installs: the surface's operations over shared memory.

Each method maps onto one handshake of messaging.py with the r24.10 structs: logs and
cleanups go through the worker thread (queued, in order, never blocking model code on the
parent), everything that returns an answer (cancellation, metrics, model control, responses,
BLS) runs the handshake on the calling thread with the GIL released while it waits.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from .. import protocol
from ..errors import TritonStubError
from ..ipc import handshake
from ..ipc.handshake import PeerGone
from ..protocol import control, eras
from ..protocol.responses import ResponseData
from ..protocol.scalars import Owned, write_string
from .bridge import response_data
from .messaging import Messenger, Monitor, Worker
from .runtime import (MetricFamilyInfo, MetricInfo,
                      ResponseIteratorMap, Runtime, TritonModelException,
                      send_message_error_text, write_stub_log)

L = protocol.current()

C = L.PYTHONSTUB_CommandType
SITE_FILE = "tritonstub/stub/shm_runtime.py"


class ShmRuntime(Runtime):
    def __init__(self, stub):
        self.stub = stub
        self.stub_name = stub.name
        self.messenger = Messenger(stub)
        self.worker = Worker(self.messenger)
        self.monitor: Optional[Monitor] = None
        self.bls_iterators = ResponseIteratorMap()
        self.background_futures: set = set()
        decision = getattr(stub, "era", None)
        self.features = eras.features(decision.era.name) if decision and decision.era \
            else frozenset()

    # ------------------------------------------------------------------ state
    @property
    def initialized(self) -> bool:
        return self.stub.initialized

    @property
    def finalizing(self) -> bool:
        return self.stub.finalizing

    @property
    def stub_to_parent_active(self) -> bool:
        return self.worker.running

    def worker_running(self) -> bool:
        return self.worker.running

    def start_workers(self) -> None:
        self.worker.start()
        from . import bls
        def stream_response(h, msg):
            bls.on_stream_response(self, h, msg)
        if L.PARENT_TO_STUB_COMMANDS:
            handlers = {
                int(C.InferStreamExecResponse): stream_response,
                int(C.CUDAPoolInitializeRequest): self._refuse_cuda_pool,
            }
            if "user_model_readiness" in self.features:
                handlers[int(C.UserModelReadinessRequest)] = self._user_model_readiness
            self.monitor = Monitor(self.stub, handlers)
        else:
            # r23.10 and before: every message is a BLS stream response, its command unset
            self.monitor = Monitor(self.stub, {}, default=stream_response)
        self.monitor.start()

    def stop_workers(self) -> None:
        self.worker.stop()
        if self.monitor is not None:
            self.monitor.stop()
        self.release_kept()

    def clear_response_iterators(self) -> None:
        self.bls_iterators.clear()

    def check_parent_alive(self) -> None:
        if not self.stub.parent_alive():
            raise TritonModelException("The Triton server is gone: no more responses will come.")

    # ------------------------------------------------------------------ logging
    def log(self, filename: str, line: int, level: int, message: str) -> None:
        if self.worker.running:
            self.worker.submit(lambda: self.messenger.send_log(filename, line, level, message))
        else:
            write_stub_log(level, filename, line, message)

    # ------------------------------------------------------------------ responses
    def send_response(self, sender: Any, response: Any, flags: int) -> None:
        data = response_data(response) if response is not None else None
        try:
            err = self.messenger.response_send(sender._request_address, sender._factory_address,
                                               data, flags)
        except PeerGone:
            raise TritonModelException("Unable to send response: the Triton server is gone.")
        if err is not None:
            raise TritonModelException(err)
        if flags == L.TRITONSERVER_RESPONSE_COMPLETE_FINAL and L.STUB_DELETES_FACTORY_ON_FINAL:
            # before r24.10 the server leaves the factory to the stub (DeleteResponseFactory)
            self.factory_cleanup(sender._factory_address)

    def abandoned_response(self, request_address: int, factory_address: int, text: str) -> None:
        """A non-decoupled request the model dropped unanswered: send it an error, FINAL."""
        if not self.worker.running:
            return self.factory_cleanup(factory_address)
        data = ResponseData(error=(int(L.TRITONSERVER_Error_Code.INTERNAL), text))

        def send():
            self.messenger.response_send(request_address, factory_address, data,
                                         L.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            if L.STUB_DELETES_FACTORY_ON_FINAL and L.STUB_RELEASES_FACTORIES:
                self.messenger.cleanup(C.DecoupledResponseFactoryCleanup, factory_address)
        self.worker.submit(send)

    def factory_cleanup(self, factory_address: int) -> None:
        if not L.STUB_RELEASES_FACTORIES:
            # r23.10 and before: the parent deletes every factory itself (on FINAL, after a
            # failed execute); the C++ stub of those releases never sends a cleanup for one.
            self.stub.board.discard(factory_address)
            return
        if factory_address and self.worker.running:
            self.worker.submit(lambda: self.messenger.cleanup(
                C.DecoupledResponseFactoryCleanup, factory_address))

    def bls_payload_cleanup(self, iterator_id: Any) -> None:
        self.bls_iterators.erase(iterator_id)
        if iterator_id and self.worker.running:
            self.worker.submit(lambda: self.messenger.cleanup(
                C.BLSDecoupledInferPayloadCleanup, int(iterator_id)))

    # ------------------------------------------------------------------ cancellation
    def is_cancelled(self, request_address: int, factory_address: int) -> bool:
        if not (request_address or factory_address):
            return False
        owned = Owned()
        h = control.write_is_cancelled(self.stub.region, request_address, factory_address, owned)
        reply, _, _ = self.messenger.ping_pong(C.IsRequestCancelled, L.IsCancelledMessage, h,
                                               owned)
        return bool(reply["is_cancelled"])

    # ------------------------------------------------------------------ BLS
    def bls_exec(self, request: Any, decoupled: bool) -> Any:
        from . import bls
        return bls.execute(self, request, decoupled)

    def bls_cancel(self, iterator_id: int) -> bool:
        """PbBLSCancel::Cancel (r25.04+): CancelBLSInferRequest for the stream whose responses
        carry ``iterator_id``; the parent cancels its Triton request if it still runs."""
        owned = Owned()
        h = control.write_cancel_bls(self.stub.region, int(iterator_id), owned)
        reply, _, _ = self.messenger.ping_pong(C.CancelBLSInferRequest,
                                               L.CancelBLSRequestMessage, h, owned)
        return bool(reply["is_cancelled"])

    # ------------------------------------------------------------------ readiness (r26.03+)
    def _user_model_readiness(self, handle: int, msg: control.IPCMessage) -> None:
        """ProcessUserModelReadinessRequest (monitor thread): call the model's ``is_ready()``
        (a coroutine runs on the stub's loop), answer on the message's inline mutex and
        condition, and wait at most 5 s for the parent's acknowledgement."""
        region = self.stub.region
        if not msg.response_mutex:
            self.log(SITE_FILE, 0, L.LogLevel.ERROR, "Failed to process model readiness request")
            return
        # Like C++ (Load<UserModelReadinessMessage>, IPCMessage::LoadFromSharedMemory) we hold a
        # reference on the message, its payload, mutex and condition while we answer: the
        # parent frees its own as soon as it has acknowledged, while we may still be waking up
        # on that mutex.
        held = [h for h in (handle, msg.args, msg.response_mutex, msg.response_cond) if h]
        for h in held:
            region.load(h)
        try:
            self._answer_user_model_readiness(msg)
        finally:
            region.release_many(held)

    def _answer_user_model_readiness(self, msg: control.IPCMessage) -> None:
        stub = self.stub
        region = stub.region
        M = L.UserModelReadinessMessage
        payload = region.payload(msg.args)
        model = stub.model_instance
        exists = model is not None and hasattr(model, "is_ready")
        ready, error = True, None
        if exists:
            try:
                result = model.is_ready()
                from .execute import _is_coroutine, run_coroutine
                if _is_coroutine(result):
                    result = run_coroutine(stub, result, in_background=False)
                if not isinstance(result, bool):
                    # a PythonBackendException in C++: its text without an exception name
                    raise TritonStubError("is_ready() must return a boolean value")
                ready = result
            except BaseException as e:  # noqa: BLE001 - reported to the parent, as in C++
                error = stub.error_text(e)
        owned = Owned()
        error_handle = write_string(region, error, owned) if error is not None else 0
        mu, cv = handshake.peer_sync_objects(region, msg.response_mutex, msg.response_cond)
        box = control.mailbox(M, payload)
        handshake.answer_flag(
            region, mu, cv, box.flag, stub.parent_alive,
            lambda: control.write_reply(region, payload, M, function_exists=exists,
                                        is_ready=ready and error is None,
                                        has_error=error is not None,
                                        is_error_set=error is not None, error=error_handle),
            timeout=L.USER_MODEL_READINESS_TIMEOUT_S)
        owned.release(region)

    # ------------------------------------------------------------------ metrics
    def _metric_message(self, command: int, payload: int, owned: Owned, value: float = 0.0):
        region = self.stub.region
        h = control.write_custom_metrics_message(region, payload, value, owned)
        reply, err, _ = self.messenger.ping_pong(command, L.CustomMetricsMessage, h, owned)
        if err is not None:
            raise TritonModelException(send_message_error_text(self.stub_name, err or None))
        return reply

    def _family_message(self, command: int, family: MetricFamilyInfo):
        owned = Owned()
        payload = control.write_metric_family(self.stub.region, family.name, family.description,
                                              family.kind, family.address, owned)
        return self._metric_message(command, payload, owned)

    def metric_family_new(self, family: MetricFamilyInfo) -> int:
        return self._family_message(C.MetricFamilyRequestNew, family)["address"]

    def metric_family_delete(self, family: MetricFamilyInfo) -> None:
        self._family_message(C.MetricFamilyRequestDelete, family)

    def _metric_op(self, command: int, metric: MetricInfo, value: float = 0.0):
        owned = Owned()
        payload = control.write_metric(self.stub.region, metric.labels, metric.buckets, value,
                                       metric.metric_address, metric.family_address, owned)
        return self._metric_message(command, payload, owned, value)

    def metric_new(self, metric: MetricInfo) -> int:
        return self._metric_op(C.MetricRequestNew, metric)["address"]

    def metric_delete(self, metric: MetricInfo) -> None:
        self._metric_op(C.MetricRequestDelete, metric)

    def metric_value(self, metric: MetricInfo) -> float:
        return self._metric_op(C.MetricRequestValue, metric)["value"]

    def metric_increment(self, metric: MetricInfo, value: float) -> None:
        self._metric_op(C.MetricRequestIncrement, metric, value)

    def metric_set(self, metric: MetricInfo, value: float) -> None:
        self._metric_op(C.MetricRequestSet, metric, value)

    def metric_observe(self, metric: MetricInfo, value: float) -> None:
        self._metric_op(C.MetricRequestObserve, metric, value)

    # ------------------------------------------------------------------ model control
    def _model_control(self, command: int, name: str, version: str = "",
                       unload_dependents: bool = False, config: str = "",
                       files: Optional[Dict[str, bytes]] = None):
        region = self.stub.region
        owned = Owned()
        request = control.write_model_loader_request(region, name, version, unload_dependents,
                                                     config, files or {}, owned)
        h = control.write_model_loader_message(region, request, owned)
        reply, err, _ = self.messenger.ping_pong(command, L.ModelLoaderMessage, h, owned)
        if err is not None:
            raise TritonModelException(send_message_error_text(self.stub_name, err or None))
        return reply

    def load_model(self, name: str, config: str, files: Dict[str, bytes]) -> None:
        self._model_control(C.LoadModelRequest, name, config=config or "", files=files)

    def unload_model(self, name: str, unload_dependents: bool) -> None:
        self._model_control(C.UnloadModelRequest, name, unload_dependents=unload_dependents)

    def is_model_ready(self, name: str, version: str) -> bool:
        return bool(self._model_control(C.ModelReadinessRequest, name, version=version or "")
                    ["is_model_ready"])

    # ------------------------------------------------------------------ misc
    def free_memory(self) -> int:
        self.release_kept()                 # the figure the C++ stub shows between sends
        return self.stub.region.free_memory()

    def release_kept(self) -> None:
        """Give back the blocks kept from sends and BLS calls (messaging.py, take_kept)."""
        self.messenger.release_kept()

    def _refuse_cuda_pool(self, handle: int, msg: control.IPCMessage) -> None:
        """CUDAPoolInitializeRequest (pattern C′): answer with an error so the parent moves on."""
        region = self.stub.region
        M = L.CUDAMemPoolMessage
        box = control.mailbox(M, region.object_payload(msg.args, M.size))
        owned = Owned()
        error = write_string(region, "GPU tensors are not supported by tritonstub yet", owned)
        mu, cv = handshake.peer_sync_objects(region, msg.response_mutex, msg.response_cond)
        handshake.answer_flag(
            region, mu, cv, box.flag, self.stub.parent_alive,
            lambda: control.write_reply(region, box.payload, M, has_error=True,
                                        is_error_set=True, error=error))
        owned.release(region)
