"""tritonstub example model (decoupled): N responses COUNT = N-1, ..., 0, then the final flag.
It stops early when the client cancels (HTTP client gone, gRPC stream cancelled)."""
import numpy as np

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            n = int(pb_utils.get_input_tensor_by_name(request, "N").as_numpy()[0])
            for i in reversed(range(max(n, 0))):
                if sender.is_cancelled():
                    break
                count = pb_utils.Tensor("COUNT", np.array([i], dtype=np.int32))
                sender.send(pb_utils.InferenceResponse(output_tensors=[count]))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
