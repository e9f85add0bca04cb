import os
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for request in requests:
            s = float(pb_utils.get_input_tensor_by_name(request, "S").as_numpy()[0])
            start = time.monotonic()
            with open(os.environ["SLEEPER_PID_FILE"], "w") as f:
                f.write(str(os.getpid()))
            while time.monotonic() - start < s:
                if request.is_cancelled():
                    out.append(pb_utils.InferenceResponse(
                        error=pb_utils.TritonError("cancelled by the client", pb_utils.TritonError.CANCELLED)))
                    break
                time.sleep(0.05)
            else:
                out.append(pb_utils.InferenceResponse(
                    [pb_utils.Tensor("OUT", np.array([time.monotonic() - start], dtype=np.float32))]))
        return out
