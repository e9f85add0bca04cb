"""A heap of python-backend objects over any buffer: SharedMemoryManager's logic without the OS.

Theory of operation
-------------------
The python backend never hands raw allocations across the boundary. Every object is built like
``SharedMemoryManager::Construct`` (shm_manager.h): ``nbytes + 16`` bytes are allocated from the
Boost segment (32-byte aligned on request), the first 4 bytes hold ``ref_count = 1``
(``AllocatedShmOwnership``) and the object's *handle* is the offset of that header; the payload
starts at ``handle + 16``. ``load`` adds a reference, ``release`` drops one and frees the block at
zero. Handles are checked against the buffer (and the allocator's block list) before any access.

:class:`Heap` is that logic over a :class:`~tritonstub.ipc.segment.ManagedSegment` on any
writable buffer. A ``bytearray`` heap is what the protocol's unit tests run on; the stub's
mapped region (``region.Region``) is the same class with three hooks filled in: ``_enter`` /
``_exit`` take the segment's ``shm_mutex`` (and remap when the peer grew the file), ``_grow``
grows the file when an allocation fails, ``_remap_if_grown`` follows a growth seen outside the
lock. Here they are a re-entrant thread lock and "out of memory".

``construct_many`` and ``release_many`` hand the segment whole runs (segment.py, "Runs"): the
blocks of one request or one send are allocated, and freed, in one pass where the region's
free space allows it, with the bytes of the one-by-one steps.

Block reuse (off by default) keeps small blocks whose last reference was ours for our next
Constructs of the same size: the stub builds and frees the same few objects for every request.
"""
from __future__ import annotations

import ctypes
import threading
from typing import Optional

from .. import protocol
from .segment import ManagedSegment, units_for
from ..errors import BadHandle, OutOfMemory, ShmError

_layouts = protocol.common()
HEADER = _layouts.OWNERSHIP_HEADER
_REF = _layouts.AllocatedShmOwnership.fields["ref_count"].codec


class _Held:
    """``with heap.locked():`` (one per heap: the depth lives in the heap's ``_enter``)."""

    __slots__ = ("heap",)

    def __init__(self, heap: "Heap"):
        self.heap = heap

    def __enter__(self) -> "Heap":
        self.heap._enter()
        return self.heap

    def __exit__(self, *exc) -> None:
        self.heap._exit()


class Heap:
    """Construct / Load / Release over a segment on ``buf`` (see the module docstring)."""

    def __init__(self, name: str = "heap"):
        self.name = name
        self.buf = None
        self.capacity = 0
        self.segment: Optional[ManagedSegment] = None
        self._local = threading.RLock()   # guards our Python-side state across threads
        self._tls = threading.local()      # per-thread depth of locked()
        self._reuse = False
        self._cache: dict = {}             # block units -> [handles we own, ref count 0]
        self._cached_bytes = 0
        self._held = _Held(self)

    @classmethod
    def create(cls, buf, name: str = "heap") -> "Heap":
        """A fresh segment over all of ``buf`` (a bytearray in tests)."""
        self = cls(name)
        self.buf = buf
        self.capacity = len(buf)
        self.segment = ManagedSegment.create(buf, len(buf), region=name)
        # The buffer's address, for the pthread objects that live in it (exporting the
        # buffer also keeps a bytearray from being resized under them).
        self._anchor = ctypes.c_char.from_buffer(buf)
        return self

    def addr(self, offset: int, nbytes: int = 1) -> int:
        """Absolute address of a byte offset (mutexes, conditions and semaphores live there);
        the ``nbytes`` from there must lie inside the buffer too (a pthread call reads them)."""
        if offset < 0 or offset + nbytes > self.capacity:
            raise BadHandle(f"[{offset}, {offset + nbytes}) lies outside the {self.capacity}-byte "
                            "heap", region=self.name, offset=offset)
        return ctypes.addressof(self._anchor) + offset

    # ------------------------------------------------------------------ hooks (see Region)
    def _enter(self) -> None:
        self._local.acquire()

    def _exit(self) -> None:
        self._local.release()

    def _grow(self, nbytes: int) -> None:
        raise OutOfMemory(f"no {nbytes}-byte block free in the {self.capacity}-byte heap",
                          region=self.name)

    def _remap_if_grown(self) -> None:
        pass

    def locked(self) -> "_Held":
        """Hold the allocator's lock (re-entrant for the calling thread) across several
        operations: ``with heap.locked(): a = construct(); ...``."""
        return self._held

    # ------------------------------------------------------------------ objects
    def construct(self, nbytes: int, aligned: bool = False) -> int:
        """SharedMemoryManager::Construct: allocate nbytes + 16, ref_count = 1; the handle."""
        self._enter()
        try:
            return self._construct_locked(nbytes + HEADER, aligned)
        finally:
            self._exit()

    def construct_many(self, sizes, aligned: bool = False) -> list:
        """Several Constructs under one hold of the lock (one lock round trip, not n); out of
        the region's only free block in one pass when they fit there (segment.allocate_run:
        the same words as one by one)."""
        self._enter()
        try:
            if not (self._reuse or aligned):
                handles = self.segment.allocate_run([n + HEADER for n in sizes])
                if handles is not None:
                    buf = self.buf
                    for h in handles:
                        _REF.pack_into(buf, h, 1)
                    return handles
            return [self._construct_locked(n + HEADER, aligned) for n in sizes]
        finally:
            self._exit()

    def _construct_locked(self, req: int, aligned: bool) -> int:
        if self._reuse and not aligned:
            u = units_for(req)
            for units in (u, u + 1, u + 2):     # best fit may leave up to 2 units of slack
                lst = self._cache.get(units)
                if lst:
                    h = lst.pop()
                    self._cached_bytes -= units * 16
                    _REF.pack_into(self.buf, h, 1)
                    return h
        seg = self.segment
        try:
            h = seg.allocate_aligned(req, 32) if aligned else seg.allocate(req)
        except OutOfMemory:
            if self._cached_bytes:
                self._flush_locked()            # give cached blocks back before growing
                return self._construct_locked(req, aligned)
            self._grow(req)
            seg = self.segment
            h = seg.allocate_aligned(req, 32) if aligned else seg.allocate(req)
        _REF.pack_into(self.buf, h, 1)
        return h

    # ------------------------------------------------------------------ block reuse
    REUSE_MAX_BLOCK = 64 << 10        # only small blocks are kept
    REUSE_MAX_TOTAL = 1 << 20         # at most this many bytes kept
    REUSE_MAX_PER_SIZE = 64

    def enable_block_reuse(self) -> None:
        """Keep small blocks we freed for our next Constructs of the same size.

        Reuse skips two allocator walks per object. Only blocks whose last reference was ours
        go to the cache; they stay allocated (so ``tritonstub shm inspect`` counts them) until
        :meth:`flush_block_cache`, which the stub calls after one idle second, before growing,
        and at exit.
        """
        self._reuse = True

    def _flush_locked(self) -> None:
        seg = self.segment
        for lst in self._cache.values():
            for h in lst:
                seg.deallocate(h)
        self._cache.clear()
        self._cached_bytes = 0

    def flush_block_cache(self) -> None:
        if self._cached_bytes:
            self._enter()
            try:
                self._flush_locked()
            finally:
                self._exit()

    def _free_locked(self, handle: int, usable: int = 0) -> None:
        """Our last reference went away: cache the block when reuse is on, else free it.

        ``usable`` is the block's usable size when the caller already validated the handle.
        """
        if self._reuse:
            units = ((usable or self.segment.usable_size(handle)) - 8) // 16 + 1
            nbytes = units * 16
            if (nbytes <= self.REUSE_MAX_BLOCK
                    and self._cached_bytes + nbytes <= self.REUSE_MAX_TOTAL):
                lst = self._cache.setdefault(units, [])
                if len(lst) < self.REUSE_MAX_PER_SIZE:
                    lst.append(handle)
                    self._cached_bytes += nbytes
                    return
        self.segment.deallocate(handle)

    def load(self, handle: int) -> int:
        """SharedMemoryManager::Load: one more reference. Returns the payload offset."""
        with self.locked():
            self._check_object(handle)
            rc = _REF.unpack_from(self.buf, handle)[0]
            _REF.pack_into(self.buf, handle, (rc + 1) & 0xFFFFFFFF)
        return handle + HEADER

    def release(self, handle: int) -> bool:
        """The AllocatedSharedMemory deleter: drop a reference, free at zero. True if freed."""
        with self.locked():
            self._check_object(handle)
            rc = _REF.unpack_from(self.buf, handle)[0]
            if rc == 0:
                raise ShmError("releasing an object whose ref count is already 0 (double free)",
                               region=self.name, offset=handle)
            rc -= 1
            _REF.pack_into(self.buf, handle, rc)
            if rc == 0:
                self._free_locked(handle)
                return True
            return False

    def release_many(self, handles) -> None:
        """Release several handles under one lock (the hot path after an execute)."""
        self._enter()
        try:
            buf = self.buf
            seg = self.segment
            reuse = self._reuse
            # The steady state: the last blocks are ours alone (ref count 1) and lie before
            # the only free block, as one construct run left them, or between the only two
            # (the parent freed its request first). They go in one pass (segment.free_run:
            # the words of one-by-one frees); the loop below takes the rest, e.g. a response
            # the parent still holds a reference to.
            if not reuse:
                k = len(handles)
                top = self.capacity - HEADER
                while k and 0 < handles[k - 1] <= top and \
                        _REF.unpack_from(buf, handles[k - 1])[0] == 1:
                    k -= 1
                if k < len(handles):
                    run = handles[k:]
                    for h in run:                  # the count drops to 0, as below
                        _REF.pack_into(buf, h, 0)
                    if seg.free_run(run):
                        handles = handles[:k]
                    else:
                        for h in run:
                            _REF.pack_into(buf, h, 1)
            # Last constructed first: each block then merges with the free block after it,
            # which in the steady state is the only free block (segment: replace_sole).
            for handle in reversed(handles):
                block = seg.block_of(handle)       # an allocated block, or BadHandle: never
                rc = _REF.unpack_from(buf, handle)[0]   # write into a free block's tree hook
                if rc == 0:
                    raise ShmError("releasing an object whose ref count is already 0",
                                   region=self.name, offset=handle)
                rc -= 1
                _REF.pack_into(buf, handle, rc)
                if rc == 0:
                    if reuse:
                        self._free_locked(handle, seg.usable_size(handle))
                    else:
                        seg.free_block(block)
        finally:
            self._exit()

    def only_ours(self, handles) -> bool:
        """True when every handle lies in the buffer and its ref count is 1: objects we
        Construct'ed and still hold, that the peer has no reference to (any more), so the
        caller may write them again instead of releasing and Constructing. No lock is needed:
        while we hold a reference the count can only fall, to 1, by the peer's last release."""
        buf = self.buf
        top = self.capacity - HEADER
        for h in handles:
            if not 0 < h <= top or _REF.unpack_from(buf, h)[0] != 1:
                return False
        return True

    def deallocate(self, handle: int) -> None:
        with self.locked():
            self.segment.deallocate(handle)

    def ref_count(self, handle: int) -> int:
        self._check_handle(handle, HEADER)
        return _REF.unpack_from(self.buf, handle)[0]

    def free_memory(self) -> int:
        return self.segment.free_memory()

    # ------------------------------------------------------------------ access
    def _check_handle(self, handle: int, nbytes: int) -> None:
        if handle <= 0:
            raise BadHandle(f"handle {handle} is not a valid handle", region=self.name,
                            offset=handle)
        if handle + nbytes > self.capacity:
            self._remap_if_grown()
            if handle + nbytes > self.capacity:
                raise BadHandle(f"handle {handle} (+{nbytes} bytes) lies outside the "
                                f"{self.capacity}-byte region", region=self.name, offset=handle)

    def _check_object(self, handle: int) -> None:
        """A Construct'ed object: inside the buffer and an allocated block (lock held)."""
        self._check_handle(handle, HEADER)
        self.segment.usable_size(handle)   # raises BadHandle unless an allocated block starts here

    def object_payload(self, handle: int, nbytes: int) -> int:
        """The payload of an object the peer hands us and we will *write* into (a flag, a mutex,
        a condition): the handle must start an allocated block with room for ``nbytes``, so a
        corrupt handle can neither reach past the mapping nor overwrite the allocator's own
        words (a free block's tree hooks, a block header). Reads need only :meth:`payload`."""
        self._enter()
        try:
            self._check_handle(handle, HEADER + nbytes)
            if self.segment.usable_size(handle) < HEADER + nbytes:
                raise BadHandle(f"the object at handle {handle} is smaller than the {nbytes} "
                                "bytes it must hold", region=self.name, offset=handle)
        finally:
            self._exit()
        return handle + HEADER

    def payload(self, handle: int) -> int:
        """Offset of the object behind a Construct'ed handle (handle + 16), bounds-checked."""
        self._check_handle(handle, HEADER)
        return handle + HEADER

    def ensure_mapped(self, offset: int, nbytes: int) -> None:
        """Make sure [offset, offset+nbytes) lies inside the buffer (remapping if the peer grew)."""
        if offset < 0 or offset + nbytes > self.capacity:
            self._remap_if_grown()
            if offset < 0 or offset + nbytes > self.capacity:
                raise BadHandle(f"[{offset}, {offset + nbytes}) lies outside the "
                                f"{self.capacity}-byte mapping", region=self.name, offset=offset)

    def view(self, offset: int, nbytes: int) -> memoryview:
        self.ensure_mapped(offset, nbytes)
        return memoryview(self.buf)[offset:offset + nbytes]

    def read(self, offset: int, nbytes: int) -> bytes:
        self.ensure_mapped(offset, nbytes)
        return bytes(self.buf[offset:offset + nbytes])

    def write(self, offset: int, data) -> None:
        self.ensure_mapped(offset, len(data))
        self.buf[offset:offset + len(data)] = data
