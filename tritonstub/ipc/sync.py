"""Process-shared mutex, condition and semaphore living at an address inside a mapping.

These mirror boost::interprocess::interprocess_mutex / interprocess_condition /
interprocess_semaphore as built by Boost 1.79's POSIX path (see libc.py). An object here is a
plain (address) wrapper: it owns nothing, and the mapping it points into must outlive it
(region.py keeps every mapping it ever made alive for that reason).

Differences from Boost, on purpose:
- a robust mutex whose owner died (EOWNERDEAD) is made consistent and reported with
  ``OwnerDied`` instead of being left unrecoverable for everyone; the caller decides whether the
  data it guards is still usable;
- every wait has a bounded variant, and semaphore waits are retried on EINTR (our stub installs
  no-op SIGINT/SIGTERM handlers like the C++ stub, so EINTR happens).
"""
from __future__ import annotations

import ctypes
import errno
from typing import Optional

from . import libc
from ..errors import IPCTimeout, OwnerDied, SyncError


class Mutex:
    __slots__ = ("addr",)

    def __init__(self, addr: int):
        self.addr = addr

    def initialize(self) -> "Mutex":
        libc.init_mutex(self.addr)
        return self

    def lock(self, timeout: Optional[float] = None) -> None:
        """Lock; with ``timeout`` (seconds) raise IPCTimeout when it runs out."""
        # A free mutex is taken without letting the GIL go (libc.py); only a wait releases it.
        rc = libc.pthread_mutex_trylock(self.addr)
        if rc == errno.EBUSY:
            if timeout is None:
                rc = libc.pthread_mutex_lock(self.addr)
            else:
                rc = libc.pthread_mutex_timedlock(self.addr, libc.deadline(timeout))
        if rc == 0:
            return
        self._fail(rc, "lock")

    def untouched(self) -> bool:
        """True when nobody holds the mutex and no owner died holding it, read without locking.

        glibc's pthread_mutex_t begins with its futex word (``__lock``); for a robust mutex it
        holds the owner's thread id, FUTEX_WAITERS and FUTEX_OWNER_DIED (which the kernel sets
        for a thread that exits holding it), and it is 0 only when the mutex is free. A process
        that must not be caught holding a mutex (a SIGKILL there leaves the other side an
        owner-died mutex) looks here before it takes one it may not need.
        """
        return ctypes.c_uint32.from_address(self.addr).value == 0

    def try_lock(self) -> bool:
        rc = libc.pthread_mutex_trylock(self.addr)
        if rc == 0:
            return True
        if rc == errno.EBUSY:
            return False
        self._fail(rc, "try_lock")
        return False  # unreachable

    def unlock(self) -> None:
        rc = libc.pthread_mutex_unlock(self.addr)
        if rc != 0:
            raise SyncError(f"pthread_mutex_unlock failed: {errno.errorcode.get(rc, rc)}")

    def _fail(self, rc: int, what: str) -> None:
        if rc == errno.ETIMEDOUT:
            raise IPCTimeout(f"timed out waiting for the mutex at {self.addr:#x}")
        if rc == errno.EOWNERDEAD:
            # We own it now. Mark it consistent so the peer is not locked out forever, then
            # release and let the caller decide whether the protected data is still sane.
            libc.pthread_mutex_consistent(self.addr)
            libc.pthread_mutex_unlock(self.addr)
            raise OwnerDied("the process holding a shared mutex died while holding it")
        if rc == errno.ENOTRECOVERABLE:
            raise OwnerDied("a shared mutex is unrecoverable: its owner died while holding it")
        raise SyncError(f"pthread_mutex_{what} failed: {errno.errorcode.get(rc, rc)}")

    def __enter__(self) -> "Mutex":
        self.lock()
        return self

    def __exit__(self, *exc) -> None:
        self.unlock()


class Condition:
    __slots__ = ("addr",)

    def __init__(self, addr: int):
        self.addr = addr

    def initialize(self) -> "Condition":
        libc.init_cond(self.addr)
        return self

    def wait(self, mutex: Mutex, timeout: Optional[float] = None) -> bool:
        """Wait (mutex held). Returns False on timeout. Spurious wake-ups happen: use a predicate."""
        if timeout is None:
            rc = libc.pthread_cond_wait(self.addr, mutex.addr)
        else:
            rc = libc.pthread_cond_timedwait(self.addr, mutex.addr, libc.deadline(timeout))
        if rc == 0:
            return True
        if rc == errno.ETIMEDOUT:
            return False
        if rc == errno.EOWNERDEAD:
            libc.pthread_mutex_consistent(mutex.addr)
            return True
        raise SyncError(f"pthread_cond_wait failed: {errno.errorcode.get(rc, rc)}")

    def notify_one(self) -> None:
        libc.pthread_cond_signal(self.addr)

    def notify_all(self) -> None:
        libc.pthread_cond_broadcast(self.addr)


class Semaphore:
    __slots__ = ("addr",)

    def __init__(self, addr: int):
        self.addr = addr

    def initialize(self, value: int) -> "Semaphore":
        libc.init_sem(self.addr, value)
        return self

    def post(self) -> None:
        if libc.sem_post(self.addr) != 0:
            libc._raise_errno("sem_post")

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Take one unit. With ``timeout`` return False when it runs out. EINTR is retried."""
        if timeout is None:
            while libc.sem_wait(self.addr) != 0:
                if libc.get_errno() != errno.EINTR:
                    libc._raise_errno("sem_wait")
            return True
        ts = libc.deadline(timeout)
        while libc.sem_timedwait(self.addr, ts) != 0:
            e = libc.get_errno()
            if e == errno.ETIMEDOUT:
                return False
            if e != errno.EINTR:
                libc._raise_errno("sem_timedwait")
        return True

    def try_wait(self) -> bool:
        while libc.sem_trywait(self.addr) != 0:
            e = libc.get_errno()
            if e == errno.EAGAIN:
                return False
            if e != errno.EINTR:
                libc._raise_errno("sem_trywait")
        return True

    def value(self) -> int:
        return libc.sem_value(self.addr)
