"""tritonstub example model: OUTPUT0 = INPUT0 + INPUT1 and OUTPUT1 = INPUT0 - INPUT1.

It runs unchanged under the C++ triton_python_backend_stub and under tritonstub's stub.
"""
import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.output_dtypes = {
            out["name"]: pb_utils.triton_string_to_numpy(out["data_type"]) for out in config["output"]
        }
        pb_utils.Logger.log_info(
            f"add_sub: initialized instance {args['model_instance_name']} "
            f"(version {args['model_version']}, kind {args['model_instance_kind']})"
        )

    def execute(self, requests):
        responses = []
        for request in requests:
            a = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            total = pb_utils.Tensor("OUTPUT0", (a + b).astype(self.output_dtypes["OUTPUT0"]))
            difference = pb_utils.Tensor("OUTPUT1", (a - b).astype(self.output_dtypes["OUTPUT1"]))
            responses.append(pb_utils.InferenceResponse(output_tensors=[total, difference]))
        return responses

    def finalize(self):
        pb_utils.Logger.log_info("add_sub: finalized")
