"""Request metadata and batching through both stubs: request id, correlation id (uint and string),
sequence flags, client parameters, timeout, requested outputs, dynamic batching, per-request errors."""
from __future__ import annotations

import numpy as np
import pytest

from difftools import DiffModel, Outcome, Target

_REQUEST_INFO_IO = """
input [ { name: "IN" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [
  { name: "INFO" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "OUT" data_type: TYPE_FP32 dims: [ -1 ] }
]
"""
SEQUENCE_CONFIG = """
backend: "python"
max_batch_size: 0
sequence_batching { max_sequence_idle_microseconds: 10000000 }
""" + _REQUEST_INFO_IO

DIFF_MODELS = [
    DiffModel("request_info"),
    DiffModel("sequence", source="request_info", config=SEQUENCE_CONFIG),
    DiffModel("batching"),
]

IN = np.array([0.5, -1.0], dtype=np.float32)


def _info(target: Target, **kwargs) -> Outcome:
    return target.infer({"IN": IN}, **kwargs)


# ---- plain requests ---------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs,expected", [
    ({}, {"request_id": "", "correlation_id": 0, "flags": 0, "timeout": 0, "parameters_parsed": {}}),
    ({"request_id": "req-ü-42"}, {"request_id": "req-ü-42"}),
    ({"sequence_id": 7, "sequence_start": True}, {"correlation_id": 7, "flags": 1}),
    ({"sequence_id": 2**64 - 1, "sequence_end": True}, {"correlation_id": 2**64 - 1, "flags": 2}),
    ({"sequence_id": "corr-str", "sequence_start": True, "sequence_end": True},
     {"correlation_id": "corr-str", "flags": 3}),
    ({"timeout": 123456}, {"timeout": 123456}),
    ({"parameters": {"mode": "fast", "count": 3, "on": True, "neg": -5, "text": "a \"quoted\" ✓"}},
     {"parameters_parsed": {"mode": "fast", "count": 3, "on": True, "neg": -5, "text": "a \"quoted\" ✓"}}),
], ids=["defaults", "request_id", "uint_corr_start", "max_uint_corr_end", "string_corr", "timeout", "parameters"])
def test_request_metadata_seen_by_model(pair, kwargs, expected):
    out = pair.run("request_info", lambda t: _info(t, **kwargs)).require_ok()
    info = out.json("INFO")
    for key, value in expected.items():
        got = info[key]["value"] if isinstance(info[key], dict) and "type" in info[key] else info[key]
        assert got == value, (key, info)
    assert info["correlation_id"]["type"] == type(expected.get("correlation_id", 0)).__name__
    assert info["parameters"]["type"] == "str"
    assert info["requested_output_names"] == ["INFO", "OUT"]
    np.testing.assert_array_equal(out.array("OUT"), IN)


def test_request_id_is_echoed_in_the_response(pair):
    out = pair.run("request_info", lambda t: _info(t, request_id="echo-me")).require_ok()
    assert out.header["id"] == "echo-me"
    assert out.header["model_name"] == "request_info_<stub>"


def test_requested_outputs_subset(pair):
    out = pair.run("request_info", lambda t: _info(t, outputs=["INFO"])).require_ok()
    assert out.names == ["INFO"]
    assert out.json("INFO")["requested_output_names"] == ["INFO"]


# ---- sequence batching ------------------------------------------------------------------------
# String correlation ids are covered by plain requests above: with a sequence batcher they need a
# CONTROL_SEQUENCE_CORRID TYPE_STRING control input, and Triton 2.51's core then rejects every
# request itself ("unexpected number of string elements 2 for inference input 'CORRID',
# expecting 1"), before any stub is involved.


def _sequence(target: Target, ids) -> Outcome:
    steps = []
    for i, corr in enumerate(ids):
        steps.append(_info(target, sequence_id=corr, sequence_start=(i == 0), sequence_end=(i == len(ids) - 1)))
    return Outcome("value", value=tuple(steps))


def test_sequence_batcher_delivers_flags_and_uint_correlation_id(pair):
    out = pair.run("sequence", lambda t: _sequence(t, [41, 41, 41]))
    infos = [step.require_ok().json("INFO") for step in out.value]
    assert [i["flags"]["value"] for i in infos] == [1, 0, 2]
    assert {i["correlation_id"]["value"] for i in infos} == {41}


def test_sequence_batcher_rejects_a_sequence_without_start(pair):
    out = pair.run("sequence", lambda t: _info(t, sequence_id=99)).require_error()
    assert "sequence_<stub>" in out.error


# ---- dynamic batching -------------------------------------------------------------------------


def _concurrent(target: Target, batches, request_ids) -> Outcome:
    """Send all requests at once (async, 4 connections) and collect the outcomes in order."""
    import tritonclient.http as httpclient

    from difftools import make_inputs

    client = target.client(concurrency=len(batches), network_timeout=20)
    try:
        pending = [client.async_infer(target.name, make_inputs(httpclient, {"X": x}), request_id=rid)
                   for x, rid in zip(batches, request_ids)]
        results = []
        for handle in pending:
            try:
                results.append(target.success(handle.get_result()))
            except Exception as exc:  # noqa: BLE001
                results.append(target.failure(exc, 20))
    finally:
        client.close()
    return Outcome("value", value=tuple(results))


def test_dynamic_batching_gives_execute_several_requests(pair):
    batches = [np.arange(6, dtype=np.int32).reshape(2, 3) + 100 * i for i in range(4)]
    out = pair.run("batching", lambda t: _concurrent(t, batches, [f"r{i}" for i in range(4)]))
    for x, result in zip(batches, out.value):
        result.require_ok()
        np.testing.assert_array_equal(result.array("Y"), x * 10)
        # All four requests reached one execute call.
        np.testing.assert_array_equal(result.array("BATCH"), np.array([[4, 2], [4, 2]], dtype=np.int32))


def test_error_response_for_one_request_of_a_batch(pair):
    batches = [np.ones((2, 3), dtype=np.int32) * (i + 1) for i in range(4)]
    batches[2] = batches[2] * -1
    out = pair.run("batching", lambda t: _concurrent(t, batches, [f"b{i}" for i in range(4)]))
    ok = [r for i, r in enumerate(out.value) if i != 2]
    for result in ok:
        result.require_ok()
        assert result.array("BATCH")[0, 0] == 4
    failed = out.value[2].require_error()
    assert failed.error == "negative input -3 in request 'b2'"
    assert failed.status == "400"
