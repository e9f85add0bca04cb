"""Differential test: tritonstub's segment against the reference model bshm.py.

``shared/protocol/boost-1.79-shm/bshm.py`` (beside the repository) was checked byte for byte
against a C++ build of Boost 1.79 (boost-1.79-shm.md section 12).  Here the same random
operation sequences run on both: every handle, every ``free_memory()`` value and the final
buffers (bar the 4 never-read padding bytes of each named header, 8.1) must be identical.  The
three profiles are the ones of section 12: large objects with many grows, a 1 MiB heap of small
objects with 150-210 free blocks, and a 64 KiB heap with hundreds of allocation failures; about
30% of the allocations are 32-aligned, as Triton's inline-response objects are.

The reference model is only loaded here, by file path; tritonstub never imports it.
"""
from __future__ import annotations

import importlib.util
import os
import random
import struct
from pathlib import Path

import pytest

from tritonstub.errors import OutOfMemory, ShmError
from tritonstub.ipc.segment import ManagedSegment

#: Where the reference model lives: TRITONSTUB_BSHM_REFERENCE, else the project's shared/
#: directory beside the repository (the workspace layout: <root>/shared and <root>/<checkout>).
#: It is the project's, not the repository's, so a plain clone skips these tests (with how to
#: get it); CI runs them from the workspace.
REF_ENV = "TRITONSTUB_BSHM_REFERENCE"
REF_PATH = Path(os.environ.get(REF_ENV) or (Path(__file__).resolve().parents[1].parent
                                            / "shared" / "protocol" / "boost-1.79-shm" / "bshm.py"))
MiB = 1 << 20
KiB = 1 << 10
NAMED_PADDING = 36       # offset of the 4 padding bytes from a named object's user pointer


@pytest.fixture(scope="module")
def bshm():
    if not REF_PATH.is_file():
        if os.environ.get(REF_ENV):
            pytest.fail(f"{REF_ENV}={REF_PATH} is not a file", pytrace=False)
        pytest.skip(f"the Boost 1.79 reference model bshm.py is not at {REF_PATH}: it is the project's "
                    f"shared/protocol/boost-1.79-shm/bshm.py; check the repository out beside that shared/ "
                    f"directory or set {REF_ENV}=/path/to/bshm.py")
    spec = importlib.util.spec_from_file_location("_bshm_reference", REF_PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Pair:
    """Our segment and the reference heap, driven in lockstep like a Triton region."""

    def __init__(self, bshm, rng: random.Random, size: int, growth: int):
        self.rng = rng
        self.growth = growth
        self.buf = bytearray(size)
        self.seg = ManagedSegment.create(self.buf, size, region="oracle")
        self.ref = bshm.Heap(bytearray(size))
        self.ref.create(size)
        self.named_users = []
        for name, nbytes in (("shm_mutex", 40), ("total size", 8)):
            self.construct_named(name, nbytes)
        self.total = self.seg.find("total size")[0]
        self._set_total(size)
        self.live = []
        self.ooms = self.grows = self.aligned = 0
        self.same()

    # ------------------------------------------------------------------ lockstep helpers
    def same(self, what="") -> None:
        assert self.seg.free_memory() == self.ref.get_free_memory(), what

    def _set_total(self, size: int) -> None:
        struct.pack_into("<Q", self.buf, self.total, size)
        struct.pack_into("<Q", self.ref.b, self.total, size)

    def fill(self, h: int) -> None:
        # The same payload on both sides, so stale user bytes feed the same later reads.
        n = self.seg.usable_size(h)
        data = self.rng.randbytes(min(n, 256)) * (n // 256 + 1)
        self.buf[h:h + n] = data[:n]
        self.ref.b[h:h + n] = data[:n]

    def allocate(self, n: int, aligned: bool):
        try:
            mine = self.seg.allocate_aligned(n, 32) if aligned else self.seg.allocate(n)
        except OutOfMemory:
            mine = None
        theirs = self.ref.allocate_aligned(n, 32) if aligned else self.ref.allocate(n)
        assert mine == theirs, (n, aligned)
        self.same((n, aligned))
        if mine is not None:
            self.fill(mine)
            self.live.append(mine)
            self.aligned += aligned
        return mine

    def deallocate(self, h: int) -> None:
        self.live.remove(h)
        self.seg.deallocate(h)
        self.ref.deallocate(h)
        self.same(("free", h))

    def remap(self, length: int) -> None:
        """Enlarge both buffers to ``length`` bytes (ours through a new buffer + rebind)."""
        if length <= len(self.buf):
            return
        bigger = bytearray(length)
        bigger[:len(self.buf)] = self.buf
        self.seg.rebind(bigger)
        self.buf = bigger
        self.ref.b.extend(bytes(length - len(self.ref.b)))
        assert len(self.ref.b) == len(self.buf)

    def grow_region(self, nbytes: int) -> None:
        """GrowIfNeeded(nbytes) (r24.10 shm_manager.cc; spec 10.2): whole growth steps."""
        old = self.seg.size
        new = old + self.growth * (nbytes // self.growth + 1)
        self.remap(new)
        self.seg.grow(new - old)
        self.ref.grow(new - old)
        self._set_total(new)
        self.grows += 1
        self.same("grow")

    def odd_grow(self, step: int) -> None:
        """A small grow inside spare room; skipped on both sides where ours refuses it."""
        self.remap(self.seg.size + step)
        try:
            self.seg.grow(step)
        except ShmError as e:
            assert "refusing" in str(e)
            return
        self.ref.grow(step)
        self.same(("odd grow", step))

    def allocate_or_grow(self, n: int, aligned: bool, grow: bool) -> None:
        if self.allocate(n, aligned) is None:
            self.ooms += 1
            if grow:
                self.grow_region(n + 16)
                assert self.allocate(n, aligned) is not None

    def construct_named(self, name: str, nbytes: int):
        try:
            mine = self.seg.construct_named(name, nbytes, 8)
        except OutOfMemory:
            mine = None
        try:
            theirs, _created = self.ref.find_or_construct(name.encode(), nbytes, 8,
                                                          init=bytes(nbytes))
        except MemoryError:
            theirs = None
        assert mine == theirs, name
        if mine is not None and mine - 40 not in self.named_users:
            self.named_users.append(mine - 40)     # value = u + 24 + 16 for align 8
        self.same(name)

    def find(self, name: str) -> None:
        mine = self.seg.find(name)
        theirs = self.ref.find(name.encode())
        assert (mine[0] if mine else None) == theirs

    def assert_identical(self) -> None:
        a = bytearray(self.buf)
        b = bytearray(self.ref.b)
        assert len(a) == len(b)
        for u in self.named_users:            # 8.1: padding bytes are never read
            a[u + NAMED_PADDING:u + NAMED_PADDING + 4] = bytes(4)
            b[u + NAMED_PADDING:u + NAMED_PADDING + 4] = bytes(4)
        if a != b:
            first = next(i for i in range(len(a)) if a[i] != b[i])
            pytest.fail(f"buffers differ first at byte {first}: ours "
                        f"{bytes(a[first & ~7:(first & ~7) + 8]).hex()} reference "
                        f"{bytes(b[first & ~7:(first & ~7) + 8]).hex()}")


def run_profile(pair: Pair, ops: int, size_fn, p_alloc: float, grow: bool,
                odd_grows: bool = False) -> None:
    rng = pair.rng
    names = [f"obj{i}" for i in range(12)] + ["x", "yy", "a longer object name"]
    for i in range(ops):
        r = rng.random()
        if r < 0.01:
            pair.construct_named(rng.choice(names), rng.choice([8, 40, 120, 1000]))
        elif r < 0.02:
            pair.find(rng.choice(names + ["shm_mutex", "total size", "nope"]))
        elif odd_grows and r < 0.03:
            pair.odd_grow(rng.choice([1, 2, 3, 16, 41, 48, 49, 77, 1000, 64 * KiB + 3]))
        elif r < p_alloc or not pair.live:
            pair.allocate_or_grow(size_fn(rng), rng.random() < 0.3, grow)
        else:
            pair.deallocate(rng.choice(pair.live))
        if i % 500 == 499:
            pair.assert_identical()
            pair.seg.check()
    pair.assert_identical()
    rep = pair.seg.check()
    for h in list(pair.live):
        pair.deallocate(h)
    pair.assert_identical()
    return rep


@pytest.mark.parametrize("seed", [101, 102, 103])
def test_large_objects_many_grows(bshm, seed):
    rng = random.Random(seed)
    pair = Pair(bshm, rng, MiB, MiB)

    def size(rng):
        return rng.choice([rng.randint(1, 4 * KiB), rng.randint(16 * KiB, 700 * KiB),
                           rng.randint(1, 1600 * KiB)])

    # Keep the live set bounded so the region stops growing after a while.
    run_profile(pair, 3000, size, 0.5, grow=True, odd_grows=True)
    print(f"grows {pair.grows}, final size {pair.seg.size}")
    assert pair.grows >= 5 and pair.aligned > 100


@pytest.mark.parametrize("seed", [201, 202, 203])
def test_small_objects_1mib_fragmented(bshm, seed):
    rng = random.Random(seed)
    pair = Pair(bshm, rng, MiB, MiB)

    def size(rng):
        return rng.choice([rng.randint(0, 64), rng.randint(0, 1000), rng.randint(0, 4000)])

    for _ in range(700):                 # fill, then churn: 150-210 free blocks (12)
        pair.allocate_or_grow(size(rng), rng.random() < 0.3, grow=False)
    rep = run_profile(pair, 6000, size, 0.5, grow=False)
    print(f"free blocks at the end: {rep.free_blocks}")
    assert rep.free_blocks >= 100, rep
    assert pair.aligned > 800, pair.aligned


@pytest.mark.parametrize("seed", [301, 302, 303])
def test_64kib_heap_allocation_failures(bshm, seed):
    rng = random.Random(seed)
    pair = Pair(bshm, rng, 64 * KiB, MiB)

    def size(rng):
        return rng.choice([rng.randint(0, 200), rng.randint(0, 3000), rng.randint(0, 9000)])

    run_profile(pair, 5000, size, 0.6, grow=False)
    print(f"allocation failures {pair.ooms}")
    assert pair.ooms >= 100, pair.ooms


@pytest.mark.parametrize("seed", [401, 402])
def test_stack_order_frees_one_free_block(bshm, seed):
    """The stub's steady state: a few objects built from the region's one free block and freed
    last-built first (Heap.release_many), so every free merges with the only free node (the
    replace_sole path of deallocation), and the mirror case (freed first-built first: the
    block merges with a free block before it that is the only node). Both sides in lockstep,
    buffers identical after every round."""
    rng = random.Random(seed)
    pair = Pair(bshm, rng, 256 * KiB, 256 * KiB)
    base = [pair.allocate(rng.randint(1, 300), False) for _ in range(5)]   # long-lived objects
    sole_rounds = 0
    for r in range(300):
        n = rng.randint(1, 6)
        hs = [pair.allocate(rng.choice([24, 56, 100, 300, 2000]), rng.random() < 0.3)
              for _ in range(n)]
        if pair.seg.check().free_blocks == 1:
            sole_rounds += 1
        for h in (reversed(hs) if r % 3 else hs):
            if h is not None:
                pair.deallocate(h)
        if r % 50 == 49:
            pair.assert_identical()
    for h in base:
        pair.deallocate(h)
    pair.assert_identical()
    assert sole_rounds > 100, sole_rounds


@pytest.mark.parametrize("seed", [411, 412, 413])
def test_runs_write_what_boost_writes_one_by_one(bshm, seed):
    """segment.allocate_run / free_run (the stub's per-request blocks in one pass) against the
    reference's one-by-one allocate and last-first deallocate: same handles, same free memory,
    identical buffers. Some rounds are not runs (a block left behind, a foreign block in the
    middle, frees that do not end at the free block, more than the free block holds): there the
    run calls must say so and write nothing, and the one-by-one path takes over."""
    rng = random.Random(seed)
    pair = Pair(bshm, rng, 128 * KiB, 128 * KiB)
    base = [pair.allocate(rng.randint(1, 300), False) for _ in range(4)]
    runs = frees = refused = 0
    kept = []
    for r in range(400):
        sizes = [rng.choice([0, 1, 8, 9, 24, 56, 100, 300, 2000, 9000])
                 for _ in range(rng.randint(1, 6))]
        if r % 25 == 0:
            sizes.append(200 * KiB)                 # more than the free block holds
        before = bytes(pair.buf)
        hs = pair.seg.allocate_run(sizes)
        if hs is None:
            refused += 1
            assert bytes(pair.buf) == before, "a refused allocate_run wrote"
            hs = []
            for n in sizes:
                h = pair.allocate(n, False)
                if h is None:
                    break
                hs.append(h)
        else:
            runs += 1
            theirs = [pair.ref.allocate(n) for n in sizes]
            assert hs == theirs, sizes
            pair.same(("run", sizes))
            for h in hs:
                pair.fill(h)
                pair.live.append(h)
        if not hs:
            continue
        shape = rng.random()
        if shape < 0.1:
            kept.append(hs.pop())                   # the last one stays: not before the free block
        elif shape < 0.2 and len(hs) > 1:
            kept.append(hs.pop(0))                  # the first one stays: the rest is still a run
        elif shape < 0.25:
            hs.reverse()                            # not in construct order
        before = bytes(pair.buf)
        if hs and pair.seg.free_run(hs):
            frees += 1
            for h in reversed(hs):
                pair.live.remove(h)
                pair.ref.deallocate(h)
            pair.same(("free run", hs))
        else:
            assert bytes(pair.buf) == before, "a refused free_run wrote"
            for h in reversed(hs):
                pair.deallocate(h)
        if len(kept) > 2:
            for h in kept:
                pair.deallocate(h)
            kept.clear()
        if r % 40 == 39:
            pair.assert_identical()
            pair.seg.check()
    for h in kept + base:
        pair.deallocate(h)
    pair.assert_identical()
    assert runs > 150 and frees > 120 and refused > 50, (runs, frees, refused)


def _prev_free(pair: Pair, offset: int) -> bool:
    """Whether the block before the one at user ``offset`` is free (its prev_allocated bit)."""
    return not struct.unpack_from("<Q", pair.buf, offset - 8)[0] >> 62 & 1


@pytest.mark.parametrize("seed", [421, 422, 423])
def test_a_run_between_the_only_two_free_blocks_frees_first_first_as_boost_does(bshm, seed):
    """One request in flight, as a stub sees it: the parent builds a request, we build our reply
    in one run after it, the parent frees its request, then we free our reply (free_run's pair
    shape: first block first, each merging into the hole before it). Against the reference
    freeing the same blocks one by one in that order: identical buffers. Where the shape does
    not hold (a request block kept, the tail too small for the grown hole to stay before it),
    free_run must refuse and write nothing, and the blocks go last first one by one."""
    rng = random.Random(seed)
    pair = Pair(bshm, rng, 64 * KiB, 64 * KiB)
    base = [pair.allocate(rng.randint(1, 300), False) for _ in range(3)]
    pairs = refused = 0
    for r in range(300):
        request = [pair.allocate(rng.choice([24, 100, 600, 3000]), False)
                   for _ in range(rng.randint(1, 3))]
        sizes = [rng.choice([8, 40, 100, 300, 2000, 6000]) for _ in range(rng.randint(1, 5))]
        hs = pair.seg.allocate_run(sizes)
        if hs is None:
            hs = [pair.allocate(n, False) for n in sizes]
        else:
            assert hs == [pair.ref.allocate(n) for n in sizes]
            for h in hs:
                pair.fill(h)
                pair.live.append(h)
        kept = request.pop(0) if r % 9 == 4 else request.pop() if r % 7 == 3 else None
        for h in reversed(request):
            pair.deallocate(h)
        if None in hs:                      # out of memory: free what there is, one by one
            for h in reversed([h for h in hs if h is not None]):
                pair.deallocate(h)
        else:
            before = bytes(pair.buf)
            first_first = _prev_free(pair, hs[0])
            if pair.seg.free_run(hs):
                for h in (hs if first_first else reversed(hs)):
                    pair.live.remove(h)
                    pair.ref.deallocate(h)
                pairs += first_first
                pair.same(("free run", first_first, hs))
            else:
                assert bytes(pair.buf) == before, "a refused free_run wrote"
                refused += 1
                for h in reversed(hs):
                    pair.deallocate(h)
        if kept is not None:
            pair.deallocate(kept)
        if r % 30 == 29:
            pair.assert_identical()
            pair.seg.check()
    for h in base:
        pair.deallocate(h)
    pair.assert_identical()
    assert pairs > 100 and refused > 10, (pairs, refused)
