"""`tritonstub serve` on real models (the harness engine, real stub processes): the curl examples
of docs/serve.md, unmodified tritonclient clients, streaming with cancellation, model control,
and a clean SIGTERM shutdown (no stub process or region left)."""
from __future__ import annotations

import queue
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

tritonclient_grpc = pytest.importorskip("tritonclient.grpc")
import tritonclient.http as tritonclient_http  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from tritonstub.testing.serve import ServeProcess  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "model_repository"
DOC = ROOT / "docs" / "serve.md"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    server = ServeProcess(EXAMPLES, log_dir=tmp_path_factory.mktemp("serve"))
    server.start()
    yield server
    rc = server.stop()
    assert rc == 0, server.log_tail()
    assert server.leaked_regions == [] and server.orphans == []


def _doc_commands():
    """Every ``$ command`` of the console blocks under "Examples with curl", with its output."""
    text = DOC.read_text()
    section = text.split("## Examples with curl", 1)[1].split("\n## ", 1)[0]
    cases = []
    for block in re.findall(r"```console\n(.*?)```", section, re.S):
        current = None
        for line in block.split("\n"):
            if line.startswith("$ "):
                current = [line[2:], []]
                cases.append(current)
            elif current is not None:
                current[1].append(line)
    return [(cmd, "\n".join(out)) for cmd, out in cases]


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_curl_examples_of_the_docs(served, tmp_path):
    cases = _doc_commands()
    assert len(cases) >= 8
    marker = "@@tritonstub-doc-end@@"
    script = []
    for cmd, _ in cases:
        cmd = cmd.replace("curl -s", "curl -s --max-time 30").replace("localhost:8000",
                                                                       served.http_url)
        script.append(f"{cmd}\necho '{marker}'")
    out = subprocess.run(["bash", "-c", "\n".join(script)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    got = out.stdout.split(marker + "\n")
    assert len(got) == len(cases) + 1, out.stderr
    for (cmd, want), have in zip(cases, got):
        # a shown output ends at the block's end; a body without newline runs into the marker
        assert have.rstrip("\n") == want.rstrip("\n"), cmd


def test_tritonclient_grpc_and_http(served):
    a = np.arange(4, dtype=np.float32)
    b = np.full(4, 0.5, dtype=np.float32)
    g = tritonclient_grpc.InferenceServerClient(served.grpc_url)
    h = tritonclient_http.InferenceServerClient(served.http_url, network_timeout=30.0)
    try:
        for mod, client in ((tritonclient_grpc, g), (tritonclient_http, h)):
            assert client.is_server_ready() and client.is_model_ready("add_sub")
            ins = [mod.InferInput("INPUT0", [4], "FP32"), mod.InferInput("INPUT1", [4], "FP32")]
            ins[0].set_data_from_numpy(a)
            ins[1].set_data_from_numpy(b)
            r = client.infer("add_sub", ins, request_id="x1")
            np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), a + b)
            np.testing.assert_array_equal(r.as_numpy("OUTPUT1"), a - b)
            bad = mod.InferInput("INPUT0", [2, 2], "FP32")
            bad.set_data_from_numpy(a.reshape(2, 2))
            with pytest.raises(InferenceServerException) as e:
                client.infer("add_sub", [bad, ins[1]], request_id="x2")
            assert e.value.message() == (
                "[request id: x2] unexpected shape for input 'INPUT0' for model 'add_sub'. "
                "Expected [4], got [2,2]. ")
        cfg = g.get_model_config("countdown", as_json=True)["config"]
        assert cfg["model_transaction_policy"]["decoupled"] is True
        assert h.get_model_config("add_sub")["input"][0]["dims"] == [4]
    finally:
        g.close()
        h.close()


def _countdown_input(n):
    i = tritonclient_grpc.InferInput("N", [1], "INT32")
    i.set_data_from_numpy(np.array([n], dtype=np.int32))
    return [i]


def test_grpc_stream_of_a_decoupled_model(served):
    client = tritonclient_grpc.InferenceServerClient(served.grpc_url)
    results: "queue.Queue" = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        client.async_stream_infer("countdown", _countdown_input(3), request_id="s1",
                                  enable_empty_final_response=True)
        got = [results.get(timeout=30) for _ in range(4)]
    finally:
        client.stop_stream()
        client.close()
    assert [e for _, e in got] == [None] * 4
    assert [int(r.as_numpy("COUNT")[0]) for r, _ in got[:3]] == [2, 1, 0]
    finals = [r.get_response().parameters["triton_final_response"].bool_param for r, _ in got]
    assert finals == [False, False, False, True]
    assert got[3][0].get_response().outputs == [] and got[3][0].get_response().id == "s1"


def test_cancelled_stream_stops_the_model_and_the_server_serves_on(served):
    client = tritonclient_grpc.InferenceServerClient(served.grpc_url)
    first: "queue.Queue" = queue.Queue()
    client.start_stream(callback=lambda result, error: first.put((result, error)))
    client.async_stream_infer("countdown", _countdown_input(10_000_000))
    result, error = first.get(timeout=30)
    assert error is None
    client.stop_stream(cancel_requests=True)
    client.close()
    # the model sees is_cancelled() and sends its final flag; the instance is free again
    h = tritonclient_http.InferenceServerClient(served.http_url, network_timeout=60.0)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = h.infer("add_sub", _add_sub_http(), timeout=None)
                break
            except InferenceServerException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        assert r.as_numpy("OUTPUT0") is not None
        c2 = tritonclient_grpc.InferenceServerClient(served.grpc_url)
        results: "queue.Queue" = queue.Queue()
        c2.start_stream(callback=lambda result, error: results.put((result, error)))
        try:
            c2.async_stream_infer("countdown", _countdown_input(1))
            r, e = results.get(timeout=60)
            assert e is None and int(r.as_numpy("COUNT")[0]) == 0
        finally:
            c2.stop_stream()
            c2.close()
    finally:
        h.close()


def _add_sub_http():
    ins = [tritonclient_http.InferInput("INPUT0", [4], "FP32"),
           tritonclient_http.InferInput("INPUT1", [4], "FP32")]
    for i in ins:
        i.set_data_from_numpy(np.ones(4, dtype=np.float32))
    return ins


def test_explicit_model_control_and_sigterm_cleanup(tmp_path):
    with ServeProcess(EXAMPLES, "--model-control-mode", "explicit", "--load-model", "add_sub",
                      log_dir=tmp_path) as server:
        assert "add_sub(1) READY" in server.models_line and "countdown NOT LOADED" in \
            server.models_line
        g = tritonclient_grpc.InferenceServerClient(server.grpc_url)
        try:
            states = {m.name: m.state for m in g.get_model_repository_index().models}
            assert states == {"add_sub": "READY", "bls_add_sub": "", "countdown": ""}
            g.load_model("countdown")
            assert g.is_model_ready("countdown")
            server.refresh_regions()
            g.unload_model("add_sub")
            assert not g.is_model_ready("add_sub")
            with pytest.raises(InferenceServerException) as e:
                g.get_model_metadata("add_sub")
            assert e.value.status() == "StatusCode.NOT_FOUND"
        finally:
            g.close()
    assert server.returncode == 0, server.log_tail()
    assert server.leaked_regions == [] and server.orphans == []
    assert len(server.regions) >= 2          # both models' regions were seen, and are gone
    log = server.log.read_text()
    assert "successfully unloaded 'countdown' version 1" in log
    assert "tritonstub serve: stopped" in log


def test_http_client_gone_mid_generate_stream_cancels_the_model(served):
    import json
    import socket
    import struct
    host, port = served.http_url.split(":")
    s = socket.create_connection((host, int(port)), timeout=30)
    body = json.dumps({"N": 10_000_000}).encode()
    s.sendall(b"POST /v2/models/countdown/generate_stream HTTP/1.1\r\nHost: x\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    assert s.recv(64).startswith(b"HTTP/1.1 200")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    # the model sees is_cancelled() and ends; its one instance then serves the next request
    c = tritonclient_grpc.InferenceServerClient(served.grpc_url)
    results: "queue.Queue" = queue.Queue()
    c.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        c.async_stream_infer("countdown", _countdown_input(2))
        got = [results.get(timeout=60) for _ in range(2)]
        assert [int(r.as_numpy("COUNT")[0]) for r, _ in got] == [1, 0]
    finally:
        c.stop_stream()
        c.close()


SPREAD_MODEL = '''
import os
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Each execute marks its instance as busy, then waits (at most 60 s) until both instances
    are busy at once: it returns only when two requests run in parallel."""

    def initialize(self, args):
        self.name = args["model_instance_name"]
        self.busy = os.path.join(args["model_repository"], "busy")

    def execute(self, requests):
        open(os.path.join(self.busy, self.name), "w").close()
        deadline = time.monotonic() + 60
        while len(os.listdir(self.busy)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        together = len(os.listdir(self.busy)) >= 2
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "INSTANCE", np.array([f"{self.name} together={together}".encode()], dtype=object))])
            for _ in requests]
'''
SPREAD_CONFIG = '''
backend: "python"
max_batch_size: 0
instance_group [ { kind: KIND_CPU count: 2 } ]
input [ { name: "X" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "INSTANCE" data_type: TYPE_STRING dims: [ 1 ] } ]
'''


def test_requests_spread_over_the_instances_of_a_group(tmp_path):
    """Two concurrent requests to a model with two instances run at the same time, one on each
    instance (as Triton's scheduler gives a request to an idle instance)."""
    repo = tmp_path / "repo"
    (repo / "spread" / "1").mkdir(parents=True)
    (repo / "spread" / "busy").mkdir()
    (repo / "spread" / "1" / "model.py").write_text(SPREAD_MODEL)
    (repo / "spread" / "config.pbtxt").write_text(SPREAD_CONFIG)
    got: "queue.Queue[object]" = queue.Queue()
    with ServeProcess(repo, log_dir=tmp_path / "log") as server:
        g = tritonclient_grpc.InferenceServerClient(server.grpc_url)
        try:
            for i in range(2):
                x = tritonclient_grpc.InferInput("X", [1], "INT32")
                x.set_data_from_numpy(np.array([i], dtype=np.int32))
                g.async_infer("spread", [x], lambda result, error: got.put(error or result),
                              client_timeout=120)
            answers = sorted(got.get(timeout=120).as_numpy("INSTANCE")[0].decode()
                             for _ in range(2))
        finally:
            g.close()
    # the group is named spread_0 (the model name and its index), its instances spread_0_<i>
    assert answers == ["spread_0_0 together=True", "spread_0_1 together=True"]
    assert server.returncode == 0 and server.leaked_regions == [] and server.orphans == []
