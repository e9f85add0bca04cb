"""Y = 10 * X; BATCH = [number of requests in this execute, rows in this request] per row.
A request whose X holds a negative number gets an error response; the others still succeed."""
import numpy as np

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            if (x < 0).any():
                error = pb_utils.TritonError(f"negative input {int(x.min())} in request "
                                             f"'{request.request_id()}'", pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            batch = np.tile(np.array([len(requests), x.shape[0]], dtype=np.int32), (x.shape[0], 1))
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", x * 10),
                                                         pb_utils.Tensor("BATCH", batch)]))
        return responses
