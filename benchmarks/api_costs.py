"""Per-call cost of the model API, C++ stub vs tritonstub, under one real tritonserver.

    python benchmarks/api_costs.py            # about 1 minute
    python benchmarks/api_costs.py --quick    # about 20 s

One server serves both stubs' copies of the same models (identical model.py and config; only
the per-model stub differs), and the two are measured in alternating rounds (cpp, ours, ours,
cpp, ...) so that drift on a busy machine hits both alike. The models time the calls themselves
(``time.perf_counter_ns`` around the call, in model.py), so the figures are what model code
waits for, per call:

1. **decoupled send**: ``sender.send(response)`` of a small response (one INT32 [1] output) in a
   decoupled model, streaming to a gRPC client; the response objects are built before the clock
   starts. Also the client-side rate: responses per second from sending the request to the
   last response.
2. **BLS round trip**: ``InferenceRequest(...).exec()`` from a model to a plain model of the same
   stub (FP32 [16] in and out); the request is built before the clock starts, the output is read
   after it stops.

With each call the model also takes its thread's CPU time (``time.thread_time_ns``): the
stub-side CPU of a send or a BLS call, waits excluded, which moves far less with the machine's
load than the wall time does.

Printed: median and p90 in microseconds per stub, and ours / C++. Everything listens on
127.0.0.1; servers are stopped by pid and checked for leftovers (exit status 1 if any).
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from tritonstub.testing.reference import provision  # noqa: E402
from tritonstub.testing.tritonserver import ModelSpec, TritonServer, make_model_repository  # noqa: E402

STUBS = ("cpp", "ours")
TIMEOUT_S = 120.0

STREAM_MODEL = '''
import time

import numpy as np
import triton_python_backend_utils as pb_utils

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            n = int(pb_utils.get_input_tensor_by_name(request, "N").as_numpy()[0])
            sender = request.get_response_sender()
            responses = [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([i], np.int32))])
                         for i in range(n)]
            durations = np.zeros(n, dtype=np.int64)
            cpu = np.zeros(n, dtype=np.int64)
            clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
            for i, response in enumerate(responses):
                c0 = cpu_clock()
                t0 = clock()
                sender.send(response)
                durations[i] = clock() - t0
                cpu[i] = cpu_clock() - c0
            sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("DUR", durations),
                                                    pb_utils.Tensor("CPU", cpu)]), flags=FINAL)
        return None
'''
STREAM_CONFIG = '''
backend: "python"
max_batch_size: 0
model_transaction_policy { decoupled: true }
input [ { name: "N" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [
  { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] },
  { name: "DUR" data_type: TYPE_INT64 dims: [ -1 ] },
  { name: "CPU" data_type: TYPE_INT64 dims: [ -1 ] }
]
instance_group [ { kind: KIND_CPU count: 1 } ]
'''

LEAF_MODEL = '''
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy() + 1)]) for r in requests]
'''
LEAF_CONFIG = '''
backend: "python"
max_batch_size: 0
input [ { name: "X" data_type: TYPE_FP32 dims: [ 16 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 16 ] } ]
instance_group [ { kind: KIND_CPU count: 1 } ]
'''
CALLER_MODEL = '''
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.leaf = "leaf_" + args["model_name"].rsplit("_", 1)[1]

    def execute(self, requests):
        responses = []
        for request in requests:
            k = int(pb_utils.get_input_tensor_by_name(request, "K").as_numpy()[0])
            x = pb_utils.Tensor("X", np.arange(16, dtype=np.float32))
            durations = np.zeros(k, dtype=np.int64)
            cpu = np.zeros(k, dtype=np.int64)
            clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
            for i in range(k):
                bls = pb_utils.InferenceRequest(model_name=self.leaf, inputs=[x], requested_output_names=["Y"])
                c0 = cpu_clock()
                t0 = clock()
                response = bls.exec()
                durations[i] = clock() - t0
                cpu[i] = cpu_clock() - c0
                if response.has_error():
                    raise pb_utils.TritonModelException(response.error().message())
                y = pb_utils.get_output_tensor_by_name(response, "Y").as_numpy()
                assert y[3] == 4.0
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("DUR", durations),
                                                         pb_utils.Tensor("CPU", cpu)]))
        return responses
'''
CALLER_CONFIG = '''
backend: "python"
max_batch_size: 0
input [ { name: "K" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [
  { name: "DUR" data_type: TYPE_INT64 dims: [ -1 ] },
  { name: "CPU" data_type: TYPE_INT64 dims: [ -1 ] }
]
instance_group [ { kind: KIND_CPU count: 1 } ]
'''


def _stream_round(server: TritonServer, model: str, n: int):
    """One request of n responses; returns (send durations in ns, the sending thread's CPU per
    send in ns, client responses per second)."""
    import tritonclient.grpc as grpcclient

    got: "queue.Queue" = queue.Queue()
    client = grpcclient.InferenceServerClient(server.grpc_url)
    done = False
    try:
        client.start_stream(callback=lambda result, error: got.put((result, error)))
        data = grpcclient.InferInput("N", [1], "INT32")
        data.set_data_from_numpy(np.array([n], np.int32))
        began = time.perf_counter()
        client.async_stream_infer(model, [data])
        count = 0
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            result, error = got.get(timeout=max(0.01, deadline - time.monotonic()))
            if error is not None:
                raise RuntimeError(f"{model}: {error}")
            durations = result.as_numpy("DUR")
            if durations is not None:
                cpu = result.as_numpy("CPU")
                break
            count += 1
        elapsed = time.perf_counter() - began
        done = True
        if count != n:
            raise RuntimeError(f"{model}: {count} responses, expected {n}")
        return durations.tolist(), cpu.tolist(), count / elapsed
    finally:
        # A completed stream is not cancelled: Triton 2.51 then never unloads the model
        # (benchmarks/stream_cancel_unload.py).
        client.stop_stream(cancel_requests=not done)
        client.close()


def _bls_round(server: TritonServer, model: str, k: int) -> Tuple[List[int], List[int]]:
    """k BLS calls in one request: (durations, the calling thread's CPU per call), in ns."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        data = grpcclient.InferInput("K", [1], "INT32")
        data.set_data_from_numpy(np.array([k], np.int32))
        result = client.infer(model, [data], client_timeout=TIMEOUT_S)
        return result.as_numpy("DUR").tolist(), result.as_numpy("CPU").tolist()
    finally:
        client.close()


def _summary(values_ns: List[int]) -> Dict[str, float]:
    us = sorted(v / 1000.0 for v in values_ns)
    return {"median_us": statistics.median(us), "p90_us": us[int(0.9 * (len(us) - 1))], "n": len(us)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and calls")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--ours", default="ours", metavar="PATH",
                        help="the stub executable of the 'ours' column (default: ours on this "
                             "interpreter; e.g. one written by `pypy3 -m tritonstub install-stub DIR`)")
    args = parser.parse_args(argv)
    kind = {"cpp": "cpp", "ours": args.ours}
    rounds, sends, calls = (2, 1000, 200) if args.quick else (6, 3000, 600)

    reference = provision(allow_apt=False)
    work = Path(tempfile.mkdtemp(prefix="api_costs-"))
    models = {}
    for stub in STUBS:
        models[f"stream_{stub}"] = ModelSpec(STREAM_MODEL, config=STREAM_CONFIG, stub=kind[stub])
        models[f"leaf_{stub}"] = ModelSpec(LEAF_MODEL, config=LEAF_CONFIG, stub=kind[stub])
        models[f"caller_{stub}"] = ModelSpec(CALLER_MODEL, config=CALLER_CONFIG, stub=kind[stub])
    repo = make_model_repository(work / "repo", models, reference=reference)
    server = TritonServer(repo, reference=reference, log_dir=work / "server", models=list(models),
                          startup_timeout=120.0)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; {rounds} rounds of {sends} sends "
          f"and {calls} BLS calls per stub", flush=True)
    send_ns: Dict[str, List[int]] = {s: [] for s in STUBS}
    rates: Dict[str, List[float]] = {s: [] for s in STUBS}
    bls_ns: Dict[str, List[int]] = {s: [] for s in STUBS}
    send_cpu_ns: Dict[str, List[int]] = {s: [] for s in STUBS}
    bls_cpu_ns: Dict[str, List[int]] = {s: [] for s in STUBS}
    try:
        server.start()
        for stub in STUBS:  # warm-up, not measured
            _stream_round(server, f"stream_{stub}", 200)
            _bls_round(server, f"caller_{stub}", 50)
        for r in range(rounds):
            order = STUBS if r % 2 == 0 else tuple(reversed(STUBS))
            for stub in order:
                durations, cpu, rate = _stream_round(server, f"stream_{stub}", sends)
                send_ns[stub] += durations
                send_cpu_ns[stub] += cpu
                rates[stub].append(rate)
                durations, cpu = _bls_round(server, f"caller_{stub}", calls)
                bls_ns[stub] += durations
                bls_cpu_ns[stub] += cpu
    finally:
        server.stop()
    report = server.cleanup_report()

    figures = {"send": {s: _summary(send_ns[s]) for s in STUBS},
               "bls": {s: _summary(bls_ns[s]) for s in STUBS},
               "send_cpu": {s: _summary(send_cpu_ns[s]) for s in STUBS},
               "bls_cpu": {s: _summary(bls_cpu_ns[s]) for s in STUBS},
               "stream_rate_per_s": {s: statistics.median(rates[s]) for s in STUBS}}
    print(f"\n{'':28s}{'C++ stub':>22s}{'tritonstub':>22s}{'ours / C++':>12s}")
    for key, label in (("send", "decoupled send (µs)"), ("send_cpu", "  its thread's CPU (µs)"),
                       ("bls", "BLS exec round trip (µs)"), ("bls_cpu", "  its thread's CPU (µs)")):
        cpp, ours = figures[key]["cpp"], figures[key]["ours"]
        print(f"{label:28s}{cpp['median_us']:>12.1f} (p90 {cpp['p90_us']:6.1f})"
              f"{ours['median_us']:>12.1f} (p90 {ours['p90_us']:6.1f}){ours['median_us'] / cpp['median_us']:>12.2f}")
    rate = figures["stream_rate_per_s"]
    print(f"{'stream, client side (resp/s)':28s}{rate['cpp']:>22.0f}{rate['ours']:>22.0f}"
          f"{rate['ours'] / rate['cpp']:>12.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    if report:
        print(f"\nthe server left things behind:\n{report}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
