"""INFO = JSON of the request's id, correlation id, flags, timeout, parameters and requested
outputs as model.py sees them (values and Python types); OUT echoes IN."""
import json

import numpy as np

import triton_python_backend_utils as pb_utils


def typed(value):
    return {"type": type(value).__name__, "value": value}


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            parameters = request.parameters()
            info = {
                "request_id": typed(request.request_id()),
                "correlation_id": typed(request.correlation_id()),
                "flags": typed(request.flags()),
                "timeout": typed(request.timeout()),
                "parameters": typed(parameters),
                "parameters_parsed": json.loads(parameters),
                "requested_output_names": sorted(request.requested_output_names()),
                "inputs": [t.name() for t in request.inputs()],
                "batch_size": len(requests),
            }
            payload = np.array([json.dumps(info, sort_keys=True).encode()], dtype=object)
            values = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("INFO", payload),
                                                         pb_utils.Tensor("OUT", values)]))
        return responses
