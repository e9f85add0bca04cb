"""Where our stub differs from the C++ one on purpose: the C++ stub is broken there.

The cases that are safe on a shared server are data (conformance/cases/deliberate.json, each
difference declared with its reason); these are the ones that hang the C++ side.

Each test asserts the C++ behaviour on ``[cpp]`` (so a change in the reference is noticed) and our
correct behaviour on ``[ours]``; nothing is compared. The C++ cases that leave the server unable
to stop cleanly (a request that never gets a response, a load that never ends, a stub that spins)
run on a quarantine server (see difftools.DiffModel.quarantine_cpp); their tests come last in
this file where they burn CPU.
"""
from __future__ import annotations

import numpy as np
import pytest

from difftools import DiffModel

#: Items of the conformance checklist these cases cover (conformance/CASES.md).
COVERS = ["lifecycle: missing model.py", "DLPack", "response sender"]

DIFF_MODELS = [
    DiffModel("return_none", quarantine_cpp=True),
    DiffModel("nomodel", quarantine_cpp=True),
    DiffModel("dlpack_numpy", quarantine_cpp=True),
]

IN = np.array([1.5, -2.0], dtype=np.float32)
#: How long the C++ side is given where it never answers.
CPP_HANG_S = 3.0


def test_execute_returning_none(pair):
    """C++: a non-decoupled execute that returns None sends no response at all; the client waits
    until its own timeout and the request never completes. Ours answers with an error response
    that points at the response sender (the decoupled API)."""
    if pair.is_cpp:
        out = pair.run("return_none", lambda t: t.infer({"IN": IN}, timeout_s=CPP_HANG_S), compare=False)
        assert out.kind == "timeout", out.describe()
    else:
        out = pair.run("return_none", lambda t: t.infer({"IN": IN}), compare=False).require_error()
        assert out.error == (
            "Python model 'return_none_<stub>_0' returned no response for a request and did not send one through "
            "the request's response sender: a non-decoupled model must return an InferenceResponse for every "
            "request (or send one with request.get_response_sender().send(response, "
            "flags=TRITONSERVER_RESPONSE_COMPLETE_FINAL)). tritonstub reports this instead of leaving the client "
            "waiting."), out.error


def test_model_py_missing(pair):
    """C++: the stub exits at start ("Python model file not found") before its handshake, and the
    server waits for it forever: the load never ends. Ours fails the load with that error.

    On the harness column, the documented differences (docs/harness.md): under the C++ stub the
    harness reports the stub's death instead of waiting forever; under ours the loader's report
    has one more line, the TRITONSTUB_PROTOCOL setting the harness gives our stub."""
    if pair.on_harness:
        out = pair.servers.load_outcome("nomodel", pair.stub, column="harness").require_error()
        if pair.is_cpp:
            assert out.error == ("load failed for model 'nomodel_<stub>': version 1 is at UNAVAILABLE state: "
                                 "Internal: Stub process 'nomodel_<stub>' was killed by signal SIGSEGV before "
                                 "it started.;\n"), out.error
        else:
            triton = pair.servers.load_outcome("nomodel", "ours").require_error()
            setting = "  setting: TRITONSTUB_PROTOCOL=r24.10 (from environment)\n"
            assert setting in out.error and out.error.replace(setting, "") == triton.error
        return
    if pair.is_cpp:
        out = pair.load("nomodel", compare=False, timeout_s=CPP_HANG_S)
        assert out.kind == "timeout", out.describe()
        status = pair.servers.target("nomodel", "cpp").index_entry()
        assert status["state"] == "LOADING"
        launches = pair.servers.target("nomodel", "cpp").server.log_text()
        assert "Failed to preinitialize Python stub: Python model file not found in '" in launches
    else:
        out = pair.load("nomodel", compare=False).require_error()
        assert out.error.startswith("load failed for model 'nomodel_<stub>': version 1 is at UNAVAILABLE state: ")
        assert "<repo>/nomodel_<stub>/1/model.py" in out.error


def test_tensor_from_dlpack_of_a_numpy_array(pair):
    """C++: Tensor.from_dlpack(name, numpy_array) renames the capsule wrongly and loops on
    "PyCapsule_GetPointer called with incorrect name" until the parent finds it "not healthy"; the
    request gets that error, or none before the client gives up. Ours builds the tensor."""
    if pair.is_cpp:
        case = lambda t: t.infer({"IN": IN}, timeout_s=CPP_HANG_S)  # noqa: E731
        # which of the two comes first depends on timing, so the columns are checked each alone
        for out in (pair.columns("dlpack_numpy", case) if pair.on_harness else
                    (pair.run("dlpack_numpy", case, compare=False),)):
            assert out.kind == "timeout" or out.error == "Stub process 'dlpack_numpy_<stub>_0' is not healthy.", \
                out.describe()
    else:
        out = pair.run("dlpack_numpy", lambda t: t.infer({"IN": IN}), compare=False).require_ok()
        np.testing.assert_array_equal(out.array("OUT"), IN * 2)
