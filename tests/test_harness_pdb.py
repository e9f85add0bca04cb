"""``breakpoint()`` in model.py under ``tritonstub infer`` in a terminal: the stub gets the
terminal, pdb stops in ``execute``, reads commands from the keyboard and the request is answered
after ``c``. The terminal here is a pseudo-terminal the test drives; every read is bounded."""
from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tritonstub.harness.instance import REGION_PREFIX
from tritonstub.testing.procs import processes_naming

MODEL = '''\
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            breakpoint()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", x * 2)]))
        return responses
'''
CONFIG = '''\
backend: "python"
max_batch_size: 0
input [ { name: "X" data_type: TYPE_INT32 dims: [ 3 ] } ]
output [ { name: "Y" data_type: TYPE_INT32 dims: [ 3 ] } ]
'''


class Terminal:
    """A process on a pseudo-terminal: ``expect`` reads until a text shows (bounded)."""

    def __init__(self, argv, cwd):
        master, slave = pty.openpty()
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd,
                                     start_new_session=True, env=dict(os.environ, TERM="dumb"))
        os.close(slave)
        self.master = master
        self.seen = ""

    def expect(self, text: str, timeout_s: float = 120.0) -> str:
        deadline = time.monotonic() + timeout_s
        while text not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"{text!r} did not show within {timeout_s:g} s; the terminal " \
                             f"shows:\n{self.seen[-3000:]}"
            ready, _, _ = select.select([self.master], [], [], min(left, 0.5))
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:          # EIO: every process on the terminal has closed it
                    chunk = b""
                if not chunk:
                    assert text in self.seen, f"the terminal closed before {text!r} showed:\n" \
                                              f"{self.seen[-3000:]}"
                    break
                self.seen += chunk.decode("utf-8", "replace").replace("\r\n", "\n")
        return self.seen

    def send(self, line: str) -> None:
        os.write(self.master, (line + "\n").encode())

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        os.close(self.master)


@pytest.mark.parametrize("stub", ["ours", "cpp"])
def test_breakpoint_in_execute_stops_in_pdb_on_the_terminal(stub, tmp_path, request):
    if stub == "cpp":
        request.getfixturevalue("triton_reference")
    model = tmp_path / "stop_here"
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.py").write_text(MODEL)
    (model / "config.pbtxt").write_text(CONFIG)
    before = {n for n in os.listdir("/dev/shm") if n.startswith(REGION_PREFIX)}
    term = Terminal([sys.executable, "-m", "tritonstub", "infer", str(model), "--stub", stub,
                     "-i", "X=[1, 2, 3]"], cwd=tmp_path)
    try:
        term.expect("(Pdb)")
        term.send("p int(x.sum()) * 1000")
        term.expect("6000")
        term.send("c")
        term.expect('"name": "Y"')
        assert term.proc.wait(60) == 0, term.seen[-3000:]
        body = term.seen[term.seen.rindex("\n{\n") + 1:]        # the result, printed last
        result = json.loads(body[:body.rindex("}") + 1])
        assert result["outputs"][0]["data"] == [2, 4, 6]
    finally:
        term.close()
    assert processes_naming(str(model)) == []
    assert {n for n in os.listdir("/dev/shm") if n.startswith(REGION_PREFIX)} - before == set()
