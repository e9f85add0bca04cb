"""Faults under the real Triton 2.51 (tritonstub.testing.faults): a stub killed or stopped in the
middle of a request, and a killed server.

Ours must answer the client within a bound wherever the C++ stub does, keep the server and its
other models serving, and leave nothing behind after a killed server. (The process-group kill of
all of our processes is in the matrix of docs/reliability.md, not here: it can make Triton abort,
as a C++ stub killed inside a mutex can, and a test must not fail by chance.)
"""
from __future__ import annotations

import pytest

from tritonstub.testing import faults


# A stub stopped inside initialize gets no answer from either stub's server (the load waits, and
# tritonserver cannot exit on SIGTERM): that row is in the matrix, not here.
CASES = [("stub-sigkill", phase) for phase in faults.PHASES] + [
    ("stub-sigstop", phase) for phase in faults.PHASES if phase != "initialize"]


@pytest.mark.parametrize("fault, phase", CASES)
def test_a_dead_or_stopped_stub_fails_its_request_and_the_server_keeps_serving(fault, phase, triton_reference, tmp_path):
    cpp = faults.run("cpp", fault, phase, triton_reference, tmp_path / "cpp")
    ours = faults.run("ours", fault, phase, triton_reference, tmp_path / "ours")
    # The reference answers the client; so must we, as fast (both are bounded by the parent's
    # health check, about one second).
    assert cpp.client_s is not None, f"the C++ stub's client got no answer: {cpp}"
    assert ours.client_s is not None, f"our client got no answer within {faults.CLIENT_BOUND_S} s: {ours}"
    assert "is not healthy" in ours.client, ours
    assert ours.client_s < 5.0, ours
    assert ours.server_alive and ours.bystander_ok, ours
    assert not ours.crash and not cpp.crash, (ours, cpp)
    if phase == "initialize":
        # Both stubs: the load fails, the model loads again, nothing is left.
        assert cpp.reloaded and ours.reloaded, (cpp, ours)
        assert ours.exit_status == 0 and ours.leftovers == [], ours
    elif fault == "stub-sigkill":
        # Our heartbeat helper outlives the stub and releases the response factories it held
        # (tritonstub/stub/salvage.py): the model unloads, loads again, and nothing is left.
        # The C++ stub's model cannot unload (its factories leak in the parent).
        assert ours.unloaded_s is not None and ours.reloaded, ours
        assert ours.exit_status == 0 and ours.leftovers == [], ours


def test_our_stub_is_gone_at_once_when_the_server_is_killed(triton_reference, tmp_path):
    ours = faults.run("ours", "server-sigkill", "stream", triton_reference, tmp_path)
    assert ours.stub_gone_s is not None and ours.stub_gone_s < 2.0, ours
    assert ours.exit_status == -9
    assert ours.leftovers == [], ours
