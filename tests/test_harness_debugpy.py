"""``tritonstub infer --debugpy HOST:PORT``: the stub starts debugpy on that loopback address
before model.py is imported and waits for a debugger; an IDE attaches (here the smallest DAP
client, tests/loader_support.DapClient), the model loads and the request is answered."""
from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from loader_support import DapClient
from tritonstub.testing.procs import free_port, processes_naming

ADD_SUB = Path(__file__).resolve().parents[1] / "examples" / "model_repository" / "add_sub"


def _start(model_dir: Path, port: int):
    """`tritonstub infer` with --debugpy; (process, queue of its stderr lines, None at the end)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tritonstub", "infer", str(model_dir), "--debugpy", f"127.0.0.1:{port}",
         "-i", "INPUT0=[1, 2, 3, 4]", "-i", "INPUT1=[1, 1, 1, 1]"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    lines: "queue.Queue" = queue.Queue()
    proc.out = []  # type: ignore[attr-defined]

    def read():
        for line in proc.stderr:
            lines.put(line.rstrip("\n"))
        lines.put(None)
    threading.Thread(target=read, daemon=True).start()
    threading.Thread(target=lambda: proc.out.append(proc.stdout.read()), daemon=True).start()
    return proc, lines


def _rest(lines: "queue.Queue", seen: list, timeout_s: float = 30.0) -> None:
    """The remaining stderr lines, until the stream ends (bounded)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        if line is None:
            return
        seen.append(line)


def _wait_for(lines: "queue.Queue", needle: str, seen: list, timeout_s: float) -> bool:
    """Collect stderr lines into ``seen`` until one contains ``needle`` (True) or stderr ends."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        if line is None:
            return False
        seen.append(line)
        if needle in line:
            return True
    raise AssertionError(f"no {needle!r} within {timeout_s:g} s; stderr so far:\n" + "\n".join(seen))


def test_infer_with_debugpy_waits_for_the_debugger_then_answers(tmp_path):
    pytest.importorskip("debugpy", reason="debugpy is optional: pip install 'tritonstub[debug]'")
    model_dir = tmp_path / "add_sub"
    shutil.copytree(ADD_SUB, model_dir, ignore=shutil.ignore_patterns("__pycache__"))
    proc = client = None
    seen: list = []
    try:
        for _ in range(3):
            port = free_port()  # free a moment ago; another process may take it first
            proc, lines = _start(model_dir, port)
            seen = []
            if _wait_for(lines, f"debugpy is listening on 127.0.0.1:{port}", seen, 90.0):
                break
            proc.wait(30)
            assert any("could not listen" in line for line in seen), "\n".join(seen)
        else:
            pytest.fail("three free ports in a row were taken before debugpy could listen on them")
        time.sleep(0.5)
        assert proc.poll() is None, "infer did not wait for the debugger:\n" + "\n".join(seen)
        client = DapClient("127.0.0.1", port)
        replies = client.attach()
        assert replies["attach"]["success"] and replies["configurationDone"]["success"], replies
        proc.wait(120)
        _rest(lines, seen)
        assert proc.returncode == 0, (proc.returncode, "\n".join(seen))
        deadline = time.monotonic() + 30
        while not proc.out and time.monotonic() < deadline:  # the reader thread's last read
            time.sleep(0.05)
        assert proc.out, "stdout never ended"
        result = json.loads(proc.out[0])
        assert [o["data"] for o in result["outputs"]] == [[2.0, 3.0, 4.0, 5.0], [0.0, 1.0, 2.0, 3.0]]
        assert any("debugpy: a debugger is attached; importing the model" in line for line in seen), seen
    finally:
        if client is not None:
            client.close()
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    # nothing left: no stub naming the model, no region of that process
    assert not processes_naming(str(model_dir))
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(f"tritonstub_harness_{proc.pid}_")]
