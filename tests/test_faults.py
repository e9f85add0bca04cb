"""Faults under the real Triton 2.51 (tritonstub.testing.faults): a stub killed or stopped in the
middle of a request (a stream, an execute, an initialize, a BLS call, a finalize), and a killed
server.

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
CORE = ("stream", "execute", "async-execute", "initialize")
CASES = [("stub-sigkill", phase) for phase in CORE] + [
    ("stub-sigstop", phase) for phase in CORE if phase != "initialize"]


def test_a_partial_run_replaces_only_its_rows_of_the_table():
    old = ["| stub-sigkill | stream | cpp | a | yes | yes | u | | 1 | nothing |",
           "| stub-sigkill | bls | ours | stale | yes | yes | u | | 1 | nothing | n |",
           "| server-sigkill | stream | ours | b | NO | | | 0.3 s | -9 | nothing |"]
    new = ["| stub-sigkill | bls | cpp | c | yes | yes | u | | 1 | nothing | n1 |",
           "| stub-sigkill | bls | ours | d | yes | yes | u | | 1 | nothing | n2 |"]
    rows = faults.merge_rows(old, new)
    width = faults.HEADER.splitlines()[0].count("|")
    assert [r.split("|")[4].strip() for r in rows] == ["a", "c", "d", "b"]
    assert all(r.count("|") == width for r in rows), rows


@pytest.mark.parametrize("fault, phase", CASES)
def test_a_dead_or_stopped_stub_fails_its_request_and_the_server_keeps_serving(fault, phase, triton_reference, tmp_path):
    cpp = faults.run("cpp", fault, phase, triton_reference, tmp_path / "cpp")
    ours = faults.run("ours", fault, phase, triton_reference, tmp_path / "ours")
    # The reference answers the client; so must we, as fast (both are bounded by the parent's
    # health check, about one second).
    assert cpp.client_s is not None, f"the C++ stub's client got no answer: {cpp}"
    assert ours.client_s is not None, f"our client got no answer within {faults.CLIENT_BOUND_S} s: {ours}"
    assert "is not healthy" in ours.error, ours
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


@pytest.mark.parametrize("fault", ["stub-sigkill", "stub-sigstop"])
def test_a_stub_killed_or_stopped_in_a_bls_call_fails_its_request_and_the_target_still_serves(fault, triton_reference, tmp_path):
    # The victim's stub waits in exec() for the reply of 'target', which sleeps until the runner
    # releases it after the fault.
    cpp = faults.run("cpp", fault, "bls", triton_reference, tmp_path / "cpp")
    ours = faults.run("ours", fault, "bls", triton_reference, tmp_path / "ours")
    for o in (cpp, ours):
        assert o.client_s is not None and "is not healthy" in o.error, o
        assert o.server_alive and o.bystander_ok and not o.crash, o
        # The target's request ends once released, and the target serves a new request.
        assert o.notes == ["BLS target: its request returned after the release, then served"], o
    assert ours.client_s < 5.0, ours
    if fault == "stub-sigkill":
        # Neither victim unloads: the parent's BLS thread answers the dead stub's exec() and then
        # waits for the stub's notify for ever (docs/reliability.md). Our helper keeps the
        # request's factory (so that Triton does not unmap the region under that thread) and
        # unlinks the region once the server has exited: nothing is left behind; the C++ stub's
        # region stays in /dev/shm.
        assert ours.unloaded_s is None and cpp.unloaded_s is None, (ours, cpp)
        assert ours.exit_status == 1 and ours.leftovers == [], ours


@pytest.mark.parametrize("fault", ["stub-sigkill", "stub-sigstop"])
def test_a_stub_killed_or_stopped_in_finalize_lets_the_unload_finish(fault, triton_reference, tmp_path):
    # The runner unloads the victim; the fault hits while its finalize() waits in model code.
    # The parent has its FinalizeResponse by then (both stubs answer before they call
    # finalize()) and waits for the stub process to exit.
    cpp = faults.run("cpp", fault, "finalize", triton_reference, tmp_path / "cpp")
    ours = faults.run("ours", fault, "finalize", triton_reference, tmp_path / "ours")
    for o in (cpp, ours):
        assert o.client == "the unload succeeded", o
        assert o.server_alive and o.bystander_ok and not o.crash, o
        if fault == "stub-sigkill":
            # A dead stub ends the parent's wait: the unload finishes, the model loads again.
            assert o.unloaded_s is not None and o.reloaded, o
        else:
            # A stopped one does not exit, so the unload waits (with either stub) until it is
            # continued and its finalize() returns; then the model loads again.
            assert o.unloaded_s is None and o.reloaded, o
            assert o.notes and o.notes[0].startswith("after SIGCONT: unloaded"), o
    assert ours.exit_status == 0 and ours.leftovers == [], ours


def test_a_stub_killed_in_auto_complete_fails_the_load_instead_of_hanging_it(triton_reference, tmp_path):
    # python_backend waits for the auto-complete answer with no health check: with the C++ stub
    # the load never returns (nor does the server's exit on SIGTERM). Our heartbeat helper
    # answers for the dead stub with an error: the load fails, and loads again.
    cpp = faults.run("cpp", "stub-sigkill", "auto-complete", triton_reference, tmp_path / "cpp")
    ours = faults.run("ours", "stub-sigkill", "auto-complete", triton_reference, tmp_path / "ours")
    assert cpp.client_s is None and cpp.server_alive and not cpp.crash, cpp
    assert ours.client_s is not None and ours.client_s < 5.0, ours
    assert "died while the model's auto_complete_config() ran" in ours.error, ours
    assert ours.server_alive and ours.bystander_ok and ours.reloaded and not ours.crash, ours
    assert ours.exit_status == 0 and ours.leftovers == [], ours


@pytest.mark.parametrize("phase", ["stream", "execute"])
def test_a_stopped_server_gets_its_answer_when_continued(phase, triton_reference, tmp_path):
    # tritonserver is SIGSTOPped for 5 s while the victim waits in model code; meanwhile the
    # model is released, so its stub sends its answer to a stopped parent. A stopped parent is
    # alive: no stub may take it for dead and leave, and once continued the client gets the
    # answer, and everything unloads and exits as usual.
    cpp = faults.run("cpp", "server-sigstop", phase, triton_reference, tmp_path / "cpp")
    ours = faults.run("ours", "server-sigstop", phase, triton_reference, tmp_path / "ours")
    answer = f"the answer [{faults.STREAMED if phase == 'stream' else 1}]"
    for o in (cpp, ours):
        assert o.notes[0] == "stopped 5 s: every stub stayed", o
        assert o.client == answer and o.client_s < 5.0, o
        assert o.server_alive and o.bystander_ok and not o.crash, o
    assert ours.unloaded_s is not None and ours.reloaded, ours
    assert ours.exit_status == 0 and ours.leftovers == [], ours


@pytest.mark.parametrize("fault", faults.EXHAUSTION_FAULTS)
def test_a_model_that_takes_all_its_memory_or_descriptors_does_not_take_the_server_down(fault, triton_reference, tmp_path):
    # The victim's execute lowers its own RLIMIT_AS (RLIMIT_NOFILE), takes everything it may,
    # keeps it and returns. Whatever the stub can still do, the client must get an answer or an
    # error (no hang), the server must keep serving, and the model must unload (the stub exits,
    # which gives everything back), load again and leave nothing behind.
    cpp = faults.run("cpp", fault, "execute", triton_reference, tmp_path / "cpp")
    ours = faults.run("ours", fault, "execute", triton_reference, tmp_path / "ours")
    assert ours.client_s is not None and ours.client_s < 5.0, ours
    assert ours.server_alive and ours.bystander_ok and not ours.crash, ours
    assert ours.unloaded_s is not None and ours.reloaded, ours
    assert ours.exit_status == 0 and ours.leftovers == [], ours
    # Our stub stays alive and answers both requests (in every run so far with the answer
    # itself; an error that names what ran out would do as well: where the stub's own last
    # allocations land is a matter of the allocator's state).
    assert ours.notes[0].startswith("the next request: "), ours
    for said in (ours.client, ours.notes[0]):
        assert "not healthy" not in said and "no answer" not in said, ours
    # The C++ stub fails the request (its first execute imports asyncio, which needs memory and
    # descriptors) and, out of memory, dies of std::bad_alloc; the server itself stays up.
    assert cpp.server_alive and cpp.bystander_ok, cpp
