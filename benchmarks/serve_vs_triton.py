"""`tritonstub serve` vs tritonserver 2.51 on the same model and the same stub.

    python benchmarks/serve_vs_triton.py            # about 2 minutes
    python benchmarks/serve_vs_triton.py --quick    # about 40 s

Both servers serve one copy of examples/model_repository/add_sub with tritonstub's stub
(installed as the model's ``triton_python_backend_stub`` for tritonserver, ``--stub ours`` for
`tritonstub serve`), so what differs is the server. Measured, in alternating order:

1. **start to ready**: from launching the server to the first successful ``ModelReady``;
2. **gRPC unary infer** of FP32 [4] (tritonclient.grpc, one client per thread) at concurrency
   1, 4 and 16: per-request latency p50 and p99 (ms) and throughput (requests/s).

Printed: each figure for both servers and the ratio serve / tritonserver. Everything listens on
127.0.0.1; both servers are stopped by pid and checked for leftovers (exit status 1 if any).
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tritonclient.grpc as grpcclient  # noqa: E402

from tritonstub.testing.reference import provision  # noqa: E402
from tritonstub.testing.serve import ServeProcess  # noqa: E402
from tritonstub.testing.tritonserver import TritonServer, check_stopped, install_our_stub  # noqa: E402


def _ready(url: str, deadline: float) -> None:
    c = grpcclient.InferenceServerClient(url)
    try:
        while time.monotonic() < deadline:
            try:
                if c.is_model_ready("add_sub"):
                    return
            except Exception:  # noqa: BLE001 - not up yet
                pass
            time.sleep(0.02)
        raise RuntimeError(f"{url}: add_sub not ready in time")
    finally:
        c.close()


def _load(url: str, concurrency: int, per_client: int):
    lat: list = []
    lock = threading.Lock()

    def client():
        c = grpcclient.InferenceServerClient(url)
        a = np.arange(4, dtype=np.float32)
        ins = [grpcclient.InferInput("INPUT0", [4], "FP32"), grpcclient.InferInput("INPUT1", [4], "FP32")]
        ins[0].set_data_from_numpy(a)
        ins[1].set_data_from_numpy(a)
        c.infer("add_sub", ins)                     # warm the channel
        mine = []
        for _ in range(per_client):
            t = time.perf_counter()
            c.infer("add_sub", ins, client_timeout=60)
            mine.append(time.perf_counter() - t)
        c.close()
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    wall = time.perf_counter() - t0
    lat.sort()
    return (statistics.median(lat) * 1e3, lat[int(0.99 * (len(lat) - 1))] * 1e3,
            len(lat) / wall)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer requests")
    args = ap.parse_args()
    per_client = {1: 200, 4: 100, 16: 40} if args.quick else {1: 1000, 4: 500, 16: 200}
    ref = provision(allow_apt=False)
    work = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    repo = work / "repo"
    shutil.copytree(ROOT / "examples" / "model_repository" / "add_sub", repo / "add_sub")
    install_our_stub(repo / "add_sub")
    results: dict = {}
    leftovers = []
    for name in ("triton", "serve", "serve", "triton") if not args.quick else ("triton", "serve"):
        t0 = time.monotonic()
        if name == "triton":
            server = TritonServer(repo, reference=ref, log_dir=work / f"triton-{len(results)}",
                                  wait_for="none")
            server.start()
        else:
            server = ServeProcess(repo, "--stub", "ours", log_dir=work / f"serve-{len(results)}")
            server.start()
        _ready(server.grpc_url, t0 + 120)
        start = time.monotonic() - t0
        row = results.setdefault(name, {"start": [], **{c: [] for c in per_client}})
        row["start"].append(start)
        for conc, n in per_client.items():
            row[conc].append(_load(server.grpc_url, conc, n))
        if name == "triton":
            server.stop()
            leftovers += check_stopped(server)
        else:
            server.stop()
            if server.returncode != 0 or server.leaked_regions or server.orphans:
                leftovers.append(f"serve: rc {server.returncode}, {server.leaked_regions}, "
                                 f"{server.orphans}")

    def best(values, i=None, high=False):
        vals = [v if i is None else v[i] for v in values]
        return max(vals) if high else min(vals)

    print(f"{'':28s}{'tritonserver':>14s}{'serve':>12s}{'serve/triton':>14s}")
    t, s = best(results["triton"]["start"]), best(results["serve"]["start"])
    print(f"{'start to ready (s)':28s}{t:14.2f}{s:12.2f}{s / t:14.2f}")
    for conc in per_client:
        for i, label, high in ((0, "p50 (ms)", False), (1, "p99 (ms)", False),
                               (2, "throughput (req/s)", True)):
            t = best(results["triton"][conc], i, high)
            s = best(results["serve"][conc], i, high)
            print(f"{f'c={conc} {label}':28s}{t:14.2f}{s:12.2f}{s / t:14.2f}")
    if leftovers:
        print("leftovers:", leftovers)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
