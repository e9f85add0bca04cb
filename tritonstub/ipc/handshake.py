"""The handshake patterns of the protocol, for either role (docs/protocol/r24.10.md §4.2).

Theory of operation
-------------------
Every exchange that is not a plain queue push is one of a few shapes over a process-shared
mutex and condition that live in the message (or next to it):

===========  ==================================  =============================================
pattern      the side that starts                 the side that answers
===========  ==================================  =============================================
B, D         push; lock; wait until flag == 1;    do the work; lock; flag = 1; notify; wait
             read the reply; flag = 0; unlock;    until flag == 0 (:func:`answer_flag`)
             notify (:func:`start_flag`)
C‴, C″       push; lock; wait until flag == 1     lock; flag = 1; notify (one round)
             (:func:`start_flag`, ``rounds=1``)   (:func:`answer_flag`, ``rounds=1``)
C            lock; push; wait for a notify (no    write the reply; lock; notify; wait for the
             flag exists: :func:`wait_notify`);   starter's notify
             read; notify
===========  ==================================  =============================================

Where there is a flag, the starter pushes first and then takes the mutex (the C++ stub locks
first): the flag is tested under the lock, so no answer is missed, and the stub never holds a
mutex the parent is about to lock (see :func:`start_flag`). Pattern C has no flag: there the
starter takes the mutex *before* it pushes, so the answer's notify cannot be missed. Which
byte is the flag, and where the mutex and condition are, is the protocol's business
(``protocol.control.mailbox``); this module only runs the shapes. Every wait is cut into
slices of :data:`WAIT_SLICE_S`; between slices ``alive()`` says whether the peer process still
exists, and :class:`PeerGone` ends a wait the peer can no longer end. The stub plays the
starter of B, C, C‴ and D and the answerer of C′ and C″; a harness playing the parent plays the
other half with the same functions.
"""
from __future__ import annotations

import time
from typing import Callable, Optional

from . import libc
from .sync import Condition, Mutex

WAIT_SLICE_S = 1.0

Alive = Callable[[], bool]


class PeerGone(Exception):
    """The process on the other side died while we waited for it."""


def sync_objects(heap, mutex_offset: int, cond_offset: int, initialize: bool = False):
    """The Mutex and Condition at two byte offsets of ``heap`` (initialised when asked: the
    starter of a message does that, on memory it has just Construct'ed)."""
    mu = Mutex(heap.addr(mutex_offset, libc.MUTEX_SIZE))
    cv = Condition(heap.addr(cond_offset, libc.COND_SIZE))
    if initialize:
        mu.initialize()
        cv.initialize()
    return mu, cv


def peer_sync_objects(heap, mutex_handle: int, cond_handle: int):
    """The Mutex and Condition the peer Construct'ed for a message it sent us (an inline
    message's ``response_mutex`` / ``response_cond``): each handle must start an allocated block
    big enough, or BadHandle (a pthread call on a corrupt handle would write anywhere)."""
    return sync_objects(heap, heap.object_payload(mutex_handle, libc.MUTEX_SIZE),
                        heap.object_payload(cond_handle, libc.COND_SIZE))


def push(mq, handle: int, alive: Alive) -> None:
    """Timed pushes until one succeeds; PeerGone if the peer dies meanwhile."""
    while not mq.push(handle, WAIT_SLICE_S):
        if not alive():
            raise PeerGone()


def wait_flag(buf, mutex: Mutex, cond: Condition, flag: int, want: int, alive: Alive) -> None:
    """With ``mutex`` held: wait until ``buf[flag] == want``."""
    while buf[flag] != want:
        if not cond.wait(mutex, WAIT_SLICE_S) and buf[flag] != want:
            if not alive():
                raise PeerGone()


def wait_notify(mutex: Mutex, cond: Condition, alive: Alive) -> None:
    """With ``mutex`` held: wait for one notify (pattern C has no flag to test)."""
    while not cond.wait(mutex, WAIT_SLICE_S):
        if not alive():
            raise PeerGone()


def start_flag(heap, mq, message: int, mutex: Mutex, cond: Condition, flag: int, alive: Alive,
               read: Optional[Callable[[], object]] = None, rounds: int = 2):
    """The starting side of B / D (``rounds=2``) or C‴ / C″ (``rounds=1``): push ``message``,
    wait for the answer, return ``read()`` (called before the peer is released, so nothing it
    frees afterwards is read)."""
    # Pushed before the lock is taken: with a flag to test, no answer can be missed (it is
    # checked under the lock), and the parent never finds the mutex held by us when it comes to
    # answer. A process killed while it holds one of these robust mutexes makes the parent's
    # next lock of it throw (Boost's lock_exception: tritonserver aborts), so we hold it only
    # while the parent waits on the condition, and notify after unlocking for the same reason.
    push(mq, message, alive)
    mutex.lock()
    try:
        wait_flag(heap.buf, mutex, cond, flag, 1, alive)
        result = read() if read is not None else None
    finally:
        if rounds == 2:
            heap.buf[flag] = 0
        mutex.unlock()
        if rounds == 2:
            cond.notify_all()
    return result


def answer_flag(heap, mutex: Mutex, cond: Condition, flag: int, alive: Alive,
                write: Optional[Callable[[], None]] = None, rounds: int = 2,
                timeout: Optional[float] = None) -> None:
    """The answering side: ``write()`` the reply, set the flag, notify; with ``rounds=2`` wait
    until the starter has read it (a dead starter ends that wait quietly: nothing is left to
    do). With ``timeout`` that wait lasts at most so many seconds, after which the flag is
    cleared and we go on (the r26.03 readiness answer: the parent may have given up)."""
    mutex.lock()
    try:
        if write is not None:
            write()
        heap.buf[flag] = 1
        cond.notify_all()
        if rounds == 2 and timeout is not None:
            deadline = time.monotonic() + timeout
            while heap.buf[flag] != 0:
                left = deadline - time.monotonic()
                if left <= 0 or not alive():
                    heap.buf[flag] = 0
                    break
                cond.wait(mutex, min(left, WAIT_SLICE_S))
        elif rounds == 2:
            try:
                wait_flag(heap.buf, mutex, cond, flag, 0, alive)
            except PeerGone:
                pass
    finally:
        mutex.unlock()
