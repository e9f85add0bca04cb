"""The thin OS layer: regions, growth, ref counts, sync primitives and message queues."""
from __future__ import annotations

import multiprocessing as mp
import os
import random
import struct
import threading
import time

import pytest

from tritonstub.errors import BadHandle, NotASegment, RegionNotFound, ShmError
from tritonstub.harness.parent import ParentSide
from tritonstub.protocol import r24_10 as L
from tritonstub.ipc.message_queue import MessageQueue
from tritonstub.ipc.region import Region
from tritonstub.ipc.sync import Condition, Mutex, Semaphore

from shm_helpers import pattern, remove_region, unique_name


@pytest.fixture
def region():
    name = unique_name("region_")
    r = Region.create(name, 1 << 20, 1 << 20)
    try:
        yield r
    finally:
        r.close(unlink=True)
        remove_region(name)


def test_create_matches_the_parents_layout(region):
    # SharedMemoryManager(create): shm_mutex then "total size", so the first Construct is 336.
    assert region.segment.find("shm_mutex") == (184, 40)
    assert region.segment.find("total size") == (296, 8)
    assert region.total_size == 1 << 20
    assert os.stat(f"/dev/shm/{region.name}").st_mode & 0o777 == 0o644
    h = region.construct(L.IPCControlShm.size)
    assert h == 336
    kind = struct.unpack_from("<i", region.buf, 184 + 16)[0]
    assert kind == 0x90, "shm_mutex must be a robust, process-shared pthread mutex"


def test_parent_setup_reproduces_live_handles():
    ps = ParentSide.setup(name=unique_name("parent_"))
    try:
        # Handles seen in a live 2.51 region (shared/protocol/boost-1.79-shm.md, Appendix A).
        assert ps.ipc_control_handle == 336
        assert [ps.queues[f].handle for f in L.QUEUE_FIELDS] == [496, 8688, 16880, 25072, 33264]
        assert ps.queues["stub_message_queue"].buffer_handle == 496 + 160
        assert ps.region.free_memory() == (1 << 20) - 41312 - 128
        ps.region.segment.check()
    finally:
        ps.close()


def test_construct_load_release_ref_counts(region):
    free0 = region.free_memory()
    h = region.construct(100)
    assert region.ref_count(h) == 1
    region.load(h)
    assert region.ref_count(h) == 2
    assert region.release(h) is False
    assert region.release(h) is True
    assert region.free_memory() == free0
    with pytest.raises(ShmError):
        region.release(h)       # ref count already 0: refused, not a double free


def test_aligned_construct_is_32_aligned(region):
    hs = [region.construct(L.IPCMessageShm.size, aligned=True) for _ in range(20)]
    assert all(h % 32 == 0 for h in hs)
    region.release_many(hs)
    region.segment.check()


def test_growth_remaps_and_keeps_old_views_valid(region):
    small = region.construct(64)
    region.write(small + 16, b"x" * 64)
    old_view = region.view(small + 16, 64)
    big = region.construct(3 << 20)          # does not fit: the region grows by whole steps
    assert region.total_size == 5 << 20 == region.capacity
    assert os.fstat(region._fd).st_size == 5 << 20
    assert bytes(old_view) == b"x" * 64      # the old mapping still works
    region.write(big + 16 + (3 << 20) - 8, b"tail-ok!")
    region.segment.check()
    region.release_many([big, small])
    region.segment.check()


def test_peer_growth_is_noticed(region):
    other = Region.open(region.name)
    try:
        h = other.construct(2 << 20)        # the other side grows the file
        assert other.total_size == 4 << 20
        assert region.capacity == 1 << 20
        h2 = region.construct(100)          # our next operation remaps first
        assert region.capacity == 4 << 20
        region.release_many([h, h2])
        region.segment.check()
    finally:
        other.close(unlink=False)


def test_bad_input_gives_clear_errors(region, tmp_path):
    with pytest.raises(RegionNotFound, match="no shared-memory region named"):
        Region.open(unique_name("missing_"))
    with pytest.raises(BadHandle, match=region.name):
        region.payload(region.capacity + 10)
    with pytest.raises(BadHandle):
        region.load(-5)
    junk = unique_name("junk_")
    with open(f"/dev/shm/{junk}", "wb") as f:
        f.write(os.urandom(1 << 16))
    try:
        with pytest.raises(NotASegment, match=junk):
            Region.open(junk)
    finally:
        remove_region(junk)


def test_mutex_condition_semaphore_between_threads(region):
    h = region.construct(40 + 48 + 32 + 8)
    p = region.payload(h)
    m = Mutex(region.addr(p)).initialize()
    c = Condition(region.addr(p + 40)).initialize()
    s = Semaphore(region.addr(p + 88)).initialize(0)
    flag = p + 120
    assert s.wait(0.05) is False
    assert m.try_lock()
    assert not c.wait(m, 0.02)          # times out, mutex re-acquired
    m.unlock()

    def waker():
        with m:
            region.buf[flag] = 1
            c.notify_all()
        s.post()
    t = threading.Thread(target=waker)
    with m:
        t.start()
        deadline = time.time() + 5
        while region.buf[flag] != 1 and time.time() < deadline:
            c.wait(m, 0.5)
    assert region.buf[flag] == 1
    assert s.wait(5)
    t.join(5)


def test_owner_death_is_reported_not_deadlocked(region):
    from tritonstub.errors import OwnerDied
    h = region.construct(40)
    m = Mutex(region.addr(region.payload(h))).initialize()
    ctx = mp.get_context("fork")
    p = ctx.Process(target=_lock_and_die, args=(region.name, h))
    p.start()
    p.join(10)
    with pytest.raises(OwnerDied):
        m.lock(2)
    m.lock(2)        # made consistent: usable again
    m.unlock()


def _lock_and_die(name, h):
    r = Region.open(name)
    Mutex(r.addr(r.payload(h))).lock()
    os._exit(0)


def test_message_queue_fifo_and_timeouts(region):
    q = MessageQueue.create(region, 4)
    assert q.pop(0.01) is None
    for v in (1, 2, 3, 4):
        assert q.push(v, 0.1)
    assert q.push(5, 0.05) is False         # full: times out, slot given back
    assert q.fill() == 4
    assert [q.pop(0.1) for _ in range(4)] == [1, 2, 3, 4]
    assert q.pop(0.02) is None
    q.close()
    region.segment.check()


# --------------------------------------------------------------------- two processes, >= 10 s
STRESS_SECONDS = 10.0


def _peer(name: str, q_in: int, q_out: int, seconds: float, seed: int, result) -> None:
    r = Region.open(name)
    rx = MessageQueue(r, q_in)
    tx = MessageQueue(r, q_out)
    result.put(_exchange(r, rx, tx, seconds, seed))
    rx.close()
    tx.close()
    r.close(unlink=False)


def _exchange(r: Region, rx: MessageQueue, tx: MessageQueue, seconds: float, seed: int):
    """Allocate blocks, fill them with a pattern, send them; verify and free what arrives."""
    rng = random.Random(seed)
    sent = received = 0
    peer_done = False
    end = time.time() + seconds
    while time.time() < end:
        for _ in range(rng.randint(1, 8)):
            n = rng.choice([8, 40, 100, 1000, 5000, 70000])
            aligned = rng.random() < 0.3
            h = r.construct(n, aligned=aligned)
            r.write(h + 16, struct.pack("<Q", n) + pattern(h, n)[8:] if n >= 8 else b"")
            if not tx.push(h, 1.0):
                r.release(h)
                break
            sent += 1
        while not peer_done:
            h = rx.pop(0.001)
            if h is None:
                break
            if h == 0:                        # the peer's end marker
                peer_done = True
                break
            n = struct.unpack("<Q", r.read(h + 16, 8))[0]
            data = r.read(h + 16, n)
            if data[8:] != pattern(h, n)[8:]:
                return {"error": f"corrupted block {h}", "sent": sent, "received": received}
            r.release(h)
            received += 1
    tx.push(0, 5.0)                          # end marker
    while not peer_done:                      # drain until the peer's end marker
        h = rx.pop(10.0)
        if h is None:
            return {"error": "peer went silent", "sent": sent, "received": received}
        if h == 0:
            break
        r.release(h)
        received += 1
    return {"sent": sent, "received": received}


@pytest.mark.slow
def test_two_processes_exchange_blocks_for_ten_seconds():
    name = unique_name("stress_")
    r = Region.create(name, 1 << 20, 1 << 20)
    try:
        a = MessageQueue.create(r, 64)
        b = MessageQueue.create(r, 64)
        free0 = r.free_memory()
        ctx = mp.get_context("fork")
        result = ctx.Queue()
        peer = ctx.Process(target=_peer, args=(name, a.handle, b.handle, STRESS_SECONDS, 2, result))
        peer.start()
        mine = _exchange(r, b, a, STRESS_SECONDS, 1)
        theirs = result.get(timeout=60)
        peer.join(30)
        assert "error" not in mine and "error" not in theirs, (mine, theirs)
        assert mine["received"] == theirs["sent"] and theirs["received"] == mine["sent"]
        assert mine["sent"] > 1000 and theirs["sent"] > 1000
        r.segment.check()
        with r.locked():
            pass
        assert r.free_memory() == free0 + (r.total_size - (1 << 20))
        a.close()
        b.close()
        r.segment.check()
    finally:
        r.close(unlink=True)
        remove_region(name)
