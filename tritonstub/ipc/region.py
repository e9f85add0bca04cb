"""A python-backend shared-memory region: the counterpart of SharedMemoryManager (shm_manager.cc).

Theory of operation
-------------------
The parent creates one POSIX shm object per stub, ``/dev/shm/<name>``, and lays a Boost
``managed_external_buffer`` over it (the pure allocator in segment.py). Two named objects live in
the segment: ``"shm_mutex"``, the only lock of the allocator, and ``"total size"``, the size the
region currently has. Every operation takes ``shm_mutex`` and first calls ``grow_if_needed(0)``:
if the peer has grown the file (``total size`` differs from what we mapped) we map the file again
at its new size and point the segment at the new mapping. **Old mappings are never unmapped**
while the region is open, so addresses handed to ctypes (mutexes, conditions) and numpy views
made earlier stay valid. When an allocation fails we grow the region ourselves, exactly as the
C++ code does: truncate the file to ``total + growth * (bytes // growth + 1)`` (posix_fallocate
then ftruncate, twice), map it, ``grow`` the segment by the difference and publish the new
``total size`` last.

Objects are Construct'ed, loaded and released by :class:`~tritonstub.ipc.heap.Heap`, which this
class extends with the lock (``_enter``/``_exit``: ``shm_mutex``, re-entrant per thread, remap on
entry) and growth (``_grow``).
"""
from __future__ import annotations

import ctypes
import mmap
import os
import stat
import threading
import weakref
from typing import List, Optional

from .. import protocol
from ..protocol.layout import scalar
from .heap import Heap
from .segment import MIN_SEGMENT, ManagedSegment
from .sync import Mutex
from ..errors import BadHandle, NotASegment, RegionNotFound, ShmError

L = protocol.common()
_U64 = scalar("u64")           # the named object "total size" (std::size_t)



def _after_fork_in_child() -> None:
    """A forked child (e.g. multiprocessing in model.py) gets a copy of our Python-side state.

    Locks another thread held at fork time would stay held forever, and the block-reuse cache
    now lists blocks the parent process will hand out too: reset both. The child may then use
    the region (BLS from a worker process) like any other client of shm_mutex.
    """
    for region in list(_OPEN_REGIONS):
        region._local = threading.RLock()
        region._tls = threading.local()
        region._cache = {}
        region._cached_bytes = 0


DEFAULT_SHM_SIZE = 1 << 20
DEFAULT_GROWTH = 1 << 20
SHM_DIR = "/dev/shm"


_OPEN_REGIONS = weakref.WeakSet()
os.register_at_fork(after_in_child=_after_fork_in_child)


def region_path(name: str) -> str:
    return os.path.join(SHM_DIR, name.lstrip("/"))


def _truncate(fd: int, size: int) -> None:
    # boost::interprocess::shared_memory_object::truncate: reserve the pages first so a full
    # /dev/shm fails here instead of raising SIGBUS on first touch.
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as e:
        import errno
        if e.errno not in (errno.EOPNOTSUPP, errno.ENODEV, errno.EINVAL):
            raise
    os.ftruncate(fd, size)


class Region(Heap):
    """One mapped python-backend region (see the module docstring): a :class:`Heap` whose
    lock is ``shm_mutex`` and whose buffer grows."""

    def __init__(self, name: str, fd: int, growth: int, created: bool):
        super().__init__(name.lstrip("/"))
        self.growth = growth
        self.created = created
        self._fd = fd
        self._maps: List[mmap.mmap] = []
        self._anchors: List[ctypes.c_char] = []   # keep a ctypes export of each map alive
        self.buf: mmap.mmap
        self.base = 0            # address of the newest mapping
        self.segment: ManagedSegment
        self.mutex: Mutex
        self._total_size_off = 0
        self.unlink_on_close = False
        self._closed = False
        _OPEN_REGIONS.add(self)

    # ------------------------------------------------------------------ opening / creating
    @classmethod
    def open(cls, name: str, growth: int = DEFAULT_GROWTH) -> "Region":
        """Open an existing region read-write, as the stub does (size from fstat)."""
        path = region_path(name)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            raise RegionNotFound(
                f"no shared-memory region named '{name}' (looked for {path}); "
                "is the server still running? `ls /dev/shm` lists the regions", region=name)
        except PermissionError as e:
            raise ShmError(f"cannot open {path} read-write: {e.strerror}", region=name)
        self = cls(name, fd, growth, created=False)
        try:
            size = os.fstat(fd).st_size
            if size < MIN_SEGMENT:
                raise NotASegment(f"region is {size} bytes, too small to hold a Boost segment",
                                  region=name)
            self._map(size)
            self.segment = ManagedSegment(self.buf, region=self.name)
            self._find_named()
        except BaseException:
            self.close()
            raise
        return self

    @classmethod
    def create(cls, name: str, size: int = DEFAULT_SHM_SIZE,
               growth: int = DEFAULT_GROWTH) -> "Region":
        """Create a fresh region exactly as the parent's SharedMemoryManager(create=true) does."""
        path = region_path(name)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        os.fchmod(fd, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
        self = cls(name, fd, growth, created=True)
        self.unlink_on_close = True
        try:
            _truncate(fd, size)
            self._map(size)
            self.segment = ManagedSegment.create(self.buf, size, region=self.name)
            mutex_off = self.segment.construct_named(L.SHM_MUTEX_NAME, 40, 8)
            total_off = self.segment.construct_named(L.TOTAL_SIZE_NAME, 8, 8)
            self._bind_named(mutex_off, total_off)
            self._set_total_size(size)
            self.mutex.initialize()
        except BaseException:
            self.close()
            raise
        return self

    def _find_named(self) -> None:
        m = self.segment.find(L.SHM_MUTEX_NAME)
        t = self.segment.find(L.TOTAL_SIZE_NAME)
        if m is None or t is None:
            missing = [n for n, v in ((L.SHM_MUTEX_NAME, m), (L.TOTAL_SIZE_NAME, t)) if v is None]
            raise NotASegment(f"named object(s) {missing} not found: not a python-backend region",
                              region=self.name)
        self._bind_named(m[0], t[0])

    def _bind_named(self, mutex_off: int, total_off: int) -> None:
        # The mutex address is taken in the first mapping, which lives as long as the region.
        self.mutex = Mutex(self._maps_base(0) + mutex_off)
        self._total_size_off = total_off

    def _maps_base(self, i: int) -> int:
        return ctypes.addressof(self._anchors[i])

    def _map(self, size: int) -> None:
        mm = mmap.mmap(self._fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        anchor = ctypes.c_char.from_buffer(mm)
        self._maps.append(mm)
        self._anchors.append(anchor)
        self.buf = mm
        self.base = ctypes.addressof(anchor)
        self.capacity = size

    # ------------------------------------------------------------------ size and growth
    @property
    def total_size(self) -> int:
        return _U64.unpack_from(self.buf, self._total_size_off)[0]

    def _set_total_size(self, value: int) -> None:
        _U64.pack_into(self.buf, self._total_size_off, value)

    def grow_if_needed(self, nbytes: int = 0) -> None:
        """GrowIfNeeded: remap after the peer grew; with nbytes > 0 grow the region ourselves.

        Must be called with ``shm_mutex`` held.
        """
        total = self.total_size
        if total != self.capacity:
            if total < self.capacity or total > os.fstat(self._fd).st_size:
                raise ShmError(f"'total size' says {total} bytes but {self.capacity} are mapped "
                               f"and the file has {os.fstat(self._fd).st_size}",
                               region=self.name, offset=self._total_size_off)
            self._map(total)
            self.segment.rebind(self.buf)
        if nbytes:
            add = self.growth * (nbytes // self.growth + 1)
            new_size = total + add
            try:
                _truncate(self._fd, new_size)
                _truncate(self._fd, new_size)
            except OSError as e:
                raise ShmError(
                    f"Failed to increase the shared memory pool size for key '{self.name}' to "
                    f"{new_size} bytes: {e.strerror}. If you are running inside docker, use "
                    "'--shm-size' to allow a bigger /dev/shm", region=self.name)
            old_capacity = self.capacity      # == total after the remap above
            self._map(new_size)
            self.segment.rebind(self.buf)
            self.segment.grow(new_size - old_capacity)
            self._set_total_size(new_size)      # published last: the peer remaps on seeing it

    # ------------------------------------------------------------------ locking
    def _enter(self) -> None:
        """Take ``shm_mutex`` (re-entrant for this thread) and remap if the peer grew."""
        tls = self._tls
        depth = tls.__dict__.get("depth", 0)
        if depth:
            tls.depth = depth + 1
            return
        self._local.acquire()
        try:
            self.mutex.lock()
        except BaseException:
            self._local.release()
            raise
        tls.depth = 1
        try:
            self.grow_if_needed(0)
        except BaseException:
            self._exit()
            raise

    def _exit(self) -> None:
        tls = self._tls
        tls.depth -= 1
        if tls.depth == 0:
            self.mutex.unlock()
            self._local.release()

    def _grow(self, nbytes: int) -> None:
        self.grow_if_needed(nbytes)

    def free_memory(self) -> int:
        """FreeMemory(): like the C++ code, without the lock (a snapshot)."""
        with self._local:
            total = self.total_size
            if total != self.capacity:
                with self.locked():
                    pass
            return self.segment.free_memory()

    # ------------------------------------------------------------------ access
    def _remap_if_grown(self) -> None:
        """The peer may have grown the region since our last operation: map the new size.

        Takes shm_mutex only when ``total size`` changed. Inside ``locked()`` that never
        happens (it remaps on entry), so the non-recursive mutex is never taken twice.
        """
        if self.total_size != self.capacity:
            with self.locked():
                pass

    def addr(self, offset: int, nbytes: int = 1) -> int:
        """Absolute address of a byte offset (for ctypes: mutexes, conditions, semaphores);
        the ``nbytes`` from there must lie inside the mapping too (a pthread call reads them:
        one byte past the end is a SIGSEGV)."""
        if offset < 0 or offset + nbytes > self.capacity:
            raise BadHandle(f"[{offset}, {offset + nbytes}) lies outside the {self.capacity}-byte "
                            "mapping", region=self.name, offset=offset)
        return self.base + offset

    # ------------------------------------------------------------------ closing
    def unlink(self) -> None:
        try:
            os.unlink(region_path(self.name))
        except FileNotFoundError:
            pass

    def close(self, unlink: Optional[bool] = None) -> None:
        if self._closed:
            return
        self._closed = True
        if unlink if unlink is not None else self.unlink_on_close:
            self.unlink()
        self.segment = None  # drops the segment's memoryview of the mapping
        self._anchors.clear()
        for mm in self._maps:
            try:
                mm.close()
            except BufferError:
                # A numpy array or memoryview still exports this mapping. Leave it to the GC:
                # the memory stays valid for the exporter, the name may already be unlinked.
                pass
        self._maps.clear()
        try:
            os.close(self._fd)
        except OSError:
            pass

    def __enter__(self) -> "Region":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
