"""The pytest fixtures of the harness (tritonstub.testing.harness_fixtures), used as a user would:
the bundled example test, the option that runs a test on both stubs, every fixture method, and the
teardown check that nothing is left behind."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tritonstub.harness import InferError

ROOT = Path(__file__).resolve().parents[1]
MODELS = Path(__file__).parent / "harness_models"


def _pytest(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_example_test_runs_on_both_stubs(triton_reference):
    run = _pytest("examples/tests/test_add_sub.py", "--tritonstub-stubs=ours,cpp", "-v")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "test_add_sub[ours] PASSED" in run.stdout and "test_add_sub[cpp] PASSED" in run.stdout


def test_handle_methods(harness_model):
    echo = harness_model(MODELS / "echo")
    out = echo.infer(IN=np.ones((1, 3), np.float32))
    np.testing.assert_array_equal(out["OUT"], np.ones((1, 3), np.float32))
    outs = echo.infer_batch([{"IN": np.full((1, 1), i, np.float32)} for i in range(2)])
    assert [float(o["OUT"][0, 0]) for o in outs] == [0.0, 1.0]
    assert b'"batch": 2' in outs[0]["INFO"][0, 0]
    assert any('"echo ready as echo_0"' in line for line in echo.logs)


def test_stream_errors_and_cancel(harness_model):
    stream = harness_model(MODELS / "stream")
    responses = stream.stream(N=np.array([2], np.int32))
    assert [r.final for r in responses] == [False, False, True]
    fails = harness_model(MODELS / "fails")
    with pytest.raises(InferError) as e:
        fails.infer(X=np.array([0.0], np.float32))
    assert (e.value.code, e.value.message) == ("INVALID_ARG", "zero is not allowed")
    sleeper = harness_model(MODELS / "sleeper", env={"SLEEPER_PID_FILE": "/dev/null"})
    call = sleeper.submit(S=np.array([30.0], np.float32))
    sleeper.cancel(call)
    assert call.wait(20) and call.responses[0].error.code == "CANCELLED"


def test_repository_fixture_for_bls(harness_repository):
    engine = harness_repository(MODELS, model_control="explicit", models=["caller", "echo", "stream"])
    [resp] = engine.infer(engine_request("caller", MODE=np.array([b"stream"], object)), timeout_s=60)
    assert [v.decode() for v in resp["OUT"]] == ["3", "2", "1", "final"]


def engine_request(model, **arrays):
    from tritonstub.harness import InferRequest
    return InferRequest.make(model, arrays)
