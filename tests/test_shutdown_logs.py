"""Nothing a model logs is lost when tritonserver shuts down (SIGTERM), with either stub.

Each model logs through pb_utils.Logger in initialize, execute and finalize, from a thread of its
own until finalize stops it, and prints to stdout without flushing. The server is stopped with
SIGTERM sent to the server alone (``kill PID``, Kubernetes, docker stop) or to its whole process
group (``kill -- -PGID``, systemd, which also reaches the stubs). Every line must be in the log.
"""
from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from tritonstub.testing.tritonserver import ModelSpec

MODEL = """
import threading
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.name = args["model_name"]
        pb_utils.Logger.log_info(f"SHUTDOWN-LOG {self.name} initialize")
        self.stop = threading.Event()
        self.ticks = 0
        self.thread = threading.Thread(target=self.tick)
        self.thread.start()

    def tick(self):
        while not self.stop.wait(0.05):
            self.ticks += 1
        pb_utils.Logger.log_warn(f"SHUTDOWN-LOG {self.name} thread stopping after finalize")

    def execute(self, requests):
        pb_utils.Logger.log_info(f"SHUTDOWN-LOG {self.name} execute")
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.ones(1, np.float32))])
                for _ in requests]

    def finalize(self):
        for i in range(20):
            pb_utils.Logger.log_info(f"SHUTDOWN-LOG {self.name} finalize {i:02d}")
        pb_utils.Logger.log_error(f"SHUTDOWN-LOG {self.name} finalize error level")
        self.stop.set()
        self.thread.join()
        print(f"SHUTDOWN-LOG {self.name} finalize print")
"""

CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "IN" data_type: TYPE_FP32 dims: [ 1 ] }} ]
output [ {{ name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] }} ]
"""


def expected(name: str):
    return ([f"{name} initialize", f"{name} execute"]
            + [f"{name} finalize {i:02d}" for i in range(20)]
            + [f"{name} finalize error level", f"{name} thread stopping after finalize",
               f"{name} finalize print"])


@pytest.mark.parametrize("target", ["server", "process_group"])
def test_every_line_survives_sigterm(target, triton_server):
    import tritonclient.http as httpclient
    names = {"log_ours": "ours", "log_cpp": "cpp"}
    repo = triton_server.repository({n: ModelSpec(MODEL, config=CONFIG.format(name=n), stub=s)
                                     for n, s in names.items()})
    server = triton_server(repo, models=list(names))
    client = server.http_client()
    for name in names:
        inp = httpclient.InferInput("IN", [1], "FP32")
        inp.set_data_from_numpy(np.zeros(1, np.float32))
        assert client.infer(name, [inp]).as_numpy("OUT").tolist() == [1.0]
    if target == "server":
        os.kill(server.pid, signal.SIGTERM)
    else:
        os.killpg(server.pid, signal.SIGTERM)
    assert server.stop(timeout=30) == 0
    assert not server.killed, "tritonserver did not exit on SIGTERM"
    text = server.log_text()
    # Two stubs write into one log: a print of one can share a line with the other's next line,
    # so look for each message in the text, not line by line. Every message is unique.
    for name in names:
        counts = {item: text.count(f"SHUTDOWN-LOG {item}") for item in expected(name)}
        assert all(n == 1 for n in counts.values()), f"{name} ({names[name]} stub): {counts}"
        assert text.count(f"SHUTDOWN-LOG {name} ") == len(expected(name))
        assert f"successfully unloaded '{name}'" in text
