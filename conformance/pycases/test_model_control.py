"""Model control from model.py (pb_utils.load_model / unload_model / is_model_ready) through both
stubs. The differential servers run in explicit model-control mode, which these calls need.

``loader_<stub>`` controls models of its own stub: ``mc_target_<stub>`` (in the repository, not
loaded at start), the ensemble ``mc_ens_<stub>`` over it (loaded with a config override that
names the composing model) and ``loader_<stub>_files`` (made from a config and files it sends).
Errors that the parent reports run on the quarantine server under the C++ stub (it reads the
parent's error text after releasing the parent, r24.10.md §8; see test_metrics.py).
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from difftools import DiffModel, Outcome, Target
from solo import run_hazard, solo  # noqa: F401 - solo is a fixture

#: Items of the conformance checklist these cases cover (conformance/CASES.md).
COVERS = ["model control (load/unload/is_model_ready)"]

DIFF_MODELS = [
    DiffModel("loader"),
    DiffModel("mc_target", preload=False),
    DiffModel("mc_ens", preload=False),
    DiffModel("loader_hz", source="loader", quarantine_cpp=True),
]
SOLO_MODELS = [DiffModel("loader_hz", source="loader")]

IN = np.array([1.0, -2.0], dtype=np.float32)


def _case(t: Target, name: str):
    out = t.infer({"CASE": np.array([json.dumps({"case": name}).encode()], dtype=object)}, timeout_s=60)
    out.require_ok()
    return [tuple(step) for step in t.normaliser.value(json.loads(out.output("RESULT").data[0]))]


def _run(*names):
    def case(t: Target) -> Outcome:
        return Outcome("value", value=tuple(tuple(_case(t, name)) for name in names))
    return case


def _other(t: Target, name: str) -> Target:
    """Another model of the same stub on the same server (not loaded by the suite)."""
    return Target(name, t.stub, f"{name}_{t.stub}", t.server, t.normaliser)


def test_load_is_ready_unload(pair):
    (steps,) = pair.run("loader", _run("load_unload")).value
    assert steps == (("ready before", False), ("load", "returned None"), ("ready", True),
                     ("version 1 ready", True), ("load again", "returned None"), ("unload", "returned None"),
                     ("ready after unload", False))


def test_load_with_a_config_override(pair):
    def case(t: Target) -> Outcome:
        loaded = tuple(_case(t, "load_with_config"))
        target = _other(t, "mc_target")
        config = target.config()
        served = target.infer({"IN": IN})
        unloaded = tuple(_case(t, "unload_target"))
        return Outcome("value", value=(loaded, t.normaliser.value(config.get("parameters")), served, unloaded))
    loaded, parameters, served, unloaded = pair.run("loader", case).value
    assert loaded == (("load", "returned None"), ("ready", True))
    assert parameters == {"loaded_by": {"string_value": "loader_<stub>"}}
    np.testing.assert_array_equal(served.require_ok().array("OUT"), IN * 3)
    assert unloaded == (("unload", "returned None"), ("ready after unload", False))


@pytest.mark.harness_differs("load with files: the harness refuses it (UNSUPPORTED), tritonserver writes the "
                              "files into a temporary model directory")
def test_load_with_files(pair):
    """A model that is not in the repository, made from the config and model.py sent by the
    loader. (It runs with the backend's own stub: the files hold no stub.)"""
    def case(t: Target) -> Outcome:
        loaded = tuple(_case(t, "load_with_files"))
        made = Target("loader", t.stub, f"{t.name}_files", t.server, t.normaliser)
        served = made.infer({"IN": IN})
        unloaded = tuple(_case(t, "unload_files_model"))
        return Outcome("value", value=(loaded, served, unloaded))
    loaded, served, unloaded = pair.run("loader", case).value
    assert loaded == (("load", "returned None"), ("ready", True))
    np.testing.assert_array_equal(served.require_ok().array("OUT"), IN + 1000)
    assert unloaded == (("unload", "returned None"), ("ready after unload", False))


def test_unload_with_and_without_dependents(pair):
    """On the harness column the documented difference (docs/harness.md): ensembles are out of
    its scope, so loading mc_ens is refused with a clear error instead."""
    if pair.on_harness:
        _, harness = pair.columns("loader", _run("ensemble"))
        (steps,) = harness.value
        assert steps[0][0] == "load ensemble" and (
            f"model 'mc_ens_<stub>' is an ensemble: the harness runs python models only" in steps[0][1]), steps
        assert steps[1] == ("ensemble ready", False), steps
        return
    (steps,) = pair.run("loader", _run("ensemble")).value
    assert steps == (
        ("load ensemble", "returned None"), ("ensemble ready", True), ("composing model ready", True),
        ("unload ensemble only", "returned None"), ("ensemble ready after", False),
        ("composing model ready after", True),
        ("load ensemble again", "returned None"), ("unload with dependents", "returned None"),
        ("ensemble ready after", False), ("composing model ready after", False))


def test_argument_errors(pair):
    (steps,) = pair.run("loader", _run("stub_side_errors")).value
    steps = dict(steps)
    assert steps["files not a dict"] == ("TritonModelException: failed to load model 'loader_<stub>_files', files "
                                         "should be a dictionary of file paths and file contents")
    assert steps["file content not bytes"] == "TypeError: Object of type 'str' is not an instance of 'bytes'"
    assert steps["name not a string"].startswith("TypeError: load_model(): incompatible function arguments.")


def test_errors_reported_by_the_parent(pair, solo):
    """Loading a missing model (also with an invalid config, or files without a config: the parent
    reports the missing model first), the readiness of an unknown model (False, no error),
    unloading an unknown model (no error). The C++ stub reads each error text after releasing the
    parent (a race that can corrupt the shared-memory allocator; tritonserver was seen to abort
    with boost::interprocess::lock_exception), so its side runs on the quarantine server and is
    checked only where the race cannot change it; ours must give the parent's texts and keep
    working."""
    def case(t: Target) -> Outcome:
        try:
            return _run("parent_errors")(t)
        except Exception as exc:  # noqa: BLE001 - tritonserver may abort under the C++ stub
            return Outcome("value", value=("failed", type(exc).__name__))
    out = run_hazard(pair, solo, "loader_hz", case, compare=False).value
    prefix = ("TritonModelException: Failed to load model: Failed to process the request for model "
              "'loader_hz_<stub>_0_0', message: ")
    missing = prefix + "failed to load 'no_such_model', failed to poll from model repository"
    expected = (
        ("load a missing model", missing),
        ("load with an invalid config", missing),
        ("files without a config", missing),
        ("readiness of an unknown model", "returned False"),
        ("unload an unknown model", "returned None"),
        ("then a valid call", "returned True"))
    if pair.is_cpp:
        # Whatever the race did, the C++ side either failed with the server (an exception from the
        # client, by type name) or went through every step; only the texts it read from freed
        # memory may differ from the parent's.
        if out[0] == "failed":
            assert len(out) == 2 and re.fullmatch(r"[A-Za-z_]\w*", out[1]), out
        else:
            assert [label for label, _ in out[0]] == [label for label, _ in expected], out
            for (label, got), (_, want) in zip(out[0], expected):
                if want.startswith("returned "):
                    assert got == want, (label, got)
                else:
                    assert got.startswith("TritonModelException: "), (label, got)
        return
    assert out[0] == expected
