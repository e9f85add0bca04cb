import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Up to IN responses, 50 ms apart, each with parameters {"i": i} where the era has them;
    stops with a CANCELLED error once its request is cancelled."""

    def execute(self, requests):
        for request in requests:
            n = int(pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()[0])
            sender = request.get_response_sender()
            for i in range(n):
                if sender.is_cancelled():
                    sender.send(pb_utils.InferenceResponse(
                        error=pb_utils.TritonError("cancelled", pb_utils.TritonError.CANCELLED)),
                        flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                    break
                t = pb_utils.Tensor("OUT", np.array([i], np.int32))
                try:
                    r = pb_utils.InferenceResponse([t], parameters={"i": i})
                except TypeError:          # eras before r25.02
                    r = pb_utils.InferenceResponse([t])
                sender.send(r)
                time.sleep(0.05)
            else:
                sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
