import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """is_ready() (python_backend r26.03+) answers what the last request set: IN 1 ready,
    0 not ready, -1 raise, -2 return a non-bool, 2 ready through a coroutine."""

    def initialize(self, args):
        self.mode = 1

    def is_ready(self):
        if self.mode == -1:
            raise ValueError("not today")
        if self.mode == -2:
            return "yes"
        if self.mode == 2:
            async def later():
                return True
            return later()
        return bool(self.mode)

    def execute(self, requests):
        out = []
        for request in requests:
            self.mode = int(pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()[0])
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([self.mode], np.int32))]))
        return out
