"""Per-request counters of both stubs for one small request (FP32 add, concurrency 1).

    python benchmarks/stub_counters.py                      # 2 rounds of 4 s blocks
    python benchmarks/stub_counters.py --seconds 3 --rounds 4

One tritonserver serves ``add_cpp`` and ``add_ours`` (compare_stubs.py's model); one gRPC
client drives them in alternating blocks (cpp, ours, ours, cpp, ...). Per block and per request:
the instance stub's CPU (user, system) from /proc, per thread; its voluntary and involuntary
context switches and minor page faults; tritonserver's CPU and context switches; and
``perf stat`` on the stub (task-clock, context-switches, page-faults, cpu-migrations) when
``perf`` is installed. The load average is printed with each block: on a busy machine read the
ratios, not the absolute figures. docs/performance.md says what the figures showed.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import compare_stubs as cs  # noqa: E402

from tritonstub.testing.reference import provision  # noqa: E402
from tritonstub.testing.tritonserver import TritonServer, make_model_repository  # noqa: E402

STUBS = ("cpp", "ours")
PERF = shutil.which("perf")
FIELDS = ("utime", "stime", "minflt", "vcs", "nvcs")
TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")


def task_counters(pid: int) -> Dict[str, Dict[str, int]]:
    """{"<comm>/<tid>": {utime, stime (ticks), minflt, vcs, nvcs}} for every thread of pid."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        base = f"/proc/{pid}/task/{tid}"
        try:
            with open(f"{base}/stat") as f:
                stat = f.read().rsplit(")", 1)[1].split()
            with open(f"{base}/comm") as f:
                name = f.read().strip()
            with open(f"{base}/status") as f:
                status = dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)
        except OSError:
            continue   # the thread ended meanwhile
        out[f"{name}/{tid}"] = {
            "utime": int(stat[11]), "stime": int(stat[12]), "minflt": int(stat[7]),
            "vcs": int(status["voluntary_ctxt_switches"]),
            "nvcs": int(status["nonvoluntary_ctxt_switches"])}
    return out


def delta(after: dict, before: dict) -> dict:
    return {k: {f: after[k][f] - before[k][f] for f in FIELDS} for k in after if k in before}


def total(d: dict, field: str) -> int:
    return sum(v[field] for v in d.values())


def block(server: TritonServer, stub: str, seconds: float) -> None:
    model = f"add_{stub}"
    pid = min(cs.stub_pids(server, model))      # the instance stub (our heartbeat helper forks)
    client = cs.SmallClient(server, model, 0)
    for _ in range(50):
        client.infer()
    before, server_before = task_counters(pid), task_counters(server.pid)
    perf = None
    if PERF:
        perf = subprocess.Popen([PERF, "stat", "-x,", "-e",
                                 "task-clock,context-switches,page-faults,cpu-migrations",
                                 "-p", str(pid)], stderr=subprocess.PIPE, text=True)
        time.sleep(0.2)
    n = 0
    began = time.perf_counter()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        client.infer()
        n += 1
    wall = time.perf_counter() - began
    perf_text = ""
    if perf is not None:
        perf.send_signal(2)
        perf_text = perf.communicate(timeout=30)[1]
    d = delta(task_counters(pid), before)
    sd = delta(task_counters(server.pid), server_before)
    print(f"{stub:4s} {n} requests, {n / wall:.0f} req/s, load average {os.getloadavg()[0]:.1f} | "
          f"stub per request: user {total(d, 'utime') * TICK_US / n:.0f} us, "
          f"sys {total(d, 'stime') * TICK_US / n:.0f} us, "
          f"switches {total(d, 'vcs') / n:.2f} voluntary {total(d, 'nvcs') / n:.2f} involuntary, "
          f"minor faults {total(d, 'minflt') / n:.2f} | tritonserver "
          f"{(total(sd, 'utime') + total(sd, 'stime')) * TICK_US / n:.0f} us, "
          f"{total(sd, 'vcs') / n:.1f} switches", flush=True)
    for name, v in sorted(d.items()):
        if v["utime"] + v["stime"] + v["vcs"]:
            print(f"      thread {name:24s} CPU {(v['utime'] + v['stime']) * TICK_US / n:6.0f} us"
                  f"  switches {v['vcs'] / n:5.2f} + {v['nvcs'] / n:5.2f}")
    events = [line.split(",") for line in perf_text.strip().splitlines() if line.count(",") > 2]
    if events:
        print("      perf stat: " + " ".join(f"{e[2]}={e[0]}" for e in events))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="length of one block")
    parser.add_argument("--rounds", type=int, default=2, help="alternating block pairs")
    args = parser.parse_args(argv)
    reference = provision(allow_apt=False)
    work = Path(tempfile.mkdtemp(prefix="stub_counters-"))
    models = {f"add_{s}": cs.add_spec(f"add_{s}", s) for s in STUBS}
    repo = make_model_repository(work / "repo", models, reference=reference)
    server = TritonServer(repo, reference=reference, log_dir=work / "server", models=list(models),
                          startup_timeout=120.0)
    try:
        server.start()
        for r in range(args.rounds):
            for stub in (STUBS if r % 2 == 0 else STUBS[::-1]):
                block(server, stub, args.seconds)
    finally:
        server.stop()
    report = server.cleanup_report()
    if report:
        print(f"\nthe server left things behind:\n{report}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
