import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for request in requests:
            op, name = pb_utils.get_input_tensor_by_name(request, "OP").as_numpy()[0].decode().split(":")
            try:
                if op == "load":
                    pb_utils.load_model(model_name=name)
                    result = "loaded"
                elif op == "unload":
                    pb_utils.unload_model(model_name=name)
                    result = "unloaded"
                else:
                    result = str(pb_utils.is_model_ready(model_name=name))
            except Exception as e:  # noqa: BLE001
                result = f"{type(e).__name__}: {e}"
            out.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUT", np.array([result.encode()], dtype=object))]))
        return out
