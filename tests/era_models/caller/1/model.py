import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """BLS to "stream" with IN responses asked for. Request parameter "cancel": true cancels the
    stream after its first response. Answers COUNT = responses with outputs received, and as
    response parameters: the first response's parameters, whether the stream ended with an
    error (its text), and what cancel() raised, if anything."""

    def execute(self, requests):
        out = []
        for request in requests:
            n = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            cancel = json.loads(request.parameters()).get("cancel", False)
            it = pb_utils.InferenceRequest(
                model_name="stream", requested_output_names=["OUT"],
                inputs=[pb_utils.Tensor("IN", n.astype(np.int32))]).exec(decoupled=True)
            count, first, last_error, raised = 0, None, "", ""
            for resp in it:
                if resp.has_error():
                    last_error = resp.error().message()
                    continue
                if pb_utils.get_output_tensor_by_name(resp, "OUT") is None:
                    continue
                count += 1
                if first is None:
                    first = resp.parameters() if hasattr(resp, "parameters") else "n/a"
                    if cancel:
                        try:
                            it.cancel()
                            it.cancel()            # a second cancel does nothing
                        except AttributeError as e:
                            raised = str(e)
            t = pb_utils.Tensor("COUNT", np.array([count], np.int32))
            info = {"first": first or "", "error": last_error, "raised": raised[:60]}
            try:
                out.append(pb_utils.InferenceResponse([t], parameters=info))
            except TypeError:
                out.append(pb_utils.InferenceResponse([t]))
        return out
