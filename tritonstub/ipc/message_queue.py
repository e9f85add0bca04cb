"""MessageQueue<handle_t> of python_backend (message_queue.h), on a Region.

A queue is a MessageQueueShm (two counting semaphores, a mutex, size, head, tail and the handle
of its ring) plus the ring itself, ``size`` 8-byte elements. A push waits for a free slot on
``sem_empty``, writes ``ring[head]`` under ``mutex`` and posts ``sem_full``; a pop mirrors it.
The timed variants take absolute CLOCK_REALTIME deadlines and, if the mutex cannot be taken in
time after the semaphore was, give the semaphore back and fail — exactly the C++ semantics, so
either side may be C++ or Python.

Like the C++ LoadFromSharedMemory, opening a queue takes one reference on the MessageQueueShm
and one on its ring; ``close`` drops them.
"""
from __future__ import annotations

from typing import Optional

from .. import protocol
from ..protocol.layout import scalar
from .region import Region
from .sync import Mutex, Semaphore

L = protocol.common()

_Q = L.MessageQueueShm
_I32 = _Q.fields["head"].codec          # head and tail
_I64 = scalar("handle")                  # one ring element


class MessageQueue:
    def __init__(self, region: Region, handle: int, *, take_reference: bool = True):
        self.region = region
        self.handle = handle
        self._owns = take_reference
        if take_reference:
            p = region.load(handle)
        else:
            p = region.payload(handle)
        self.payload = p
        self.size = _Q.get(region.buf, p, "size")
        self.buffer_handle = _Q.get(region.buf, p, "buffer")
        if not 0 < self.size < (1 << 24):
            from ..errors import ShmError
            raise ShmError(f"message queue has an implausible size {self.size}",
                           region=region.name, offset=handle)
        if take_reference:
            self.ring = region.load(self.buffer_handle)
        else:
            self.ring = region.payload(self.buffer_handle)
        region.ensure_mapped(self.ring, self.size * L.MESSAGE_QUEUE_ELEMENT)
        # Addresses taken in the current mapping; every mapping stays alive while the region is
        # open, so these stay valid after a remap.
        self.sem_empty = Semaphore(region.addr(p + _Q.sem_empty))
        self.sem_full = Semaphore(region.addr(p + _Q.sem_full))
        self.mutex = Mutex(region.addr(p + _Q.mutex))
        self._buf = region.buf   # a mapping that contains the queue: any of them will do
        self._head = p + _Q.head
        self._tail = p + _Q.tail

    @classmethod
    def create(cls, region: Region, size: int = L.DEFAULT_MESSAGE_QUEUE_SIZE) -> "MessageQueue":
        """MessageQueue::Create: what the parent does for each of its five queues."""
        h = region.construct(_Q.size)
        ring = region.construct(size * L.MESSAGE_QUEUE_ELEMENT)
        p = region.payload(h)
        buf = region.buf
        _Q.write(buf, p, size=size, buffer=ring, head=0, tail=0)
        Mutex(region.addr(p + _Q.mutex)).initialize()
        Semaphore(region.addr(p + _Q.sem_empty)).initialize(size)
        Semaphore(region.addr(p + _Q.sem_full)).initialize(0)
        # The creator keeps the references Construct gave it (ref count 1 each).
        return cls(region, h, take_reference=False)._owned()

    def _owned(self) -> "MessageQueue":
        self._owns = True
        return self

    def reset_semaphores(self) -> None:
        """ResetSemaphores(): what the parent does before each stub launch."""
        self.sem_full.initialize(0)
        self.sem_empty.initialize(self.size)
        self.mutex.initialize()
        _I32.pack_into(self._buf, self._tail, 0)
        _I32.pack_into(self._buf, self._head, 0)

    # ------------------------------------------------------------------ push / pop
    def push(self, value: int, timeout: Optional[float] = None) -> bool:
        """Push a handle. With ``timeout`` (s) return False if no slot/lock came in time."""
        # Fast path first: a free slot and a free mutex need no deadline (no ctypes timespec).
        if not self.sem_empty.try_wait() and not self.sem_empty.wait(timeout):
            return False
        if not self.mutex.try_lock() and not self._lock(timeout, self.sem_empty):
            return False
        try:
            buf = self._buf
            head = _I32.unpack_from(buf, self._head)[0]
            _I64.pack_into(buf, self.ring + 8 * head, value)
            _I32.pack_into(buf, self._head, (head + 1) % self.size)
        finally:
            self.mutex.unlock()
        self.sem_full.post()
        return True

    def pop(self, timeout: Optional[float] = None) -> Optional[int]:
        """Pop a handle; with ``timeout`` return None if nothing came in time."""
        if not self.sem_full.try_wait() and not self.sem_full.wait(timeout):
            return None
        if not self.mutex.try_lock() and not self._lock(timeout, self.sem_full):
            return None
        try:
            buf = self._buf
            tail = _I32.unpack_from(buf, self._tail)[0]
            value = _I64.unpack_from(buf, self.ring + 8 * tail)[0]
            _I32.pack_into(buf, self._tail, (tail + 1) % self.size)
        finally:
            self.mutex.unlock()
        self.sem_empty.post()
        return value

    def _lock(self, timeout: Optional[float], sem: Semaphore) -> bool:
        from ..errors import IPCTimeout
        try:
            self.mutex.lock(timeout)
        except IPCTimeout:
            sem.post()
            return False
        return True

    # ------------------------------------------------------------------ inspection
    def fill(self) -> int:
        """Number of queued elements (a racy snapshot, for inspection)."""
        head = _I32.unpack_from(self._buf, self._head)[0]
        tail = _I32.unpack_from(self._buf, self._tail)[0]
        n = (head - tail) % self.size
        if n == 0 and self.sem_full.value() > 0:
            return self.size
        return n

    def close(self) -> None:
        if self._owns:
            self._owns = False
            self.region.release_many([self.buffer_handle, self.handle])
