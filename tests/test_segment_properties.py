"""Property test of the segment allocator against a model of the live blocks.

Each run does >= 10,000 random allocate / allocate_aligned(32) / deallocate / grow steps and
calls ``check()`` (the full consistency walk) after every step.  The model keeps every live
block with the pattern written into it; at each step it verifies that the new block overlaps no
live one and is big enough, and at each free that the pattern survived.  When everything is
freed, the free memory is exactly back at its start value (plus what was grown).
"""
from __future__ import annotations

import bisect
import random

import pytest

from tritonstub.errors import OutOfMemory, ShmError
from tritonstub.ipc.segment import ManagedSegment, units_for, usable_bytes

STEPS = 10_000
KiB = 1 << 10


class Model:
    def __init__(self, rng: random.Random, buf: bytearray, size: int, headroom: int):
        self.rng = rng
        self.buf = buf
        self.seg = ManagedSegment.create(buf, size, region="prop")
        self.headroom = headroom
        self.starts: list[int] = []          # sorted user offsets of live blocks
        self.live: dict[int, tuple[int, bytes]] = {}   # user offset -> (usable, pattern)
        self.free0 = self.seg.free_memory()
        self.grown = 0

    # -- model bookkeeping -------------------------------------------------------------------
    def add(self, h: int, n: int, aligned: bool) -> None:
        seg = self.seg
        usable = seg.usable_size(h)
        # Exact fit, or a block taken whole because the rest could not be a block (< 3 units).
        units = units_for(n)
        assert n <= usable_bytes(units) <= usable <= usable_bytes(units + 2)
        if aligned:
            assert h % 32 == 0
        i = bisect.bisect_left(self.starts, h)
        assert h not in self.live
        if i:
            prev = self.starts[i - 1]
            assert prev + self.live[prev][0] <= h, "overlaps the previous live block"
        if i < len(self.starts):
            assert h + usable <= self.starts[i], "overlaps the next live block"
        token = self.rng.randbytes(16)
        pattern = (token * (usable // 16 + 1))[:usable]
        self.buf[h:h + usable] = pattern
        self.starts.insert(i, h)
        self.live[h] = (usable, pattern)

    def free(self, h: int) -> None:
        usable, pattern = self.live.pop(h)
        self.starts.remove(h)
        assert bytes(self.buf[h:h + usable]) == pattern, "block contents were clobbered"
        before = self.seg.free_memory()
        self.seg.deallocate(h)
        assert self.seg.free_memory() == before + (usable + 8)   # whole block bytes return

    # -- growth ------------------------------------------------------------------------------
    def grow(self, step: int) -> bool:
        seg = self.seg
        size = seg.size
        if size + step > len(self.buf):
            # Remap: a bigger buffer with the same bytes, as the region layer does.
            bigger = bytearray(size + step + self.headroom)
            bigger[:len(self.buf)] = self.buf
            seg.rebind(bigger)
            self.buf = bigger
        rep = seg.check()
        tail = size + step - (rep.sentinel + 16)
        before = bytes(self.buf[:size])
        free = seg.free_memory()
        if 3 <= tail < 48:
            with pytest.raises(ShmError, match="refusing"):
                seg.grow(step)
            assert bytes(self.buf[:size]) == before and seg.size == size
            return False
        seg.grow(step)
        assert seg.size == size + step and seg.free_memory() == free + step
        self.grown += step
        return True


PROFILES = {
    # seed: (initial size, headroom, max size)
    1: (128 * KiB, 64 * KiB, 256 * KiB),
    2: (64 * KiB + 5, 4 * KiB, 192 * KiB),        # m_size % 16 != 0: slack after the sentinel
    3: (96 * KiB + 8, 0, 256 * KiB),
}


@pytest.mark.parametrize("seed", sorted(PROFILES))
def test_random_operations_keep_every_invariant(seed):
    size, headroom, max_size = PROFILES[seed]
    rng = random.Random(seed)
    m = Model(rng, bytearray(size + headroom), size, headroom)
    seg = m.seg
    ooms = grows = aligned = 0
    target = 0
    for step in range(STEPS):
        if step % 500 == 0:
            # Drift between nearly empty and crowded heaps (and so into OutOfMemory and grow).
            target = rng.choice([5, 40, 120, 250, 400])
        r = rng.random()
        p_alloc = 0.7 if len(m.live) < target else 0.3
        if r < p_alloc or not m.live:
            big = rng.random() < 0.04
            n = rng.randint(0, 24 * KiB) if big else rng.choice(
                [rng.randint(0, 64), rng.randint(0, 600), rng.randint(0, 3000)])
            use_aligned = rng.random() < 0.3
            try:
                h = seg.allocate_aligned(n, 32) if use_aligned else seg.allocate(n)
            except OutOfMemory:
                ooms += 1
                if seg.size < max_size:
                    m.grow(rng.choice([4 * KiB, 16 * KiB, 64 * KiB]))
                    grows += 1
                seg.check()
                continue
            aligned += use_aligned
            m.add(h, n, use_aligned)
        elif r < 0.997:
            m.free(rng.choice(m.starts))
        elif seg.size < max_size:
            # Odd grow steps, including ones Boost would corrupt on (refused).
            grows += m.grow(rng.choice([1, 2, 3, 16, 41, 47, 48, 49, 77, 1000, 4096 + 5]))
        rep = seg.check()
        assert rep.allocated_blocks == len(m.live)
        seg = m.seg
    for h in list(m.starts):
        m.free(h)
    rep = seg.check()
    assert rep.allocated_blocks == 0 and rep.free_blocks == 1
    assert seg.free_memory() == m.free0 + m.grown
    assert seg.allocated == 0
    # The run exercised what it is meant to.
    assert ooms > 10 and grows > 3 and aligned > 1000, (ooms, grows, aligned)
