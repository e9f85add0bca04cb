"""auto_complete_config fills in a minimal config: batching, inputs, outputs, a parameter."""
import json

import numpy as np

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    @staticmethod
    def auto_complete_config(auto_complete_model_config):
        seen = auto_complete_model_config.as_dict()
        auto_complete_model_config.set_max_batch_size(4)
        auto_complete_model_config.set_dynamic_batching()
        auto_complete_model_config.add_input({"name": "X", "data_type": "TYPE_FP32", "dims": [2]})
        auto_complete_model_config.add_input({"name": "FLAG", "data_type": "TYPE_BOOL", "dims": [1],
                                              "optional": True})
        auto_complete_model_config.add_output({"name": "Y", "data_type": "TYPE_FP32", "dims": [2]})
        auto_complete_model_config.add_output({"name": "SEEN", "data_type": "TYPE_STRING", "dims": [1]})
        # Adding an input twice is allowed (the second call is ignored with a warning).
        auto_complete_model_config.add_input({"name": "X", "data_type": "TYPE_FP32", "dims": [2]})
        pb_utils.Logger.log_info(f"DIFFLOG[{seen['name']}] auto_complete_config saw max_batch_size "
                                 f"{seen.get('max_batch_size')}")
        return auto_complete_model_config

    def initialize(self, args):
        self.config = json.loads(args["model_config"])

    def execute(self, requests):
        summary = json.dumps({"max_batch_size": self.config["max_batch_size"],
                              "inputs": [i["name"] for i in self.config["input"]],
                              "requests": len(requests)}).encode()
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            seen = np.array([[summary]] * x.shape[0], dtype=object)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", x * -1),
                                                         pb_utils.Tensor("SEEN", seen)]))
        return responses
