"""OUT[i] = the Triton dtype number of the input tensor, from Tensor.triton_dtype()."""
import numpy as np

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            tensor = pb_utils.get_input_tensor_by_name(request, "IN")
            made = pb_utils.Tensor("MADE", np.zeros(1, dtype=np.int16))
            codes = np.array([int(tensor.triton_dtype()), int(made.triton_dtype())], dtype=np.float32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", codes)]))
        return responses
