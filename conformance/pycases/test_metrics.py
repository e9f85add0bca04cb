"""Custom metrics (MetricFamily / Metric) through both stubs, read back from Triton's /metrics.

The ``metrics`` model names every family after itself (``metrics_cpp_requests_total`` and
``metrics_ours_requests_total`` live side by side on one server; the normaliser turns both into
``metrics_<stub>_…``), so the Prometheus lines of the two stubs' families are compared as text.
"""
from __future__ import annotations

import json
import re
from typing import List

import numpy as np
import pytest

from difftools import DiffModel, Outcome, Target, result_value
from solo import run_hazard, solo  # noqa: F401 - solo is a fixture

#: Items of the conformance checklist these cases cover (conformance/CASES.md).
COVERS = ["MetricFamily/Metric"]

DIFF_MODELS = [
    DiffModel("metrics"),
    # Deleting a MetricFamily under the C++ stub corrupts tritonserver's metric registry (see
    # test_family_deletion): those cases run on the quarantine server, ours on a solo server.
    DiffModel("metrics_del", source="metrics", quarantine_cpp=True),
]
SOLO_MODELS = [DiffModel("metrics_del", source="metrics")]




def _case(t: Target, name: str):
    out = t.infer({"CASE": np.array([name.encode()], dtype=object)}).require_ok()
    return result_value(t, out)


def _lines(t: Target) -> List[str]:
    """This model's families on /metrics (HELP, TYPE and samples), normalised, in order."""
    own = (f"{t.name}_", f"# HELP {t.name}_", f"# TYPE {t.name}_")
    return [t.normaliser.text(line) for line in t.server.metrics().splitlines() if line.startswith(own)]


def _lifecycle(t: Target) -> Outcome:
    steps = []
    for name in ("create", "update", "delete_metric", "same_labels_twice"):
        steps.append((name, json.dumps(_case(t, name), sort_keys=True), tuple(_lines(t))))
    return Outcome("value", value=tuple(steps))


@pytest.mark.harness_differs("line order in /metrics: prometheus-cpp lists a family's metrics in its hash map's "
                              "order (by label hash), the harness in creation order")
def test_metric_lifecycle_on_the_metrics_endpoint(pair):
    steps = {name: (json.loads(result), lines) for name, result, lines in pair.run("metrics", _lifecycle).value}

    created, lines = steps["create"]
    assert created == {"a": 5.5, "b": 1.0, "unlabelled": 0.0, "g": 20.0}
    assert "# TYPE metrics_<stub>_requests_total counter" in lines
    assert "# HELP metrics_<stub>_requests_total requests seen" in lines
    assert 'metrics_<stub>_requests_total{route="a",zone="eu"} 5.5' in lines
    assert 'metrics_<stub>_requests_total{route="b"} 1' in lines
    assert "metrics_<stub>_requests_total 0" in lines
    assert 'metrics_<stub>_temperature{sensor="x"} 20' in lines
    assert "# TYPE metrics_<stub>_latency histogram" in lines
    assert 'metrics_<stub>_latency_count{route="a"} 4' in lines
    assert 'metrics_<stub>_latency_bucket{route="a",le="1"} 2' in lines

    updated, lines = steps["update"]
    assert updated == {"a": 15.5, "g": -3.0}
    assert 'metrics_<stub>_latency_count{route="a"} 5' in lines

    _, lines = steps["delete_metric"]
    # A Metric lives as long as its family (the family holds it): dropping the model's
    # reference does not delete it, under both stubs.
    assert 'metrics_<stub>_requests_total{route="b"} 1' in lines

    shared, lines = steps["same_labels_twice"]
    assert shared == {"second sees": 7.0}
    assert 'metrics_<stub>_shared{k="v"} 7' in lines
    # The whole histogram, byte for byte (compared with the C++ lines by pair.run).
    assert any(line.startswith('metrics_<stub>_latency_bucket{route="a",le="+Inf"} 5') for line in lines), lines
    assert any(line.startswith('metrics_<stub>_latency_sum{route="a"} 56.55') for line in lines), lines


def test_metric_errors(pair):
    def case(t: Target) -> Outcome:
        return Outcome("value", value=json.dumps(_case(t, "errors"), sort_keys=True))
    errors = json.loads(pair.run("metrics", case).value)
    assert errors["bucket not a number"].startswith("RuntimeError: Unable to cast Python instance to C++ type")
    assert errors["labels not a dict"] == "TritonModelException: Failed to create metric. Labels must be a dictionary."
    assert errors["buckets not a list"] == "TritonModelException: Failed to create metric. Buckets must be a list."
    assert errors["buckets for a counter"] == "TritonModelException: Failed to create metric. Unexpected buckets found."
    assert errors["histogram without buckets"] == ("TritonModelException: Failed to create metric. Missing required "
                                                   "buckets.")


def test_family_deletion(pair, solo):
    """Families deleted (metrics first), then created again with the same names.

    C++: MetricFamily() creates the Triton family twice and deletes only the second one, so the
    deletion leaves tritonserver's registry with a dangling family: the families created again
    read garbage values, and later metric calls can abort tritonserver
    (boost::interprocess::lock_exception). Ours creates each family once: after the deletion the
    families are gone from /metrics and the new ones start from zero."""
    def case(t: Target) -> Outcome:
        steps = []
        for name in ("create", "delete_families", "recreate", "orphan", "drop_orphan"):
            try:
                steps.append((name, json.dumps(_case(t, name), sort_keys=True), tuple(_lines(t))))
            except Exception as exc:  # noqa: BLE001 - the C++ side may take the server down
                steps.append((name, "failed: " + type(exc).__name__, ()))
                break
        return Outcome("value", value=tuple(steps))
    steps = run_hazard(pair, solo, "metrics_del", case, compare=False).value
    created = {"a": 5.5, "b": 1.0, "unlabelled": 0.0, "g": 20.0}
    if pair.is_cpp:
        # Before any deletion the C++ side is deterministic: the same values and exposition as
        # ours. After it, values may be garbage and the server may abort: not compared.
        assert steps[0][0] == "create" and json.loads(steps[0][1]) == created, steps[0]
        assert 'metrics_del_<stub>_latency_count{route="a"} 4' in steps[0][2], steps[0]
        return
    steps = {name: (json.loads(result), lines) for name, result, lines in steps}
    left, lines = steps["delete_families"]
    assert left == ["b"], left
    assert not any("requests_total" in line or "latency" in line or "temperature" in line for line in lines)
    again, lines = steps["recreate"]
    assert again == created
    assert 'metrics_del_<stub>_latency_count{route="a"} 4' in lines
    text = ("Invalid metric operation as the corresponding 'MetricFamily' has been deleted. The 'MetricFamily' object "
            "should be deleted AFTER its corresponding 'Metric' objects have been deleted.")
    assert steps["orphan"][0] == {"set": "TritonModelException: Failed to set metric value: " + text,
                                  "value": "TritonModelException: Failed to get metric value: " + text}
    assert steps["drop_orphan"][0] == "dropped"


def _op(what: str, message: str) -> str:
    return (f"TritonModelException: Failed to {what} metric value: Failed to process the request for model "
            f"'metrics_del_<stub>_0_0', message: {message}")


_CREATE = ("TritonModelException: Error when creating Metric: Failed to process the request for model "
           "'metrics_del_<stub>_0_0', message: ")
_CREATE_FAMILY = ("TritonModelException: Error when creating MetricFamily: Failed to process the request for "
                  "model 'metrics_del_<stub>_0_0', message: ")
#: What the parent_errors case answers with the parent's texts (ours; see the test).
PARENT_ERRORS = {
    "negative counter increment": _op("increment", "TRITONSERVER_METRIC_KIND_COUNTER can only be incremented "
                                                   "monotonically by non-negative values."),
    "set on a counter": _op("set", "TRITONSERVER_METRIC_KIND_COUNTER does not support Set"),
    "observe on a counter": _op("observe", "TRITONSERVER_METRIC_KIND_COUNTER does not support Observe"),
    "observe on a gauge": _op("observe", "TRITONSERVER_METRIC_KIND_GAUGE does not support Observe"),
    "set on a histogram": _op("set", "TRITONSERVER_METRIC_KIND_HISTOGRAM does not support Set"),
    "increment on a histogram": _op("increment", "TRITONSERVER_METRIC_KIND_HISTOGRAM does not support Increment"),
    "value of a histogram": _op("get", "TRITONSERVER_METRIC_KIND_HISTOGRAM does not support Value"),
    "label value not a string": _CREATE + "attempt to access JSON non-string as string",
    "unsorted buckets": _CREATE + "Bucket Boundaries must be strictly sorted",
    "same name, other kind": _CREATE_FAMILY + "Family name already exists with different type",
    "same name, same kind": "returned None",
    "empty name": _CREATE_FAMILY + "Invalid metric name",
    "then a valid metric": "returned None",
}


def test_errors_reported_by_the_parent(pair, solo):
    """Labels that are not strings, unsorted buckets, a family name taken by another kind, an empty
    family name, operations a kind does not support: tritonserver refuses them. The C++ stub reads
    the error text after releasing the parent, which frees it (a race, r24.10.md §8); that
    corrupts the shared-memory allocator now and then and tritonserver aborts
    (boost::interprocess::lock_exception), during the call or a later one. So the C++ side runs on
    the quarantine server; ours reads first and reports the parent's texts."""
    def case(t: Target) -> Outcome:
        try:
            return Outcome("value", value=json.dumps(_case(t, "parent_errors"), sort_keys=True))
        except Exception as exc:  # noqa: BLE001
            return Outcome("value", value="failed: " + type(exc).__name__)
    out = run_hazard(pair, solo, "metrics_del", case, compare=False).value
    if pair.is_cpp:
        # Failed with the server (a client exception, by type name), or answered every label;
        # the texts it read after releasing the parent may be garbage, the rest may not.
        if out.startswith("failed: "):
            assert re.fullmatch(r"failed: [A-Za-z_]\w*", out), out
        else:
            got = json.loads(out)
            assert set(got) == set(PARENT_ERRORS), sorted(got)
            for label, want in PARENT_ERRORS.items():
                if want == "returned None":
                    assert got[label] == want, (label, got[label])
                else:
                    assert got[label].startswith("TritonModelException: "), (label, got[label])
        return
    assert json.loads(out) == PARENT_ERRORS

