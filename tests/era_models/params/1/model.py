import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """OUT = IN + 1. Request parameter "params": "good" answers with response parameters (and
    checks .parameters() sees them), "bad" with a float value (the model API must refuse it),
    anything else with none."""

    def execute(self, requests):
        out = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            t = pb_utils.Tensor("OUT", (x + 1).astype(np.float32))
            mode = __import__("json").loads(request.parameters()).get("params", "")
            if mode == "good":
                r = pb_utils.InferenceResponse([t], parameters={"a": 1, "b": "x", "c": True})
                assert r.parameters() == '{"a": 1, "b": "x", "c": true}', r.parameters()
            elif mode == "bad":
                r = pb_utils.InferenceResponse([t], parameters={"k": 1.5})
            else:
                r = pb_utils.InferenceResponse([t])
                assert r.parameters() == "{}" if hasattr(r, "parameters") else True
            out.append(r)
        return out
