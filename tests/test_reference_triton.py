"""The reference Triton and the real-tritonserver fixture, proven with Triton's own C++ stub.

These tests hold the test infrastructure to account: if they pass, a differential test that swaps
the C++ stub for ours is comparing against a correctly started, correctly cleaned-up real server.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from tritonstub.testing.reference import EXPECTED_SERVER_VERSION, STUB_NAME
from tritonstub.testing.procs import process_alive
from tritonstub.testing.tritonserver import (
    REGION_PREFIX,
    SHM_DIR,
    ModelSpec,
    TritonServer,
    TritonServerError,
    crash_report,
    processes_naming,
)

ROOT = Path(__file__).resolve().parents[1]
#: A model that answers nothing; enough to have an instance stub.
ECHO = textwrap.dedent("""
    class TritonPythonModel:
        def execute(self, requests):
            return []
    """)
IN0 = np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32)
IN1 = np.array([10.0, -20.0, 0.5, 4.0], dtype=np.float32)


def _add_sub_inputs(client_module):
    inputs = []
    for name, value in (("INPUT0", IN0), ("INPUT1", IN1)):
        tensor = client_module.InferInput(name, list(value.shape), "FP32")
        tensor.set_data_from_numpy(value)
        inputs.append(tensor)
    return inputs


def _assert_gone(regions):
    for region in regions:
        assert not (SHM_DIR / region).exists(), f"{region} still in {SHM_DIR}"
        assert processes_naming(region) == [], f"a process still names {region}"


def _subprocess_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


@pytest.fixture
def add_sub_repo(triton_server, example_model_repository):
    """A copy of the bundled add_sub example, set to run with the C++ stub (per-model override)."""
    return triton_server.repository({"add_sub": example_model_repository / "add_sub"}, stub="cpp")


def test_reference_is_provisioned(triton_reference):
    assert os.access(triton_reference.tritonserver, os.X_OK)
    assert triton_reference.tpbu.is_file()
    assert triton_reference.installed_stub.read_bytes() == triton_reference.cpp_stub.read_bytes()
    # The python backend's probe: the stub run without arguments must exit with status 1.
    probe = subprocess.run([str(triton_reference.cpp_stub)], capture_output=True, text=True,
                           env=triton_reference.env(), timeout=30)
    assert probe.returncode == 1
    assert "Expected 9 arguments" in probe.stderr


def test_cpp_stub_serves_add_sub_over_http_and_grpc(triton_server, add_sub_repo):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    server = triton_server(add_sub_repo, log_verbose=1, models=["add_sub"])
    assert server.metadata()["version"] == EXPECTED_SERVER_VERSION
    assert server.model_status("add_sub")["state"] == "READY"

    http_result = server.http_client().infer("add_sub", _add_sub_inputs(httpclient))
    np.testing.assert_array_equal(http_result.as_numpy("OUTPUT0"), IN0 + IN1)
    np.testing.assert_array_equal(http_result.as_numpy("OUTPUT1"), IN0 - IN1)
    grpc_result = server.grpc_client().infer("add_sub", _add_sub_inputs(grpcclient))
    np.testing.assert_array_equal(grpc_result.as_numpy("OUTPUT0"), IN0 + IN1)
    np.testing.assert_array_equal(grpc_result.as_numpy("OUTPUT1"), IN0 - IN1)

    # The python backend launched the per-model C++ stub: once to auto-complete, once per instance.
    launches = server.stub_launches()
    assert [argv[8] for argv in launches] == ["add_sub", "add_sub_0_0"]
    for argv in launches:
        assert argv[0] == str(add_sub_repo / "add_sub" / STUB_NAME)
        assert argv[1] == str(add_sub_repo / "add_sub" / "1" / "model.py")
        assert argv[2].startswith(server.region_prefix) and server.region_prefix.startswith(REGION_PREFIX)
        assert argv[5] == str(server.pid)
    assert "add_sub: initialized instance add_sub_0_0" in server.log_text()
    # The auto-complete stub is gone; the instance stub's region is the server's only one.
    assert server.regions() == [launches[1][2]]

    regions = [argv[2] for argv in launches]
    assert server.stop() == 0
    assert server.leaked_regions == [] and server.orphans == []
    assert "add_sub: finalized" in server.log_text()
    _assert_gone(regions)


def test_server_that_cannot_start_raises_with_its_log(triton_reference, tmp_path):
    server = TritonServer(tmp_path / "no-such-repository", reference=triton_reference, log_dir=tmp_path / "log")
    began = time.monotonic()
    with pytest.raises(TritonServerError, match="failed to stat file"):
        server.start()
    assert time.monotonic() - began < 30
    assert not server.running and server.returncode not in (None, 0)


def test_startup_timeout_is_bounded_and_stop_kills_the_stub(triton_reference, triton_server):
    stuck = ModelSpec(model_py=textwrap.dedent("""
        import time

        class TritonPythonModel:
            def initialize(self, args):
                time.sleep(600)

            def execute(self, requests):
                return []
        """))
    repo = triton_server.repository({"stuck": stuck}, stub="cpp")
    server = TritonServer(repo, reference=triton_reference, log_verbose=1, startup_timeout=3,
                          log_dir=repo.parent / "log")
    began = time.monotonic()
    with pytest.raises(TritonServerError, match="timed out"):
        server.start()
    assert time.monotonic() - began < 30
    regions = [argv[2] for argv in server.stub_launches()]
    assert regions, "the instance stub was launched before the timeout"
    assert not server.running
    # tritonserver dies on SIGTERM while it loads, leaving the stub stuck in initialize. Either
    # the stub notices its parent is gone and exits, or the fixture kills it (which one wins is
    # a matter of timing): afterwards none of its processes runs and its region is removed.
    for pid, line in server.orphans:
        assert any(region in line for region in regions), (pid, line)
    _assert_gone(regions)


def test_stop_after_a_server_crash_kills_orphan_stubs_and_removes_regions(triton_server, add_sub_repo):
    """A stub that cannot clean up after its dead parent (stopped, here) is killed by the fixture
    and its region removed; the crash itself is reported by crash_report()."""
    # With the python backend's default region names: the fixture tells its regions apart by a
    # before/after diff of /dev/shm and by who still maps them.
    server = triton_server(add_sub_repo, log_verbose=1, models=["add_sub"], region_prefix=REGION_PREFIX,
                           check_cleanup=False, expect_crash=True)
    instance_region = server.stub_launches()[-1][2]
    assert server.regions() == [instance_region]
    stubs = [pid for pid in processes_naming(instance_region) if pid != server.pid]
    assert stubs, "the instance stub is not running"
    for pid in stubs:
        os.kill(pid, signal.SIGSTOP)  # left alone, a stub would exit and unlink its region itself
    os.kill(server.pid, signal.SIGKILL)
    server.stop()
    assert server.returncode == -signal.SIGKILL
    assert server.crash_report().splitlines()[0] == "tritonserver died of SIGKILL (exit status -9)"
    assert sorted(pid for pid, _ in server.orphans) == sorted(stubs)
    assert server.leaked_regions == [instance_region]
    _assert_gone([instance_region])


def test_stubs_leave_by_themselves_when_the_server_exits_without_unloading(triton_server):
    """An open HTTP connection makes tritonserver wait out --exit-timeout-secs and exit (status
    1) without finalizing its stubs. Each stub then notices from its heartbeat that its parent is
    gone, unlinks its region and exits; stop() waits for that (STUB_EXIT_GRACE_S) before it kills
    anything, so nothing counts as left behind, and ``outlived`` has each stub's figure."""
    models = {f"echo_{stub}": ModelSpec(ECHO, config=f'name: "echo_{stub}"\nbackend: "python"\n', stub=stub)
              for stub in ("ours", "cpp")}
    server = triton_server(triton_server.repository(models), log_verbose=1, exit_timeout=1,
                           models=list(models), check_cleanup=False)  # checked below
    stubs = {stub: [pid for pid in processes_naming(f"echo_{stub}_0") if pid != server.pid]
             for stub in ("ours", "cpp")}
    assert all(stubs.values()), stubs
    held = socket.create_connection(("127.0.0.1", server.http_port), timeout=10)
    try:
        held.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert held.recv(1024).startswith(b"HTTP/1.1 200"), "the held connection got no answer"
        assert server.stop() == 1
    finally:
        held.close()
    assert "Exit timeout expired" in server.log_text()
    # (The state each is reported in depends on how far its unload got: not compared.)
    assert sorted(m.split(":")[0] for m in server.models_left()) == ["echo_cpp v1", "echo_ours v1"]
    assert server.crash_report() == ""
    assert server.orphans == [] and server.leaked_regions == []
    for stub, pids in stubs.items():
        for pid in pids:
            lag = server.outlived.get(pid, 0.0)  # not there: gone before tritonserver was reaped
            assert lag is not None, f"{stub} stub {pid} had to be killed"
            print(f"{stub} stub {pid} outlived tritonserver by {lag:.3f} s")


def test_regions_left_behind_are_reported_and_removed(triton_server):
    server = triton_server(triton_server.repository({}), check_cleanup=False)
    fake = SHM_DIR / f"{server.region_prefix}fixture-selftest-{uuid.uuid4()}"
    fake.write_bytes(b"\0" * 64)
    try:
        server.stop()
        assert server.leaked_regions == [fake.name]
        assert not fake.exists()
    finally:
        fake.unlink(missing_ok=True)


def test_a_port_taken_before_tritonserver_binds_it_is_retried(triton_server, monkeypatch):
    import tritonstub.testing.tritonserver as tritonserver_module

    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    busy = squatter.getsockname()[1]
    picks = []
    real_free_port = tritonserver_module.free_port

    def first_attempt_gets_a_busy_port(host="127.0.0.1"):
        picks.append(host)
        return busy if len(picks) == 1 else real_free_port(host)

    monkeypatch.setattr(tritonserver_module, "free_port", first_attempt_gets_a_busy_port)
    try:
        server = triton_server(triton_server.repository({}))
    finally:
        squatter.close()
    assert busy not in (server.http_port, server.grpc_port, server.metrics_port)
    assert len(picks) >= 6, "a second start attempt picked new ports"
    assert server.running


@pytest.mark.parametrize("stub", ["cpp", "ours"])
def test_demo_serves_add_sub_through_the_chosen_stub(triton_reference, stub):
    # `bash scripts/bootstrap.sh demo` is the README's first command; it runs this with --stub ours.
    proc = subprocess.run([sys.executable, "-m", "tritonstub.testing.demo", "--stub", stub], cwd=ROOT,
                          capture_output=True, text=True, timeout=180, env=_subprocess_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OUTPUT0 = [ 1.5   2.25  5.   12.  ]" in proc.stdout
    assert "OUTPUT1 = [ 0.5   1.75  1.   -4.  ]" in proc.stdout
    assert "no stub processes or shm regions left behind" in proc.stdout


@pytest.mark.parametrize("required, outcome, status", [("0", "1 skipped", 0), ("1", "1 error", 1)])
def test_missing_reference_skips_locally_and_fails_when_required(tmp_path, required, outcome, status):
    (tmp_path / "conftest.py").write_text(textwrap.dedent("""
        import sys
        if "tritonstub.testing.pytest_plugin" not in sys.modules:
            pytest_plugins = ["tritonstub.testing.pytest_plugin"]
        """))
    (tmp_path / "test_needs_triton.py").write_text("def test_it(triton_reference):\n    pass\n")
    env = _subprocess_env()
    env.update(TRITONSTUB_REFERENCE_ROOT=str(tmp_path / "nothing-here"), TRITONSTUB_REQUIRE_REFERENCE=required)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert outcome in proc.stdout, proc.stdout + proc.stderr
    assert proc.returncode == status
    assert "reference Triton" in proc.stdout and "nothing-here" in proc.stdout


@pytest.mark.parametrize("script", ["scripts/bootstrap.sh", ".ci/run"])
def test_entry_point_scripts_are_valid_bash(script):
    path = ROOT / script
    assert path.read_text().startswith("#!/usr/bin/env bash\n")
    assert os.access(path, os.X_OK)
    check = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr


def test_bootstrap_rejects_an_unknown_command():
    proc = subprocess.run(["bash", str(ROOT / "scripts/bootstrap.sh"), "no-such-command"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "unknown command" in proc.stderr


_CRASHING_SESSION = '''
import signal

from crashing_stub import install_crashing_stub

MODEL = """
class TritonPythonModel:
    def execute(self, requests):
        return []
"""


def _server(triton_server, crash, **kwargs):
    repo = triton_server.repository({"m": MODEL}, stub="ours")
    if crash:
        install_crashing_stub(repo / "m", signal.SIGSEGV)
    return triton_server(repo, models=["m"], **kwargs)


def test_unexpected_crash(triton_server):
    _server(triton_server, crash=True)


def test_expected_crash(triton_server):
    _server(triton_server, crash=True, expect_crash=True)


def test_expected_crash_that_does_not_come(triton_server):
    _server(triton_server, crash=False, expect_crash=True)


def test_clean(triton_server):
    _server(triton_server, crash=False)
'''


def test_the_server_fixture_fails_a_crash_at_teardown(triton_reference, tmp_path):
    """A pytest session of its own: a server that dies of SIGSEGV at unload (tests/crashing_stub.py)
    errors its test at teardown, unless the test said ``expect_crash=True``; a crash that was
    expected and did not come errors too."""
    (tmp_path / "test_crashing.py").write_text(_CRASHING_SESSION)
    env = _subprocess_env()
    env["PYTHONPATH"] = str(ROOT / "tests") + os.pathsep + env["PYTHONPATH"]
    env["TRITONSTUB_REQUIRE_REFERENCE"] = "1"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA",
                           f"--basetemp={tmp_path / 'tmp'}", "--rootdir", str(tmp_path),
                           str(tmp_path / "test_crashing.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert re.search(r"^4 passed, 2 errors in ", out, re.MULTILINE), out
    errors = sorted(re.findall(r"^ERROR test_crashing\.py::(\w+)", out, re.MULTILINE))
    assert errors == ["test_expected_crash_that_does_not_come", "test_unexpected_crash"], out
    assert "died of SIGSEGV (exit status -11)" in out and "Signal (11) received." in out, out
    assert "was expected to crash but exited with status 0" in out, out


def test_a_crash_report_quotes_the_fatal_lines_and_what_was_thrown(tmp_path):
    """Server-less: crash_report() reads the log a dead tritonserver left. An uncaught C++
    exception is diagnosed by its ``what():`` line, so the report carries it; lines that are
    not fatal are not quoted."""
    log = tmp_path / "server.log"
    log.write_text(
        'I1207 09:38:23.350163 5237 model_lifecycle.cc:839] "successfully loaded \'echo\'"\n'
        "terminate called after throwing an instance of 'boost::interprocess::lock_exception'\n"
        "  what():  boost::interprocess::lock_exception\n"
        "Signal (6) received.\n"
        " 0# 0x000055D1 in /opt/tritonserver/bin/tritonserver\n")
    text = log.read_text()
    assert crash_report(-signal.SIGABRT, False, text, log).splitlines() == [
        "tritonserver died of SIGABRT (exit status -6)",
        "tritonserver logged a fatal error:",
        "  terminate called after throwing an instance of 'boost::interprocess::lock_exception'",
        "  what():  boost::interprocess::lock_exception",
        "  Signal (6) received.",
        f"log: {log}"]
    assert crash_report(-signal.SIGKILL, True, "", log) == ""   # stop()'s own SIGKILL
    assert crash_report(0, False, 'I1207 server.cc:604] "all models unloaded"\n', log) == ""


_SIGTERMED_SESSION = '''
import json
import os
import time

MODEL = """
class TritonPythonModel:
    def execute(self, requests):
        return []
"""


def test_waits_for_the_sigterm(triton_server):
    server = triton_server(triton_server.repository({"m": MODEL}, stub="ours"), models=["m"])
    server.wait_model_ready("m", 60)
    info = {"server": server.pid, "regions": sorted(server.regions())}
    with open(os.environ["STARTED_FILE"] + ".part", "w") as f:
        json.dump(info, f)
    os.rename(os.environ["STARTED_FILE"] + ".part", os.environ["STARTED_FILE"])
    time.sleep(600)
'''


def test_a_sigterm_to_pytest_stops_the_servers_of_the_running_test(tmp_path):
    """A CI job's timeout ends pytest with SIGTERM: the running test's tritonserver must be
    stopped and its stub's region removed, not left running (pytest's default is to die at once)."""
    (tmp_path / "test_sigtermed.py").write_text(_SIGTERMED_SESSION)
    started = tmp_path / "started.json"
    env = _subprocess_env()
    env["TRITONSTUB_REQUIRE_REFERENCE"] = "1"
    env["STARTED_FILE"] = str(started)
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             f"--basetemp={tmp_path / 'tmp'}", "--rootdir", str(tmp_path),
                             str(tmp_path / "test_sigtermed.py")],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not started.exists():
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "the inner test never started its server"
            time.sleep(0.1)
        import json
        info = json.loads(started.read_text())
        assert info["regions"], info
        os.kill(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    left = process_alive(info["server"])
    if left:                                    # the failure this test is about: clean it up
        os.kill(info["server"], signal.SIGTERM)
    assert proc.returncode == 2 and "KeyboardInterrupt" in out, (proc.returncode, out)
    assert not left, out
    assert not [r for r in info["regions"] if os.path.exists(f"{SHM_DIR}/{r}")], out
