"""The harness engine (tritonstub.harness.Engine) driving real stub processes, ours and the C++
one, with no tritonserver: outputs, streams, BLS, errors in each phase, logs, metrics, model
control, cancellation, a killed and a stopped stub. Every test runs on both stubs; the cleanup
check at the end of each module's engine fails the test run if a stub process or a region of the
harness is left."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from tritonstub.harness import Engine, InferError, InferRequest
from tritonstub.harness.instance import REGION_PREFIX

MODELS = Path(__file__).parent / "harness_models"
STUBS = ["ours", "cpp"]


def _regions():
    return sorted(n for n in os.listdir("/dev/shm") if n.startswith(REGION_PREFIX))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module", params=STUBS)
def engine(request, tmp_path_factory):
    if request.param == "cpp":
        request.getfixturevalue("triton_reference")
    pid_file = tmp_path_factory.mktemp("sleeper") / "pid"
    before = set(_regions())
    eng = Engine(MODELS, stub=request.param, log_stream=None, log_verbose=1,
                 env={"SLEEPER_PID_FILE": str(pid_file)})
    eng.pid_file = pid_file
    eng.start()
    pids = [s.proc.pid for m in eng.models.values() for s in m.instances]
    try:
        yield eng
    finally:
        eng.close()
        left = [p for p in pids if _alive(p)]
        regions = set(_regions()) - before
        assert not left and not regions, f"left behind: processes {left}, regions {regions}"


def _one(engine, model, inputs, **kw):
    responses = engine.infer(InferRequest.make(model, inputs, **kw), timeout_s=60)
    assert len(responses) == 1 and responses[0].final
    return responses[0]


def test_models_load_and_failures_have_tritons_reason(engine):
    states = {e.name: (e.state, e.reason) for e in engine.index()}
    assert {n for n, (s, _) in states.items() if s == "READY"} == {
        "echo", "stream", "caller", "fails", "sleeper", "control", "counter"}
    state, reason = states["badinit"]
    assert state == "UNAVAILABLE"
    assert reason.startswith("Internal: RuntimeError: badinit refuses to start\n\nAt:\n")
    assert reason.rstrip().endswith("/badinit/1/model.py(3): initialize")


def test_what_a_model_prints_reaches_the_log_as_raw_lines(engine):
    raw = [r.message for r in engine.log.records if not r.level]
    assert "echo stdout from echo_0" in raw
    assert "echo stderr from echo_0" in raw


def test_initialize_args_and_config(engine):
    resp = _one(engine, "echo", {"IN": np.zeros((1, 2), np.float32)})
    info = json.loads(resp["INFO"][0, 0])
    assert info["instance"] == "echo_0"
    config = engine.model("echo").config
    assert config["max_batch_size"] == 8
    assert config["instance_group"][0]["name"] == "echo"
    assert engine.model("echo").metadata()["inputs"] == [
        {"name": "IN", "datatype": "FP32", "shape": [-1, -1]}]


def test_request_fields_reach_the_model(engine):
    x = np.array([[1.0, 2.0, 3.0]], np.float32)
    resp = _one(engine, "echo", {"IN": x}, request_id="r-ü", correlation_id="seq-1", flags=1,
                parameters={"k": "v", "n": 3, "b": True}, requested_outputs=["INFO", "OUT"])
    np.testing.assert_array_equal(resp["OUT"], x)
    info = json.loads(resp["INFO"][0, 0])
    assert info["id"] == "r-ü" and info["correlation_id"] == "seq-1" and info["flags"] == 1
    assert info["parameters"] == {"k": "v", "n": 3, "b": True}
    assert info["outputs"] == ["INFO", "OUT"]


def test_several_requests_in_one_execute(engine):
    requests = [InferRequest.make("echo", {"IN": np.full((1, 2), i, np.float32)}, request_id=str(i))
                for i in range(3)]
    results = engine.execute(requests, timeout_s=60)
    for i, [resp] in enumerate(results):
        np.testing.assert_array_equal(resp["OUT"], np.full((1, 2), i, np.float32))
        info = json.loads(resp["INFO"][0, 0])
        assert info["batch"] == 3 and info["id"] == str(i)


def test_dynamic_batching_gathers_queued_requests(engine):
    calls = [engine.submit(InferRequest.make("echo", {"IN": np.full((2, 1), i, np.float32)}))
             for i in range(4)]
    assert all(c.wait(60) for c in calls)
    batches = [json.loads(c.responses[0]["INFO"][0, 0])["batch"] for c in calls]
    assert max(batches) > 1, batches          # 4 requests of 2 within 0.2 s: batched (<= 8)


def test_a_finished_request_is_freed_without_the_garbage_collector(engine):
    """A request's inputs and outputs go when its last reference does: `tritonstub serve` held
    those of every finished request until a full garbage collection (a reference cycle through
    the pending request's callback), 1-2 GB after a round of 16 clients with 16 MiB tensors."""
    import gc
    import weakref
    gc.collect()
    gc.disable()
    try:
        for name, inputs in (("echo", {"IN": np.full((1, 2), 7, np.float32)}),
                             ("stream", {"N": np.array([2], np.int32)})):
            call = engine.submit(InferRequest.make(name, inputs))
            assert call.wait(60) and call.responses[-1].final
            refs = [weakref.ref(call), weakref.ref(call.request), weakref.ref(call.responses[0])]
            del call
            deadline = time.monotonic() + 20
            while any(r() is not None for r in refs) and time.monotonic() < deadline:
                time.sleep(0.05)             # the execute's end, in the model's worker thread
            assert [r() is None for r in refs] == [True, True, True], name
    finally:
        gc.enable()


def test_decoupled_stream(engine):
    got = []
    call = engine.submit(InferRequest.make("stream", {"N": np.array([3], np.int32)}), got.append)
    assert call.wait(60)
    assert [int(r["OUT"][0]) for r in got[:-1]] == [3, 2, 1]
    assert [r.final for r in got] == [False, False, False, True]
    assert got[-1].empty_final


def test_bls_exec_stream_and_errors(engine):
    def run(mode):
        return [v.decode() for v in _one(engine, "caller", {"MODE": np.array([mode.encode()], object)})["OUT"]]
    assert run("echo") == ["1.5", "2.5"]
    assert run("stream") == ["3", "2", "1", "final"]
    assert run("nosuch") == ["error: Model nosuch - Error when running inference: Failed for "
                             "execute the inference request. Model 'nosuch' is not ready."]
    assert run("stream")[-1] == "final"


def test_execute_errors(engine):
    assert _one(engine, "fails", {"X": np.array([2.0], np.float32)})["Y"][0] == 0.5
    resp = _one(engine, "fails", {"X": np.array([0.0], np.float32)})
    assert (resp.error.code, resp.error.message) == ("INVALID_ARG", "zero is not allowed")
    resp = _one(engine, "fails", {"X": np.array([-1.0], np.float32)})
    assert resp.error.code == "INTERNAL"
    assert resp.error.message.startswith(
        "Failed to process the request(s) for model 'fails_0', message: ValueError: negative input -1.0")


@pytest.mark.parametrize("inputs,text", [
    ({"X": np.array([1], np.int32)},
     "[request id: <id_unknown>] inference input 'X' data-type is 'INT32', but model 'fails' expects 'FP32'"),
    ({"X": np.array([1, 2], np.float32)},
     "[request id: <id_unknown>] unexpected shape for input 'X' for model 'fails'. Expected [1], got [2]. "),
    ({"Z": np.array([1], np.float32)}, "unexpected inference input 'Z' for model 'fails'"),
    ({}, "[request id: <id_unknown>] expected 1 inputs but got 0 inputs for model 'fails'. Got input(s) [], "
         "but missing required input(s) ['X']. Please provide all required input(s)."),
])
def test_request_validation_texts(engine, inputs, text):
    with pytest.raises(InferError) as e:
        engine.infer(InferRequest.make("fails", inputs))
    assert (e.value.code, e.value.message) == ("INVALID_ARG", text)


def test_unknown_and_unavailable_models(engine):
    with pytest.raises(InferError) as e:
        engine.infer(InferRequest.make("nosuch", {}))
    assert (e.value.code, e.value.message) == ("NOT_FOUND", "Request for unknown model: 'nosuch' is not found")
    # A model that failed to load: tritonserver 2.51 answers NOT_FOUND too (seen over gRPC and HTTP).
    with pytest.raises(InferError) as e:
        engine.infer(InferRequest.make("badinit", {"X": np.array([1.0], np.float32)}))
    assert (e.value.code, e.value.message) == (
        "NOT_FOUND", "Request for unknown model: 'badinit' has no available versions")


def test_logs_in_tritons_format_and_metrics(engine):
    before = len(engine.log.records)
    resp = _one(engine, "counter", {"X": np.array([2.0], np.float32)})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        mine = [r for r in engine.log.records[before:] if r.message.startswith("counter")]
        if len(mine) == 4:
            break
        time.sleep(0.05)
    assert [(r.level, r.filename, r.message) for r in mine] == [
        ("I", "model.py", 'counter info "quoted"'), ("W", "model.py", "counter warn"),
        ("E", "model.py", "counter error"), ("I", "model.py", "counter verbose")]
    line = 1 + (MODELS / "counter/1/model.py").read_text().splitlines().index(
        '            log.log_info("counter info \\"quoted\\"")')
    assert mine[0].text.endswith(f' model.py:{line}] "counter info \\"quoted\\""')
    count = resp["Y"][0] / 2.0
    assert f'harness_requests_total{{model="counter"}} {int(count)}' in engine.metrics_text()


def test_model_control_from_a_model(engine):
    def op(text):
        return _one(engine, "control", {"OP": np.array([text.encode()], object)})["OUT"][0].decode()
    assert op("ready:echo") == "True"
    assert op("ready:nosuch") == "False"
    reason = op("load:badinit")
    assert reason.startswith("TritonModelException: Failed to load model: Failed to process the request "
                             "for model 'control_0', message: load failed for model 'badinit': version 1 "
                             "is at UNAVAILABLE state: Internal: RuntimeError: badinit refuses to start")
    assert op("load:echo") == "loaded" and engine.is_ready("echo")


def test_cancellation_reaches_is_cancelled(engine):
    call = engine.submit(InferRequest.make("sleeper", {"S": np.array([30.0], np.float32)}))
    time.sleep(0.5)
    call.cancel()
    assert call.wait(20)
    assert (call.responses[0].error.code, call.responses[0].error.message) == (
        "CANCELLED", "cancelled by the client")


def test_zz_killed_stub_is_a_clear_error_not_a_hang(engine):
    engine.pid_file.unlink(missing_ok=True)
    call = engine.submit(InferRequest.make("sleeper", {"S": np.array([30.0], np.float32)}))
    deadline = time.monotonic() + 30
    while not engine.pid_file.exists() or not engine.pid_file.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(int(engine.pid_file.read_text()), signal.SIGKILL)
    assert call.wait(15)
    assert call.responses[0].error.message == "Stub process 'sleeper_0' is not healthy."
    # Later requests fail the same way (r24.10 does not restart a stub).
    [later] = engine.infer(InferRequest.make("sleeper", {"S": np.array([0.0], np.float32)}), timeout_s=15)
    assert later.error.message == "Stub process 'sleeper_0' is not healthy."
