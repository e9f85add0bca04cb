"""A region created by tritonstub is accepted by the real C++ stub (and by ours), and
`tritonstub shm inspect` decodes the regions of a running real tritonserver."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tritonstub.harness.parent import ParentSide
from tritonstub.ipc.inspect import inspect_region
from tritonstub.protocol import r24_10 as L
from tritonstub.stub.install import write_launcher

from shm_helpers import unique_name, wait_for

MODEL = "class TritonPythonModel:\n    def execute(self, requests):\n        return []\n"


def _model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "probe"
    (d / "1").mkdir(parents=True)
    (d / "1" / "model.py").write_text(MODEL)
    return d


def _stub_path(kind: str, reference, model_dir: Path) -> str:
    if kind == "cpp":
        return str(reference.cpp_stub)
    return write_launcher(str(model_dir / "triton_python_backend_stub"))


@pytest.mark.parametrize("kind", ["cpp", "ours"])
def test_stub_accepts_a_region_we_created(kind, triton_reference, tmp_path):
    model_dir = _model_dir(tmp_path)
    ps = ParentSide.setup(name=unique_name("accept_"))
    proc = None
    try:
        argv = ps.stub_argv(_stub_path(kind, triton_reference, model_dir),
                            str(model_dir / "1" / "model.py"),
                            str(triton_reference.python_backend_dir), "probe_0_0")
        env = dict(os.environ, LD_LIBRARY_PATH=triton_reference.ld_library_path)
        proc = ps.launch(argv, env=env, stderr=subprocess.PIPE)
        first = ps.queues["parent_message_queue"].pop(20)
        assert first is not None and first > 0, "no 'health thread started' message"
        # The heartbeat sets stub_health again (every 300 ms) each time we clear it.
        for beat in range(3):
            ps.read_stub_health(reset=True)
            wait_for(lambda: ps.read_stub_health() is True, 10.0, f"stub_health set again (beat {beat})")
        # Stop it cleanly: FinalizeRequest comes back as FinalizeResponse on the same handle.
        h = ps.region.construct(L.IPCMessageShm.size)
        L.IPCMessageShm.write(ps.region.buf, h + 16, command=int(L.PYTHONSTUB_CommandType.FinalizeRequest),
                              args=0, inline_response=False, response_handle=0,
                              response_mutex=0, response_cond=0)
        assert ps.queues["stub_message_queue"].push(h, 5)
        reply = ps.queues["parent_message_queue"].pop(20)
        assert reply == h
        assert L.IPCMessageShm.get(ps.region.buf, h + 16, "command") == L.PYTHONSTUB_CommandType.FinalizeResponse
        assert proc.wait(20) == 0
        # Both stubs unlink the region name at normal exit.
        assert not os.path.exists(f"/dev/shm/{ps.region.name}")
        ps.region.segment.check()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        ps.close(unlink=True)


@pytest.mark.parametrize("kind", ["cpp", "ours"])
def test_no_argument_probe_exits_1(kind, triton_reference, tmp_path):
    stub = _stub_path(kind, triton_reference, _model_dir(tmp_path))
    env = dict(os.environ, LD_LIBRARY_PATH=triton_reference.ld_library_path)
    r = subprocess.run([stub], env=env, capture_output=True, timeout=30)
    assert r.returncode == 1
    assert r.stdout == b""
    assert r.stderr.endswith(b" Expected 9 arguments, found 1 arguments.\n"), r.stderr
    # How fast the probe is (the launcher answers without starting Python) is measured by
    # benchmarks/probe_time.py, not asserted on a shared machine.


def test_inspect_decodes_live_triton_regions(triton_server, example_model_repository, tmp_path):
    import shutil
    repo = tmp_path / "repo"
    shutil.copytree(example_model_repository / "add_sub", repo / "add_sub")
    from tritonstub.testing.tritonserver import install_cpp_stub
    install_cpp_stub(repo / "add_sub")
    server = triton_server(repo, log_verbose=1)
    server.wait_model_ready("add_sub", timeout=60)
    # The instance stub's region (argv[8] is the instance name); the auto-complete stub's region
    # is being removed at about this time.
    regions = [argv[2] for argv in server.stub_launches() if argv[8] != "add_sub"]
    assert len(regions) == 1, server.stub_launches()
    for name in regions:
        info = inspect_region(name)
        assert info["consistent"]
        assert info["named_objects"]["shm_mutex"]["value_offset"] == 184
        assert info["named_objects"]["total size"]["value_offset"] == 296
        assert info["total_size"] == info["segment_size"] == info["file_size"]
        ctrl = info["ipc_control"]
        assert ctrl["handle"] == 336                      # the C++ side's argv[7]
        # The C++ stub sets the flag every 300 ms; the parent clears it only while it waits on
        # a reply, and this server is idle.
        wait_for(lambda: inspect_region(name)["ipc_control"]["stub_health"] is True, 10.0,
                 f"stub_health of {name} decoded as True")
        assert ctrl["queues"]["stub_message_queue"]["handle"] == 496
        assert ctrl["queues"]["parent_message_queue"]["ref_count"] == 2   # parent + stub
        # The CLI gives the same, as JSON and as text.
        out = subprocess.run([sys.executable, "-m", "tritonstub", "shm", "inspect", name, "--json"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        data = json.loads(out.stdout)
        assert data["ipc_control"]["handle"] == 336
        txt = subprocess.run([sys.executable, "-m", "tritonstub", "shm", "inspect", name, "--summary"],
                             capture_output=True, text=True, timeout=60)
        assert "ipc control     handle 336" in txt.stdout
    # Traffic does not disturb the decoder's view: infer, then decode again.
    import numpy as np
    import tritonclient.http as httpclient
    client = server.http_client()
    a = np.arange(4, dtype=np.float32)
    inputs = [httpclient.InferInput("INPUT0", [4], "FP32"), httpclient.InferInput("INPUT1", [4], "FP32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(a)
    for _ in range(5):
        client.infer("add_sub", inputs)
    for name in regions:
        assert inspect_region(name)["consistent"]


def test_inspect_cli_errors_are_clear(tmp_path):
    missing = unique_name("nope_")
    r = subprocess.run([sys.executable, "-m", "tritonstub", "shm", "inspect", missing],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "no shared-memory region named" in r.stderr and missing in r.stderr
    junk = unique_name("junk_")
    Path(f"/dev/shm/{junk}").write_bytes(b"\x07" * 4096)
    try:
        r = subprocess.run([sys.executable, "-m", "tritonstub", "shm", "inspect", junk],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and junk in r.stderr
        assert "Traceback" not in r.stderr
    finally:
        os.unlink(f"/dev/shm/{junk}")
