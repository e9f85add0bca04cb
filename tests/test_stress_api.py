"""Stress of the model API under real Triton, our stub only (slow).

(a) Streaming: a decoupled model sends 10,000 small responses per request from one thread per
    request; 8 requests run at once on 8 gRPC streams and the client cancels 3 of them midway.
    Every response of a stream that is not cancelled arrives, in order, then FINAL; a cancelled
    stream got an unbroken prefix. The stub then still serves, and its region's allocated bytes
    come back to their idle value.
(b) BLS chain: python -> python -> python, ``async_exec`` at each hop (with asyncio.gather over
    the batch the dynamic batcher formed), 16 concurrent clients, 5,000 requests: no error, no
    deadlock (every wait is bounded) and every region of the chain back to its idle allocation.

The idle value of a region is taken after a warm-up of the same shape (so that the allocator's
first-use growth and our stub's block reuse are part of it).
"""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List

import numpy as np
import pytest

from shm_helpers import settled_allocated, wait_allocated
from tritonstub.testing.tritonserver import ModelSpec, cmdline, processes_naming

pytestmark = pytest.mark.slow

STREAM_MODEL = '''
import threading

import numpy as np
import triton_python_backend_utils as pb_utils

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            n = int(pb_utils.get_input_tensor_by_name(request, "N").as_numpy()[0])
            threading.Thread(target=self.stream, args=(request.get_response_sender(), n), daemon=True).start()
        return None

    def stream(self, sender, n):
        for i in range(n):
            if i % 200 == 0 and sender.is_cancelled():
                break
            try:
                sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([i], np.int32))]))
            except pb_utils.TritonModelException:
                break
        try:
            sender.send(flags=FINAL)
        except pb_utils.TritonModelException:
            pass
'''
STREAM_CONFIG = '''
name: "stream"
backend: "python"
max_batch_size: 0
model_transaction_policy { decoupled: true }
input [ { name: "N" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
instance_group [ { kind: KIND_CPU count: 1 } ]
'''

HOP_MODEL = '''
import asyncio

import numpy as np
import triton_python_backend_utils as pb_utils

NEXT = {next_model!r}


class TritonPythonModel:
    async def execute(self, requests):
        async def one(request):
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            bls = pb_utils.InferenceRequest(model_name=NEXT, inputs=[pb_utils.Tensor("X", x * 2)],
                                            requested_output_names=["Y"])
            response = await bls.async_exec()
            if response.has_error():
                raise pb_utils.TritonModelException(response.error().message())
            y = pb_utils.get_output_tensor_by_name(response, "Y").as_numpy()
            return pb_utils.InferenceResponse([pb_utils.Tensor("Y", y + 1)])
        return list(await asyncio.gather(*(one(r) for r in requests)))
'''
LEAF_MODEL = '''
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy() + 100)]) for r in requests]
'''
CHAIN_CONFIG = '''
name: "{name}"
backend: "python"
max_batch_size: 16
dynamic_batching {{ }}
input [ {{ name: "X" data_type: TYPE_FP32 dims: [ 4 ] }} ]
output [ {{ name: "Y" data_type: TYPE_FP32 dims: [ 4 ] }} ]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
'''

N_RESPONSES = 10_000
N_STREAMS = 8
CANCELLED = {1, 4, 6}
CANCEL_AFTER = 2_000
CHAIN_REQUESTS = 5_000
CHAIN_CLIENTS = 16
WAIT_S = 180.0


def _region_of(server, model: str) -> str:
    """The shm region of the (only) stub of ``model``: the region its stub's command line names."""
    found = []
    for region in server.regions():
        if any(f"/{model}/1/model.py" in cmdline(pid) for pid in processes_naming(region)):
            found.append(region)
    assert len(found) == 1, (model, found, server.regions())
    return found[0]


# ---- (a) streaming --------------------------------------------------------------------------


def _run_streams(server, n: int, cancelled=frozenset(), cancel_after: int = 0,
                 cancel_completed: bool = False) -> Dict[int, dict]:
    import tritonclient.grpc as grpcclient

    results: Dict[int, dict] = {}

    def one(k: int) -> dict:
        got: "queue.Queue" = queue.Queue()
        client = grpcclient.InferenceServerClient(server.grpc_url)
        values: List[int] = []
        errors: List[str] = []
        final = False
        cancelled_at = None
        try:
            client.start_stream(callback=lambda result, error: got.put((result, error)))
            data = grpcclient.InferInput("N", [1], "INT32")
            data.set_data_from_numpy(np.array([n], np.int32))
            client.async_stream_infer("stream", [data], enable_empty_final_response=True)
            deadline = time.monotonic() + WAIT_S
            while time.monotonic() < deadline:
                try:
                    result, error = got.get(timeout=max(0.01, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if error is not None:
                    errors.append(error.message())
                    break
                response = result.get_response()
                if response.outputs:
                    values.append(int(result.as_numpy("OUT")[0]))
                if response.parameters["triton_final_response"].bool_param:
                    final = True
                    break
                if k in cancelled and len(values) >= cancel_after:
                    client.stop_stream(cancel_requests=True)
                    cancelled_at = len(values)
                    break
        finally:
            # Cancel only what did not end. Triton 2.51's gRPC frontend hangs a request that is
            # cancelled after its final response was written ("Waiting for the callback to
            # retrieve cancellation ... CANCELLATION_ISSUED", no callback ever comes) and then
            # can never unload the model: cancelling every stream on the way out made that
            # happen in most runs, with either stub (benchmarks/stream_cancel_unload.py).
            client.stop_stream(cancel_requests=cancel_completed or not final)
            client.close()
        return {"values": values, "errors": errors, "final": final, "cancelled_at": cancelled_at}

    with ThreadPoolExecutor(max_workers=N_STREAMS) as pool:
        for k, result in zip(range(N_STREAMS), pool.map(one, range(N_STREAMS))):
            results[k] = result
    return results


@pytest.mark.slow
def test_streaming_10000_responses_8_streams_with_cancellations(triton_server):
    repo = triton_server.repository({"stream": ModelSpec(STREAM_MODEL, config=STREAM_CONFIG)}, stub="ours")
    server = triton_server(repo, log_verbose=1, models=["stream"])
    region = _region_of(server, "stream")
    fresh = settled_allocated(region)

    warm = _run_streams(server, 20)
    assert all(r["final"] and r["values"] == list(range(20)) for r in warm.values()), warm
    idle = settled_allocated(region)

    began = time.monotonic()
    results = _run_streams(server, N_RESPONSES, CANCELLED, CANCEL_AFTER)
    elapsed = time.monotonic() - began
    for k, r in results.items():
        assert not r["errors"], (k, r["errors"])
        if k in CANCELLED:
            assert r["cancelled_at"] is not None and r["values"] == list(range(len(r["values"]))), (k, len(r["values"]))
        else:
            assert r["final"], (k, len(r["values"]))
            assert r["values"] == list(range(N_RESPONSES)), (k, len(r["values"]))

    after = _run_streams(server, 3)
    assert all(r["final"] and r["values"] == [0, 1, 2] for r in after.values()), after
    allocated = wait_allocated(region, idle)
    assert allocated <= idle, f"region {region}: {allocated} bytes allocated after the run, {idle} when idle"
    print(f"\nstreaming: {N_STREAMS} x {N_RESPONSES} responses ({len(CANCELLED)} cancelled) in {elapsed:.1f} s; "
          f"region allocated: {fresh} fresh, {idle} idle after the warm-up, {allocated} after")


# ---- (b) BLS chain ----------------------------------------------------------------------------


def _chain_requests(server, count: int, clients: int) -> List[str]:
    """``count`` requests to chain_a from ``clients`` threads; returns the problems seen."""
    import tritonclient.grpc as grpcclient

    problems: List[str] = []
    lock = threading.Lock()
    next_index = iter(range(count))

    def worker() -> None:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        try:
            while True:
                with lock:
                    i = next(next_index, None)
                if i is None:
                    return
                x = np.arange(4, dtype=np.float32) + i
                data = grpcclient.InferInput("X", [1, 4], "FP32")
                data.set_data_from_numpy(x.reshape(1, 4))
                try:
                    y = client.infer("chain_a", [data], client_timeout=30).as_numpy("Y")
                except Exception as exc:  # noqa: BLE001 - collected and reported
                    with lock:
                        problems.append(f"request {i}: {exc}")
                    continue
                # a: (x*2) -> b: (x*4) -> c: x*4 + 100 -> b: +1 -> a: +1
                expected = x * 4 + 102
                if not np.array_equal(y.reshape(-1), expected):
                    with lock:
                        problems.append(f"request {i}: {y} != {expected}")
        finally:
            client.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + WAIT_S
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in threads):
        problems.append(f"deadlock? clients still waiting after {WAIT_S:.0f} s")
    return problems


@pytest.mark.slow
def test_bls_chain_5000_requests_16_clients(triton_server):
    models = {
        "chain_a": ModelSpec(HOP_MODEL.format(next_model="chain_b"), config=CHAIN_CONFIG.format(name="chain_a")),
        "chain_b": ModelSpec(HOP_MODEL.format(next_model="chain_c"), config=CHAIN_CONFIG.format(name="chain_b")),
        "chain_c": ModelSpec(LEAF_MODEL, config=CHAIN_CONFIG.format(name="chain_c")),
    }
    repo = triton_server.repository(models, stub="ours")
    server = triton_server(repo, log_verbose=1, models=list(models))
    regions = {name: _region_of(server, name) for name in models}
    fresh = {name: settled_allocated(region) for name, region in regions.items()}

    assert _chain_requests(server, 200, CHAIN_CLIENTS) == []
    idle = {name: settled_allocated(region) for name, region in regions.items()}

    began = time.monotonic()
    problems = _chain_requests(server, CHAIN_REQUESTS, CHAIN_CLIENTS)
    elapsed = time.monotonic() - began
    assert problems == [], problems[:10]

    after = {name: wait_allocated(region, idle[name]) for name, region in regions.items()}
    assert all(after[name] <= idle[name] for name in models), {"idle": idle, "after": after}
    print(f"\nBLS chain: {CHAIN_REQUESTS} requests, {CHAIN_CLIENTS} clients, in {elapsed:.1f} s "
          f"({CHAIN_REQUESTS / elapsed:.0f}/s); allocated: fresh {fresh}, idle after the warm-up {idle}, "
          f"after {after}")
