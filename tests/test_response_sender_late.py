"""Non-decoupled models answering through the response sender after execute returns.

r24.06+ semantics: execute may return None and send the one response (with FINAL) later from
another thread. Both stubs must deliver it. Only a request nobody can answer any more (the
sender was dropped) gets tritonstub's error instead of a client that waits forever.
"""
from __future__ import annotations

import numpy as np
import pytest

from tritonstub.testing.tritonserver import ModelSpec

LATE = '''
import threading
import time
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for r in requests:
            mode = pb_utils.get_input_tensor_by_name(r, "IN").as_numpy()[0]
            sender = r.get_response_sender()
            if mode == 1:        # answer later from a thread
                def later(s=sender):
                    time.sleep(0.3)
                    s.send(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([7], np.int32))]),
                           flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                threading.Thread(target=later, daemon=True).start()
            elif mode == 2:      # answer before returning None
                sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([8], np.int32))]),
                            flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            # mode 0: drop the request unanswered
        return None
'''

CONFIG = '''
name: "late"
backend: "python"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
instance_group [ { kind: KIND_CPU count: 1 } ]
'''


def _infer(client, mode: int, timeout: float = 20.0):
    import tritonclient.grpc as grpcclient
    inp = grpcclient.InferInput("IN", [1], "INT32")
    inp.set_data_from_numpy(np.array([mode], np.int32))
    return client.infer("late", [inp], client_timeout=timeout)


@pytest.mark.parametrize("stub", ["ours", "cpp"])
def test_response_sent_after_execute_returns(triton_server, stub):
    repo = triton_server.repository({"late": ModelSpec(LATE, config=CONFIG, stub=stub)},
                                    name=f"repo_{stub}")
    server = triton_server(repo)
    server.wait_model_ready("late", 60)
    client = server.grpc_client()
    assert _infer(client, 1).as_numpy("OUT").tolist() == [7]
    assert _infer(client, 2).as_numpy("OUT").tolist() == [8]
    assert _infer(client, 1).as_numpy("OUT").tolist() == [7]


def test_dropped_request_gets_an_error_not_a_hang(triton_server):
    """Deliberate difference: under the C++ stub the client of mode 0 waits forever."""
    from tritonclient.utils import InferenceServerException
    repo = triton_server.repository({"late": ModelSpec(LATE, config=CONFIG, stub="ours")})
    server = triton_server(repo)
    server.wait_model_ready("late", 60)
    client = server.grpc_client()
    with pytest.raises(InferenceServerException, match="returned no response for a request"):
        _infer(client, 0)
    assert _infer(client, 1).as_numpy("OUT").tolist() == [7]     # the stub is still fine
