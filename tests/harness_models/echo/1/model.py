import json
import sys

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.args = dict(args)
        pb_utils.Logger.log_info(f"echo ready as {args['model_instance_name']}")
        # what a model prints reaches the log as raw lines, stdout and stderr alike
        print(f"echo stdout from {args['model_instance_name']}", flush=True)
        print(f"echo stderr from {args['model_instance_name']}", file=sys.stderr, flush=True)

    def execute(self, requests):
        out = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            info = {"batch": len(requests), "id": request.request_id(),
                    "correlation_id": request.correlation_id(), "flags": request.flags(),
                    "parameters": json.loads(request.parameters()),
                    "outputs": sorted(request.requested_output_names()),
                    "instance": self.args["model_instance_name"]}
            out.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUT", x),
                pb_utils.Tensor("INFO", np.array([json.dumps(info).encode()] * x.shape[0],
                                                 dtype=object).reshape(x.shape[0], 1))]))
        return out
