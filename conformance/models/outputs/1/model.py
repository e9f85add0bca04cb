"""Returns OUT_A, OUT_B, OUT_C, REQUESTED (the requested output names, sorted) and NOT_IN_CONFIG,
in that order, whatever the client asked for."""
import numpy as np

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            values = request.inputs()[0].as_numpy()
            requested = request.requested_output_names()
            names = np.array(sorted(requested) + [type(requested).__name__], dtype=object)
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUT_A", values + 1),
                pb_utils.Tensor("OUT_B", values.astype(np.int64) * 3),
                pb_utils.Tensor("OUT_C", np.array([str(v) for v in values], dtype=object)),
                pb_utils.Tensor("REQUESTED", names),
                pb_utils.Tensor("NOT_IN_CONFIG", values),
            ]))
        return responses
