"""C++ stub vs tritonstub: does tritonserver still unload a decoupled model after cancelled streams?

    .venv/bin/python benchmarks/stream_cancel_unload.py                      # 3 rounds, both stubs
    .venv/bin/python benchmarks/stream_cancel_unload.py --cancel-completed   # the Triton hang

Each round, for each stub, starts a fresh tritonserver with the decoupled ``stream`` model of
tests/test_stress_api.py (one thread per request sends 10,000 small responses, checking
``is_cancelled()`` every 200), runs 8 gRPC streams at once and cancels 3 of them midway
(``stop_stream(cancel_requests=True)``), then stops the server and reads its log. Outcomes:

- ``clean``: every stream complete or cleanly cut, the model unloaded, nothing left behind;
- ``unload hang``: tritonserver logged ``Found 1 live models`` until ``--exit-timeout-secs``
  ran out and exited without unloading (the stub and its region outlive it; the fixture
  kills/removes them);
- ``server crash``: tritonserver died on a signal.

``--cancel-completed`` also cancels the streams that already received their final response
(what the stress test used to do on its way out). Triton 2.51's gRPC frontend then waits for a
callback that never comes ("Waiting for the callback to retrieve cancellation ...
CANCELLATION_ISSUED") and the model never unloads, whichever stub serves it: a reference bug,
measured here so that it is not mistaken for one of ours. Rounds take about 10 s (C++) and 25 s
(ours); everything is on 127.0.0.1 and every process and region is cleaned up by
:class:`tritonstub.testing.tritonserver.TritonServer`.
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from test_stress_api import (CANCEL_AFTER, CANCELLED, N_RESPONSES, STREAM_CONFIG,  # noqa: E402
                             STREAM_MODEL, _run_streams)

from tritonstub.testing.tritonserver import ModelSpec, TritonServer, make_model_repository  # noqa: E402

_LIVE = re.compile(r"Found (\d+) live models")


def one_round(stub: str, cancel_completed: bool) -> str:
    repo = make_model_repository(tempfile.mkdtemp(prefix="cancel-unload-"),
                                 {"stream": ModelSpec(STREAM_MODEL, config=STREAM_CONFIG)}, stub=stub)
    server = TritonServer(repo, models=["stream"], log_verbose=1)
    server.start()
    cancelled = CANCELLED
    began = time.monotonic()
    results = _run_streams(server, N_RESPONSES, cancelled, CANCEL_AFTER,
                           cancel_completed=cancel_completed)
    elapsed = time.monotonic() - began
    complete = all(r["final"] and len(r["values"]) == N_RESPONSES for k, r in results.items()
                   if k not in cancelled)
    rc = server.stop(timeout=30)
    live = [int(n) for n in _LIVE.findall(server.log_text())]
    if server.returncode is not None and server.returncode < 0:
        outcome = "server crash"
    elif live and live[-1] > 0:
        outcome = "unload hang"
    elif complete and not server.cleanup_report():
        outcome = "clean"
    else:
        outcome = "other"
    print(f"  {stub:4}: {outcome:12} streams {elapsed:5.1f} s, complete={complete}, exit {rc}"
          + (f"\n        {server.cleanup_report().splitlines()[0]}" if server.cleanup_report() else ""),
          flush=True)
    return outcome


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stubs", default="cpp,ours")
    parser.add_argument("--cancel-completed", action="store_true",
                        help="also cancel the streams that already got their final response")
    args = parser.parse_args(argv)
    tally = {stub: Counter() for stub in args.stubs.split(",")}
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}", flush=True)
        for stub in tally:
            tally[stub][one_round(stub, args.cancel_completed)] += 1
    print(f"\noutcomes per stub ({args.rounds} rounds, {len(CANCELLED)} of 8 streams cancelled midway"
          + (", completed streams cancelled too" if args.cancel_completed else "") + "):")
    for stub, counts in tally.items():
        print(f"  {stub:4}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
