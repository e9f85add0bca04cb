"""Unit tests of the pure Boost 1.79 segment (tritonstub/ipc/segment.py).

Numbers come from boost-1.79-shm.md: section 3 (live header words), 4.4/4.5 (sentinel, size
arithmetic), 7.5 (grow), 8.2 and Appendix A (the fresh add_sub region built by Triton).
"""
from __future__ import annotations

import mmap
import random
import struct

import pytest

from tritonstub.errors import (BadHandle, NotASegment, OutOfMemory, SegmentCorrupted,
                               ShmError)
from tritonstub.ipc.segment import (FIRST_BLOCK, MIN_SEGMENT, Block, ManagedSegment,
                                    units_for, usable_bytes)

MiB = 1 << 20


def u64(buf, off):
    return struct.unpack_from("<Q", buf, off)[0]


def i64(buf, off):
    return struct.unpack_from("<q", buf, off)[0]


def put_u64(buf, off, value):
    struct.pack_into("<Q", buf, off, value)


def triton_region(size=MiB, buf=None):
    """Create a segment the way SharedMemoryManager(create=true) does (8.3)."""
    buf = bytearray(size) if buf is None else buf
    seg = ManagedSegment.create(buf, size, region="test")
    mutex = seg.construct_named("shm_mutex", 40)
    total = seg.construct_named("total size", 8)
    put_u64(buf, total, size)
    return buf, seg, mutex, total


# ---------------------------------------------------------------------------------------------
# create
# ---------------------------------------------------------------------------------------------
def test_create_layout_fresh_1mib():
    buf = bytearray(MiB)
    seg = ManagedSegment.create(buf)
    units = (MiB - 128) // 16 - 1                       # 65527 = 0xfff7
    assert units == 0xFFF7
    # Header (3): one free block at 128, hook at 144.
    assert u64(buf, 0) == 1
    assert i64(buf, 8) == 144 - 8
    assert i64(buf, 16) == 144 - 16
    assert i64(buf, 24) == 144 - 24
    assert u64(buf, 32) == 64
    assert u64(buf, 40) == 0
    assert u64(buf, 48) == MiB
    assert u64(buf, 56) == 0
    assert [i64(buf, o) for o in (64, 72, 80)] == [1, -8, -16]     # empty named index
    assert u64(buf, 88) == 0
    assert [i64(buf, o) for o in (96, 104, 112)] == [1, -8, -16]   # empty unique index
    assert u64(buf, 120) == 0
    # First block: prev_size = distance to the sentinel, free, prev_allocated.
    assert u64(buf, FIRST_BLOCK) == units
    assert u64(buf, 136) == (1 << 62) | units
    # Its hook: black root under the header.
    assert i64(buf, 144) == (8 - 144) | 2
    assert [i64(buf, 152), i64(buf, 160)] == [1, 1]
    # Sentinel at 1048560 (4.4).
    assert u64(buf, MiB - 8) == 0x800000000000FFF7
    assert u64(buf, MiB - 16) == units
    assert seg.size == MiB and seg.allocated == 0
    assert seg.free_memory() == MiB - 128
    assert list(seg.blocks()) == [Block(128, units, False)]
    rep = seg.check()
    assert rep.sentinel == MiB - 16 and rep.free_blocks == 1 and rep.named == ()
    assert rep.free_memory == rep.free_bytes + 16


def test_create_smaller_than_buffer_and_odd_size():
    buf = bytearray(4096)
    seg = ManagedSegment.create(buf, 1000)
    rep = seg.check()
    # 1000 - 128 = 872 = 54 units + 8 bytes: sentinel at 128 + 53*16, 8 bytes of slack.
    assert rep.sentinel == 128 + 53 * 16 and rep.slack == 8
    assert seg.free_memory() == rep.free_bytes + 16 + 8
    assert ManagedSegment(buf).size == 1000


def test_create_rejects_bad_sizes():
    with pytest.raises(ValueError):
        ManagedSegment.create(bytearray(191))
    with pytest.raises(ValueError):
        ManagedSegment.create(bytearray(1024), 2048)
    ManagedSegment.create(bytearray(MIN_SEGMENT)).check()


def test_buffer_length_not_multiple_of_8():
    buf = bytearray(MiB + 5)
    seg = ManagedSegment.create(buf)
    assert seg.size == MiB + 5
    h = seg.allocate(1000)
    seg.check()
    seg.deallocate(h)
    assert seg.check().slack == 5 + 0      # (MiB + 5 - 128) % 16 == 5
    reopened = ManagedSegment(buf)
    assert reopened.free_memory() == seg.free_memory()


# ---------------------------------------------------------------------------------------------
# size arithmetic (4.5)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,units", [(0, 3), (1, 3), (8, 3), (40, 3), (41, 4), (56, 4),
                                     (57, 5), (59, 5), (72, 5), (90, 7), (8016, 502)])
def test_units_examples(n, units):
    assert units_for(n) == units


def test_usable_size_and_free_memory_accounting():
    buf = bytearray(MiB)
    seg = ManagedSegment.create(buf)
    free0 = seg.free_memory()
    for n in (0, 1, 40, 41, 59, 90, 1000, 8016):
        h = seg.allocate(n)
        units = units_for(n)
        assert seg.usable_size(h) == usable_bytes(units) == (units - 1) * 16 + 8 >= n
        assert seg.free_memory() == free0 - units * 16
        assert seg.allocated == units * 16
        seg.deallocate(h)
        assert seg.free_memory() == free0 and seg.allocated == 0
    seg.check()


def test_allocate_zeroes_hook_bytes_and_tail():
    buf = bytearray(b"\xAA" * 4096)
    seg = ManagedSegment.create(buf, 4096)
    h = seg.allocate(200)
    usable = seg.usable_size(h)
    assert buf[h:h + 32] == bytes(32)                 # the stale tree hook
    assert buf[h + usable - 8:h + usable] == bytes(8)  # the next block's prev_size
    assert buf[h + 32:h + 40] == b"\xAA" * 8           # the rest is not zeroed (11)


def test_best_fit_takes_smallest_fitting_and_first_of_equals():
    buf = bytearray(MiB)
    seg = ManagedSegment.create(buf)
    hs = [seg.allocate(200) for _ in range(12)]
    keep = []
    for i, h in enumerate(hs):
        if i % 2:
            keep.append(h)
        else:
            seg.deallocate(h)      # six 13-unit holes, separated by allocated blocks
    seg.check()
    # A 13-unit request is best served by one of the holes, not by the big tail block.
    h = seg.allocate(200)
    assert h in hs[0::2]
    # Split: a smaller request takes the low part of a hole.
    h2 = seg.allocate(40)
    assert h2 in hs[0::2]
    seg.check()


def test_allocate_out_of_memory():
    buf = bytearray(4096)
    seg = ManagedSegment.create(buf)
    with pytest.raises(OutOfMemory):
        seg.allocate(4096)
    free0 = seg.free_memory()
    hs = []
    with pytest.raises(OutOfMemory):
        while True:
            hs.append(seg.allocate(100))
    seg.check()
    for h in hs:
        seg.deallocate(h)
    assert seg.free_memory() == free0
    assert seg.check().free_blocks == 1


# ---------------------------------------------------------------------------------------------
# aligned allocation (7.4)
# ---------------------------------------------------------------------------------------------
def test_aligned_allocations_are_32_aligned():
    buf = bytearray(MiB)
    seg = ManagedSegment.create(buf)
    rng = random.Random(7)
    live = {}
    for _ in range(400):
        if live and rng.random() < 0.4:
            h = rng.choice(list(live))
            seg.deallocate(h)
            del live[h]
        else:
            n = rng.randint(0, 3000)
            h = seg.allocate_aligned(n, 32) if rng.random() < 0.6 else seg.allocate(n)
            live[h] = n
            assert seg.usable_size(h) >= n
        seg.check()
    for h in list(live):
        if h % 32:
            continue
        assert seg.usable_size(h) >= live[h]
    aligned = [seg.allocate_aligned(n, 32) for n in (0, 8, 9, 72, 96, 1000)]
    assert all(h % 32 == 0 for h in aligned)
    assert all(seg.allocate_aligned(100, a) % a == 0 for a in (64, 128, 4096))
    assert seg.allocate_aligned(100, 16) % 16 == 0
    seg.check()


def test_aligned_rejects_bad_alignment():
    seg = ManagedSegment.create(bytearray(4096))
    for a in (0, 3, 24, -32):
        with pytest.raises(ValueError):
            seg.allocate_aligned(10, a)


# ---------------------------------------------------------------------------------------------
# grow (7.5) and rebind
# ---------------------------------------------------------------------------------------------
def test_grow_triton_style_after_rebind():
    buf, seg, _mutex, total = triton_region()
    h = seg.allocate(1000)
    free0 = seg.free_memory()
    bigger = bytearray(4 * MiB)
    bigger[:MiB] = buf
    seg.rebind(bigger)
    seg.grow(3 * MiB)
    put_u64(bigger, total, 4 * MiB)
    rep = seg.check()
    assert seg.size == 4 * MiB and rep.sentinel == 4 * MiB - 16
    assert u64(bigger, 4 * MiB - 8) == (1 << 63) | ((4 * MiB - 16 - 128) // 16)
    assert u64(bigger, 128) == (4 * MiB - 16 - 128) // 16
    assert seg.free_memory() == free0 + 3 * MiB
    assert rep.free_blocks == 1                      # merged with the old last free block
    assert seg.find("total size") == (total, 8)
    seg.deallocate(h)
    seg.check()


def test_grow_small_and_odd_steps():
    buf = bytearray(8192)
    seg = ManagedSegment.create(buf, 4096)
    free = seg.free_memory()
    for step in (2, 48, 49, 77, 1000, 16 * 5):
        before = seg.check()
        tail = seg.size + step - (before.sentinel + 16)
        if 3 <= tail < 48:
            continue
        seg.grow(step)
        free += step
        assert seg.free_memory() == free
        seg.check()
    # 2 bytes: D < 3, the bytes become slack (Boost compares bytes with the unit count 3).
    seg2 = ManagedSegment.create(bytearray(8192), 4096)
    e = seg2.check().sentinel
    seg2.grow(2)
    rep = seg2.check()
    assert rep.sentinel == e and rep.slack == 2 and seg2.size == 4098


def test_grow_refuses_corrupting_tail():
    buf = bytearray(8192)
    seg = ManagedSegment.create(buf, 4096)
    snapshot = bytes(buf)
    for step in (3, 16, 41, 47):
        with pytest.raises(ShmError, match="refusing to grow"):
            seg.grow(step)
        assert bytes(buf) == snapshot
    with pytest.raises(ShmError, match="mapped"):
        seg.grow(8192)
    with pytest.raises(ValueError):
        seg.grow(-16)
    assert bytes(buf) == snapshot
    seg.check()


def test_rebind_releases_old_mmap():
    mm = mmap.mmap(-1, MiB)
    seg = ManagedSegment.create(mm)
    h = seg.allocate(500)
    with pytest.raises(BufferError):
        mm.close()                      # our views still export it
    mm2 = mmap.mmap(-1, 2 * MiB)
    mm2[:MiB] = mm[:MiB]
    seg.rebind(mm2)
    mm.close()                          # old views were released
    seg.grow(MiB)
    seg.deallocate(h)
    seg.check()
    seg.close()
    mm2.close()


def test_dropping_the_segment_releases_the_buffer():
    mm = mmap.mmap(-1, 64 * 1024)
    seg = ManagedSegment.create(mm)
    seg.allocate(10)
    del seg                             # no reference cycle keeps the views alive
    mm.close()


def test_rebind_rejects_non_segment_and_keeps_old():
    buf, seg, _m, _t = triton_region()
    with pytest.raises(NotASegment):
        seg.rebind(bytearray(MiB))
    with pytest.raises(NotASegment):
        seg.rebind(bytearray(buf[:MiB // 2]))   # m_size beyond the new mapping
    seg.allocate(100)
    seg.check()


# ---------------------------------------------------------------------------------------------
# named objects (8) and Triton's creation sequence
# ---------------------------------------------------------------------------------------------
def test_triton_creation_sequence():
    buf, seg, mutex, total = triton_region()
    assert mutex == 184 and total == 296
    assert seg.allocate(128 + 16) == 336            # IPCControlShm: the stub's argv handle
    # 8.2: blocks and header images.
    blocks = list(seg.blocks())
    assert blocks[:3] == [Block(128, 7, True), Block(240, 5, True), Block(320, 10, True)]
    assert bytes(buf[168:184]) == bytes.fromhex("2800000000000000" "0900" "08" "21" "00000000")
    assert bytes(buf[280:296]) == bytes.fromhex("0800000000000000" "0a00" "08" "21" "00000000")
    assert bytes(buf[224:234]) == b"shm_mutex\0"
    assert bytes(buf[304:315]) == b"total size\0"
    assert i64(buf, 144) == -78                     # black root, parent = header at 64
    assert i64(buf, 256) == -112                    # red right child of shm_mutex
    assert seg.find("shm_mutex") == (184, 40)
    assert seg.find(b"total size") == (296, 8)
    assert seg.find("total siz") is None and seg.find("nope") is None and seg.find("") is None
    assert seg.named_objects() == [("shm_mutex", 184, 40), ("total size", 296, 8)]
    assert u64(buf, 296) == MiB


def test_fresh_add_sub_region_appendix_a():
    buf, seg, _m, _t = triton_region()
    assert seg.allocate(144) == 336                 # IPCControlShm
    handles = []
    for _ in range(5):                              # five message queues
        handles.append(seg.allocate(144))           # MessageQueueShm (10 units)
        seg.allocate(8016)                          # 1000-entry handle buffer (502 units)
    seg.allocate(64)                                # a last 5-unit object
    assert handles == [496, 8688, 16880, 25072, 33264]
    layout = [(b.offset, b.units) for b in seg.blocks()]
    assert layout == [(128, 7), (240, 5), (320, 10), (480, 10), (640, 502), (8672, 10),
                      (8832, 502), (16864, 10), (17024, 502), (25056, 10), (25216, 502),
                      (33248, 10), (33408, 502), (41440, 5), (41520, 62940)]
    # Live raw header words (3).
    assert [u64(buf, o) for o in (0, 8, 16, 24, 32, 40, 48, 56)] == [
        1, 41528, 41520, 41512, 64, 41392, MiB, 2]
    assert [i64(buf, o) for o in (64, 72, 80, 88, 96, 104, 112, 120)] == [
        80, 72, 176, 0, 1, -8, -16, 0]
    assert seg.free_memory() == 1007056
    assert u64(buf, MiB - 8) == 0x800000000000FFF7


def test_construct_named_find_or_construct_and_order():
    buf, seg, mutex, total = triton_region()
    assert seg.construct_named("shm_mutex", 40) == mutex    # found, not constructed again
    assert seg.allocated == (7 + 5) * 16
    names = ["a", "zz", "b", "abc", "ab", "longer name", "é"]
    offs = {}
    for i, n in enumerate(names):
        buf_before = seg.free_memory()
        off = seg.construct_named(n, 8 * (i + 1), align=8)
        assert off % 8 == 0 and seg.free_memory() < buf_before
        assert bytes(buf[off:off + 8 * (i + 1)]) == bytes(8 * (i + 1))
        offs[n] = off
    for i, n in enumerate(names):
        assert seg.find(n) == (offs[n], 8 * (i + 1))
    ordered = [n for n, _o, _b in seg.named_objects()]
    # iset_index order: (length, bytes).
    expect = sorted(names + ["shm_mutex", "total size"],
                    key=lambda s: (len(s.encode()), s.encode()))
    assert ordered == expect
    rep = seg.check()
    assert len(rep.named) == 9
    with pytest.raises(ValueError):
        seg.construct_named("bad\0name", 8)
    with pytest.raises(ValueError):
        seg.construct_named("x", 8, align=16)
    with pytest.raises(OutOfMemory):
        seg.construct_named("huge", 2 * MiB)


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------
def test_bad_handles():
    buf, seg, _m, _t = triton_region()
    h = seg.allocate(100)
    for off in (0, 8, 16, 128, 143, h + 8, h + 16, MiB, MiB - 16, 10 * MiB, -16, 1 << 70):
        with pytest.raises(BadHandle) as ei:
            seg.deallocate(off)
        assert ei.value.region == "test" and ei.value.offset == off
    with pytest.raises(TypeError):
        seg.deallocate(1.5)
    free = seg.free_memory()
    seg.deallocate(h)
    with pytest.raises(BadHandle, match="not allocated|double free"):
        seg.deallocate(h)                           # double free
    assert seg.free_memory() == free + units_for(100) * 16
    seg.check()


def test_double_free_after_backward_merge_is_caught():
    buf, seg, _m, _t = triton_region()
    a = seg.allocate(100)
    b = seg.allocate(100)
    _c = seg.allocate(100)
    seg.deallocate(a)
    seg.deallocate(b)       # b merges into a's free block; b's header word is stale
    with pytest.raises(BadHandle):
        seg.deallocate(b)
    seg.check()


def test_usable_size_validates():
    _buf, seg, _m, _t = triton_region()
    with pytest.raises(BadHandle):
        seg.usable_size(1000)


@pytest.mark.parametrize("make", [
    lambda: bytearray(MiB),                                        # zeros
    lambda: bytearray(random.Random(3).randbytes(MiB)),           # noise
    lambda: bytearray(100),                                        # too small
])
def test_garbage_buffer_is_not_a_segment(make):
    with pytest.raises(NotASegment) as ei:
        ManagedSegment(make(), region="garbage")
    assert ei.value.region == "garbage"


def test_header_checks_name_the_field():
    buf, _seg, _m, _t = triton_region()
    bad = bytearray(buf)
    put_u64(bad, 32, 56)
    with pytest.raises(NotASegment, match="m_extra_hdr_bytes") as ei:
        ManagedSegment(bad)
    assert ei.value.offset == 32
    bad = bytearray(buf)
    put_u64(bad, 48, 2 * MiB)
    with pytest.raises(NotASegment, match="m_size"):
        ManagedSegment(bad)
    bad = bytearray(buf)
    put_u64(bad, 128, 5)
    with pytest.raises(NotASegment, match="first block"):
        ManagedSegment(bad)


def test_check_finds_corruption():
    buf, seg, _m, _t = triton_region()
    hs = [seg.allocate(n) for n in (100, 200, 300, 400, 500)]
    seg.deallocate(hs[1])
    seg.deallocate(hs[3])
    seg.check()
    good = bytes(buf)

    def corrupted(off, value, signed=False):
        buf[:] = good
        struct.pack_into("<q" if signed else "<Q", buf, off, value)
        with pytest.raises(SegmentCorrupted) as ei:
            seg.check()
        assert ei.value.region == "test" and ei.value.offset is not None
        return ei.value

    b1 = hs[1] - 16
    corrupted(b1 + 8, u64(good, b1 + 8) | (1 << 63))            # free block marked allocated
    corrupted(b1 + 8, u64(good, b1 + 8) + 1)                    # size off by one
    corrupted(hs[0] - 8, u64(good, hs[0] - 8) ^ (1 << 62))      # prev_allocated flipped
    corrupted(b1 + 16, i64(good, b1 + 16) ^ 2, signed=True)     # colour flipped
    corrupted(b1 + 24, 1 << 40, signed=True)                    # wild left pointer
    corrupted(0, 5)                                             # free count
    corrupted(40, u64(good, 40) + 16)                           # m_allocated
    corrupted(168 + 11, 0x7F)                                   # named header type byte
    buf[:] = good
    seg.check()


def test_corrupted_data_never_escapes_as_python_errors():
    """Random word corruption: every call either works or raises one of our errors."""
    rng = random.Random(11)
    base, seg, _m, _t = triton_region(64 * 1024)
    live = [seg.allocate(rng.randint(1, 900)) for _ in range(40)]
    for h in live[::3]:
        seg.deallocate(h)
    good = bytes(base)
    words = len(good) // 8
    for trial in range(300):
        base[:] = good
        for _ in range(rng.randint(1, 3)):
            off = rng.choice([rng.randrange(words), rng.randrange(16), rng.randrange(64)]) * 8
            val = rng.choice([rng.getrandbits(64), rng.getrandbits(8), 1, 3, (1 << 64) - 8,
                              u64(good, off) ^ (1 << rng.randrange(64))])
            put_u64(base, off, val)
        ops = [lambda: seg.check(), lambda: seg.allocate(rng.randint(0, 2000)),
               lambda: seg.allocate_aligned(rng.randint(0, 500), 32),
               lambda: seg.deallocate(rng.choice(live)), lambda: seg.find("total size"),
               lambda: seg.named_objects(), lambda: list(seg.blocks()),
               lambda: seg.construct_named("x%d" % trial, 8), lambda: seg.grow(4096)]
        for op in rng.sample(ops, 4):
            try:
                op()
            except ShmError:
                pass
        assert len(base) == len(good)


def test_read_only_buffer():
    buf, seg, _m, _t = triton_region()
    ro = ManagedSegment(bytes(buf), region="ro")
    assert ro.find("shm_mutex") == (184, 40)
    ro.check()
    for op in (lambda: ro.allocate(10), lambda: ro.deallocate(336), lambda: ro.grow(0),
               lambda: ro.construct_named("x", 8)):
        with pytest.raises(ShmError, match="read-only"):
            op()


# ---------------------------------------------------------------------------------------------
# the sole-free-block fast path (CompactRBTree.replace_sole)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sole_free_block_fast_path_writes_the_same_words_as_erase_and_insert(seed, monkeypatch):
    """An allocation that splits the only free block takes replace_sole; the general
    erase + hinted insert must leave byte-identical segments, for every size and header colour."""
    rng = random.Random(seed)
    for _ in range(40):
        fast_buf, fast, _, _ = triton_region(64 * 1024)
        slow_buf, slow, _, _ = triton_region(64 * 1024)
        # Allocate a few blocks and free them back into the single tail block.
        held = [fast.allocate(rng.randrange(1, 900)) for _ in range(rng.randrange(0, 6))]
        for h in held:
            slow.allocate(fast.usable_size(h))
        slow_buf[:] = fast_buf
        assert u64(fast_buf, 0) == 1                       # one free block
        n = rng.randrange(0, 5000)
        a = fast.allocate(n)
        # The slow path: force the general code on the copy.
        monkeypatch.setattr(type(slow._free), "replace_sole", None)
        count = u64(slow_buf, 0)
        put_u64(slow_buf, 0, 2)                            # not 1: take the general branch
        try:
            b = slow.allocate(n)
        except TypeError:
            pytest.fail("the general branch called replace_sole")
        finally:
            monkeypatch.undo()
        put_u64(slow_buf, 0, u64(slow_buf, 0) - 1 + count - 1)
        assert a == b
        assert bytes(fast_buf) == bytes(slow_buf)
        fast.check()


# ---------------------------------------------------------------------------------------------
# construct and release runs (Heap.construct_many / release_many over allocate_run / free_run)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [21, 22])
def test_heap_runs_leave_the_bytes_of_one_by_one_constructs_and_releases(seed):
    """The heap's run paths against plain construct / release, last first, on a twin heap:
    identical handles and buffers every round, including rounds where the peer still holds a
    reference to one object (that one must stay, the rest go), where an object of an earlier
    round is still held, and a double release (refused on both)."""
    from tritonstub.ipc.heap import Heap
    rng = random.Random(seed)
    fast = Heap.create(bytearray(256 * 1024))
    slow = Heap.create(bytearray(256 * 1024))
    held = []
    for r in range(300):
        sizes = [rng.choice([1, 24, 40, 48, 96, 300, 4000]) for _ in range(rng.randint(1, 6))]
        hs = fast.construct_many(sizes)
        assert hs == [slow.construct(n) for n in sizes]
        for h in hs:
            data = rng.randbytes(8)
            fast.buf[h + 16:h + 24] = slow.buf[h + 16:h + 24] = data
        if r % 11 == 5:
            held.append(hs.pop())                 # released in a later round
        loaded = None
        if r % 7 == 3 and hs:
            loaded = rng.choice(hs)               # the peer's reference
            fast.load(loaded)
            slow.load(loaded)
        fast.release_many(hs)
        for h in reversed(hs):
            slow.release(h)
        assert bytes(fast.buf) == bytes(slow.buf), r
        if loaded is not None:
            assert fast.ref_count(loaded) == 1
            held.append(loaded)
            if r % 2:
                with pytest.raises(ShmError):
                    fast.release_many([h for h in hs if h != loaded] or [0])
        if len(held) > 3:
            fast.release_many(held)
            for h in reversed(held):
                slow.release(h)
            held.clear()
            assert bytes(fast.buf) == bytes(slow.buf), r
    fast.release_many(held)
    for h in reversed(held):
        slow.release(h)
    assert bytes(fast.buf) == bytes(slow.buf)
    assert fast.free_memory() == slow.free_memory()
    fast.segment.check()


def _heap_with_tail(tail: int, request: int, run):
    """A heap where, after one request block and a run, the free tail is about ``tail`` bytes."""
    from tritonstub.ipc.heap import Heap
    size = 1 << 16
    for _ in range(2):
        heap = Heap.create(bytearray(size))
        r = heap.construct(request)
        hs = heap.construct_many(run)
        size -= (heap.free_memory() - tail) & ~15
    return heap, r, hs


@pytest.mark.parametrize("tail", [64, 5000, 100000])
def test_a_run_between_two_free_blocks_goes_in_one_pass_only_while_the_hole_stays_first(tail):
    """free_run's pair shape needs the hole before the run to come first in the tree (64: the
    hole is larger than the tail) and to stay first while every block but the last joins it
    (5000: it would pass the tail on the way, and the tree would change shape). Those are
    refused with nothing written, and the one-by-one release takes over. Either way the region
    ends as one free block, with the bytes of a twin heap freed one by one in the order each
    took."""
    run = [4000, 4000, 40]
    heap, r, hs = _heap_with_tail(tail, 3000, run)
    twin_buf = bytearray(heap.buf)
    heap.release(r)                                 # the parent frees its request first
    assert u64(heap.buf, 0) == 2                    # two free blocks: the hole and the tail
    before = bytes(heap.buf)
    took = heap.segment.free_run(hs)
    assert took == (tail > 10000)
    if not took:
        assert bytes(heap.buf) == before
        heap.release_many(hs)
    else:
        for h in hs:
            heap.buf[h:h + 4] = bytes(4)            # the release's own ref-count write
    from tritonstub.ipc.heap import Heap
    twin = Heap.create(bytearray(len(twin_buf)))
    twin.buf[:] = twin_buf
    twin.release(r)
    for h in (hs if took else reversed(hs)):        # first first where free_run took it
        twin.release(h)
    assert bytes(heap.buf) == bytes(twin.buf)
    assert u64(heap.buf, 0) == 1
    heap.segment.check()
