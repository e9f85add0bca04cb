"""The opt-in block-reuse cache of ipc/heap.py (TRITONSTUB_BLOCK_REUSE=1), on a bytearray heap.

What must hold: a reused block is a fresh object (ref count 1) of a size that fits; only small,
unaligned blocks whose last reference was ours are kept, within the per-size and total caps;
a flush gives every kept block back, after which the allocator's consistency walk is clean and
free memory is back at its idle value; an allocation that fails with blocks kept flushes them
before it gives up (or, in a region, grows); and the stub flushes at exit and after an idle
second (the stub-level test runs a real stub through ParentSide).
"""
from __future__ import annotations

import random

import pytest

from tritonstub.errors import OutOfMemory, ShmError
from tritonstub.ipc.heap import HEADER, Heap
from tritonstub.ipc.segment import units_for


def _heap(size: int = 1 << 20, reuse: bool = True) -> Heap:
    h = Heap.create(bytearray(size))
    if reuse:
        h.enable_block_reuse()
    return h


def test_a_released_small_block_is_handed_out_again_with_a_fresh_ref_count():
    heap = _heap()
    idle = heap.free_memory()
    a = heap.construct(100)
    heap.load(a)                                  # two references
    assert heap.release(a) is False               # one left: not cached
    assert heap._cached_bytes == 0
    assert heap.release(a) is True                # last one: kept, still allocated
    assert heap._cached_bytes > 0 and heap.free_memory() < idle
    b = heap.construct(100)
    assert b == a and heap.ref_count(b) == 1 and heap._cached_bytes == 0
    heap.release(b)
    heap.flush_block_cache()
    assert heap.free_memory() == idle
    heap.segment.check()


def test_a_block_up_to_two_units_larger_may_serve_a_request():
    heap = _heap()
    a = heap.construct(200)
    heap.release(a)
    assert heap.construct(200 - 16) == a          # one unit smaller request: same block
    c = heap.construct(200)
    heap.release(c)
    assert heap.construct(200 - 3 * 16) != c      # three units smaller: not reused


def test_without_reuse_a_release_frees_at_once():
    heap = _heap(reuse=False)
    idle = heap.free_memory()
    heap.release(heap.construct(100))
    assert heap.free_memory() == idle and heap._cache == {}


def test_aligned_constructs_bypass_the_cache():
    heap = _heap()
    a = heap.construct(100)
    heap.release(a)
    b = heap.construct(100, aligned=True)
    assert b != a and heap._cached_bytes > 0


def test_large_blocks_are_freed_not_kept():
    heap = _heap(size=4 << 20)
    idle = heap.free_memory()
    heap.release(heap.construct(Heap.REUSE_MAX_BLOCK + 1024))
    assert heap._cached_bytes == 0 and heap.free_memory() == idle


def test_the_caches_stay_within_their_caps():
    heap = _heap(size=8 << 20)
    many = [heap.construct(64) for _ in range(Heap.REUSE_MAX_PER_SIZE + 10)]
    heap.release_many(many)
    units = units_for(64 + HEADER)
    kept = sum(len(v) for v in heap._cache.values())
    assert kept == Heap.REUSE_MAX_PER_SIZE, {k: len(v) for k, v in heap._cache.items()}
    big = [heap.construct(60 << 10) for _ in range(40)]   # 40 x 60 KiB > the 1 MiB total cap
    for h in big:
        heap.release(h)
    assert heap._cached_bytes <= Heap.REUSE_MAX_TOTAL
    assert units in heap._cache
    heap.flush_block_cache()
    assert heap._cached_bytes == 0 and heap._cache == {}
    heap.segment.check()


def test_a_full_heap_flushes_its_cache_before_it_fails():
    heap = _heap(size=256 << 10)
    blocks = []
    while True:
        try:
            blocks.append(heap.construct(8 << 10))
        except OutOfMemory:
            break
    for h in blocks:
        heap.release(h)                           # all kept (8 KiB blocks, under the caps)
    assert heap._cached_bytes > 0
    # No single kept block fits 64 KiB; only the flush (and coalescing) makes room.
    big = heap.construct(64 << 10)
    assert heap._cached_bytes == 0
    heap.release(big)
    heap.segment.check()


def test_a_double_release_is_refused_with_reuse_on():
    heap = _heap()
    a = heap.construct(32)
    heap.release(a)
    with pytest.raises(ShmError):
        heap.release(a)


@pytest.mark.parametrize("seed", range(5))
def test_random_construct_and_release_keep_the_allocator_consistent(seed):
    rng = random.Random(seed)
    heap = _heap(size=2 << 20)
    idle = heap.free_memory()
    live = {}
    for step in range(3000):
        if live and (rng.random() < 0.5 or len(live) > 200):
            h = rng.choice(list(live))
            data = live.pop(h)
            assert bytes(heap.buf[h + HEADER:h + HEADER + len(data)]) == data, step
            if rng.random() < 0.2:
                heap.release_many([h])
            else:
                heap.release(h)
        else:
            n = rng.choice((8, 16, 40, 100, 500, 4000, 70000))
            try:
                h = heap.construct(n, aligned=rng.random() < 0.1)
            except OutOfMemory:
                continue
            assert h not in live and heap.ref_count(h) == 1
            data = bytes(rng.getrandbits(8) for _ in range(min(n, 32)))
            heap.buf[h + HEADER:h + HEADER + len(data)] = data
            live[h] = data
        if step % 500 == 0:
            heap.segment.check()
    heap.release_many(list(live))
    heap.flush_block_cache()
    heap.segment.check()
    assert heap.free_memory() == idle
