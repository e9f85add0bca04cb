"""Our stub against parents of the eras newer than r24.10, played by the harness engine.

No Triton newer than 2.51 exists in CI, so the harness plays the parent: each era runs in a
process of its own (tests/era_parent_run.py) that selects the era before it imports the codecs,
exactly as our stub does, and then speaks only that era's wire. The core cases of each era:

- r25.02 (C1): responses carry parameters, both ways: a model's ``InferenceResponse(...,
  parameters=)`` reaches the parent, ``.parameters()`` reads them, a BLS response's parameters
  (the parent's compact JSON) reach the model, and bad values are refused with the C++ texts;
- r25.04 (C2): ``ResponseIterator.cancel()`` sends CancelBLSInferRequest; the parent cancels the
  BLS request, the target model sees ``is_cancelled()`` and ends the stream early;
- r26.03 (C3): the control-block flag says the model has ``is_ready``; UserModelReadinessRequest
  on parent_to_stub_mq is answered with the model's verdict, its exception text, the C++ text for
  a non-bool, and a coroutine's result.

r24.10 runs the same cases as the control: no parameters, no cancel, no readiness command.
The r25.08 launch rule (the first message within 10 s) is checked on every launch here: the
engine's start-up waits at most that long for it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "era_parent_run.py"
MODELS = HERE / "era_models"


def run_era(era: str) -> dict:
    env = dict(os.environ)
    env.pop("TRITONSTUB_PROTOCOL", None)
    proc = subprocess.run([sys.executable, str(RUNNER), era, str(MODELS)], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=240)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, (proc.returncode, proc.stdout[-3000:],
                                            proc.stderr[-3000:])
    return json.loads(lines[-1][len("RESULT "):])


OUT = [2.0, 3.5, -2.0, 42.0]
BAD_PARAMETERS = ("Expect parameters values to have type bool/int/str, found type "
                  "<class 'float'>")


@pytest.fixture(scope="module", params=["r24.10", "r25.02", "r25.04", "r26.03"])
def result(request):
    return run_era(request.param)


def test_the_harness_spoke_the_era_it_selected(result):
    assert result["era"] in ("r24.10", "r25.02", "r25.04", "r26.03")
    # Every model served (the engine fails a stub whose first message takes over
    # FIRST_MESSAGE_TIMEOUT_S). The r25.08 parent's 10 s first-message rule is a time, so it
    # is measured (benchmarks/harness_latency.py: launch to first response), not asserted: a
    # bound on this load's wall time failed at load average 20.
    assert result["plain"]["outputs"]


def test_plain_responses_work_in_every_era(result):
    assert result["plain"] == {"outputs": {"OUT": OUT}, "parameters": {}}
    assert result["stream_all"]["outputs"] == {"COUNT": [3]}


def test_response_parameters_from_r25_02(result):
    if result["era"] == "r24.10":
        # the r24.10 model API has no parameters= (pybind11's text, as the C++ stub of r24.10)
        assert result["good"]["error"][0] == "INTERNAL"
        assert "incompatible constructor arguments" in result["good"]["error"][1]
        assert result["stream_all"]["parameters"] == {}
        return
    assert result["good"] == {"outputs": {"OUT": OUT},
                              "parameters": {"a": 1, "b": "x", "c": True}}
    assert result["bad"]["error"][0] == "INTERNAL"
    assert BAD_PARAMETERS in result["bad"]["error"][1]
    # the parent's BLS response parameters reach the model as the parent wrote them
    assert result["stream_all"]["parameters"]["first"] == '{"i":0}'


def test_bls_cancel_from_r25_04(result):
    cancelled = result["stream_cancel"]
    if result["era"] in ("r24.10", "r25.02"):
        # no cancel() before r25.04: the stream runs to its end
        assert cancelled["outputs"] == {"COUNT": [40]}
        if result["era"] == "r25.02":
            assert cancelled["parameters"]["raised"].startswith(
                "'c_python_backend_utils.ResponseIterator' object has no attr")
        return
    assert cancelled["parameters"]["raised"] == ""
    assert cancelled["parameters"]["error"] == "cancelled"
    assert cancelled["outputs"]["COUNT"][0] < 40


def test_user_model_readiness_from_r26_03(result):
    r = result["readiness"]
    if result["era"] != "r26.03":
        # no flag, no command: the parent takes the instance as ready
        assert all(v == [True, None] for v in r.values())
        return
    assert r["1"] == [True, None]
    assert r["0"] == [False, None]
    assert r["-1"][0] is False and r["-1"][1].startswith("ValueError: not today\n\nAt:\n")
    assert r["-2"] == [False, "is_ready() must return a boolean value"]
    assert r["2"] == [True, None]


def test_engine_is_ready_asks_the_model_from_r26_03(result):
    """Engine.is_ready plays InferenceServer::ModelIsReady: from r26.03 the model's is_ready()
    decides, and the reason it is not ready goes to the verbose log (server.cc)."""
    ready = result["engine_ready"]
    if result["era"] != "r26.03":
        assert all(ready.values()) and result["not_ready_lines"] == []
        return
    assert ready == {"1": True, "0": False, "-1": False, "-2": False, "2": True}
    reasons = [line.split("] ", 1)[1] for line in result["not_ready_lines"]]
    assert all(" server.cc:479] " in line for line in result["not_ready_lines"])
    assert reasons[0] == ('"Model \'ready\' version 1 is not ready: Model \'ready_0_0\' is not ready '
                          '(user-defined check failed)."')
    assert reasons[1].startswith('"Model \'ready\' version 1 is not ready: ValueError: not today')
    assert reasons[2] == ('"Model \'ready\' version 1 is not ready: is_ready() must return a '
                          'boolean value"')
    assert len(reasons) == 3


def test_the_first_message_comes_within_the_r25_08_limit_and_the_probe_exits_1(tmp_path):
    """r25.08+ parents give the stub 10 s for its first message ("health thread started");
    parents up to r25.07 run the stub without arguments first and want exit status 1."""
    import time
    from shm_helpers import unique_name
    from tritonstub.harness.parent import ParentSide
    from tritonstub.stub.install import write_launcher
    model = tmp_path / "m"
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.py").write_text("class TritonPythonModel:\n    pass\n")
    stub = write_launcher(str(model / "triton_python_backend_stub"))
    t0 = time.monotonic()
    probe = subprocess.run([stub], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=30)
    assert probe.returncode == 1 and time.monotonic() - t0 < 10
    ps = ParentSide.setup(name=unique_name("first_"))
    proc = None
    try:
        argv = ps.stub_argv(stub, str(model / "1" / "model.py"), os.path.dirname(sys.executable),
                            "m_0_0")
        t0 = time.monotonic()
        proc = ps.launch(argv, env=dict(os.environ, TRITONSTUB_PROTOCOL="r26.03"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        first = ps.queues["parent_message_queue"].pop(10.0)
        assert first, "no first message within 10 s"
        assert time.monotonic() - t0 < 10
    finally:
        if proc is not None:
            proc.kill()
            proc.wait(10)
        ps.close(unlink=True)
