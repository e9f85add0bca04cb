"""Tensors through both stubs: arithmetic, every dtype, BYTES, zero-size shapes, output filtering."""
from __future__ import annotations


import numpy as np
import pytest

from difftools import DiffModel, Outcome

INT32_CONFIG = """
backend: "python"
max_batch_size: 0
input [
  { name: "INPUT0" data_type: TYPE_INT32 dims: [ -1 ] },
  { name: "INPUT1" data_type: TYPE_INT32 dims: [ -1 ] }
]
output [
  { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ -1 ] },
  { name: "OUTPUT1" data_type: TYPE_INT32 dims: [ -1 ] }
]
"""

DIFF_MODELS = [
    DiffModel("add_sub"),
    DiffModel("add_sub_int32", source="add_sub", config=INT32_CONFIG),
    DiffModel("dtypes"),
    DiffModel("outputs"),
]

NUMERIC_SAMPLES = {
    "BOOL": np.array([[True, False, True], [False, False, True]]),
    "UINT8": np.array([[0, 1, 255], [7, 128, 254]], dtype=np.uint8),
    "UINT16": np.array([[0, 1, 65535], [7, 32768, 2]], dtype=np.uint16),
    "UINT32": np.array([[0, 1, 2**32 - 1], [7, 2**31, 2]], dtype=np.uint32),
    "UINT64": np.array([[0, 1, 2**64 - 1], [7, 2**63, 2]], dtype=np.uint64),
    "INT8": np.array([[-128, -1, 127], [0, 5, -6]], dtype=np.int8),
    "INT16": np.array([[-32768, -1, 32767], [0, 5, -6]], dtype=np.int16),
    "INT32": np.array([[-2**31, -1, 2**31 - 1], [0, 5, -6]], dtype=np.int32),
    "INT64": np.array([[-2**63, -1, 2**63 - 1], [0, 5, -6]], dtype=np.int64),
    "FP16": np.array([[0.5, -0.0, np.inf], [65504, 1e-4, np.nan]], dtype=np.float16),
    "FP32": np.array([[0.5, -0.0, np.inf], [3.4e38, 1e-40, np.nan]], dtype=np.float32),
    "FP64": np.array([[0.5, -0.0, -np.inf], [1.7e308, 5e-324, np.nan]], dtype=np.float64),
}
BYTES_SAMPLE = np.array([[b"", "naïve".encode(), "日本語 ✓".encode()],
                         [b"\x00\xff", b"trailing\x00\x00", b"plain"]], dtype=object)


def _numeric_expected(kind, array):
    """What the dtypes model does to a numeric input (see models/dtypes/1/model.py)."""
    if kind == "BOOL":
        return np.logical_not(array)
    if kind.startswith(("UINT", "INT")):
        return np.flip(array)
    with np.errstate(over="ignore"):
        return (array * 2).T


# ---- add_sub ----------------------------------------------------------------------------------


def test_add_sub_fp32(pair):
    in0 = np.array([1.0, 2.5, -3.0, 1e30], dtype=np.float32)
    in1 = np.array([0.5, 0.25, 2.0, 1e30], dtype=np.float32)
    out = pair.run("add_sub", lambda t: t.infer({"INPUT0": in0, "INPUT1": in1})).require_ok()
    assert out.names == ["OUTPUT0", "OUTPUT1"]
    assert out.output("OUTPUT0").datatype == "FP32"
    np.testing.assert_array_equal(out.array("OUTPUT0"), in0 + in1)
    np.testing.assert_array_equal(out.array("OUTPUT1"), in0 - in1)


def test_add_sub_int32_wraps_around(pair):
    in0 = np.array([2**31 - 1, -2**31, 5], dtype=np.int32)
    in1 = np.array([1, 1, -7], dtype=np.int32)
    out = pair.run("add_sub_int32", lambda t: t.infer({"INPUT0": in0, "INPUT1": in1})).require_ok()
    assert [o.datatype for o in out.outputs] == ["INT32", "INT32"]
    np.testing.assert_array_equal(out.array("OUTPUT0"), np.array([-2**31, -2**31 + 1, -2], dtype=np.int32))
    np.testing.assert_array_equal(out.array("OUTPUT1"), np.array([2**31 - 2, 2**31 - 1, 12], dtype=np.int32))


def test_add_sub_shape_mismatch_raises_in_execute(pair):
    """numpy's broadcasting error in execute: the C-level exception, with model.py's frame."""
    in0 = np.ones(3, dtype=np.float32)
    in1 = np.ones(2, dtype=np.float32)
    out = pair.run("add_sub", lambda t: t.infer({"INPUT0": in0, "INPUT1": in1})).require_error()
    assert out.error.startswith("Failed to process the request(s) for model 'add_sub_<stub>_0', message: "
                                "ValueError: operands could not be broadcast together with shapes (3,) (2,) ")
    assert "\n\nAt:\n  <repo>/add_sub_<stub>/1/model.py(" in out.error


def test_add_sub_missing_input_is_rejected_by_the_server(pair):
    out = pair.run("add_sub", lambda t: t.infer({"INPUT0": np.ones(3, dtype=np.float32)})).require_error()
    assert "add_sub_<stub>" in out.error


# ---- dtypes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(NUMERIC_SAMPLES))
def test_numeric_dtype_round_trip(pair, kind):
    sample = NUMERIC_SAMPLES[kind]
    out = pair.run("dtypes", lambda t: t.infer({f"IN_{kind}": sample})).require_ok()
    result = out.output(f"OUT_{kind}")
    assert result.datatype == kind
    expected = _numeric_expected(kind, sample)
    assert result.shape == expected.shape
    assert result.data == np.ascontiguousarray(expected).tobytes()
    info = out.json("INFO")[kind]
    assert info == {"name": f"IN_{kind}", "shape": [2, 3], "is_cpu": True, "dtype": sample.dtype.str,
                    "array_shape": [2, 3], "writeable": True, "c_contiguous": True, "same_object": True}


def test_output_dtype_is_not_checked_against_the_config(pair):
    sample = NUMERIC_SAMPLES["FP32"]
    out = pair.run("dtypes", lambda t: t.infer({"IN_FP32": sample}, ["OUT_FP32_AS_INT32"])).require_ok()
    assert out.names == ["OUT_FP32_AS_INT32"]
    assert out.output("OUT_FP32_AS_INT32").datatype == "INT32"


def test_bytes_round_trip_non_ascii_empty_and_nul(pair):
    out = pair.run("dtypes", lambda t: t.infer({"IN_BYTES": BYTES_SAMPLE})).require_ok()
    assert out.names == ["OUT_BYTES", "OUT_BYTES_FROM_STR", "OUT_BYTES_FROM_S", "INFO"]
    flat = list(BYTES_SAMPLE.reshape(-1))
    assert out.output("OUT_BYTES").data == tuple(b"<" + x + b">" for x in flat)
    assert out.output("OUT_BYTES").shape == (2, 3)
    assert out.output("OUT_BYTES_FROM_STR").data == tuple(x.decode("utf-8", "replace").encode() for x in flat)
    # A numpy S array loses trailing NULs.
    assert out.output("OUT_BYTES_FROM_S").data[4] == b"trailing"
    info = out.json("INFO")["BYTES"]
    assert info["dtype"] == "|O" and info["element_types"] == ["bytes"] and info["shape"] == [2, 3]


@pytest.mark.parametrize("kind,shape", [("FP32", (0, 3)), ("INT64", (3, 0)), ("BYTES", (0, 3)),
                                        ("BOOL", (0, 0))])
def test_zero_size_tensors(pair, kind, shape):
    if kind == "BYTES":
        sample = np.zeros(shape, dtype=object)
    else:
        sample = np.zeros(shape, dtype=NUMERIC_SAMPLES[kind].dtype)
    out = pair.run("dtypes", lambda t: t.infer({f"IN_{kind}": sample}, [f"OUT_{kind}", "INFO"])).require_ok()
    result = out.output(f"OUT_{kind}")
    expected_shape = tuple(reversed(shape)) if kind == "FP32" else shape
    assert result.shape == expected_shape
    assert len(result.data) == 0
    assert out.json("INFO")[kind]["shape"] == list(shape)


def test_all_dtypes_in_one_request(pair):
    inputs = {f"IN_{kind}": sample for kind, sample in NUMERIC_SAMPLES.items()}
    inputs["IN_BYTES"] = BYTES_SAMPLE
    out = pair.run("dtypes", lambda t: t.infer(inputs)).require_ok()
    assert len(out.outputs) == len(NUMERIC_SAMPLES) + 1 + 3 + 1


def test_bf16_has_no_numpy_view_but_goes_through_dlpack(pair):
    ml_dtypes = pytest.importorskip("ml_dtypes")  # tritonclient >= 2.6x sends BF16 from it
    sample = np.array([[1.0, -2.0, 0.5], [3.0, 0.0, -0.25]], dtype=ml_dtypes.bfloat16)
    out = pair.run("dtypes", lambda t: t.infer({"IN_BF16": ("BF16", sample)})).require_ok()
    assert out.output("OUT_BF16").datatype == "BF16"
    assert out.output("OUT_BF16").data == sample.tobytes()
    info = out.json("INFO")["BF16"]
    assert info["as_numpy_error"].endswith("Tensor dtype is BF16 and cannot be converted to NumPy. "
                                           "Use to_dlpack() and from_dlpack() instead.")


# ---- requested outputs ------------------------------------------------------------------------


@pytest.mark.parametrize("requested", [None, ["OUT_B"], ["REQUESTED", "OUT_A"], ["OUT_C", "OUT_B", "REQUESTED"]])
def test_requested_output_names_filter_the_response(pair, requested):
    values = np.array([1.5, -2.0], dtype=np.float32)
    out = pair.run("outputs", lambda t: t.infer({"IN": values}, requested)).require_ok()
    everything = ["OUT_A", "OUT_B", "OUT_C", "REQUESTED"]
    # The stub keeps the model's order and drops what was not requested (NOT_IN_CONFIG always).
    assert out.names == [n for n in everything if requested is None or n in requested]
    if requested is None or "REQUESTED" in requested:
        names = [x.decode() for x in out.output("REQUESTED").data]
        assert names == sorted(requested or everything) + ["set"]


def test_requesting_an_output_not_in_the_config_is_rejected(pair):
    values = np.array([1.5], dtype=np.float32)
    out = pair.run("outputs", lambda t: t.infer({"IN": values}, ["NOT_IN_CONFIG"])).require_error()
    assert "NOT_IN_CONFIG" in out.error


# ---- sizes ------------------------------------------------------------------------------------


def test_tensors_larger_than_the_shared_memory_region(pair):
    """8 MiB in and out: the 1 MiB region (shm-default-byte-size) must grow, on both sides."""
    sample = np.arange(1024 * 2048, dtype=np.float32).reshape(1024, 2048)
    big_bytes = np.array([[bytes([i % 251]) * 40000 for i in range(30)]], dtype=object)  # 1.2 MB
    out = pair.run("dtypes", lambda t: t.infer({"IN_FP32": sample, "IN_BYTES": big_bytes},
                                               ["OUT_FP32", "OUT_BYTES"])).require_ok()
    assert out.output("OUT_FP32").shape == (2048, 1024)
    assert out.output("OUT_FP32").data == np.ascontiguousarray((sample * 2).T).tobytes()
    assert out.output("OUT_BYTES").data == tuple(b"<" + x + b">" for x in big_bytes.reshape(-1))


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
