"""Tensors through both stubs, the cases not yet expressed as data.

The rest of the tensor cases (arithmetic, every dtype, BYTES, zero-size shapes, requested
outputs, tensors larger than the region) are data: conformance/cases/tensors.json. These two
need what the case format does not have yet: a BF16 input built with ml_dtypes, and a sequence
of requests through one stub.
"""
from __future__ import annotations

import numpy as np
import pytest

from difftools import DiffModel, Outcome

#: Items of the conformance checklist these cases cover (conformance/CASES.md).
COVERS = ["dtypes", "DLPack"]

DIFF_MODELS = [
    DiffModel("dtypes"),
]


def test_bf16_has_no_numpy_view_but_goes_through_dlpack(pair):
    ml_dtypes = pytest.importorskip("ml_dtypes")  # tritonclient >= 2.6x sends BF16 from it
    sample = np.array([[1.0, -2.0, 0.5], [3.0, 0.0, -0.25]], dtype=ml_dtypes.bfloat16)
    out = pair.run("dtypes", lambda t: t.infer({"IN_BF16": ("BF16", sample)})).require_ok()
    assert out.output("OUT_BF16").datatype == "BF16"
    assert out.output("OUT_BF16").data == sample.tobytes()
    info = out.json("INFO")["BF16"]
    assert info["as_numpy_error"].endswith("Tensor dtype is BF16 and cannot be converted to NumPy. "
                                           "Use to_dlpack() and from_dlpack() instead.")


def test_many_requests_of_varying_size(pair):
    """A sequence of growing and shrinking requests through one stub (allocation and release)."""
    sizes = [1, 1000, 300000, 7, 900000, 0, 50000, 1200000, 3, 250000] * 2

    def case(target):
        results = []
        for i, size in enumerate(sizes):
            sample = (np.arange(size, dtype=np.int64) * (i + 1)).reshape(1, size)
            results.append(target.infer({"IN_INT64": sample}, ["OUT_INT64"]))
        return Outcome("value", value=tuple(results))

    out = pair.run("dtypes", case)
    for i, (size, result) in enumerate(zip(sizes, out.value)):
        expected = np.flip((np.arange(size, dtype=np.int64) * (i + 1)).reshape(1, size))
        assert result.require_ok().output("OUT_INT64").data == expected.tobytes()
