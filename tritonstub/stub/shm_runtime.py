"""The Runtime the real stub installs: the surface's operations over shared memory.

Each method maps onto one handshake of messaging.py with the r24.10 structs: logs and
cleanups go through the worker thread (queued, in order, never blocking model code on the
parent), everything that returns an answer (cancellation, metrics, model control, responses,
BLS) runs the handshake on the calling thread with the GIL released while it waits.
"""
from __future__ import annotations

import struct
from typing import Any, Dict, Optional

from .. import protocol
from . import codec
from .codec import Owned
from .messaging import Messenger, Monitor, ParentGone, Worker
from .runtime import (KIND_INSTANCE, MetricFamilyInfo, MetricInfo,
                      ResponseIteratorMap, Runtime, TritonModelException,
                      send_message_error_text, write_stub_log)

L = protocol.current()

C = L.PYTHONSTUB_CommandType
_H = L.OWNERSHIP_HEADER


class ShmRuntime(Runtime):
    def __init__(self, stub):
        self.stub = stub
        self.stub_name = stub.name
        self.kind = KIND_INSTANCE
        self.messenger = Messenger(stub)
        self.worker = Worker(self.messenger)
        self.monitor: Optional[Monitor] = None
        self.bls_iterators = ResponseIteratorMap()
        self.background_futures: set = set()

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
        self.monitor = Monitor(self.stub, {
            int(C.InferStreamExecResponse): lambda h, msg: bls.on_stream_response(self, h, msg),
            int(C.CUDAPoolInitializeRequest): self._refuse_cuda_pool,
        })
        self.monitor.start()

    def stop_workers(self) -> None:
        self.worker.stop()
        if self.monitor is not None:
            self.monitor.stop()

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
        from .bridge import response_data
        data = response_data(response) if response is not None else None
        try:
            err = self.messenger.response_send(sender._request_address, sender._factory_address,
                                               data, flags)
        except ParentGone:
            raise TritonModelException("Unable to send response: the Triton server is gone.")
        if err is not None:
            raise TritonModelException(err)

    def abandoned_response(self, request_address: int, factory_address: int, text: str) -> None:
        """A non-decoupled request the model dropped unanswered: send it an error, FINAL."""
        if not self.worker.running:
            return self.factory_cleanup(factory_address)
        data = codec.ResponseData(error=(int(L.TRITONSERVER_Error_Code.INTERNAL), text))
        self.worker.submit(lambda: self.messenger.response_send(
            request_address, factory_address, data, L.TRITONSERVER_RESPONSE_COMPLETE_FINAL))

    def factory_cleanup(self, factory_address: int) -> None:
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
        reply, _, _ = self.messenger.ping_pong(
            C.IsRequestCancelled, L.IsCancelledMessage,
            {"response_factory_address": factory_address, "request_address": request_address,
             "is_cancelled": False})
        return bool(reply["is_cancelled"])

    # ------------------------------------------------------------------ BLS
    def bls_exec(self, request: Any, decoupled: bool) -> Any:
        from . import bls
        return bls.execute(self, request, decoupled)

    # ------------------------------------------------------------------ metrics
    def _metric_message(self, command: int, payload_layout, fields: Dict[str, Any],
                        owned: Owned, value: float = 0.0):
        region = self.stub.region
        h = region.construct(payload_layout.size)
        owned.append(h)
        region.write(h + _H, bytes(payload_layout.size))
        payload_layout.write(region.buf, h + _H, **fields)
        reply, err, _ = self.messenger.ping_pong(
            command, L.CustomMetricsMessage,
            {"message": h, "has_error": False, "is_error_set": False, "error": 0,
             "value": float(value), "address": 0}, owned)
        if err is not None:
            raise TritonModelException(send_message_error_text(self.stub_name, err or None))
        return reply

    def _family_fields(self, family: MetricFamilyInfo, owned: Owned) -> Dict[str, Any]:
        region = self.stub.region
        return {"name_shm_handle": codec.create_string(region, family.name, owned),
                "description_shm_handle": codec.create_string(region, family.description, owned),
                "kind": int(family.kind), "metric_family_address": family.address}

    def metric_family_new(self, family: MetricFamilyInfo) -> int:
        owned = Owned()
        reply = self._metric_message(C.MetricFamilyRequestNew, L.MetricFamilyShm,
                                     self._family_fields(family, owned), owned)
        return reply["address"]

    def metric_family_delete(self, family: MetricFamilyInfo) -> None:
        owned = Owned()
        self._metric_message(C.MetricFamilyRequestDelete, L.MetricFamilyShm,
                             self._family_fields(family, owned), owned)

    def _metric_fields(self, metric: MetricInfo, owned: Owned, value: float = 0.0):
        region = self.stub.region
        buckets = 0
        if metric.buckets is not None:
            data = struct.pack(f"<{len(metric.buckets)}d", *metric.buckets)
            buckets = region.construct(L.MemoryShm.size + len(data))
            owned.append(buckets)
            L.MemoryShm.write(region.buf, buckets + _H, gpu_pointer_offset=0,
                              use_cuda_shared_pool=False, cuda_pool_offset=0,
                              memory_type=int(L.TRITONSERVER_MemoryType.CPU), memory_type_id=0,
                              byte_size=len(data), memory_release_id=0)
            region.write(buckets + _H + L.MemoryShm.size, data)
        return {"labels_shm_handle": codec.create_string(region, metric.labels, owned),
                "buckets_shm_handle": buckets, "operation_value": float(value),
                "metric_address": metric.metric_address,
                "metric_family_address": metric.family_address}

    def _metric_op(self, command: int, metric: MetricInfo, value: float = 0.0):
        owned = Owned()
        return self._metric_message(command, L.MetricShm,
                                    self._metric_fields(metric, owned, value), owned, value)

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
        h = region.construct(L.ModelLoaderRequestShm.size)
        owned.append(h)
        # ModelLoader::SaveToSharedMemory always writes a PbMap (the parent loads it
        # unconditionally): an empty one when there are no files.
        files_h = codec.create_map(region, files or {}, owned)
        L.ModelLoaderRequestShm.write(
            region.buf, h + _H, name_shm_handle=codec.create_string(region, name, owned),
            version_shm_handle=codec.create_string(region, version, owned),
            unload_dependents=bool(unload_dependents),
            config_shm_handle=codec.create_string(region, config, owned),
            files_shm_handle=files_h)
        reply, err, _ = self.messenger.ping_pong(
            command, L.ModelLoaderMessage,
            {"message": h, "has_error": False, "is_error_set": False, "error": 0,
             "is_model_ready": False}, owned)
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
        return self.stub.region.free_memory()

    def _refuse_cuda_pool(self, handle: int, msg: dict) -> None:
        """CUDAPoolInitializeRequest (pattern C′): answer with an error so the parent moves on."""
        region = self.stub.region
        M = L.CUDAMemPoolMessage
        p = region.payload(msg["args"])
        owned = Owned()
        eh = codec.create_string(region, "GPU tensors are not supported by tritonstub yet", owned)
        from ..ipc.sync import Condition, Mutex
        mu = Mutex(region.addr(region.payload(msg["response_mutex"])))
        cv = Condition(region.addr(region.payload(msg["response_cond"])))
        mu.lock()
        try:
            M.write(region.buf, p, has_error=True, is_error_set=True, error=eh)
            region.buf[p + M.waiting_on_stub] = 1
            cv.notify_all()
            while region.buf[p + M.waiting_on_stub] == 1:
                if not cv.wait(mu, 1.0) and not self.stub.parent_alive():
                    break
        finally:
            mu.unlock()
        owned.release(region)
