"""Request rescheduling (TRITONSERVER_REQUEST_RELEASE_RESCHEDULE) under an iterative sequence
batcher. Each execution of a request counts; the request id keys the count.

Not decoupled: IN = k reschedules the request k times, then answers OUT = number of executions.
IN < 0 reschedules the request and also returns a response (an error). Decoupled: each execution
sends OUT = executions left and reschedules, until the last one, which sends with FINAL.
"""
import numpy as np

import triton_python_backend_utils as pb_utils

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
RESCHEDULE = pb_utils.TRITONSERVER_REQUEST_RELEASE_RESCHEDULE


def response(value):
    return pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([value], dtype=np.int32))])


class TritonPythonModel:
    def initialize(self, args):
        self.decoupled = pb_utils.using_decoupled_model_transaction_policy(
            __import__("json").loads(args["model_config"]))
        self.executions = {}

    def execute(self, requests):
        responses = []
        for request in requests:
            key = request.request_id()
            count = self.executions[key] = self.executions.get(key, 0) + 1
            k = int(pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()[0])
            if self.decoupled:
                sender = request.get_response_sender()
                left = k - count
                if left > 0:
                    request.set_release_flags(RESCHEDULE)
                    sender.send(response(left))
                else:
                    sender.send(response(0), flags=FINAL)
            elif k < 0:
                request.set_release_flags(RESCHEDULE)
                responses.append(response(count))
            elif count <= k:
                request.set_release_flags(RESCHEDULE)
                responses.append(None)
            else:
                responses.append(response(count))
        return None if self.decoupled else responses
