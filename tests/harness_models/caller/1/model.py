import numpy as np
import triton_python_backend_utils as pb_utils


def _text(values):
    return pb_utils.Tensor("OUT", np.array([str(v).encode() for v in values], dtype=object))


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for request in requests:
            mode = pb_utils.get_input_tensor_by_name(request, "MODE").as_numpy()[0].decode()
            if mode == "echo":
                r = pb_utils.InferenceRequest(
                    model_name="echo", requested_output_names=["OUT"],
                    inputs=[pb_utils.Tensor("IN", np.array([[1.5, 2.5]], dtype=np.float32))]).exec()
                values = ["error: " + r.error().message()] if r.has_error() else \
                    pb_utils.get_output_tensor_by_name(r, "OUT").as_numpy().reshape(-1).tolist()
            elif mode == "stream":
                values = []
                for r in pb_utils.InferenceRequest(
                        model_name="stream", requested_output_names=["OUT"],
                        inputs=[pb_utils.Tensor("N", np.array([3], dtype=np.int32))]).exec(decoupled=True):
                    t = pb_utils.get_output_tensor_by_name(r, "OUT")
                    values.append("final" if t is None else int(t.as_numpy()[0]))
            else:
                r = pb_utils.InferenceRequest(
                    model_name=mode, requested_output_names=["OUT"],
                    inputs=[pb_utils.Tensor("IN", np.array([1.0], dtype=np.float32))]).exec()
                values = ["error: " + r.error().message()] if r.has_error() else ["ok"]
            out.append(pb_utils.InferenceResponse([_text(values)]))
        return out
