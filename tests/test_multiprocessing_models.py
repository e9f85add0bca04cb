"""Models that fork: a ``multiprocessing.Pool`` whose workers run BLS requests, in every request.

The workers are forked from the stub with its runtime (queues, region, locks) mid-request: BLS
from a child must work, the pool must close or terminate, and the next request's new pool must
work too (each request creates and ends its own). close()/join(): same results on both stubs;
terminate(): see the deliberate difference below.
"""
from __future__ import annotations

import numpy as np
import pytest

from tritonstub.testing.tritonserver import ModelSpec

CALLER = '''
from multiprocessing import Pool

import numpy as np
import triton_python_backend_utils as pb_utils


def doubled(k):
    request = pb_utils.InferenceRequest(model_name="callee", inputs=[pb_utils.Tensor("IN", np.array([k], np.float32))],
                                        requested_output_names=["OUT"])
    response = request.exec()
    if response.has_error():
        return -1.0
    return float(pb_utils.get_output_tensor_by_name(response, "OUT").as_numpy()[0])


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            workers, ending = (int(v) for v in pb_utils.get_input_tensor_by_name(request, "IN").as_numpy())
            if ending == 0:                      # close() + join()
                pool = Pool(workers)
                values = pool.map(doubled, range(1, 11))
                pool.close()
                pool.join()
            else:                                # the context manager: terminate()
                with Pool(workers) as pool:
                    values = pool.map(doubled, range(1, 11))
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array(values, np.float32))]))
        return responses
'''
CALLEE = '''
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy() * 2)])
                for r in requests]
'''
CONFIG = '''
name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "IN" data_type: TYPE_FP32 dims: [ -1 ] }} ]
output [ {{ name: "OUT" data_type: TYPE_FP32 dims: [ -1 ] }} ]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
'''


def _run(server, cases):
    import tritonclient.grpc as grpcclient
    client = server.grpc_client()
    for workers, ending in cases:
        data = grpcclient.InferInput("IN", [2], "FP32")
        data.set_data_from_numpy(np.array([workers, ending], np.float32))
        out = client.infer("caller", [data], client_timeout=60).as_numpy("OUT")
        assert out.tolist() == [2.0 * k for k in range(1, 11)], (workers, ending, out)


def _server(triton_server, stub):
    repo = triton_server.repository({
        "caller": ModelSpec(CALLER, config=CONFIG.format(name="caller")),
        "callee": ModelSpec(CALLEE, config=CONFIG.format(name="callee")),
    }, stub=stub, name=f"repo_{stub}")
    return triton_server(repo, models=["caller", "callee"])


@pytest.mark.parametrize("stub", ["ours", "cpp"])
def test_a_new_pool_with_bls_workers_in_every_request(triton_server, stub):
    _run(_server(triton_server, stub), [(4, 0), (10, 0), (2, 0), (3, 0)])


def test_pool_terminate_ends_its_workers_every_time(triton_server):
    """Deliberate difference. ``Pool.terminate()`` (the ``with Pool()`` exit) ends workers that
    are blocked on the task queue's lock with SIGTERM. Both stubs ignore SIGTERM (no-op handlers,
    to survive signals sent to Triton's process group); forked workers inherit that, so under
    the C++ stub terminate() sometimes waits forever (seen within 20 requests: the client times
    out and the stub outlives tritonserver). Our stub gives forked children the default
    handlers back, so the 30 requests below all finish."""
    _run(_server(triton_server, "ours"), [(4, 1), (2, 1), (10, 1)] * 10)
