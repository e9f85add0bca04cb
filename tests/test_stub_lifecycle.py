"""Lifecycle of our stub under real Triton: heartbeat, parent death, stub death, load.

Each behaviour is also checked on the C++ stub where the C++ behaviour is the reference.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from shm_helpers import settled_allocated, wait_allocated, wait_for
from tritonstub.ipc.inspect import inspect_region
from tritonstub.testing.tritonserver import ModelSpec, cmdline, list_regions, process_alive, processes_naming
from tritonstub.testing.procs import parent_pid

ECHO = '''
import re
import time
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "IN").as_numpy()
            params = r.parameters()
            if '"hold_gil"' in params:
                # sre holds the GIL for the whole catastrophic backtrack (several seconds).
                re.match(r"(a+)+$", "a" * 26 + "b")
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", x[::-1].copy())]))
        return out
'''

ECHO_CONFIG = '''
name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "IN" data_type: TYPE_UINT8 dims: [ -1 ] }} ]
output [ {{ name: "OUT" data_type: TYPE_UINT8 dims: [ -1 ] }} ]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
'''


def _repo(triton_server, stub: str, name: str = "echo"):
    return triton_server.repository(
        {name: ModelSpec(ECHO, config=ECHO_CONFIG.format(name=name), stub=stub)},
        name=f"repo_{stub}")


def _infer(client, data: np.ndarray, name: str = "echo", params=None, timeout=None):
    import tritonclient.http as httpclient
    inp = httpclient.InferInput("IN", [data.size], "UINT8")
    inp.set_data_from_numpy(data, binary_data=True)
    kwargs = {"parameters": params} if params else {}
    if timeout:
        kwargs["timeout"] = timeout
    return client.infer(name, [inp], **kwargs)


def _stub_pids(server, instance: str):
    """This server's stub processes of ``instance`` (argv[1] lies in its repository: a server of
    another test run on the machine may serve an instance of the same name)."""
    repo = str(server.model_repository)
    return [p for p in processes_naming(instance) if p != server.pid and repo in cmdline(p)]


@pytest.mark.parametrize("stub", ["ours", "cpp"])
def test_heartbeat_survives_a_model_that_holds_the_gil(triton_server, stub):
    """A C call that holds the GIL for seconds must not make the instance 'not healthy'."""
    server = triton_server(_repo(triton_server, stub))
    server.wait_model_ready("echo", 60)
    client = server.http_client(network_timeout=120)
    t0 = time.time()
    r = _infer(client, np.arange(10, dtype=np.uint8), params={"hold_gil": True})
    held = time.time() - t0
    assert held > 1.5, f"the GIL-holding call was too short ({held:.2f}s) to prove anything"
    assert list(r.as_numpy("OUT")) == list(range(9, -1, -1))
    assert "not healthy" not in server.log_text()


def test_stub_exits_and_unlinks_its_region_after_server_sigkill(triton_server):
    """tritonserver SIGKILLed: our stub notices from its heartbeat helper, unlinks its region and
    exits by itself (the C++ stub's parent-death behaviour), long before the fixture would kill
    it. How fast (0.0-0.3 s measured, one heartbeat period) is not asserted here: the bound only
    keeps a stub that never leaves from hanging the test."""
    server = triton_server(_repo(triton_server, "ours"), check_cleanup=False, expect_crash=True)
    server.wait_model_ready("echo", 60)
    stubs = _stub_pids(server, "echo_0_0")
    assert stubs, "could not find our stub process"
    mine = {r for r in server.regions() if any(r in cmdline(p) for p in stubs)}
    assert mine, "could not find our stub's region"
    os.kill(server.pid, signal.SIGKILL)
    wait_for(lambda: not any(process_alive(p) for p in stubs), 10.0, "our stub exiting after tritonserver's death")
    for r in mine:
        assert not os.path.exists(f"/dev/shm/{r}"), f"our stub left its region {r}"
    server.stop()
    assert server.returncode == -signal.SIGKILL and server.orphans == [] and server.leaked_regions == []


@pytest.mark.parametrize("stub", ["ours", "cpp"])
def test_killing_the_stub_makes_the_instance_unhealthy(triton_server, stub):
    """A dead stub: the next request fails after ~1 s with the parent's health error.

    Triton 2.51 then cannot unload that instance (with either stub: the server waits out its
    exit timeout and exits without destroying the instance), so its region is not removed by
    the server; the fixture's clean-up check is off for this test and the fixture removes it.
    """
    server = triton_server(_repo(triton_server, stub), check_cleanup=False)
    server.wait_model_ready("echo", 60)
    client = server.http_client(network_timeout=60)
    _infer(client, np.zeros(4, dtype=np.uint8))
    stubs = _stub_pids(server, "echo_0_0")
    assert stubs
    # The stub process alone (the OOM killer's choice), not our heartbeat helper with it: a
    # process killed while it holds one of the region's mutexes (the helper, inside a beat)
    # leaves tritonserver an owner-died mutex, and it aborts; the C++ stub killed inside its beat
    # would do the same. The helper leaves by itself once the stub is dead.
    child = [p for p in stubs if parent_pid(p) == server.pid]
    assert len(child) == 1, (stubs, server.pid)
    os.kill(child[0], signal.SIGKILL)
    wait_for(lambda: not any(process_alive(p) for p in stubs), 10.0, "the killed stub (and its helper) to be gone")
    from tritonclient.utils import InferenceServerException
    with pytest.raises(InferenceServerException) as exc:
        _infer(client, np.zeros(4, dtype=np.uint8))
    assert "Stub process 'echo_0_0' is not healthy." in str(exc.value)


def _stub_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@pytest.mark.slow
def test_sequential_and_concurrent_load_returns_to_idle(triton_server):
    """1,000 sequential + 10,000 concurrent requests, sizes up to 64 MiB (forcing growth)."""
    server = triton_server(_repo(triton_server, "ours"))
    server.wait_model_ready("echo", 60)
    client = server.http_client(network_timeout=120)
    stub = [p for p in _stub_pids(server, "echo_0_0") if "tritonstub.stub" in cmdline(p)]
    assert stub
    region = next(r for r in list_regions() if r in cmdline(stub[0]))
    _infer(client, np.zeros(16, dtype=np.uint8))
    idle_bytes = settled_allocated(region)
    idle = inspect_region(region)
    rng = np.random.default_rng(0)
    sizes = [0, 1, 100, 4096, 65536, 1 << 20]
    for i in range(1000):
        n = int(rng.choice(sizes)) if i % 250 else (64 << 20)
        data = rng.integers(0, 255, n, dtype=np.uint8)
        out = _infer(client, data).as_numpy("OUT")
        assert out.shape == (n,) and (n == 0 or (out[0] == data[-1] and out[-1] == data[0]))
    rss_after_sequential = _stub_rss_kb(stub[0])
    grown = inspect_region(region)
    assert grown["segment_size"] >= 64 << 20, "a 64 MiB tensor must have grown the region"

    errors = []
    lock = threading.Lock()
    local = threading.local()   # one gRPC client per worker thread

    def one(i: int):
        import tritonclient.grpc as grpcclient
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = server.grpc_client()
        n = (64 << 20) if i % 2000 == 7 else int(sizes[i % 5])
        data = np.full(n, i % 251, dtype=np.uint8)
        try:
            inp = grpcclient.InferInput("IN", [n], "UINT8")
            inp.set_data_from_numpy(data)
            out = client.infer("echo", [inp], client_timeout=120).as_numpy("OUT")
            if out.shape != (n,) or (n and out[0] != i % 251):
                raise AssertionError(f"request {i}: bad output")
        except Exception as e:  # noqa: BLE001
            with lock:
                errors.append(repr(e))

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(10000)))
    assert not errors, errors[:5]
    wait_allocated(region, idle_bytes)  # the parent frees the last requests' tensors asynchronously
    after = inspect_region(region)
    assert after["allocated_bytes"] == idle["allocated_bytes"], (idle["allocated_bytes"],
                                                                 after["allocated_bytes"])
    assert after["free_memory"] == after["segment_size"] - after["allocated_bytes"] - 128
    rss_end = _stub_rss_kb(stub[0])
    assert rss_end - rss_after_sequential < 100 * 1024, (rss_after_sequential, rss_end)
