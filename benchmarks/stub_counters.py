"""Per-request counters of both stubs for one small request (FP32 add, concurrency 1).

    python benchmarks/stub_counters.py [seconds per block, default 4] [rounds, default 2]

One tritonserver serves ``add_cpp`` and ``add_ours`` (compare_stubs.py's model); the two are
driven in alternating blocks by one gRPC client. Per block and per request: the instance stub's
CPU (user, system) from /proc, per thread; its voluntary and involuntary context switches and
minor page faults; tritonserver's CPU and context switches; and ``perf stat`` on the stub
(task-clock, context-switches, page-faults, cpu-migrations) when ``perf`` is installed. The load
average is printed with each block: on a busy machine read the ratios, not the absolute figures.
"""
import os, sys, subprocess, threading, time, tempfile, json
from pathlib import Path
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "benchmarks"))
import compare_stubs as cs
from tritonstub.testing.reference import provision
from tritonstub.testing.tritonserver import TritonServer, make_model_repository
import shutil
PERF = shutil.which("perf")
secs = float(sys.argv[1]) if len(sys.argv) > 1 else 4
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
ref = provision(allow_apt=False)
work = Path(tempfile.mkdtemp(prefix="cnt-"))
models = {f"add_{s}": cs.add_spec(f"add_{s}", s) for s in ("cpp", "ours")}
repo = make_model_repository(work / "repo", models, reference=ref)
server = TritonServer(repo, reference=ref, log_dir=work / "server", models=list(models), startup_timeout=120)
def task_stats(pid):
    out = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            st = open(f"/proc/{pid}/task/{t}/stat").read().rsplit(")", 1)[1].split()
            name = open(f"/proc/{pid}/task/{t}/comm").read().strip()
            status = dict(l.split(":\t") for l in open(f"/proc/{pid}/task/{t}/status").read().splitlines() if ":\t" in l)
        except OSError: continue
        out[f"{name}/{t}"] = dict(utime=int(st[11]), stime=int(st[12]), minflt=int(st[7]),
            vcs=int(status["voluntary_ctxt_switches"]), nvcs=int(status["nonvoluntary_ctxt_switches"]))
    return out
server.start()
try:
    res = {}
    for r in range(rounds):
        for s in (("cpp", "ours") if r % 2 == 0 else ("ours", "cpp")):
            m = f"add_{s}"
            pid = min(cs.stub_pids(server, m))
            c = cs.SmallClient(server, m, 0)
            for _ in range(50): c.infer()
            b = task_stats(pid); sb = task_stats(server.pid); n = 0
            pf = None if not PERF else subprocess.Popen([PERF, "stat", "-x,", "-e", "task-clock,context-switches,page-faults,cpu-migrations", "-p", str(pid)], stderr=subprocess.PIPE, text=True)
            time.sleep(0.2)
            end = time.monotonic() + secs; t0 = time.perf_counter()
            while time.monotonic() < end: c.infer(); n += 1
            wall = time.perf_counter() - t0
            perf = ""
            if pf is not None:
                pf.send_signal(2)
                perf = pf.communicate(timeout=30)[1]
            a = task_stats(pid); sa = task_stats(server.pid)
            d = {}
            for k in a:
                if k in b:
                    d[k] = {f: (a[k][f] - b[k][f]) for f in a[k]}
            tot = lambda dd, f: sum(v[f] for v in dd.values())
            sd = {k: {f: sa[k][f] - sb[k][f] for f in sa[k]} for k in sa if k in sb}
            line = (f"{s:4s} n={n} {n/wall:.0f} req/s load={os.getloadavg()[0]:.1f} | stub us/req user {tot(d,'utime')*1e4/n:.0f} sys {tot(d,'stime')*1e4/n:.0f} "
                    f"vcs/req {tot(d,'vcs')/n:.2f} nvcs/req {tot(d,'nvcs')/n:.2f} minflt/req {tot(d,'minflt')/n:.2f} | server us/req {(tot(sd,'utime')+tot(sd,'stime'))*1e4/n:.0f} vcs/req {tot(sd,'vcs')/n:.1f}")
            print(line)
            for k, v in sorted(d.items()):
                if v["utime"] + v["stime"] + v["vcs"] > 0:
                    print(f"      {k:24s} cpu us/req {(v['utime']+v['stime'])*1e4/n:6.0f} vcs/req {v['vcs']/n:5.2f} nvcs/req {v['nvcs']/n:5.2f}")
            print("      perf:", " ".join(f"{x.split(',')[2]}={x.split(',')[0]}" for x in perf.strip().splitlines() if x.count(",") > 2))
finally:
    server.stop(); print(server.cleanup_report())
