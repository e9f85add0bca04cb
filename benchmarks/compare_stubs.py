"""C++ stub vs tritonstub under the same real tritonserver: per-request cost, big tensors, start-up.

    .venv/bin/python benchmarks/compare_stubs.py                 # default run, about 4 minutes
    .venv/bin/python benchmarks/compare_stubs.py --quick         # about 1 minute
    .venv/bin/python benchmarks/compare_stubs.py --json out.json # also write every raw number

What it measures (issue 3, item 6), with the same tritonserver binary and the same model files:

1. **Per request** (small tensors, FP32 ``add``: two [16] inputs, sum and difference out). ONE
   server serves ``add_cpp`` and ``add_ours``: identical model.py and config, only the per-model
   stub differs. At each concurrency (1, 4, 16) the two models are measured in alternating blocks
   (cpp ours, ours cpp, ...) so that drift on a busy machine hits both alike. Each block runs
   ``concurrency`` threads, each with its own gRPC client, for a fixed time. Per block:
   - server side, from the statistics API (``/v2/models/<m>/stats``, difference of the counters
     around the block): queue, compute_input, compute_infer, compute_output per request;
     "server compute" = compute_input + compute_infer + compute_output (what the python backend
     spends on a request; compute_infer is the round trip through the stub);
   - CPU time per request of the stub process(es) and of tritonserver (/proc, 10 ms ticks);
   - client side: latency of every request (p50, p99) and throughput (requests / block time).
2. **64 MiB round trip** (UINT8 ``identity``: 64 MiB in, the same 64 MiB out), in the same server
   (``identity_cpp`` / ``identity_ours``), alternating the two, over two transports: HTTP with a
   binary body (what most clients do; the client and the HTTP copies dominate) and Triton's
   system shared memory (a region of this benchmark; the round trip is then mostly the server's
   and the stub's work). Client latency per request and the server compute per request.
3. **Start to READY**: a fresh tritonserver per start, with one model (``add``, one instance) whose
   stub is cpp or ours, alternating; the time from launching tritonserver until the model answers
   ready (so it includes the auto-complete stub and the instance stub launches), polled every
   10 ms. Median of several starts, after one unmeasured warm-up start per stub. The servers run
   with ``--log-verbose=1`` so that the log splits the time into the auto-complete stub phase
   (its launch until the instance stub's launch; it contains the python backend's fixed 1 s
   UpdateHealth sleep after a successful auto-complete) and the instance stub phase (its launch
   until the model is loaded), where a slower stub start shows undiluted.

Ratios are ours/C++ for every row, so below 1 is better for us except for throughput. The
thresholds of issue 3 are checked on: server compute per request at concurrency 1 (<= 1.5x),
each 64 MiB round trip (<= 1.2x) and start to READY (<= 1.5x).

Byte code. The C++ stub's embedded interpreter ignores PYTHON* variables; ours honours them. With
``PYTHONDONTWRITEBYTECODE=1`` (common in dev shells and CI) an editable install of tritonstub is
compiled from source at every stub start. The main figures give our stub a byte-code cache the way
an installed package has one (``PYTHONPYCACHEPREFIX`` pointing to a private temporary directory,
filled by the warm-up), so nothing is written into the source tree. One extra row measures our
stub with ``PYTHONDONTWRITEBYTECODE=1`` and no cache (skipped by ``--quick``).

Everything listens on 127.0.0.1 only, every wait is bounded, servers are stopped by pid through
:class:`tritonstub.testing.tritonserver.TritonServer`, which also checks that no stub process and
no /dev/shm region is left behind (reported at the end; the exit status is 1 if any was).
The figures depend on the machine's load: the load average is printed and stored with them.
"""
from __future__ import annotations

import argparse
import json
import mmap
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from tritonstub.testing import tritonserver as ts  # noqa: E402
from tritonstub.testing.reference import provision  # noqa: E402
from tritonstub.testing.tritonserver import ModelSpec, TritonServer, make_model_repository  # noqa: E402

STUBS = ("cpp", "ours")
TRANSPORTS = ("http", "shm")
SMALL_LEN = 16
BIG_BYTES = 64 << 20
SMALL_TIMEOUT_S = 30.0
BIG_TIMEOUT_S = 120.0
STARTUP_TIMEOUT_S = 90.0
#: Resolution of the start-to-READY wait (TritonServer polls every 0.1 s by default).
START_POLL_S = 0.01

# ------------------------------------------------------------------------------------ models

# Both stubs run these files unchanged. initialize() prints the interpreter and numpy versions
# once, so the report can say what each stub ran with.
ADD_MODEL = '''\
import sys

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        print(f"compare_stubs: model {args['model_name']} python {sys.version.split()[0]} "
              f"numpy {np.__version__}", flush=True)

    def execute(self, requests):
        responses = []
        for request in requests:
            a = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("OUTPUT0", a + b),
                pb_utils.Tensor("OUTPUT1", a - b),
            ]))
        return responses
'''

IDENTITY_MODEL = '''\
import sys

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        print(f"compare_stubs: model {args['model_name']} python {sys.version.split()[0]} "
              f"numpy {np.__version__}", flush=True)

    def execute(self, requests):
        return [pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor("OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())])
                for r in requests]
'''

ADD_CONFIG = '''\
name: "{name}"
backend: "python"
max_batch_size: 0
input [
  {{ name: "INPUT0", data_type: TYPE_FP32, dims: [ {n} ] }},
  {{ name: "INPUT1", data_type: TYPE_FP32, dims: [ {n} ] }}
]
output [
  {{ name: "OUTPUT0", data_type: TYPE_FP32, dims: [ {n} ] }},
  {{ name: "OUTPUT1", data_type: TYPE_FP32, dims: [ {n} ] }}
]
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
'''

IDENTITY_CONFIG = '''\
name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "INPUT0", data_type: TYPE_UINT8, dims: [ -1 ] }} ]
output [ {{ name: "OUTPUT0", data_type: TYPE_UINT8, dims: [ -1 ] }} ]
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
'''


#: what each column installs: "ours" becomes the --ours executable when one is given
STUB_KIND = {s: s for s in STUBS}


def add_spec(name: str, stub: str) -> ModelSpec:
    return ModelSpec(model_py=ADD_MODEL, config=ADD_CONFIG.format(name=name, n=SMALL_LEN),
                     stub=STUB_KIND[stub])


def identity_spec(name: str, stub: str) -> ModelSpec:
    return ModelSpec(model_py=IDENTITY_MODEL, config=IDENTITY_CONFIG.format(name=name),
                     stub=STUB_KIND[stub])


# ------------------------------------------------------------------------------------ helpers

STAT_KEYS = ("queue", "compute_input", "compute_infer", "compute_output", "success")


def model_stats(server: TritonServer, model: str) -> Dict[str, Tuple[int, int]]:
    """{stat: (count, ns)} of the statistics API, plus ("inference", "execution") counts."""
    status, body = server.http("GET", f"/v2/models/{model}/stats", timeout=10.0)
    if status != 200:
        raise RuntimeError(f"GET /v2/models/{model}/stats returned {status}: {body[:300]!r}")
    entry = json.loads(body)["model_stats"][0]
    inf = entry["inference_stats"]
    out = {k: (int(inf[k]["count"]), int(inf[k]["ns"])) for k in STAT_KEYS}
    out["fail"] = (int(inf["fail"]["count"]), int(inf["fail"]["ns"]))
    out["counts"] = (int(entry["inference_count"]), int(entry["execution_count"]))
    return out


def stats_delta(before: dict, after: dict) -> dict:
    """Per-request averages in microseconds between two snapshots, and the counts."""
    d = {k: (after[k][0] - before[k][0], after[k][1] - before[k][1]) for k in before}
    n = d["success"][0]
    out = {"requests": n, "failures": d["fail"][0], "executions": d["counts"][1]}
    for k in ("queue", "compute_input", "compute_infer", "compute_output"):
        out[k + "_ns_total"] = d[k][1]
        out[k + "_us"] = d[k][1] / n / 1e3 if n else float("nan")
    out["compute_us"] = out["compute_input_us"] + out["compute_infer_us"] + out["compute_output_us"]
    return out


def pooled(blocks: List[dict]) -> dict:
    """Server stats of several blocks pooled: total ns / total requests."""
    n = sum(b["requests"] for b in blocks)
    out = {"requests": n, "failures": sum(b["failures"] for b in blocks)}
    for k in ("queue", "compute_input", "compute_infer", "compute_output"):
        out[k + "_us"] = sum(b[k + "_ns_total"] for b in blocks) / n / 1e3 if n else float("nan")
    out["compute_us"] = out["compute_input_us"] + out["compute_infer_us"] + out["compute_output_us"]
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (q in 0..100); NaN when empty."""
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def interleaved(rounds: int) -> List[Tuple[int, str]]:
    """(round, stub) in ABBA order: cpp ours, ours cpp, cpp ours, ..."""
    order = []
    for r in range(rounds):
        pair = STUBS if r % 2 == 0 else STUBS[::-1]
        order.extend((r, s) for s in pair)
    return order


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------ clients

class SmallClient:
    """One gRPC client with its request inputs built once (one per thread)."""

    def __init__(self, server: TritonServer, model: str, seed: int):
        import tritonclient.grpc as grpcclient
        self.client = server.grpc_client()
        self.model = model
        rng = np.random.default_rng(seed)
        self.a = rng.standard_normal(SMALL_LEN).astype(np.float32)
        self.b = rng.standard_normal(SMALL_LEN).astype(np.float32)
        self.inputs = [grpcclient.InferInput("INPUT0", [SMALL_LEN], "FP32"),
                       grpcclient.InferInput("INPUT1", [SMALL_LEN], "FP32")]
        self.inputs[0].set_data_from_numpy(self.a)
        self.inputs[1].set_data_from_numpy(self.b)

    def infer(self):
        return self.client.infer(self.model, self.inputs, client_timeout=SMALL_TIMEOUT_S)

    def check(self) -> None:
        res = self.infer()
        if not (np.array_equal(res.as_numpy("OUTPUT0"), self.a + self.b)
                and np.array_equal(res.as_numpy("OUTPUT1"), self.a - self.b)):
            raise RuntimeError(f"{self.model} returned wrong values")


def run_block(clients: List[SmallClient], seconds: float) -> Tuple[List[float], float, int]:
    """All clients send requests back to back for ``seconds``; (latencies in s, wall s, errors)."""
    barrier = threading.Barrier(len(clients) + 1)
    lat: List[List[float]] = [[] for _ in clients]
    errors = [0] * len(clients)
    first_error: List[str] = []
    deadline_box = [0.0]

    def worker(i: int) -> None:
        c, mine = clients[i], lat[i]
        pc = time.perf_counter
        barrier.wait(timeout=30)
        deadline = deadline_box[0]
        while True:
            t0 = pc()
            if t0 >= deadline:
                break
            try:
                c.infer()
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors[i] += 1
                if not first_error:
                    first_error.append(repr(exc)[:500])
                continue
            mine.append(pc() - t0)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(len(clients))]
    for t in threads:
        t.start()
    start = time.perf_counter()
    deadline_box[0] = start + seconds
    barrier.wait(timeout=30)
    for t in threads:
        t.join(seconds + 2 * SMALL_TIMEOUT_S)
        if t.is_alive():
            raise RuntimeError("a client thread did not finish in time")
    wall = time.perf_counter() - start
    if first_error:
        log(f"  client errors: {sum(errors)}; first: {first_error[0]}")
    return [x for xs in lat for x in xs], wall, sum(errors)


# ------------------------------------------------------------------------------------ CPU time

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) * _TICK_S  # fields 14, 15 of stat(5)


def stub_pids(server: TritonServer, model: str) -> List[int]:
    """The live stub processes of ``model`` (the instance stub, and our heartbeat helper)."""
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            line = ts.cmdline(int(d))
            if f"/{model}/1/model.py " in line and server.region_prefix in line:
                pids.append(int(d))
    return pids


class CpuMeter:
    """CPU seconds used by the stub processes of a model, by tritonserver and by this client."""

    def __init__(self, server: TritonServer, model: str):
        self.server = server
        self.pids = stub_pids(server, model)

    def read(self) -> Tuple[float, float, float]:
        return (sum(cpu_seconds(p) for p in self.pids), cpu_seconds(self.server.pid), time.process_time())


# ------------------------------------------------------------------------------------ phases

def stub_versions(server: TritonServer) -> Dict[str, str]:
    """What each model's interpreter reported at initialize (from the server log)."""
    found = {}
    for m in re.finditer(r"compare_stubs: model (\S+) (python \S+ numpy \S+)", server.log_text()):
        found[m.group(1)] = m.group(2)
    return found


def phase_requests(server: TritonServer, concurrencies: Sequence[int], rounds: int, block_s: float,
                   warmup_s: float) -> dict:
    results = {}
    for conc in concurrencies:
        clients = {s: [SmallClient(server, f"add_{s}", seed=1000 * conc + i) for i in range(conc)]
                   for s in STUBS}
        for s in STUBS:
            clients[s][0].check()
            run_block(clients[s], warmup_s)
        meters = {s: CpuMeter(server, f"add_{s}") for s in STUBS}
        blocks = []
        for r, s in interleaved(rounds):
            before = model_stats(server, f"add_{s}")
            cpu0 = meters[s].read()
            lat, wall, errors = run_block(clients[s], block_s)
            cpu1 = meters[s].read()
            after = model_stats(server, f"add_{s}")
            srv = stats_delta(before, after)
            n = max(srv["requests"], 1)
            cpu = {k: (b - a) / n * 1e6 for k, a, b in zip(("stub_us", "tritonserver_us", "client_us"), cpu0, cpu1)}
            blocks.append({"round": r, "stub": s, "wall_s": wall, "client_errors": errors,
                           "latencies_us": [round(x * 1e6, 1) for x in lat], "server": srv,
                           "cpu_per_request": cpu,
                           "stub_pids": meters[s].pids})
            log(f"  c={conc:<2} round {r} {s:4}: {len(lat)} req, {len(lat) / wall:8.1f} req/s, "
                f"p50 {percentile(lat, 50) * 1e3:.3f} ms, server compute {srv['compute_us']:.1f} us "
                f"(infer {srv['compute_infer_us']:.1f})")
        summary = {}
        for s in STUBS:
            mine = [b for b in blocks if b["stub"] == s]
            lat = [x for b in mine for x in b["latencies_us"]]
            summary[s] = {
                "requests": len(lat),
                "client_errors": sum(b["client_errors"] for b in mine),
                "p50_ms": percentile(lat, 50) / 1e3,
                "p99_ms": percentile(lat, 99) / 1e3,
                "throughput_rps": len(lat) / sum(b["wall_s"] for b in mine),
                "server": pooled([b["server"] for b in mine]),
                "server_compute_us_block_median": statistics.median(b["server"]["compute_us"] for b in mine),
                "cpu_per_request_us": {k: sum(b["cpu_per_request"][k] * b["server"]["requests"] for b in mine)
                                       / max(sum(b["server"]["requests"] for b in mine), 1)
                                       for k in ("stub_us", "tritonserver_us", "client_us")},
            }
        results[str(conc)] = {"blocks": blocks, "summary": summary}
    return results


class ClientShm:
    """A POSIX shm object of ours for Triton's system shared memory (created here, always unlinked)."""

    PREFIX = "compare_stubs_"

    def __init__(self, size: int):
        self.key = f"/{self.PREFIX}{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self.path = Path("/dev/shm") / self.key[1:]
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(fd, size)
            self.mm = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            raise
        os.close(fd)
        self.size = size

    def array(self) -> np.ndarray:
        return np.frombuffer(self.mm, dtype=np.uint8)

    def close(self) -> None:
        try:
            self.mm.close()
        except BufferError:  # a view is still alive; the unlink below still frees the name
            pass
        self.path.unlink(missing_ok=True)

    @classmethod
    def remove_stale(cls) -> List[str]:
        """Unlink ours left by a benchmark process that no longer exists (e.g. SIGKILLed)."""
        removed = []
        for p in Path("/dev/shm").glob(f"{cls.PREFIX}*"):
            try:
                pid = int(p.name[len(cls.PREFIX):].split("_")[0])
            except ValueError:
                continue
            if not Path(f"/proc/{pid}").exists():
                p.unlink(missing_ok=True)
                removed.append(p.name)
        return removed


def phase_big(server: TritonServer, reps: int, warmup: int) -> dict:
    """64 MiB through identity_<stub>, over HTTP (binary body) and over system shared memory."""
    import tritonclient.http as httpclient
    data = np.random.default_rng(7).integers(0, 256, size=BIG_BYTES, dtype=np.uint8)
    client = server.http_client(connection_timeout=BIG_TIMEOUT_S, network_timeout=BIG_TIMEOUT_S)
    http_in = httpclient.InferInput("INPUT0", [BIG_BYTES], "UINT8")
    http_in.set_data_from_numpy(data, binary_data=True)
    http_out = [httpclient.InferRequestedOutput("OUTPUT0", binary_data=True)]
    shm_in, shm_out = ClientShm(BIG_BYTES), ClientShm(BIG_BYTES)
    registered = []
    try:
        shm_in.array()[:] = data
        for name, region in (("compare_stubs_in", shm_in), ("compare_stubs_out", shm_out)):
            client.register_system_shared_memory(name, region.key, region.size)
            registered.append(name)
        s_in = httpclient.InferInput("INPUT0", [BIG_BYTES], "UINT8")
        s_in.set_shared_memory("compare_stubs_in", BIG_BYTES)
        s_out = httpclient.InferRequestedOutput("OUTPUT0", binary_data=True)
        s_out.set_shared_memory("compare_stubs_out", BIG_BYTES)

        def once(stub: str, transport: str, check: bool = False) -> float:
            model = f"identity_{stub}"
            if transport == "http":
                t0 = time.perf_counter()
                res = client.infer(model, [http_in], outputs=http_out)
                out = res.as_numpy("OUTPUT0")
                dt = time.perf_counter() - t0
                ok = (not check) or np.array_equal(out, data)
                del out, res
            else:
                if check:
                    shm_out.array()[:] = 0
                t0 = time.perf_counter()
                client.infer(model, [s_in], outputs=[s_out])
                dt = time.perf_counter() - t0
                ok = (not check) or np.array_equal(shm_out.array(), data)
            if not ok:
                raise RuntimeError(f"{model} returned different bytes over {transport}")
            return dt

        for s in STUBS:  # warm-up: the regions grow to fit 64 MiB twice, first-touch faults
            for t in TRANSPORTS:
                for i in range(warmup):
                    once(s, t, check=(i == 0))
        samples = {t: {s: [] for s in STUBS} for t in TRANSPORTS}
        server_per = {t: {s: [] for s in STUBS} for t in TRANSPORTS}
        for r, s in interleaved(reps):
            for t in TRANSPORTS:
                before = model_stats(server, f"identity_{s}")
                dt = once(s, t)
                srv = stats_delta(before, model_stats(server, f"identity_{s}"))
                samples[t][s].append(dt)
                server_per[t][s].append(srv)
                log(f"  64 MiB round {r} {s:4} {t:4}: {dt * 1e3:7.1f} ms, server compute "
                    f"{srv['compute_us'] / 1e3:6.1f} ms (infer {srv['compute_infer_us'] / 1e3:.1f})")
    finally:
        for name in registered:
            try:
                client.unregister_system_shared_memory(name)
            except Exception as exc:  # noqa: BLE001 - the server stop drops it anyway
                log(f"  unregister {name}: {exc}")
        shm_in.close()
        shm_out.close()
    summary = {t: {s: {"median_ms": statistics.median(samples[t][s]) * 1e3,
                       "min_ms": min(samples[t][s]) * 1e3,
                       "server": pooled(server_per[t][s])}
                   for s in STUBS} for t in TRANSPORTS}
    return {"round_trip_s": samples, "server_per_request": server_per, "summary": summary}


@dataclass
class StartResult:
    seconds: float
    phases: Dict[str, float]
    problems: str


_LOG_TIME = re.compile(r"^[IWE]\d{4} (\d\d):(\d\d):(\d\d\.\d+) ")


def _log_seconds(line: str) -> Optional[float]:
    m = _LOG_TIME.match(line)
    return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3)) if m else None


def start_phases(log_text: str) -> Dict[str, float]:
    """From a --log-verbose=1 log: the auto-complete stub phase (its launch until the instance
    stub's launch; it includes the python backend's own wait for the stub to exit) and the
    instance stub phase (its launch until the model is loaded)."""
    launches, loaded = [], None
    for line in log_text.splitlines():
        if "Starting Python backend stub" in line:
            launches.append(_log_seconds(line))
        elif "successfully loaded 'add'" in line:
            loaded = _log_seconds(line)
    if len(launches) != 2 or loaded is None or None in launches:
        return {}
    day = 86400.0
    return {"autocomplete_s": (launches[1] - launches[0]) % day, "instance_s": (loaded - launches[1]) % day}


def one_start(repo: Path, env: Dict[str, Optional[str]], log_dir: Path) -> StartResult:
    server = TritonServer(repo, env=env, models=("add",), startup_timeout=STARTUP_TIMEOUT_S,
                          log_dir=log_dir, log_verbose=1)
    try:
        server.start()
        seconds = server.startup_seconds
        phases = start_phases(server.log_text())
    finally:
        server.stop(timeout=30)
    return StartResult(seconds, phases, server.cleanup_report())


def phase_start(workdir: Path, env_cached: dict, env_nocache: Optional[dict], reps: int) -> dict:
    repos = {}
    for s in STUBS:
        repos[s] = make_model_repository(workdir / f"start_repo_{s}", {"add": add_spec("add", s)})
    problems: List[str] = []
    counter = [0]

    def start(s: str, env: dict) -> StartResult:
        counter[0] += 1
        res = one_start(repos[s], env, workdir / f"start_logs/{counter[0]:02d}_{s}")
        if res.problems:
            problems.append(f"start {counter[0]} ({s}): {res.problems}")
        return res

    def show(what: str, res: StartResult) -> None:
        ph = res.phases
        detail = (f" (auto-complete stub {ph['autocomplete_s']:.3f} s, instance stub {ph['instance_s']:.3f} s)"
                  if ph else "")
        log(f"  start {what}: {res.seconds:.3f} s{detail}")

    for s in STUBS:  # warm-up: byte-code cache, page cache
        show(f"warm-up {s:4}", start(s, env_cached))
    runs: Dict[str, List[StartResult]] = {s: [] for s in STUBS}
    nocache: List[StartResult] = []
    for r, s in interleaved(reps):
        runs[s].append(start(s, env_cached))
        show(f"round {r} {s:4}", runs[s][-1])
        if env_nocache is not None and s == "ours":
            nocache.append(start("ours", env_nocache))
            show(f"round {r} ours (no byte-code cache)", nocache[-1])

    def summarize(results: List[StartResult]) -> dict:
        out = {"median_s": statistics.median(x.seconds for x in results), "min_s": min(x.seconds for x in results)}
        for k in ("autocomplete_s", "instance_s"):
            vals = [x.phases[k] for x in results if x.phases]
            if vals:
                out[k.replace("_s", "_median_s")] = statistics.median(vals)
        return out

    raw = {s: [{"seconds": x.seconds, **x.phases} for x in runs[s]] for s in STUBS}
    out = {"runs": raw, "problems": problems, "summary": {s: summarize(runs[s]) for s in STUBS}}
    if nocache:
        out["runs"]["ours_no_bytecode_cache"] = [{"seconds": x.seconds, **x.phases} for x in nocache]
        out["summary"]["ours_no_bytecode_cache"] = summarize(nocache)
    return out


# ------------------------------------------------------------------------------------ report

@dataclass
class Row:
    label: str
    ours: float
    cpp: float
    unit: str
    threshold: Optional[float] = None  # max allowed ours/C++
    higher_is_better: bool = False

    @property
    def ratio(self) -> float:
        return self.ours / self.cpp if self.cpp else float("nan")

    @property
    def verdict(self) -> str:
        if self.threshold is None:
            return ""
        return ("PASS" if self.ratio <= self.threshold else "FAIL") + f" (<= {self.threshold:g}x)"


def rows_of(result: dict) -> List[Row]:
    rows: List[Row] = []
    for conc, data in result.get("requests", {}).items():
        o, c = data["summary"]["ours"], data["summary"]["cpp"]
        so, sc = o["server"], c["server"]
        rows.append(Row(f"c={conc} server compute / request", so["compute_us"], sc["compute_us"], "us",
                        threshold=1.5 if conc == "1" else None))
        for k in ("compute_input", "compute_infer", "compute_output", "queue"):
            rows.append(Row(f"c={conc}   {k} / request", so[k + "_us"], sc[k + "_us"], "us"))
        for k, what in (("stub_us", "stub process CPU"), ("tritonserver_us", "tritonserver CPU")):
            rows.append(Row(f"c={conc} {what} / request", o["cpu_per_request_us"][k],
                            c["cpu_per_request_us"][k], "us"))
        rows.append(Row(f"c={conc} client p50", o["p50_ms"], c["p50_ms"], "ms"))
        rows.append(Row(f"c={conc} client p99", o["p99_ms"], c["p99_ms"], "ms"))
        rows.append(Row(f"c={conc} throughput", o["throughput_rps"], c["throughput_rps"], "req/s",
                        higher_is_better=True))
    big = result.get("big")
    if big:
        b = big["summary"]
        for t, what in (("http", "HTTP binary"), ("shm", "system shm")):
            o, c = b[t]["ours"], b[t]["cpp"]
            rows.append(Row(f"64 MiB round trip, {what} (client median)", o["median_ms"], c["median_ms"], "ms",
                            threshold=1.2))
            rows.append(Row(f"64 MiB {t}: server compute / request", o["server"]["compute_us"] / 1e3,
                            c["server"]["compute_us"] / 1e3, "ms"))
            for k in ("compute_input", "compute_infer", "compute_output"):
                rows.append(Row(f"64 MiB {t}:   {k} / request", o["server"][k + "_us"] / 1e3,
                                c["server"][k + "_us"] / 1e3, "ms"))
    start = result.get("start")
    if start:
        s = start["summary"]
        o, c = s["ours"], s["cpp"]
        rows.append(Row("start to READY (median)", o["median_s"], c["median_s"], "s", threshold=1.5))
        for k, what in (("autocomplete_median_s", "auto-complete stub phase (incl. 1 s sleep)"),
                        ("instance_median_s", "instance stub phase")):
            if k in o and k in c:
                rows.append(Row(f"  {what}", o[k], c[k], "s"))
        n = s.get("ours_no_bytecode_cache")
        if n:
            rows.append(Row("start to READY, ours w/o byte-code cache", n["median_s"], c["median_s"], "s"))
            for k, what in (("autocomplete_median_s", "auto-complete stub phase"),
                            ("instance_median_s", "instance stub phase")):
                if k in n and k in c:
                    rows.append(Row(f"  {what}, no cache", n[k], c[k], "s"))
    return rows


def format_table(rows: List[Row]) -> str:
    def num(v: float) -> str:
        if v != v:
            return "n/a"
        return f"{v:,.1f}" if abs(v) >= 100 else f"{v:.3f}"

    head = f"{'figure':48} {'unit':>5} {'ours':>11} {'C++':>11} {'ours/C++':>9}  threshold"
    lines = [head, "-" * len(head)]
    for r in rows:
        ratio = "n/a" if r.ratio != r.ratio else f"{r.ratio:.2f}x"
        note = r.verdict or ("(higher is better)" if r.higher_is_better else "")
        lines.append(f"{r.label:48} {r.unit:>5} {num(r.ours):>11} {num(r.cpp):>11} {ratio:>9}  {note}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ main

def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a ~1 minute run (fewer, shorter blocks and starts)")
    p.add_argument("--json", metavar="PATH", help="write the raw numbers (every latency, block, start) here")
    p.add_argument("--concurrency", default="1,4,16", help="comma-separated client concurrencies (default 1,4,16)")
    p.add_argument("--rounds", type=int, help="alternating block pairs per concurrency (default 6; quick 2)")
    p.add_argument("--block-seconds", type=float, help="length of one block (default 3; quick 1.5)")
    p.add_argument("--big-reps", type=int, help="64 MiB round trips per stub (default 10; quick 3)")
    p.add_argument("--starts", type=int, help="measured server starts per stub (default 5; quick 2)")
    p.add_argument("--skip", default="", help="comma-separated phases to skip: requests,big,start")
    p.add_argument("--ours", default="ours", metavar="PATH",
                        help="the stub executable of the 'ours' column (default: ours on this "
                             "interpreter; e.g. one written by `pypy3 -m tritonstub install-stub DIR`)")
    p.add_argument("--keep", metavar="DIR", help="keep repositories and server logs in DIR")
    args = p.parse_args(argv)
    q = args.quick
    args.rounds = args.rounds or (2 if q else 6)
    args.block_seconds = args.block_seconds or (1.5 if q else 3.0)
    args.big_reps = args.big_reps or (3 if q else 10)
    args.starts = args.starts or (2 if q else 5)
    args.concurrencies = [int(x) for x in args.concurrency.split(",") if x.strip()]
    args.skip = {x.strip() for x in args.skip.split(",") if x.strip()}
    unknown = args.skip - {"requests", "big", "start"}
    if unknown:
        p.error(f"--skip: unknown phase(s) {sorted(unknown)}")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    STUB_KIND["ours"] = args.ours
    reference = provision()
    began = time.monotonic()
    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="compare_stubs-"))
    workdir.mkdir(parents=True, exist_ok=True)
    ts._POLL_S = START_POLL_S  # finer readiness polling for the start-to-READY figure
    # Our stub gets a private byte-code cache (filled by warm-ups); see the module docstring.
    pycache = workdir / "pycache"
    env_cached = {"PYTHONDONTWRITEBYTECODE": None, "PYTHONPYCACHEPREFIX": str(pycache)}
    env_nocache = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": None}
    result: dict = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": sys.version.split()[0], "loadavg_before": os.getloadavg()},
        "settings": {"quick": args.quick, "concurrencies": args.concurrencies, "rounds": args.rounds,
                     "block_seconds": args.block_seconds, "big_reps": args.big_reps, "starts": args.starts,
                     "small_len": SMALL_LEN, "big_bytes": BIG_BYTES},
        "tritonserver": str(reference.tritonserver),
    }
    problems: List[str] = []
    stale = ClientShm.remove_stale()
    if stale:
        log(f"removed shm objects left by an earlier run: {', '.join(stale)}")
    log(f"compare_stubs: workdir {workdir}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    try:
        if not ({"requests", "big"} <= args.skip):
            repo = make_model_repository(workdir / "repo", {
                **{f"add_{s}": add_spec(f"add_{s}", s) for s in STUBS},
                **{f"identity_{s}": identity_spec(f"identity_{s}", s) for s in STUBS},
            })
            server = TritonServer(repo, env=env_cached, startup_timeout=STARTUP_TIMEOUT_S,
                                  log_dir=workdir / "server_main")
            try:
                server.start()
                log(f"server up in {server.startup_seconds:.2f} s (pid {server.pid})")
                if "requests" not in args.skip:
                    result["requests"] = phase_requests(server, args.concurrencies, args.rounds,
                                                        args.block_seconds,
                                                        warmup_s=0.5 if args.quick else 1.0)
                if "big" not in args.skip:
                    result["big"] = phase_big(server, args.big_reps, warmup=2)
                result["interpreters"] = stub_versions(server)
            finally:
                server.stop(timeout=30)
                if server.cleanup_report():
                    problems.append(f"main server: {server.cleanup_report()}")
        if "start" not in args.skip:
            result["start"] = phase_start(workdir, env_cached, None if args.quick else env_nocache, args.starts)
            problems.extend(result["start"]["problems"])
    finally:
        result["machine"]["loadavg_after"] = os.getloadavg()
        result["elapsed_s"] = time.monotonic() - began
        result["problems"] = problems
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    rows = rows_of(result)
    result["table"] = [{"figure": r.label, "unit": r.unit, "ours": r.ours, "cpp": r.cpp, "ratio": r.ratio,
                        "threshold": r.threshold} for r in rows]
    print()
    print(f"C++ stub vs tritonstub, tritonserver {reference.tritonserver}")
    for model, what in sorted(result.get("interpreters", {}).items()):
        print(f"  {model}: {what}")
    m = result["machine"]
    print(f"  {m['cpus']} CPUs, load average {m['loadavg_before'][0]:.2f} before / {m['loadavg_after'][0]:.2f} "
          f"after; {result['elapsed_s']:.0f} s; small tensors FP32[{SMALL_LEN}] x2, big UINT8 64 MiB")
    print()
    print(format_table(rows))
    if problems:
        print("\nPROBLEMS (left behind, then cleaned up):\n" + "\n".join(problems))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
        print(f"\nraw numbers: {args.json}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
