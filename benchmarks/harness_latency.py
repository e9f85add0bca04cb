"""The harness vs tritonserver on add_sub, both stubs, in one run (ratios, not timed tests).

    .venv/bin/python benchmarks/harness_latency.py            # about 2 minutes
    .venv/bin/python benchmarks/harness_latency.py --starts 5 --requests 2000

1. **Start to first response**: ``tritonstub infer examples/model_repository/add_sub ...`` as a user
   runs it (a new process: interpreter start, auto-complete stub, instance stub, one request,
   finalize), wall time to exit; against tritonserver 2.51 from launch until add_sub is READY (the
   server with the same stub, polled every 10 ms). Median of ``--starts`` runs each, alternating.
2. **Round trip per request** through the harness engine (``Engine.infer``, one request at a
   time, add_sub's two FP32[4] inputs): median and p99 over ``--requests`` requests, per stub.

Everything runs on 127.0.0.1; servers are stopped by pid (TritonServer), stubs by the engine.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ADD_SUB = ROOT / "examples" / "model_repository" / "add_sub"


def cli_start(stub: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tritonstub", "infer", str(ADD_SUB), "--stub", stub,
                    "-i", "INPUT0=[1,2,3,4]", "-i", "INPUT1=[1,1,1,1]"],
                   check=True, capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    return time.perf_counter() - start


def server_start(stub: str, workdir: Path, run: int) -> float:
    from tritonstub.testing.reference import find_reference
    from tritonstub.testing.tritonserver import TritonServer, make_model_repository
    repo = make_model_repository(workdir / f"repo_{stub}_{run}", {"add_sub": ADD_SUB}, stub=stub,
                                 reference=find_reference())
    server = TritonServer(repo, reference=find_reference(), log_dir=workdir / f"log_{stub}_{run}")
    start = time.perf_counter()
    server.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if server._http_status("GET", "/v2/models/add_sub/ready") == 200:
                return time.perf_counter() - start
            time.sleep(0.01)
        raise RuntimeError("add_sub did not become ready")
    finally:
        server.stop()


def round_trips(stub: str, n: int):
    from tritonstub.harness import Engine, InferRequest
    a, b = np.arange(4, dtype=np.float32), np.ones(4, np.float32)
    times = []
    with Engine(ROOT / "examples" / "model_repository", stub=stub, log_stream=None) as engine:
        request = InferRequest.make("add_sub", {"INPUT0": a, "INPUT1": b})
        for _ in range(50):
            engine.infer(request, timeout_s=30)
        for _ in range(n):
            t = time.perf_counter()
            engine.infer(request, timeout_s=30)
            times.append(time.perf_counter() - t)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--starts", type=int, default=3)
    ap.add_argument("--requests", type=int, default=1000)
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")
    workdir = Path(tempfile.mkdtemp(prefix="harness-bench-"))
    try:
        rows = {}
        for stub in ("ours", "cpp"):
            rows[("cli", stub)] = []
            rows[("server", stub)] = []
        for run in range(args.starts):
            for stub in ("ours", "cpp"):
                rows[("cli", stub)].append(cli_start(stub))
                rows[("server", stub)].append(server_start(stub, workdir, run))
        print("\nstart to first response (s, median)      ours    cpp")
        for kind, label in (("cli", "tritonstub infer (whole run)"),
                            ("server", "tritonserver start to READY")):
            o, c = (statistics.median(rows[(kind, s)]) for s in ("ours", "cpp"))
            print(f"  {label:38s} {o:6.2f} {c:6.2f}")
        print("\nround trip per request, Engine.infer (ms)   p50     p99")
        trips = {stub: round_trips(stub, args.requests) for stub in ("ours", "cpp")}
        for stub, (p50, p99) in trips.items():
            print(f"  {stub:42s} {p50 * 1e3:6.3f} {p99 * 1e3:7.3f}")
        print(f"  ratio ours/cpp (p50)                       {trips['ours'][0] / trips['cpp'][0]:6.2f}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
