"""The LLM shape: a decoupled model streaming tokens to concurrent gRPC streams, C++ stub vs ours.

    python benchmarks/llm_stream.py                 # 6 rounds, about 1-2 minutes
    python benchmarks/llm_stream.py --quick         # 2 rounds
    python benchmarks/llm_stream.py --streams 8 --tokens 512 --json out.json

One tritonserver serves ``llm_cpp`` and ``llm_ours``: the same model.py and config, only the
per-model stub differs. The model is shaped like the vLLM backend (a python-backend model): its
``execute`` hands each request to a generator thread and returns None at once; the thread sends
one small response per token through the request's response sender (one INT32 [1] token id and
an INT32 [1] position), the last one with FINAL. Each round opens ``--streams`` gRPC streams at
once (one client each), sends one request of ``--tokens`` tokens on every stream, and waits
for all of them; tokens per second = all tokens / wall time of the round, as the clients saw
it. Rounds alternate cpp, ours, ours, cpp, ... so that drift on a busy machine hits both alike.
The load average is printed with every round.

Memory, for each stub: the instance stub process's RSS (VmRSS, /proc) and its region's
allocated bytes (the Boost segment's size minus its free memory, read from a snapshot of the
/dev/shm file the way ``tritonstub shm inspect`` does) when idle (after the warm-up, before a
round) and loaded (the maximum seen by a 10 ms sampler during the rounds).

Everything listens on 127.0.0.1; the server is stopped by pid and checked for leftovers (exit
status 1 if any).
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from tritonstub.ipc.inspect import inspect_region  # noqa: E402
from tritonstub.testing.reference import provision  # noqa: E402
from tritonstub.testing.tritonserver import ModelSpec, TritonServer, cmdline, make_model_repository  # noqa: E402

STUBS = ("cpp", "ours")
TIMEOUT_S = 300.0

LLM_MODEL = '''
import threading

import numpy as np
import triton_python_backend_utils as pb_utils

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


class TritonPythonModel:
    """vLLM-shaped: execute returns at once; a generator thread per request streams tokens."""

    def initialize(self, args):
        self.threads = []

    def execute(self, requests):
        for request in requests:
            n = int(pb_utils.get_input_tensor_by_name(request, "N").as_numpy()[0])
            sender = request.get_response_sender()
            t = threading.Thread(target=self.generate, args=(sender, n), daemon=True)
            t.start()
            self.threads = [x for x in self.threads if x.is_alive()] + [t]
        return None

    def generate(self, sender, n):
        for i in range(n):
            token = np.array([(i * 7919) % 32000], np.int32)
            response = pb_utils.InferenceResponse([pb_utils.Tensor("TOKEN", token),
                                                   pb_utils.Tensor("POS", np.array([i], np.int32))])
            sender.send(response, flags=FINAL if i == n - 1 else 0)

    def finalize(self):
        for t in self.threads:
            t.join(timeout=30)
'''
LLM_CONFIG = '''
backend: "python"
max_batch_size: 0
model_transaction_policy { decoupled: true }
input [ { name: "N" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [
  { name: "TOKEN" data_type: TYPE_INT32 dims: [ 1 ] },
  { name: "POS" data_type: TYPE_INT32 dims: [ 1 ] }
]
instance_group [ { kind: KIND_CPU count: 1 } ]
'''


def _stream(server: TritonServer, model: str, n: int, start: threading.Barrier, out: list) -> None:
    """One gRPC stream, one request of n tokens; appends the count of tokens received in order."""
    import tritonclient.grpc as grpcclient

    got: "queue.Queue" = queue.Queue()
    client = grpcclient.InferenceServerClient(server.grpc_url)
    done = False
    try:
        client.start_stream(callback=lambda result, error: got.put((result, error)))
        data = grpcclient.InferInput("N", [1], "INT32")
        data.set_data_from_numpy(np.array([n], np.int32))
        start.wait(timeout=60)
        client.async_stream_infer(model, [data])
        deadline = time.monotonic() + TIMEOUT_S
        for i in range(n):
            result, error = got.get(timeout=max(0.01, deadline - time.monotonic()))
            if error is not None:
                raise RuntimeError(f"{model}: {error}")
            pos = int(result.as_numpy("POS")[0])
            if pos != i:
                raise RuntimeError(f"{model}: token {pos} arrived at position {i}")
        done = True
        out.append(n)
    finally:
        # A completed stream is not cancelled: Triton 2.51 then never unloads the model
        # (benchmarks/stream_cancel_unload.py).
        client.stop_stream(cancel_requests=not done)
        client.close()


def llm_round(server: TritonServer, model: str, streams: int, tokens: int) -> float:
    """All streams at once; returns tokens per second over the round."""
    start = threading.Barrier(streams + 1)
    counts: list = []
    errors: list = []

    def run():
        try:
            _stream(server, model, tokens, start, counts)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=run, daemon=True) for _ in range(streams)]
    for t in threads:
        t.start()
    start.wait(timeout=60)
    began = time.perf_counter()
    for t in threads:
        t.join(TIMEOUT_S + 30)
    elapsed = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"{model}: {errors[0]}")
    if sum(counts) != streams * tokens:
        raise RuntimeError(f"{model}: {sum(counts)} tokens, expected {streams * tokens}")
    return streams * tokens / elapsed


# ------------------------------------------------------------------------------ memory

def instance_stub(server: TritonServer, model: str) -> tuple:
    """(pid, region name) of the model's instance stub (the lowest pid: our heartbeat helper is
    a fork of the stub with the same command line)."""
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            argv = cmdline(int(d)).split()   # ours runs as `python -m tritonstub.stub ...`
            for i, a in enumerate(argv[:-1]):
                if a.endswith(f"/{model}/1/model.py") and argv[i + 1].startswith(server.region_prefix):
                    found.append((int(d), argv[i + 1]))
    if not found:
        raise RuntimeError(f"no stub process found for {model}")
    return min(found)


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def region_allocated(region: str) -> Optional[int]:
    """Allocated bytes of the region's segment (size - free memory), from a snapshot."""
    try:
        info = inspect_region(region)
    except Exception:  # noqa: BLE001 - a torn snapshot of a busy region: no figure this time
        return None
    return int(info["segment_size"]) - int(info["free_memory"])


class MemorySampler:
    """Maximum RSS and region allocation of one stub while running (10 ms period)."""

    def __init__(self, pid: int, region: str):
        self.pid, self.region = pid, region
        self.max_rss = 0
        self.max_alloc = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.max_rss = max(self.max_rss, rss_bytes(self.pid))
            a = region_allocated(self.region)
            if a is not None:
                self.max_alloc = max(self.max_alloc, a)

    def __enter__(self) -> "MemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds instead of 6")
    parser.add_argument("--rounds", type=int, help="rounds per stub (default 6; quick 2)")
    parser.add_argument("--streams", type=int, default=8, help="concurrent gRPC streams (default 8)")
    parser.add_argument("--tokens", type=int, default=512, help="responses per request (default 512)")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--ours", default="ours", metavar="PATH",
                        help="the stub executable of the 'ours' column (default: ours on this "
                             "interpreter; e.g. one written by `pypy3 -m tritonstub install-stub DIR`)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 6)

    reference = provision(allow_apt=False)
    work = Path(tempfile.mkdtemp(prefix="llm_stream-"))
    models = {f"llm_{s}": ModelSpec(LLM_MODEL, config=LLM_CONFIG, stub={"cpp": "cpp", "ours": args.ours}[s])
              for s in STUBS}
    repo = make_model_repository(work / "repo", models, reference=reference)
    server = TritonServer(repo, reference=reference, log_dir=work / "server", models=list(models),
                          startup_timeout=120.0)
    print(f"{args.streams} streams x {args.tokens} tokens, {rounds} rounds per stub; "
          f"{os.cpu_count()} CPUs", flush=True)
    rates: Dict[str, List[float]] = {s: [] for s in STUBS}
    memory: Dict[str, dict] = {}
    try:
        server.start()
        stubs = {s: instance_stub(server, f"llm_{s}") for s in STUBS}
        for s in STUBS:  # warm-up, not measured
            llm_round(server, f"llm_{s}", args.streams, 16)
        time.sleep(1.5)  # past our stub's one idle second (a block cache, if on, is flushed)
        for s in STUBS:
            pid, region = stubs[s]
            memory[s] = {"idle_rss": rss_bytes(pid), "idle_region_allocated": region_allocated(region)}
        samplers = {s: MemorySampler(*stubs[s]).__enter__() for s in STUBS}
        for r in range(rounds):
            for s in (STUBS if r % 2 == 0 else STUBS[::-1]):
                load = os.getloadavg()[0]
                rate = llm_round(server, f"llm_{s}", args.streams, args.tokens)
                rates[s].append(rate)
                print(f"  round {r} {s:4s}: {rate:9.0f} tokens/s  (load average {load:.2f})", flush=True)
        for s in STUBS:
            samplers[s].__exit__()
            memory[s]["loaded_rss"] = samplers[s].max_rss
            memory[s]["loaded_region_allocated"] = samplers[s].max_alloc
    finally:
        server.stop()
    report = server.cleanup_report()

    med = {s: statistics.median(rates[s]) for s in STUBS}
    print(f"\n{'':34s}{'C++ stub':>14s}{'tritonstub':>14s}{'ours / C++':>12s}")
    print(f"{'tokens/s (median of rounds)':34s}{med['cpp']:>14.0f}{med['ours']:>14.0f}"
          f"{med['ours'] / med['cpp']:>12.2f}")
    for key, label in (("idle_rss", "stub RSS idle (MiB)"), ("loaded_rss", "stub RSS loaded, max (MiB)"),
                       ("idle_region_allocated", "region allocated idle (KiB)"),
                       ("loaded_region_allocated", "region allocated loaded, max (KiB)")):
        unit = 1 << 20 if "rss" in key else 1 << 10
        c, o = memory["cpp"].get(key), memory["ours"].get(key)
        if c is None or o is None:
            print(f"{label:34s}{'n/a':>14s}{'n/a':>14s}")
            continue
        print(f"{label:34s}{c / unit:>14.1f}{o / unit:>14.1f}{(o / c if c else float('nan')):>12.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rates": rates, "median": med, "memory": memory,
                                               "streams": args.streams, "tokens": args.tokens},
                                              indent=2) + "\n")
    if report:
        print(f"\nthe server left things behind:\n{report}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
