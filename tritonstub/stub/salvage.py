"""What the heartbeat helper does for the parent when the stub process dies under it.

Why
---
python_backend r24.10 gives every request a ``TRITONBACKEND_ResponseFactory`` and deletes it
only when the stub says so (a FINAL response, a ``DecoupledResponseFactoryCleanup`` message,
or the ExecuteResponse of the batch: see ``ModelInstanceState::ProcessRequests`` and
``ResponseSendDecoupled`` in python_be.cc). A factory holds the model, so when a stub dies (the
OOM killer, a SIGKILL) with requests in hand, their factories are never deleted and Triton can
never finish unloading the model: the server hits its exit timeout, the region stays in
/dev/shm. With the C++ stub nothing can be done about it. Ours has a second process, the
heartbeat helper, which outlives the stub (it is told of the death by PR_SET_PDEATHSIG) and
can still speak for it: the parent's stub-to-parent monitor thread keeps serving the queue.

The stub keeps a :class:`Board` (an anonymous shared page it maps before forking the helper)
listing the factories the parent still expects it to release, and takes a factory off the
board *before* it sends the message that hands the deletion back to the parent. So a stub that
dies at any point leaves on the board only factories the parent will not delete itself: a
factory is never deleted twice (which would crash the server); at worst one leaks, as before.

A process killed while it holds one of the region's robust mutexes leaves it "owner died";
Boost 1.79 then throws ``lock_exception`` at the parent's next lock and tritonserver aborts.
The helper looks at every mutex it can find first (``shm_mutex``, the four message queues'),
marks the dead owner's ones consistent, and checks the allocator before it walks it to send
cleanups. The parent may get there first (a parent thread already blocked on that mutex wakes
with the error at once): this narrows the window, it cannot close it.

The helper itself can be killed too (``kill -9`` of every stub process, an OOM kill of the
group): caught holding a mutex, it would leave the parent the same owner-died crash. So it
takes none it does not need: a mutex whose futex word is 0 (free, no dead owner) is not locked
to find out, and the allocator is walked only when there are factories to release. A stub
killed idle leaves a helper that takes no lock at all.

A stub killed inside a handshake (a response send, a log message) leaves a parent thread
waiting for its last step, for ever: that thread, too, keeps the model from unloading. The board
lists the handshakes under way; the helper waits (bounded) for the parent's answer and takes
it, as the stub would have. One case it cannot mend: a stub killed while it *waited* on the
handshake's condition leaves a dead waiter in it, and with glibc before 2.41 the parent's
answer (``cv.notify_all()``) then blocks for ever, holding the handshake's mutex (the same with
the C++ stub). The helper gives up on it after its bounded wait.

A stub killed while it waits for a BLS reply (``exec()``, pattern C: no flag, the parent
notifies, then waits for our notify) leaves such a dead waiter too, and a parent thread that
will wait for ever once the reply is ready. Releasing the factories would let Triton destroy the
instance up to that thread (``~ModelInstanceState`` joins the thread pool *after* it has unmapped
the region), leaving it asleep on a condition in unmapped memory: any wake-up (a debugger's
attach, SIGSTOP and SIGCONT of the server) then aborts tritonserver ("The futex facility
returned an unexpected error code", measured with gdb). So while a BLS call is under way the
helper releases nothing: the model cannot unload, as with the C++ stub. Where the model cannot
unload (that case, a torn allocator, a factory it could not send), tritonserver will not unlink
the region at its exit, so the helper stays, not beating, until the server is gone and unlinks
it then (the C++ stub's region stays in /dev/shm).

A stub killed inside ``auto_complete_config()`` would leave the load waiting for ever, and with
it the server's exit: python_backend waits for that answer with no health check. The board
says when the parent waits for it, and the helper answers with an error instead: the load
fails at once and the model can be loaded again (the C++ stub's load never returns).

Then the helper stops beating (the parent fails the requests in flight with "Stub process is
not healthy.", as with a dead C++ stub) and sends one ``DecoupledResponseFactoryCleanup`` per
factory left on the board. If the stub received FinalizeRequest, the parent is unloading the
model and owns every factory: nothing is sent.
"""
from __future__ import annotations

import errno
import mmap
import os
import threading
import time
import weakref
from typing import List

from .. import protocol
from ..ipc import handshake, libc
from ..ipc.handshake import WAIT_SLICE_S
from ..ipc.sync import Condition, Mutex
from .log import ERROR, INFO, stub_log

# Era-free here: the codecs of the era the stub spoke (chosen at its first command, after the
# helper was forked) come from the board (Board.era); importing the module-level codecs now
# would pick the default era for good.
L = protocol.common()


#: How long the helper waits for the parent's answer to a handshake the stub left under way.
ANSWER_WAIT_S = 3.0

#: How long the helper may spend on pushing its cleanup messages (the parent's monitor thread
#: pops one at a time; a full queue with nobody popping must not keep the helper alive).
PUSH_BUDGET_S = 5.0


class Board:
    """What the parent expects this stub to finish, in a page the helper reads.

    Word 0 is a flag word (bit 0: FinalizeRequest received); then ``slots`` words, one per live
    response factory (0 = empty); then ``HANDSHAKES`` triples (mutex, condition, flag offsets
    in the region, +1 so that 0 means empty), one per handshake under way (patterns B and D of
    ipc/handshake.py: the parent answers, then waits for us to clear the flag); then one word:
    how many BLS calls (``exec()``, pattern C) are under way; then one word: the command number
    (+1) of the AutoCompleteResponse the parent waits for, 0 when none. Only the stub writes;
    the helper reads after the stub is dead.

    A model's forked children (``multiprocessing`` workers, which may run BLS calls and log)
    inherit the page. Once the helper is forked, :meth:`private_in_forked_children` gives every
    later child a page of its own: its counts, handshakes and flags are none of the helper's
    business (a live child finishes its own handshakes), and two processes updating one word
    under two per-process locks lose updates (the BLS count below 0, seen once in CI). One
    write still reaches the stub's page from a child: taking off a factory the child released
    (a FINAL it sent), so that the helper never releases it a second time.
    """

    SLOTS = 16384
    HANDSHAKES = 64

    def __init__(self, slots: int = SLOTS):
        # Anonymous mmap is MAP_SHARED: the forked helper sees every later write.
        self._hs_base = slots + 1                      # in words
        self._bls = self._hs_base + 3 * self.HANDSHAKES          # in words
        self._auto = self._bls + 1                                # in words
        self.mm = mmap.mmap(-1, 8 * (self._auto + 1))
        self._w = memoryview(self.mm).cast("Q")        # the page as native u64 words
        self._shared = self._w                         # the helper's page (differs in a child)
        self._slot: dict = {}
        self._free: List[int] = list(range(slots, 0, -1))
        self._hs_free: List[int] = list(range(self.HANDSHAKES - 1, -1, -1))
        self._lock = threading.Lock()
        self.overflowed = 0          # factories not tracked because the board was full

    def add(self, factory: int) -> None:
        if not factory:
            return
        with self._lock:
            if factory in self._slot:
                return
            if not self._free:
                self.overflowed += 1
                return
            i = self._free.pop()
            self._slot[factory] = i
            self._w[i] = factory

    def discard(self, factory: int) -> None:
        """Call before sending what makes the parent delete ``factory``."""
        with self._lock:
            i = self._slot.pop(factory, None)
            if i is None:
                return
            self._w[i] = 0
            if self._shared[i] == factory:   # in a child: the stub may have reused the slot
                self._shared[i] = 0
            self._free.append(i)

    def set_finalizing(self) -> None:
        self._w[0] |= 1

    def set_era(self, era: str) -> None:
        """The protocol era the stub speaks (decided at its first command, after the fork):
        bits 8-15 of the flag word hold its place in ``protocol.TABLES``, plus one."""
        i = sorted(protocol.TABLES).index(era) + 1
        self._w[0] = (self._w[0] & ~0xFF00) | (i << 8)

    def begin_handshake(self, mutex: int, cond: int, flag: int) -> int:
        """A handshake is under way (region offsets); returns a token for :meth:`end_handshake`."""
        with self._lock:
            if not self._hs_free:
                return -1
            i = self._hs_free.pop()
        w, b = self._w, self._hs_base + 3 * i
        w[b], w[b + 1], w[b + 2] = mutex + 1, cond + 1, flag + 1
        return i

    def end_handshake(self, token: int) -> None:
        if token < 0:
            return
        w, b = self._w, self._hs_base + 3 * token
        w[b] = w[b + 1] = w[b + 2] = 0
        with self._lock:
            self._hs_free.append(token)

    def begin_bls(self) -> None:
        """A BLS call is about to be pushed to the parent."""
        with self._lock:
            self._w[self._bls] += 1

    def end_bls(self) -> None:
        """That call's handshake is over (the parent no longer waits for us)."""
        with self._lock:
            self._w[self._bls] -= 1

    def private_in_forked_children(self) -> None:
        """Call once the helper is forked (it must keep sharing the page): from then on a
        forked child writes its own state to a private page of its own."""
        ref = weakref.ref(self)

        def after_fork_in_child() -> None:
            board = ref()
            if board is not None:
                board._go_private()
        os.register_at_fork(after_in_child=after_fork_in_child)

    def _go_private(self) -> None:
        # In the child, only this thread exists: the lock may have been held by another thread
        # of the stub at the fork, so it is replaced, not taken. The fresh page is zero: the
        # child has no BLS call, handshake or answer under way yet.
        self._lock = threading.Lock()
        self.mm = mmap.mmap(-1, len(self.mm), flags=mmap.MAP_PRIVATE)
        self._w = memoryview(self.mm).cast("Q")

    def begin_auto_complete(self, response_command: int) -> None:
        """The parent waits for our answer to its AutoCompleteRequest (``response_command``)."""
        self._w[self._auto] = response_command + 1

    def end_auto_complete(self) -> None:
        """The answer is on the parent's queue."""
        self._w[self._auto] = 0

    # ---- the helper's side (reads the page, not the stub's dict)
    @property
    def auto_complete_answer(self):
        """The AutoCompleteResponse command number the parent waits for, or None."""
        v = self._w[self._auto]
        return v - 1 if v else None
    @property
    def bls_in_flight(self) -> int:
        return self._w[self._bls]

    @property
    def finalizing(self) -> bool:
        return bool(self._w[0] & 1)

    @property
    def era(self):
        """The era the stub set, or None (it died before its first command)."""
        i = (self._w[0] >> 8) & 0xFF
        return sorted(protocol.TABLES)[i - 1] if i else None

    def live(self) -> List[int]:
        return [f for f in self._w[1:self._hs_base] if f]

    def handshakes(self) -> List[tuple]:
        w, b = self._w, self._hs_base
        return [(w[i] - 1, w[i + 1] - 1, w[i + 2] - 1) for i in range(b, self._bls, 3) if w[i]]


def make_consistent(mutex) -> str:
    """'free' (untouched: not even locked to find out), else try-lock ``mutex``: 'free',
    'busy' (a live process holds it), 'recovered' (its owner had died: now consistent again)
    or 'unrecoverable'."""
    if mutex.untouched():
        return "free"
    rc = libc.pthread_mutex_trylock(mutex.addr)
    if rc == 0:
        libc.pthread_mutex_unlock(mutex.addr)
        return "free"
    if rc == errno.EOWNERDEAD:
        libc.pthread_mutex_consistent(mutex.addr)
        libc.pthread_mutex_unlock(mutex.addr)
        return "recovered"
    if rc == errno.ENOTRECOVERABLE:
        return "unrecoverable"
    return "busy"


def after_stub_death(stub, board: Board, stub_pid: int) -> bool:
    """Run in the helper once the stub is dead and the parent alive (see the module docstring).
    True: the model cannot be unloaded, so the helper must unlink the region once the parent
    is gone (nobody else will)."""
    region = stub.region
    mutexes = [("shm_mutex", region.mutex)]
    mutexes += [(name, q.mutex) for name, q in stub.queues.items()]
    states = {name: make_consistent(m) for name, m in mutexes}
    recovered = [n for n, s in states.items() if s != "free" and s != "busy"]
    if recovered:
        stub_log(ERROR, f"tritonstub: the stub process {stub_pid} died holding {', '.join(recovered)}; "
                 f"made consistent again ({states})", filename="tritonstub", pid=stub_pid)
    finished = sum(_finish_handshake(region, mu, cv, flag) for mu, cv, flag in board.handshakes())
    if finished:
        stub_log(INFO, f"tritonstub: the stub process {stub_pid} died inside {finished} "
                 "handshake(s) with the parent; its heartbeat helper took the parent's answer(s)",
                 filename="tritonstub", pid=stub_pid)
    if states["shm_mutex"] == "unrecoverable":
        return False
    if board.era is None:
        return False
    answer = board.auto_complete_answer
    if answer is not None:
        return not _answer_auto_complete(stub, protocol.codecs(board.era), answer, stub_pid)
    if board.finalizing:
        return False
    factories = board.live()
    if not factories:
        return False
    if board.bls_in_flight:
        # A parent thread answers the BLS call, then waits for our notify for ever (see the
        # module docstring); released factories would let Triton tear the instance down to it
        # and unmap the region under its wait, and the first signal that wakes it aborts the
        # server. Kept, the model cannot unload, as with the C++ stub.
        stub_log(ERROR, f"tritonstub: the stub process {stub_pid} died with {len(factories)} "
                 f"request(s) in hand while waiting for {board.bls_in_flight} BLS reply(ies); "
                 "the parent's BLS thread cannot be answered (see docs/reliability.md), so the "
                 "response factories are kept and the model cannot be unloaded",
                 filename="tritonstub", pid=stub_pid)
        return True
    try:
        with region.locked():
            region.segment.check()
    except Exception as e:  # noqa: BLE001 - a torn allocator: allocate nothing more
        stub_log(ERROR, f"tritonstub: the stub process {stub_pid} died while changing the "
                 f"region's allocator ({e}); its response factories are not released",
                 filename="tritonstub", pid=stub_pid)
        return True
    sent = _send_cleanups(stub, protocol.codecs(board.era), factories)
    stub_log(INFO, f"tritonstub: the stub process {stub_pid} died with {len(factories)} "
             f"request(s) in hand; its heartbeat helper released {sent} response factory(ies) "
             "so that the model can be unloaded", filename="tritonstub", pid=stub_pid)
    return sent < len(factories)


def _answer_auto_complete(stub, wire, response_command: int, stub_pid: int) -> bool:
    """The stub died inside auto_complete_config(): python_backend r24.10 waits for the answer
    with an unbounded Pop (``StubLauncher::AutocompleteStubProcess``, no health check), so the
    load, and the server's exit, would wait for ever. Answer with an error instead: the parent
    then kills what is left of the stub and fails the load with our text. True if answered."""
    region = stub.region
    text = (f"the Python backend stub process {stub_pid} died while the model's "
            "auto_complete_config() ran; tritonstub's heartbeat helper answered for it")
    owned = wire.scalars.Owned()
    try:
        with region.locked():
            region.segment.check()
            reply = wire.control.write_auto_complete_response(region, owned, error=text,
                                                              command=response_command)
    except Exception as e:  # noqa: BLE001 - a torn allocator: allocate nothing more
        stub_log(ERROR, f"tritonstub: the stub process {stub_pid} died during auto-complete and "
                 f"its heartbeat helper could not answer for it ({e})", filename="tritonstub",
                 pid=stub_pid)
        return False
    mq = stub.queues["parent_message_queue"]
    deadline = time.monotonic() + PUSH_BUDGET_S
    while not mq.push(reply, min(WAIT_SLICE_S, max(deadline - time.monotonic(), 0.001))):
        if time.monotonic() >= deadline:
            owned.release(region)
            return False
    stub_log(ERROR, f"tritonstub: {text} (the load fails instead of waiting for ever)",
             filename="tritonstub", pid=stub_pid)
    return True


def _finish_handshake(region, mutex_off: int, cond_off: int, flag_off: int) -> bool:
    """The stub died inside a handshake whose answer the parent gives and then waits for us
    to take (``while (flag) cv.wait``: a parent thread stuck there for ever keeps the model
    from unloading). Wait (bounded) for the answer, take it, wake the parent."""
    try:
        with region.locked():                 # remaps if the stub grew the region
            pass
        mu, cv = Mutex(region.addr(mutex_off)), Condition(region.addr(cond_off))
        region.ensure_mapped(flag_off, 1)
    except Exception:  # noqa: BLE001 - a stale or torn entry: nothing to do
        return False
    make_consistent(mu)
    try:
        mu.lock(ANSWER_WAIT_S)
    except Exception:  # noqa: BLE001 - held by a live parent thread all along: leave it
        return False
    try:
        deadline = time.monotonic() + ANSWER_WAIT_S
        while region.buf[flag_off] != 1 and time.monotonic() < deadline:
            cv.wait(mu, 0.05)
        answered = region.buf[flag_off] == 1
        if answered:
            region.buf[flag_off] = 0
    finally:
        mu.unlock()
    if answered:
        _notify_bounded(cv)
    return answered


def _notify_bounded(cv) -> None:
    """cv.notify_all(), given up after a second. A process killed while it waited on a
    process-shared condition (the stub, in the first round of its handshake) leaves a waiter
    that never leaves: glibc before 2.41 then blocks every later broadcast of that condition
    for ever, waiting for it (``__condvar_quiesce_and_switch_g1``). The parent's own answer
    blocks there too, and nothing on our side can undo it; the helper must not hang with it."""
    t = threading.Thread(target=cv.notify_all, daemon=True)
    t.start()
    t.join(1.0)


def _send_cleanups(stub, wire, factories: List[int]) -> int:
    """One DecoupledResponseFactoryCleanup per factory on stub_to_parent_mq (the shape of
    ``Messenger.cleanup``, pattern C‴), without waiting for the parent's answers: nobody is
    left to use them, and the blocks stay allocated until the parent destroys the region."""
    region = stub.region
    mq = stub.queues["stub_to_parent_mq"]
    deadline = time.monotonic() + PUSH_BUDGET_S
    sent = 0
    # The era's codecs: the helper's own copy of the stub's state is from before the era was
    # decided (the fork), so the board says which era the stub spoke.
    control = wire.control
    if not wire.tables.STUB_RELEASES_FACTORIES:
        return 0            # r23.10 and before: the parent deletes response factories itself
    cleanup = wire.tables.PYTHONSTUB_CommandType.DecoupledResponseFactoryCleanup
    for factory in factories:
        owned = wire.scalars.Owned()
        with region.locked():
            h = control.write_cleanup_message(region, factory, owned)
            msg, mu, cv = control.write_ipc_message(region, cleanup, h,
                                                    owned, True, (libc.MUTEX_SIZE, libc.COND_SIZE))
        handshake.sync_objects(region, region.payload(mu), region.payload(cv), True)
        while not mq.push(msg, min(WAIT_SLICE_S, max(deadline - time.monotonic(), 0.001))):
            if time.monotonic() >= deadline:
                owned.release(region)
                return sent
        sent += 1
    return sent
