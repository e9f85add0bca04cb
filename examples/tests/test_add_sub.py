"""A model's unit test with the harness: no tritonserver, the real protocol and a real stub.

    pytest examples/tests                               # our stub
    pytest examples/tests --tritonstub-stubs=ours,cpp   # once per stub
"""
from pathlib import Path

import numpy as np

ADD_SUB = Path(__file__).parents[1] / "model_repository" / "add_sub"


def test_add_sub(harness_model):
    model = harness_model(ADD_SUB)
    a, b = np.array([1, 2, 3, 4], np.float32), np.ones(4, np.float32)
    out = model.infer(INPUT0=a, INPUT1=b)
    np.testing.assert_array_equal(out["OUTPUT0"], a + b)
    np.testing.assert_array_equal(out["OUTPUT1"], a - b)
    assert model.config["max_batch_size"] == 0
