"""The model that BLS callers call. OUT = IN + 1, OUT2 = IN * 2, SOUT = S reversed with each
element upper-cased, INFO = JSON of what the request carried (parameters, id, correlation id,
flags, timeout, requested outputs, inputs). The "do" request parameter picks a failure: "raise"
(an exception in execute), "error" (an error response with code NOT_FOUND), "sleep_ms" (wait).
"""
import json
import time

import numpy as np

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            params = json.loads(request.parameters())
            if params.get("do") == "raise":
                raise ValueError("callee failed on purpose")
            if params.get("do") == "error":
                error = pb_utils.TritonError("callee error response", pb_utils.TritonError.NOT_FOUND)
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            if "sleep_ms" in params:
                time.sleep(params["sleep_ms"] / 1000.0)
            x = pb_utils.get_input_tensor_by_name(request, "IN")
            x = np.zeros([0], np.float32) if x is None else x.as_numpy()
            s = pb_utils.get_input_tensor_by_name(request, "S")
            s = np.zeros([0], dtype=object) if s is None else s.as_numpy()
            info = {
                "parameters": request.parameters(),
                "request_id": request.request_id(),
                "correlation_id": request.correlation_id(),
                "flags": request.flags(),
                "timeout": request.timeout(),
                "requested_output_names": sorted(request.requested_output_names()),
                "inputs": sorted(t.name() for t in request.inputs()),
            }
            upper = np.array([bytes(v).upper() for v in s.reshape(-1)[::-1]], dtype=object).reshape(s.shape)
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUT", x + 1),
                pb_utils.Tensor("OUT2", x * 2),
                pb_utils.Tensor("SOUT", upper),
                pb_utils.Tensor("INFO", np.array([json.dumps(info, sort_keys=True).encode()], dtype=object)),
            ]))
        return responses
