"""The differential teardown fails when tritonserver crashes, even if nothing is left behind.

Both stubs clean up after a dead parent, so a crash of tritonserver caused by a stub at unload
leaves no process and no region: only the server's exit status and its log show it. A module
whose ``_ours`` stub is wrapped by :func:`crashing_stub.install_crashing_stub` (tritonserver gets
SIGSEGV or SIGABRT while it unloads that model) must get a problem from :meth:`DiffServers.stop`,
the list the ``diff_servers`` fixture fails on.
"""
from __future__ import annotations

import signal

import pytest

from crashing_stub import install_crashing_stub
from difftools import DiffModel, DiffServers

#: Items of the conformance checklist these cases cover (conformance/CASES.md).
COVERS = ["server crash detection"]


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGABRT])
@pytest.mark.server_specific("checks the suite's own detection of a tritonserver crash")
def test_a_server_crash_at_unload_fails_the_teardown(triton_reference, tmp_path, sig):
    servers = DiffServers([DiffModel("add_sub")], triton_reference, tmp_path)
    install_crashing_stub(servers.main_repo / "add_sub_ours", sig)
    try:
        servers.start()
        assert servers.loaded("add_sub", "ours").name == "add_sub_ours"
    finally:
        problems = servers.stop()
    server = servers.main
    # tritonserver's handler logs the signal, then dies of it.
    assert server.returncode == -sig, (server.returncode, server.log_tail())
    report = server.crash_report().splitlines()
    assert report[:2] == [f"tritonserver died of {signal.Signals(sig).name} (exit status {-sig})",
                          "tritonserver logged a fatal error:"], report
    assert report[2].startswith("  ") and f"Signal ({int(sig)}) received." in report[2], report
    # Nothing was left behind (the stubs cleaned up after their parent): only the crash check fails it.
    assert server.orphans == [] and server.leaked_regions == []
    assert len(problems) == 1 and problems[0].startswith("the main server: tritonserver pid "), problems
    assert server.crash_report() in problems[0]


@pytest.mark.server_specific("checks the suite's own detection of a tritonserver crash")
def test_a_clean_stop_has_no_problems(triton_reference, tmp_path):
    """The same module without the wrapper: the check is not one that always fires."""
    servers = DiffServers([DiffModel("add_sub")], triton_reference, tmp_path)
    try:
        servers.start()
        assert servers.loaded("add_sub", "ours").name == "add_sub_ours"
    finally:
        problems = servers.stop()
    assert problems == []
    assert servers.main.returncode == 0 and servers.main.crash_report() == ""
