"""Builds a pb_utils.Tensor while the module is imported (before initialize)."""
import numpy as np

import triton_python_backend_utils as pb_utils

TEMPLATE = pb_utils.Tensor("OUT", np.array([42.0], dtype=np.float32))


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([TEMPLATE]) for _ in requests]
