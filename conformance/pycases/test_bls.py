"""BLS (InferenceRequest.exec / async_exec from model.py) through both stubs.

``bls_caller`` runs the calls its CASE input describes (JSON) and answers with what came back
(JSON: errors with their codes, outputs with dtype, shape and values). It calls the models of its
own stub: ``bls_callee`` (plain; parameters pick a failure), ``bls_queue`` (the same behind a
dynamic batcher whose queue policy lets a request time out), ``bls_stream`` (the decoupled
``dec_modes``).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from difftools import DiffModel, Outcome, Target, line_of, result_outcome
from solo import run_hazard, solo  # noqa: F401 - solo is a fixture

#: Items of the conformance checklist these cases cover (conformance/CASES.md).
COVERS = ["BLS sync", "BLS async", "BLS streaming", "InferenceRequest", "TritonError codes"]

QUEUE_CONFIG = """
backend: "python"
max_batch_size: 8
input [
  { name: "IN" data_type: TYPE_FP32 dims: [ -1 ] optional: true },
  { name: "S" data_type: TYPE_STRING dims: [ -1 ] optional: true }
]
output [
  { name: "OUT" data_type: TYPE_FP32 dims: [ -1 ] },
  { name: "OUT2" data_type: TYPE_FP32 dims: [ -1 ] },
  { name: "SOUT" data_type: TYPE_STRING dims: [ -1 ] },
  { name: "INFO" data_type: TYPE_STRING dims: [ 1 ] }
]
dynamic_batching {
  default_queue_policy { timeout_action: REJECT allow_timeout_override: true default_timeout_microseconds: 0 }
}
instance_group [ { kind: KIND_CPU count: 1 } ]
"""

DIFF_MODELS = [
    DiffModel("bls_caller"),
    DiffModel("bls_callee"),
    DiffModel("bls_queue", source="bls_callee", config=QUEUE_CONFIG),
    DiffModel("bls_stream", source="dec_modes"),
    # A stream whose later response is an error hangs the C++ caller for good (see
    # test_stream_with_an_error_response): its caller and callee run on the quarantine server.
    DiffModel("bls_hcaller", source="bls_caller", quarantine_cpp=True),
    DiffModel("bls_hstream", source="dec_modes", quarantine_cpp=True),
]
SOLO_MODELS = [
    DiffModel("bls_hcaller", source="bls_caller"),
    DiffModel("bls_hstream", source="dec_modes"),
]

F32 = {"dtype": "float32", "data": [1.5, -2.0, 0.25]}


def _call(case: dict):
    def run(t: Target) -> Outcome:
        return result_outcome(t, t.infer({"CASE": np.array([json.dumps(case).encode()], dtype=object)},
                                         timeout_s=60))
    return run


def _result(pair, case: dict, base: str = "bls_caller"):
    out = pair.run(base, _call(case))
    assert out.kind == "value", out.describe()
    return json.loads(out.value[0])


def _outputs(described):
    return {name: (dtype, shape, values) for name, dtype, shape, values in described["outputs"]}


# ---- exec ------------------------------------------------------------------------------------


def test_exec(pair):
    r = _result(pair, {"case": "exec", "inputs": {"IN": F32}})
    assert r["error"] is None
    outs = _outputs(r)
    assert outs["OUT"] == ("<f4", [3], [2.5, -1.0, 1.25])
    assert outs["OUT2"] == ("<f4", [3], [3.0, -4.0, 0.5])
    assert outs["SOUT"] == ("|O", [0], [])
    info = json.loads(outs["INFO"][2][0])
    assert info["inputs"] == ["IN"] and info["requested_output_names"] == ["INFO", "OUT", "OUT2", "SOUT"]


def test_async_exec(pair):
    r = _result(pair, {"case": "async_exec", "inputs": {"IN": F32}, "outputs": ["OUT"]})
    assert _outputs(r) == {"OUT": ("<f4", [3], [2.5, -1.0, 1.25])}


def test_many_async_exec_in_flight_with_gather(pair):
    r = _result(pair, {"case": "gather", "count": 24, "inputs": {"IN": {"dtype": "float32", "data": [1.0]}},
                       "outputs": ["OUT"]})
    assert [_outputs(x)["OUT"][2] for x in r] == [[2.0 + 100 * i] for i in range(24)]


@pytest.mark.parametrize("sleep_ms", [100, 1200])
def test_exec_of_a_slow_callee(pair, sleep_ms):
    """The parent writes the reply's handle as soon as it starts the inference and notifies when it
    is done: a stub must wait for the notification, not for the handle (nor give up after a
    one-second wait slice)."""
    r = _result(pair, {"case": "exec", "inputs": {"IN": F32}, "outputs": ["OUT"], "parameters": {"sleep_ms": sleep_ms}})
    assert _outputs(r) == {"OUT": ("<f4", [3], [2.5, -1.0, 1.25])}


def test_sequential_exec_calls(pair):
    r = _result(pair, {"case": "sequential", "count": 20, "inputs": {"IN": {"dtype": "float32", "data": [0.0]}},
                       "outputs": ["OUT2"]})
    assert [_outputs(x)["OUT2"][2] for x in r] == [[200.0 * i] for i in range(20)]


@pytest.mark.parametrize("outputs,expected", [
    (["OUT2"], ["OUT2"]),
    (["SOUT", "OUT"], ["OUT", "SOUT"]),
    ([], ["INFO", "OUT", "OUT2", "SOUT"]),
], ids=["one", "two", "none_means_all"])
def test_requested_outputs(pair, outputs, expected):
    r = _result(pair, {"case": "exec", "inputs": {"IN": F32}, "outputs": outputs})
    assert [o[0] for o in r["outputs"]] == expected


def test_request_metadata_reaches_the_callee(pair):
    r = _result(pair, {"case": "exec", "inputs": {"IN": F32}, "outputs": ["INFO"], "request_id": "bls-id-ü",
                       "correlation_id": 77, "flags": 0, "timeout": 0,
                       "parameters": {"text": "a \"quoted\" ✓", "n": -3, "on": True}})
    info = json.loads(_outputs(r)["INFO"][2][0])
    assert json.loads(info["parameters"]) == {"text": "a \"quoted\" ✓", "n": -3, "on": True}
    assert info["request_id"] == "bls-id-ü" and info["correlation_id"] == 77


def test_string_correlation_id(pair):
    r = _result(pair, {"case": "exec", "inputs": {"IN": F32}, "outputs": ["INFO"], "correlation_id": "corr-α"})
    assert json.loads(_outputs(r)["INFO"][2][0])["correlation_id"] == "corr-α"


def test_bytes_both_ways(pair):
    words = ["naïve", "", "日本語 ✓", "tab\tz"]
    r = _result(pair, {"case": "exec", "inputs": {"S": {"dtype": "bytes", "data": words, "shape": [4]}},
                       "outputs": ["SOUT"]})
    expected = [w.encode().upper().decode("latin-1") for w in reversed(words)]
    assert _outputs(r) == {"SOUT": ("|O", [4], expected)}


@pytest.mark.parametrize("spec", [
    {"IN": {"dtype": "float32", "data": [], "shape": [0]}},
    {"S": {"dtype": "bytes", "data": [], "shape": [0]}},
], ids=["fp32", "bytes"])
def test_zero_size_tensors_both_ways(pair, spec):
    r = _result(pair, {"case": "exec", "inputs": spec, "outputs": ["OUT", "SOUT"]})
    assert _outputs(r) == {"OUT": ("<f4", [0], []), "SOUT": ("|O", [0], [])}


def test_callee_outputs_forwarded_as_the_callers_outputs(pair):
    out = pair.run("bls_caller", _call({"case": "forward", "inputs": {"IN": F32, "S": {
        "dtype": "bytes", "data": ["ab", "c"]}}, "outputs": ["OUT", "SOUT"]}))
    forwarded = {o.name: o for o in out.value[1]}
    np.testing.assert_array_equal(forwarded["OUT"].array(), np.array([2.5, -1.0, 1.25], np.float32))
    assert forwarded["SOUT"].data == (b"C", b"AB")


# ---- errors ----------------------------------------------------------------------------------


def test_callee_raises(pair):
    r = _result(pair, {"case": "exec", "inputs": {"IN": F32}, "parameters": {"do": "raise"}})
    line = line_of("bls_callee/1/model.py", 'raise ValueError("callee failed on purpose")')
    assert r == {"error": ["Failed to process the request(s) for model 'bls_callee_<stub>_0_0', message: "
                           "ValueError: callee failed on purpose\n\nAt:\n"
                           f"  <repo>/bls_callee_<stub>/1/model.py({line}): execute\n", 1], "outputs": []}


def test_callee_error_response(pair):
    """The callee's message arrives; its code (NOT_FOUND) does not: a BLS error is always INTERNAL."""
    r = _result(pair, {"case": "exec", "inputs": {"IN": F32}, "parameters": {"do": "error"}})
    assert r == {"error": ["callee error response", 1], "outputs": []}


def test_missing_model(pair):
    r = _result(pair, {"case": "exec", "raw_model": "no_such_model", "inputs": {"IN": F32}})
    assert r["outputs"] == [] and r["error"][0] == (
        "Model no_such_model - Error when running inference: Failed for execute the inference request. "
        "Model 'no_such_model' is not ready.")


def test_wrong_inputs(pair):
    r = _result(pair, {"case": "exec", "inputs": {"X": F32}})
    assert r["outputs"] == [] and "unexpected inference input 'X'" in r["error"][0], r


def test_decoupled_model_without_decoupled_true(pair):
    r = _result(pair, {"case": "exec", "model": "bls_stream", "inputs": {
        "MODE": {"dtype": "bytes", "data": ["repeat"]}, "N": {"dtype": "int32", "data": [2]}}, "outputs": ["OUT"]})
    assert r == {"error": [
        "Model bls_stream_<stub> - Error when running inference: Model bls_stream_<stub> is using the decoupled. The "
        "current BLS request call doesn't support models using the decoupled transaction policy. Please use "
        "'decoupled=True' argument to the 'exec' or 'async_exec' calls for decoupled models.'", 1], "outputs": []}


def test_bls_from_initialize_is_refused(pair):
    assert _result(pair, {"case": "init_bls"}) == (
        "TritonModelException: BLS is only supported during the 'execute' function.")


def test_request_construction_errors(pair):
    r = _result(pair, {"case": "construct_errors"})
    assert r["float parameter"] == ("TritonModelException: Expect parameters values to have type bool/int/str, "
                                    "found type <class 'float'>")
    assert r["sender of a BLS request"] == ("TritonModelException: Unable to send response. Response sender has no "
                                            "reference to the decoupled state of the model.")
    assert r["no model name"].startswith("TypeError: __init__(): incompatible constructor arguments.")


def test_timeout_reaches_the_callee(pair):
    """The BLS request's timeout (µs) is the callee's request.timeout(). bls_queue's dynamic
    batcher has a queue policy that honours request timeouts, yet Triton 2.51 expires nothing here
    (not even 5 µs on a request queued behind a 300 ms one; later releases answer "Request timeout
    expired"): a request that waited longer than its timeout still succeeds, under both stubs."""
    one = {"inputs": {"IN": {"dtype": "float32", "data": [1.0], "shape": [1, 1]}}, "outputs": ["INFO"],
           "model": "bls_queue"}
    r = _result(pair, {"case": "staggered", "requests": [
        dict(one, parameters={"sleep_ms": 300}), dict(one, timeout=5), dict(one, timeout=1000)]})
    assert [x["error"] for x in r] == [None, None, None], r
    assert [json.loads(_outputs(x)["INFO"][2][0])["timeout"] for x in r] == [0, 5, 1000]


# ---- exec(decoupled=True) --------------------------------------------------------------------


@pytest.mark.parametrize("use_async", [False, True], ids=["exec", "async_exec"])
def test_stream_of_a_decoupled_model(pair, use_async):
    r = _result(pair, {"case": "stream", "model": "bls_stream", "mode": "repeat", "n": 3, "async": use_async,
                       "again": True})
    assert r["type"] == "ResponseIterator"
    values = [_outputs(x).get("OUT", (None, None, None))[2] for x in r["responses"]]
    assert values == [[0], [1], [2], None]  # the FINAL flag comes as a last, empty response
    assert r["again"] == r["responses"]


def test_stream_final_on_the_last_response(pair):
    r = _result(pair, {"case": "stream", "model": "bls_stream", "mode": "final_with_last", "n": 2})
    assert [_outputs(x)["OUT"][2] for x in r["responses"]] == [[0], [1]]


@pytest.mark.harness_differs("which of several unexpected inputs the core names first follows std::unordered_map's "
                              "iteration order (InferenceRequest::Normalize); the harness names the first sent")
def test_stream_of_a_plain_model(pair):
    """exec(decoupled=True) on a non-decoupled model: one response, the last."""
    r = _result(pair, {"case": "stream", "model": "bls_callee", "mode": "x", "n": 0})
    assert len(r["responses"]) == 1 and r["responses"][0]["error"] is not None, r


def test_stream_dropped_midway(pair):
    r = _result(pair, {"case": "stream_partial", "model": "bls_stream", "n": 5, "k": 2})
    assert [_outputs(x)["OUT"][2] for x in r["taken"]] == [[0], [1]]
    assert _outputs(r["after"])["OUT"][2] == [2.0]


def test_stream_of_a_missing_model(pair):
    r = _result(pair, {"case": "stream", "raw_model": "no_such_model", "mode": "repeat", "n": 1})
    assert [x["error"][0] for x in r["responses"]] == [
        "Model no_such_model - Error when running inference: Failed for execute the inference request. "
        "Model 'no_such_model' is not ready."]


# ---- memory -----------------------------------------------------------------------------------


@pytest.mark.harness_differs("GPU memory: tritonserver fails the GPU allocation on this CPU-only machine; the "
                              "harness has no GPU memory and answers in CPU memory")
def test_preferred_memory_gpu(pair):
    """PreferredMemory(TRITONSERVER_MEMORY_GPU) (deliberate difference). C++ sends the request
    and Triton's GPU output allocation fails on this CPU-only machine (on a GPU machine the
    outputs would come back as CUDA IPC handles). Ours answers at once with an error response
    saying that tritonstub does not support GPU tensors. Nothing crashes; the next call works."""
    r = pair.run("bls_caller", _call({"case": "exec", "inputs": {"IN": F32}, "outputs": ["OUT"],
                                      "preferred_memory": "gpu"}), compare=False)
    r = json.loads(r.value[0])
    assert r["outputs"] == [], r
    if pair.is_cpp:
        assert r["error"][0].startswith("BackendMemory::Create, all allocation types failed:\n\tGPU: "), r
    else:
        assert r["error"] == [
            "GPU tensors are not supported by tritonstub yet: this BLS request asks for its outputs in GPU "
            "memory (PreferredMemory(TRITONSERVER_MEMORY_GPU)); use CPU or the default preferred memory", 1], r


def test_the_callers_stub_keeps_serving(pair):
    r = _result(pair, {"case": "exec", "inputs": {"IN": F32}, "outputs": ["OUT"], "preferred_memory": "cpu"})
    assert _outputs(r) == {"OUT": ("<f4", [3], [2.5, -1.0, 1.25])}


# ---- hazards: a later error response in a BLS stream ------------------------------------------


def _hazard_stream(mode: str, n: int):
    def run(t: Target) -> Outcome:
        case = {"case": "stream", "model": "bls_hstream", "mode": mode, "n": n}
        return _call(case)(_short(t, 2.0 if t.stub == "cpp" else 8.0))
    return run


def _short(t: Target, limit_s: float) -> Target:
    """The C++ side never answers these: give up after ``limit_s`` instead of 60 s."""
    class Short(Target):
        def infer(self, inputs, outputs=None, *, timeout_s=limit_s, **kwargs):
            return super().infer(inputs, outputs, timeout_s=limit_s, **kwargs)
    return Short(t.base, t.stub, t.name, t.server, t.normaliser)


@pytest.mark.parametrize("mode", ["error_final", "raise_after_sends"])
def test_stream_with_a_later_error_response(pair, solo, mode):
    """C++: the parent leaves ResponseShm.id unset on error responses, so a stream's later error
    response reaches no iterator and the caller waits forever (here: until the client gives up).
    Ours must deliver it: the responses, then the error, then the end of the iteration."""
    if pair.is_cpp:
        pair.servers.loaded("bls_hstream", "cpp")
    out = run_hazard(pair, solo, "bls_hcaller", _hazard_stream(mode, 1), compare=False, key=mode)
    if pair.is_cpp:
        assert out.kind == "timeout", out.describe()
        return
    assert out.kind == "value", out.describe()
    r = json.loads(out.value[0])
    assert len(r["responses"]) == 2 and r["responses"][0]["error"] is None, r
    if mode == "error_final":
        assert r["responses"][1]["error"] == ["decoupled failure", 1]
    else:
        assert r["responses"][1]["error"][0].startswith(
            "Failed to process the request(s) for model 'bls_hstream_<stub>_0_0', message: ValueError: failed after "
            "1 sends")
