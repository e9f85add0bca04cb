"""How fast each stub answers the python backend's no-argument probe (exit 1, usage line).

    python benchmarks/probe_time.py [--runs 20]

The python backend runs the stub without arguments to check that it can be executed. Our
launcher (``tritonstub install-stub``) answers from the shell, without starting Python; the C++
stub answers from main(). Prints the median and the slowest wall-clock time of each, in ms.
This used to be an ``elapsed < 0.5 s`` assertion in tests/test_region_vs_real_stub.py, which a
loaded machine could fail by chance.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tritonstub.stub.install import write_launcher  # noqa: E402
from tritonstub.testing.reference import find_reference  # noqa: E402


def probe_times(stub: str, runs: int, env) -> list:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        proc = subprocess.run([stub], env=env, capture_output=True, timeout=30)
        times.append(time.perf_counter() - began)
        if proc.returncode != 1:
            raise SystemExit(f"{stub} exited {proc.returncode}, expected 1: {proc.stderr[-500:]!r}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    reference = find_reference()
    with tempfile.TemporaryDirectory() as tmp:
        stubs = {"ours": write_launcher(os.path.join(tmp, "triton_python_backend_stub"))}
        env = dict(os.environ)
        if reference is not None:
            stubs["cpp"] = str(reference.cpp_stub)
            env["LD_LIBRARY_PATH"] = reference.ld_library_path
        for kind, stub in stubs.items():
            times = probe_times(stub, args.runs, env)
            print(f"{kind:5s} median {statistics.median(times) * 1e3:7.1f} ms   max {max(times) * 1e3:7.1f} ms"
                  f"   ({args.runs} runs)")


if __name__ == "__main__":
    main()
