"""DLPack through both stubs: to_dlpack / from_dlpack round trips, __dlpack__ and
__dlpack_device__, numpy as a consumer, BF16 tensors (as_numpy refuses them; DLPack carries
them), error texts, and a producer that claims a CUDA device.

``Tensor.from_dlpack`` of a numpy array crashes the C++ stub (test_deliberate.py covers the C++
side); here only ours runs those cases. torch is not needed: BF16 comes from the client.
"""
from __future__ import annotations

import json

import ml_dtypes
import numpy as np
import pytest

from difftools import DiffModel, Outcome, Target, result_outcome
from solo import run_hazard, solo  # noqa: F401 - solo is a fixture

#: Items of the conformance checklist these cases cover (conformance/CASES.md).
COVERS = ["DLPack"]

DIFF_MODELS = [DiffModel("dlpack_ops")]
SOLO_MODELS = [DiffModel("dlpack_ops")]

X = np.array([1.5, -2.0, 0.25, 8.0], dtype=np.float32)


def _call(case: str, **inputs):
    def run(t: Target) -> Outcome:
        return result_outcome(t, t.infer({"CASE": np.array([case.encode()], dtype=object), **inputs}))
    return run


def _run(pair, case: str, **inputs):
    out = pair.run("dlpack_ops", _call(case, **inputs))
    assert out.kind == "value", out.describe()
    return json.loads(out.value[0]), {o.name: o for o in out.value[1]}


def test_capsule_round_trip(pair):
    result, outs = _run(pair, "capsule_round_trip", IN=X)
    np.testing.assert_array_equal(outs["OUT"].array(), X)
    assert result["from_dlpack"] == "a Tensor OUT [4]" and result["is_cpu"] is True
    assert result["as_numpy equal"] is True


def test_capsule_consumed_twice(pair, solo):
    """DLPack: a consumer takes a capsule once. C++: the second from_dlpack of the same capsule
    succeeds too (two owners of one tensor; the stub is "not healthy" soon after), so it runs on a
    server of its own. Ours refuses the used capsule."""
    out = run_hazard(pair, solo, "dlpack_ops", _call("capsule_twice", IN=X), compare=False, cpp_alone=True)
    if pair.is_cpp:
        assert json.loads(out.value[0]) == {"capsule used twice": "a Tensor OUT [4]"}
        return
    assert json.loads(out.value[0]) == {"capsule used twice": (
        "TritonModelException: DLPack capsule is not usable: expected an unconsumed capsule named 'dltensor'.")}


def test_dlpack_dunder_methods(pair):
    result, outs = _run(pair, "dunder", IN=X)
    assert result["device"] == [1, 0]
    assert result["__dlpack__()"] == "a capsule" and result["__dlpack__(stream=None)"] == "a capsule"
    np.testing.assert_array_equal(outs["OUT"].array(), X)


def test_numpy_consumes_our_tensor(pair):
    result, outs = _run(pair, "numpy_consumer", IN=X)
    assert result == {"dtype": "float32", "shape": [4]}
    np.testing.assert_array_equal(outs["OUT"].array(), X * 2)


def test_bf16_through_dlpack(pair):
    values = np.array([1.0, -2.5, 0.15625, 3e38], dtype=np.float32).astype(ml_dtypes.bfloat16)
    result, outs = _run(pair, "bf16", B=values)
    assert result["as_numpy"] == ("TritonModelException: Tensor dtype is BF16 and cannot be converted to NumPy. "
                                  "Use to_dlpack() and from_dlpack() instead.")
    assert result["shape"] == [4] and result["out"] == "a Tensor OUT16 [4]"
    out = outs["OUT16"]
    assert out.datatype == "BF16" and out.shape == (4,)
    assert out.data == values.tobytes()


def test_dlpack_errors(pair):
    result, _ = _run(pair, "errors", IN=X, S=np.array([b"a", b"b"], dtype=object))
    assert result["BYTES to_dlpack"] == "TritonModelException: DLPack does not have support for string tensors."
    assert result["empty name"] == "TritonModelException: Tensor name cannot be an empty string."
    assert result["no __dlpack__"].startswith("TritonModelException: Provided tensor is not supported."), result
    assert result["from_dlpack with one argument"].startswith("TypeError: from_dlpack(): incompatible function "
                                                              "arguments."), result


def test_producer_on_a_cuda_device(pair):
    """An object whose __dlpack_device__ says kDLCUDA (deliberate difference). C++, on this
    CPU-only machine: "Failed to get current CUDA device id." Ours: "GPU tensors are not
    supported by tritonstub yet". Neither crashes."""
    out = pair.run("dlpack_ops", _call("cuda_device", IN=X), compare=False)
    text = json.loads(out.value[0])["from_dlpack of a CUDA-device object"]
    if pair.is_cpp:
        assert text == "TritonModelException: Failed to get current CUDA device id."
    else:
        assert text == "TritonModelException: GPU tensors are not supported by tritonstub yet"


def test_from_dlpack_of_numpy_arrays_ours(diff_servers):
    """Ours only, so not parametrized over the stubs (deliberate difference; the C++ stub
    crashes, see test_deliberate.py)."""
    if "ours" not in diff_servers.stubs:
        pytest.skip("TRITONSTUB_DIFF_STUBS leaves our stub out")
    out = _call("numpy_producer", IN=X)(diff_servers.loaded("dlpack_ops", "ours"))
    result = json.loads(out.value[0])
    np.testing.assert_array_equal({o.name: o for o in out.value[1]}["OUT"].array(), X * 2)
    assert result["2-D int16"] == "a Tensor G [2, 3]" and result["2-D values"] == [[0, 1, 2], [3, 4, 5]]
    assert result["transposed (not contiguous)"] == (
        "TritonModelException: DLPack tensor is not contiguous. Only contiguous DLPack tensors that are stored in "
        "C-Order are supported.")
    assert result["a numpy capsule"] == "a Tensor C [2, 3]"
