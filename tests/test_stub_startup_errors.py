"""Our stub's start-up and command-loop error paths, without a server.

:class:`tritonstub.harness.parent.ParentSide` plays libtriton_python.so: it creates the region as
the parent does and launches the stub with the real argv, so each path below runs in a real
stub process: bad argv, a missing region, the execution-environment (``uses_env``) checks, a LoadGPUBuffers
command (no GPU support), an unknown command, and the death of the parent while the stub waits
for a command. Every wait is bounded; every region is removed.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from shm_helpers import unique_name, wait_for
from tritonstub.harness.parent import PROTOCOL, PROTOCOL_KEY, ParentSide
from tritonstub.protocol import r24_10 as L
from tritonstub.stub.install import write_launcher

MODEL = "class TritonPythonModel:\n    def execute(self, requests):\n        return []\n"
C = L.PYTHONSTUB_CommandType


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "probe"
    (d / "1").mkdir(parents=True)
    (d / "1" / "model.py").write_text(MODEL)
    return d


@pytest.fixture
def parent():
    ps = ParentSide.setup(name=unique_name("startup_"))
    procs = []
    ps.procs = procs
    try:
        yield ps
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        ps.close(unlink=True)


def _launch(ps: ParentSide, model_dir: Path, *, uses_env: bool = False, env=None, argv=None,
            parent_pid=None) -> subprocess.Popen:
    stub = write_launcher(str(model_dir / "triton_python_backend_stub"))
    if argv is None:
        argv = ps.stub_argv(stub, str(model_dir / "1" / "model.py"), os.path.dirname(sys.executable),
                            "probe_0_0", parent_pid=parent_pid)
    ps.set_uses_env(uses_env)
    # This parent is pytest, which maps no libtriton_python.so: say which protocol it speaks.
    environment = dict(os.environ, **{PROTOCOL_KEY: PROTOCOL})
    for key, value in (env or {}).items():  # None removes the variable
        if value is None:
            environment.pop(key, None)
        else:
            environment[key] = value
    proc = subprocess.Popen(argv, env=environment, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ps.procs.append(proc)
    return proc


def _started(ps: ParentSide, proc: subprocess.Popen) -> None:
    first = ps.queues["parent_message_queue"].pop(30)
    assert first is not None and first > 0, ("no 'health thread started' message", proc.poll())


def _send(ps: ParentSide, command: int) -> int:
    h = ps.region.construct(L.IPCMessageShm.size)
    L.IPCMessageShm.write(ps.region.buf, h + L.OWNERSHIP_HEADER, command=int(command), args=0,
                          inline_response=False, response_handle=0, response_mutex=0, response_cond=0)
    assert ps.queues["stub_message_queue"].push(h, 5)
    return h


def _finalize(ps: ParentSide, proc: subprocess.Popen) -> str:
    h = _send(ps, C.FinalizeRequest)
    assert ps.queues["parent_message_queue"].pop(30) == h
    assert L.IPCMessageShm.get(ps.region.buf, h + L.OWNERSHIP_HEADER, "command") == C.FinalizeResponse
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return err


def _log_lines(err: str):
    """The stub's stderr log records without their time and pid: ``<L> <file>:<line>]<text>``."""
    lines = []
    for line in err.splitlines():
        head, sep, text = line.partition("]")
        if sep and len(head.split()) >= 4:
            lines.append(f"{head[0]} {head.split()[-1]}]{text}")
    return lines


# ---- argv -------------------------------------------------------------------------------------


def test_a_model_path_without_directories_is_refused(parent, model_dir):
    argv = parent.stub_argv(write_launcher(str(model_dir / "triton_python_backend_stub")), "model.py",
                            os.path.dirname(sys.executable), "probe_0_0")
    proc = _launch(parent, model_dir, argv=argv)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert _log_lines(err) == ["I pb_stub.cc:2087]  Model path does not look right: model.py"], err


def test_a_non_numeric_size_fails_preinitialization(parent, model_dir):
    argv = parent.stub_argv(write_launcher(str(model_dir / "triton_python_backend_stub")),
                            str(model_dir / "1" / "model.py"), os.path.dirname(sys.executable), "probe_0_0")
    argv[3] = "lots"
    proc = _launch(parent, model_dir, argv=argv)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert _log_lines(err) == ["I pb_stub.cc:2105]  Failed to preinitialize Python stub: bad argument: invalid "
                               "literal for int() with base 10: 'lots'"], err


def test_a_region_that_does_not_exist_fails_preinitialization(parent, model_dir):
    argv = parent.stub_argv(write_launcher(str(model_dir / "triton_python_backend_stub")),
                            str(model_dir / "1" / "model.py"), os.path.dirname(sys.executable), "probe_0_0")
    argv[2] = unique_name("missing_")
    proc = _launch(parent, model_dir, argv=argv)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    lines = _log_lines(err)
    assert len(lines) == 1 and lines[0].startswith("I pb_stub.cc:2105]  Failed to preinitialize Python stub: "), err
    assert argv[2] in lines[0]
    assert not os.path.exists(f"/dev/shm/{argv[2]}")


# ---- execution environment (uses_env) ----------------------------------------------------------


@pytest.mark.parametrize("ld_library_path, message", [
    (None, "When using an execution environment, LD_LIBRARY_PATH variable cannot be empty."),
    ("/only/one/entry", "LD_LIBRARY_PATH must contain a colon when passing an execution environment."),
])
def test_uses_env_checks_ld_library_path(parent, model_dir, ld_library_path, message):
    proc = _launch(parent, model_dir, uses_env=True, env={"LD_LIBRARY_PATH": ld_library_path})
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert _log_lines(err) == [f"I pb_stub.cc:2105]  Failed to preinitialize Python stub: {message}"], err
    assert os.path.exists(f"/dev/shm/{parent.region.name}"), "the stub must leave the parent's region alone"


# ---- commands -----------------------------------------------------------------------------------


def test_load_gpu_buffers_is_answered_and_the_stub_keeps_serving(parent, model_dir):
    proc = _launch(parent, model_dir)
    _started(parent, proc)
    _send(parent, C.LoadGPUBuffers)
    assert parent.queues["parent_message_queue"].pop(30) == L.DUMMY_MESSAGE
    err = _finalize(parent, proc)
    assert _log_lines(err) == ["E pb_stub.cc:406]  An error occurred while trying to load GPU buffers in the Python "
                               "backend stub: GPU tensors are not supported by tritonstub yet"], err


def test_an_unknown_command_is_ignored(parent, model_dir):
    """No answer, no log line, and the next command is served: the stub handles commands in
    order, so the first thing back is the answer to the command sent after the unknown one."""
    proc = _launch(parent, model_dir)
    _started(parent, proc)
    _send(parent, 99)
    _send(parent, C.LoadGPUBuffers)
    assert parent.queues["parent_message_queue"].pop(30) == L.DUMMY_MESSAGE
    lines = _log_lines(_finalize(parent, proc))
    assert lines == ["E pb_stub.cc:406]  An error occurred while trying to load GPU buffers in the Python backend "
                     "stub: GPU tensors are not supported by tritonstub yet"], lines


def test_the_stub_exits_when_its_parent_dies_while_it_waits(parent, model_dir):
    """Parent death while the stub waits for a command: the heartbeat helper logs the C++ stub's
    line, unlinks the region and SIGKILLs the stub, unless the stub's own check between two
    polls of its queue saw it first (then it exits 1, as the C++ stub does)."""
    fake_parent = subprocess.Popen(["sleep", "300"])
    try:
        proc = _launch(parent, model_dir, parent_pid=fake_parent.pid)
        _started(parent, proc)
    finally:
        fake_parent.kill()
        fake_parent.wait(10)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode in (1, -signal.SIGKILL), (proc.returncode, err)
    assert "pb_stub.cc:2145]  Non-graceful termination detected. " in err, err
    wait_for(lambda: not os.path.exists(f"/dev/shm/{parent.region.name}"), 10.0, "the region unlinked")


# ---- an internal error ------------------------------------------------------------------------


def _children(pid: int):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def test_a_command_handle_outside_the_region_ends_the_stub_with_a_clear_error(parent, model_dir):
    """A command handle the stub cannot read (here: past the end of the region) is a broken
    parent: nothing can be answered, so the stub says which handle and why in one error line (no
    traceback: it is not a bug of ours) and exits 1, its heartbeat helper follows it, and the
    parent's region is left to the parent."""
    proc = _launch(parent, model_dir)
    _started(parent, proc)
    helpers = _children(proc.pid)
    assert len(helpers) == 1, helpers
    assert parent.queues["stub_message_queue"].push(parent.region.capacity + 4096, 5)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    handle = parent.region.capacity + 4096
    assert f"tritonstub: the server's command message {handle} is malformed:" in err, err
    assert "lies outside the" in err and "The stub stops" in err, err
    assert "Traceback" not in err and "internal error" not in err, err
    wait_for(lambda: not os.path.exists(f"/proc/{helpers[0]}") or
             open(f"/proc/{helpers[0]}/stat").read().split(") ")[1][0] in "ZX",
             10.0, "the heartbeat helper gone")
    assert os.path.exists(f"/dev/shm/{parent.region.name}")
