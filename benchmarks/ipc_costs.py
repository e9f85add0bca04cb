"""Costs of the IPC layer: allocate+free pairs and cross-process queue round trips.

    python benchmarks/ipc_costs.py [--pairs 20000] [--round-trips 5000]

Prints medians in microseconds:
- allocate+free on the pure segment (bytearray), with a few hundred free blocks;
- Construct+release through a Region (adds shm_mutex lock/unlock and the ref count);
- push+pop round trip between two processes: A pushes on q1, B pops and pushes back on q2,
  A pops (one round trip = two queue transfers).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import statistics
import sys
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tritonstub.ipc.message_queue import MessageQueue  # noqa: E402
from tritonstub.ipc.region import Region  # noqa: E402
from tritonstub.ipc.segment import ManagedSegment  # noqa: E402


def fragmented(alloc, free, n_free_target: int, rng: random.Random):
    """Allocate many blocks and free every other one, leaving ~n_free_target free blocks."""
    keep = []
    hs = [alloc(rng.choice([40, 100, 300, 1000])) for _ in range(2 * n_free_target)]
    for i, h in enumerate(hs):
        if i % 2:
            free(h)
        else:
            keep.append(h)
    return keep


def time_pairs(alloc, free, n: int, rng: random.Random):
    samples = []
    sizes = [rng.choice([40, 64, 200, 1000, 4000]) for _ in range(n)]
    pc = time.perf_counter_ns
    for s in sizes:
        t0 = pc()
        h = alloc(s)
        free(h)
        samples.append(pc() - t0)
    return statistics.median(samples) / 1000.0


def bench_segment(n: int) -> dict:
    rng = random.Random(1)
    seg = ManagedSegment.create(bytearray(64 << 20), 64 << 20)
    fragmented(seg.allocate, seg.deallocate, 300, rng)
    plain = time_pairs(seg.allocate, seg.deallocate, n, rng)
    aligned = time_pairs(lambda s: seg.allocate_aligned(s, 32), seg.deallocate, n, rng)
    return {"segment allocate+free": plain, "segment allocate_aligned(32)+free": aligned}


def bench_region(n: int) -> dict:
    rng = random.Random(2)
    name = f"tritonstub_bench_{uuid.uuid4().hex[:8]}"
    r = Region.create(name, 64 << 20, 1 << 20)
    try:
        fragmented(r.construct, r.release, 300, rng)
        return {"region construct+release (with shm_mutex)": time_pairs(r.construct, r.release, n, rng)}
    finally:
        r.close(unlink=True)


def _echo(name: str, h1: int, h2: int, n: int) -> None:
    r = Region.open(name)
    q1, q2 = MessageQueue(r, h1), MessageQueue(r, h2)
    for _ in range(n):
        v = q1.pop(10.0)
        q2.push(v, 10.0)
    q1.close()
    q2.close()
    r.close(unlink=False)


def bench_round_trip(n: int) -> dict:
    name = f"tritonstub_bench_{uuid.uuid4().hex[:8]}"
    r = Region.create(name, 1 << 20, 1 << 20)
    try:
        q1, q2 = MessageQueue.create(r, 1000), MessageQueue.create(r, 1000)
        p = mp.get_context("fork").Process(target=_echo, args=(name, q1.handle, q2.handle, n))
        p.start()
        samples = []
        pc = time.perf_counter_ns
        for i in range(n):
            t0 = pc()
            q1.push(i + 1, 10.0)
            v = q2.pop(10.0)
            samples.append(pc() - t0)
            assert v == i + 1
        p.join(30)
        return {"queue push+pop round trip, 2 processes": statistics.median(samples) / 1000.0}
    finally:
        r.close(unlink=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=20000)
    ap.add_argument("--round-trips", type=int, default=5000)
    a = ap.parse_args()
    results = {}
    results.update(bench_segment(a.pairs))
    results.update(bench_region(a.pairs))
    results.update(bench_round_trip(a.round_trips))
    for k, v in results.items():
        print(f"{k:<48s} median {v:8.2f} us")


if __name__ == "__main__":
    main()
