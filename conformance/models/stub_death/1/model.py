"""The parameter "mode" = "die" ends the stub process at once (os._exit: no clean-up, no reply);
anything else echoes IN. What the client sees, and whether the model serves again, is the
python backend's business: both stubs must leave it the same situation."""
import json
import os

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        if json.loads(requests[0].parameters()).get("mode") == "die":
            os._exit(17)
        values = pb_utils.get_input_tensor_by_name(requests[0], "IN").as_numpy()
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", values)]) for _ in requests]
