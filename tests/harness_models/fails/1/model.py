import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            if x[0] < 0:
                raise ValueError(f"negative input {x[0]}")
            if x[0] == 0:
                out.append(pb_utils.InferenceResponse(
                    error=pb_utils.TritonError("zero is not allowed", pb_utils.TritonError.INVALID_ARG)))
            else:
                out.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", 1 / x)]))
        return out
