"""Soak: mixed traffic through our stub under the real Triton 2.51, with the stubs' memory,
descriptors and regions sampled as it runs (issue 15 step 4).

    .venv/bin/python benchmarks/soak.py --minutes 60 --out soak-out     # the one-hour soak
    .venv/bin/python benchmarks/soak.py --minutes 2 --interval 10       # a short look
    .venv/bin/python benchmarks/soak.py --stub cpp --out soak-cpp        # the C++ stub, the baseline

One tritonserver on 127.0.0.1 (explicit model control) serves five models, all with our stub
(``--stub cpp``: all with Triton's C++ stub):
``unary`` (echo of an INT32 tensor; 1 to 262,144 elements), ``stream`` (decoupled: 20 responses,
checking ``is_cancelled()``; a third of the streams are long ones, cancelled after 6 responses), ``bls`` (calls
``unary`` through BLS, a chain of two), ``metrics`` (a counter and a gauge updated on every
call) and ``control`` (unloads and loads ``spare`` from model.py). Four client threads keep
them busy. Every ``--interval`` seconds the sampler records, per stub process: resident memory
(VmRSS), open descriptors, and its region's allocated bytes (a lock-free copy of the region,
re-read when torn; the lowest of 8 reads 50 ms apart, so that a request in flight is not
counted). Errors of any client call are counted (a cancelled stream is not an
error).

Writes ``samples.csv`` and ``soak.svg`` (one small plot per measure, hand-drawn SVG: no plotting
library needed) to ``--out`` and prints a summary: the first sample after warm-up against the
last, per measure. "Flat" means no measure grew by more than ``--tolerance`` (default 10 %)
after warm-up; the exit status is 0 only when it is flat and there were no errors.
"""
from __future__ import annotations

import argparse
import csv
import os
import queue
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from tritonstub.testing.procs import parent_pid, processes_naming  # noqa: E402
from tritonstub.testing.tritonserver import ModelSpec, TritonServer, make_model_repository  # noqa: E402

_IO = """
input [ {{ name: "IN" data_type: TYPE_INT32 dims: [ -1 ] }} ]
output [ {{ name: "OUT" data_type: TYPE_INT32 dims: [ -1 ] }} ]
"""


def _config(name: str, decoupled: bool = False) -> str:
    policy = "model_transaction_policy { decoupled: true }\n" if decoupled else ""
    return f'name: "{name}"\nbackend: "python"\nmax_batch_size: 0\n{policy}' + _IO.format()


UNARY = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy())])
                for r in requests]
"""

STREAM = """
import time
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            # IN == 1: a stream the client will cancel, long enough (up to 10 s) to be running
            # when the cancellation comes (cancelling a finished stream is a Triton 2.51 bug:
            # benchmarks/stream_cancel_unload.py).
            long = int(pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()[0]) == 1
            for i in range(500 if long else 20):
                if sender.is_cancelled():
                    break
                sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.full(1, i, np.int32))]))
                time.sleep(0.02 if long else 0.005)
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
"""

BLS = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "IN")
            for _ in range(2):                                  # a chain of two calls
                resp = pb_utils.InferenceRequest(model_name="unary", requested_output_names=["OUT"],
                                                 inputs=[pb_utils.Tensor("IN", x.as_numpy())]).exec()
                if resp.has_error():
                    raise pb_utils.TritonModelException(resp.error().message())
                x = pb_utils.get_output_tensor_by_name(resp, "OUT")
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", x.as_numpy())]))
        return out
"""

METRICS = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        # The families must outlive their metrics (Triton refuses a metric whose family is gone).
        self.families = [pb_utils.MetricFamily("soak_calls", "calls", pb_utils.MetricFamily.COUNTER),
                         pb_utils.MetricFamily("soak_size", "size", pb_utils.MetricFamily.GAUGE)]
        self.calls = self.families[0].Metric(labels={"m": "soak"})
        self.size = self.families[1].Metric(labels={"m": "soak"})

    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "IN").as_numpy()
            self.calls.increment(1)
            self.size.set(float(x.size))
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", x)]))
        return out
"""

CONTROL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        pb_utils.unload_model("spare")
        pb_utils.load_model("spare")
        ready = pb_utils.is_model_ready("spare")
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy() * 0 + int(ready))])
                for r in requests]
"""

MODELS = {"unary": (UNARY, False), "stream": (STREAM, True), "bls": (BLS, False),
          "metrics": (METRICS, False), "control": (CONTROL, False), "spare": (UNARY, False)}
SIZES = (1, 16, 1024, 65536, 262144)
READS = 8                    # reads of a region's allocated bytes per sample (the lowest counts)


class Traffic:
    def __init__(self, server: TritonServer):
        self.server = server
        self.stop = threading.Event()
        self.calls = 0
        self.errors: "queue.Queue" = queue.Queue()
        self._lock = threading.Lock()

    def _count(self):
        with self._lock:
            self.calls += 1

    def unary_loop(self, models):
        import tritonclient.grpc as grpcclient
        client = grpcclient.InferenceServerClient(self.server.grpc_url)
        i = 0
        try:
            while not self.stop.is_set():
                model = models[i % len(models)]
                n = SIZES[i % len(SIZES)] if model == "unary" else 16
                x = np.arange(n, dtype=np.int32)
                inp = grpcclient.InferInput("IN", [n], "INT32")
                inp.set_data_from_numpy(x)
                try:
                    out = client.infer(model, [inp]).as_numpy("OUT")
                    if model in ("unary", "bls", "metrics") and not np.array_equal(out, x):
                        self.errors.put(f"{model}: wrong output")
                except Exception as e:  # noqa: BLE001
                    self.errors.put(f"{model}: {e}")
                self._count()
                i += 1
        finally:
            client.close()

    def stream_loop(self):
        import tritonclient.grpc as grpcclient
        i = 0
        while not self.stop.is_set():
            client = grpcclient.InferenceServerClient(self.server.grpc_url)
            got: "queue.Queue" = queue.Queue()
            client.start_stream(callback=lambda result, error: got.put((result, error)))
            cancel = i % 3 == 0
            inp = grpcclient.InferInput("IN", [1], "INT32")
            inp.set_data_from_numpy(np.full(1, int(cancel), np.int32))
            client.async_stream_infer("stream", [inp], enable_empty_final_response=True)
            try:
                for k in range(21):
                    result, error = got.get(timeout=30)
                    if error is not None:
                        self.errors.put(f"stream: {error}")
                        break
                    if cancel and k == 5:
                        break
                    if result.get_response().parameters.get("triton_final_response").bool_param:
                        break
            except queue.Empty:
                self.errors.put("stream: no response in 30 s")
            client.stop_stream(cancel_requests=cancel)
            client.close()
            self._count()
            i += 1

    def control_loop(self, every_s: float):
        import tritonclient.http as httpclient
        client = httpclient.InferenceServerClient(self.server.http_url)
        try:
            while not self.stop.wait(every_s):
                inp = httpclient.InferInput("IN", [1], "INT32")
                inp.set_data_from_numpy(np.zeros(1, np.int32))
                try:
                    if client.infer("control", [inp]).as_numpy("OUT").tolist() != [1]:
                        self.errors.put("control: spare not ready after its reload")
                except Exception as e:  # noqa: BLE001
                    self.errors.put(f"control: {e}")
                self._count()
        finally:
            client.close()


def _proc_status(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def sample(server: TritonServer, models) -> dict:
    """One sample per model: stub RSS (KiB), stub fds, region allocated bytes."""
    from shm_helpers import allocated_bytes
    row = {}
    for m in models:
        model_py = str(server.model_repository / m / "1" / "model.py")
        pids = [p for p in processes_naming(model_py) if p != server.pid]
        stub = [p for p in pids if parent_pid(p) == server.pid]
        if not stub:
            continue
        pid = stub[0]
        row[f"{m}_rss_kib"] = _proc_status(pid, "VmRSS")
        row[f"{m}_fds"] = _fds(pid)
        region = next((a for a in open(f"/proc/{pid}/cmdline").read().split("\0")
                       if a.startswith(server.region_prefix)), None)
        if region:
            # The lowest of a few reads: one read may catch a large request in flight, and what
            # must stay flat is what is left between requests.
            reads = []
            for _ in range(READS):
                try:
                    reads.append(allocated_bytes(region))
                except Exception:  # noqa: BLE001 - a region that stays torn: skip this read
                    pass
                time.sleep(0.05)
            if reads:
                row[f"{m}_allocated"] = min(reads)
    return row


def write_svg(path: Path, samples, measures) -> None:
    """Small multiples: one polyline per measure against time (no plotting library needed)."""
    w, h, pad = 360, 120, 30
    cols = 3
    rows = (len(measures) + cols - 1) // cols
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{cols * w}" height="{rows * h}" '
             'font-family="sans-serif" font-size="10">']
    t = [s["t_s"] for s in samples]
    for i, m in enumerate(measures):
        x0, y0 = (i % cols) * w, (i // cols) * h
        ys = [s.get(m) for s in samples]
        pts = [(a, b) for a, b in zip(t, ys) if b is not None]
        parts.append(f'<text x="{x0 + pad}" y="{y0 + 12}">{m}</text>')
        if len(pts) < 2:
            continue
        lo, hi = min(b for _, b in pts), max(b for _, b in pts)
        span_t = (t[-1] - t[0]) or 1
        span_y = (hi - lo) or 1
        coords = " ".join(f"{x0 + pad + (a - t[0]) / span_t * (w - 2 * pad):.1f},"
                          f"{y0 + h - pad + 10 - (b - lo) / span_y * (h - 2 * pad):.1f}" for a, b in pts)
        parts.append(f'<polyline fill="none" stroke="black" points="{coords}"/>')
        parts.append(f'<text x="{x0 + pad}" y="{y0 + h - 4}">{lo:g} .. {hi:g} over {span_t:.0f} s</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts))


def run(minutes: float, interval: float, out: Path, warmup: float, tolerance: float,
        stub: str = "ours") -> int:
    out.mkdir(parents=True, exist_ok=True)
    repo = make_model_repository(Path(tempfile.mkdtemp(prefix="soak-")) / "repo", {
        name: ModelSpec(src, config=_config(name, dec), stub=stub) for name, (src, dec) in MODELS.items()
    })
    names = list(MODELS)
    server = TritonServer(repo, models=names, log_dir=out / "log",
                          extra_args=["--model-control-mode=explicit",
                                      *[f"--load-model={m}" for m in names]])
    server.start()
    traffic = Traffic(server)
    threads = [threading.Thread(target=traffic.unary_loop, args=(["unary", "bls", "metrics"],), daemon=True),
               threading.Thread(target=traffic.unary_loop, args=(["unary"],), daemon=True),
               threading.Thread(target=traffic.stream_loop, daemon=True),
               threading.Thread(target=traffic.control_loop, args=(max(interval / 2, 1.0),), daemon=True)]
    watched = [m for m in names if m != "spare"]          # spare's stub is replaced on every reload
    samples = []
    began = time.monotonic()
    try:
        for t in threads:
            t.start()
        end = began + minutes * 60
        while True:
            row = {"t_s": round(time.monotonic() - began, 1), "calls": traffic.calls,
                   "errors": traffic.errors.qsize()}
            row.update(sample(server, watched))
            samples.append(row)
            print(row, flush=True)
            if time.monotonic() >= end:
                break
            time.sleep(min(interval, max(end - time.monotonic(), 0.1)))
    finally:
        traffic.stop.set()
        for t in threads:
            t.join(60)
        rc = server.stop(timeout=60)
    measures = sorted({k for s in samples for k in s} - {"t_s", "calls", "errors"})
    with open(out / "samples.csv", "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=["t_s", "calls", "errors", *measures])
        wr.writeheader()
        wr.writerows(samples)
    write_svg(out / "soak.svg", samples, measures)
    after = [s for s in samples if s["t_s"] >= warmup] or samples
    first, last = after[0], samples[-1]
    flat = True
    print(f"\n{len(samples)} samples, {traffic.calls} calls, {traffic.errors.qsize()} errors, "
          f"server exit {rc}")
    for m in measures:
        a, b = first.get(m), last.get(m)
        if a is None or b is None:
            continue
        grew = (b - a) / a if a else 0.0
        ok = grew <= tolerance
        flat &= ok
        print(f"  {m:24s} {a:>12} -> {b:>12}  ({grew:+.1%}){'' if ok else '  GREW'}")
    errors = []
    while not traffic.errors.empty():
        errors.append(traffic.errors.get())
    for e in sorted(set(errors))[:10]:
        print("  error:", e)
    print(f"wrote {out / 'samples.csv'} and {out / 'soak.svg'}")
    left = [f"{len(server.orphans)} process(es)"] * bool(server.orphans) + \
        [f"{len(server.leaked_regions)} region(s)"] * bool(server.leaked_regions)
    if left:
        print("  left behind:", ", ".join(left))
    return 0 if flat and not errors and rc == 0 and not left else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=60.0, help="how long to run (default 60)")
    p.add_argument("--interval", type=float, default=60.0, help="seconds between samples (default 60)")
    p.add_argument("--warmup", type=float, default=None,
                   help="seconds before the baseline sample (default: 2 intervals)")
    p.add_argument("--tolerance", type=float, default=0.10, help="allowed growth after warm-up (0.10 = 10%%)")
    p.add_argument("--out", type=Path, default=Path("soak-out"), help="output folder")
    p.add_argument("--stub", choices=("ours", "cpp"), default="ours",
                   help="which stub serves the models (cpp: Triton's own, the baseline)")
    a = p.parse_args(argv)
    warmup = a.warmup if a.warmup is not None else 2 * a.interval
    return run(a.minutes, a.interval, a.out, warmup, a.tolerance, a.stub)


if __name__ == "__main__":
    sys.exit(main())
