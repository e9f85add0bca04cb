"""One exception hierarchy for tritonstub.

Every error names what happened, where (region, offset, handle, model, path) and, where there
is one, what the user can do about it.
"""
from __future__ import annotations

from typing import Optional


class TritonStubError(Exception):
    """Base class of every error tritonstub raises on purpose."""


class ShmError(TritonStubError):
    """A problem with a python-backend shared-memory region.

    ``region`` is the shm name (``/dev/shm/<region>``) and ``offset`` the byte offset inside it
    when one is known, so a user can look at it with ``tritonstub shm inspect``.
    """

    def __init__(self, message: str, region: Optional[str] = None, offset: Optional[int] = None):
        self.region = region
        self.offset = offset
        where = []
        if region is not None:
            where.append(f"region '{region}'")
        if offset is not None:
            where.append(f"offset {offset}")
        full = message if not where else f"{message} ({', '.join(where)})"
        super().__init__(full)
        self.bare_message = message


class RegionNotFound(ShmError):
    """The named region does not exist in /dev/shm."""


class NotASegment(ShmError):
    """The region does not hold a Boost 1.79 managed segment as Triton lays it out."""


class SegmentCorrupted(ShmError):
    """The consistency walk found a block or tree node that breaks the allocator's invariants."""


class BadHandle(ShmError):
    """A handle or address that does not lie inside the mapped region."""


class OutOfMemory(ShmError):
    """The segment has no free block big enough (the caller grows the region and retries)."""


class SyncError(TritonStubError):
    """A pthread/semaphore call failed (other than a timeout or EINTR)."""


class OwnerDied(SyncError):
    """A robust mutex was held by a process that died (EOWNERDEAD / ENOTRECOVERABLE)."""


class IPCTimeout(TritonStubError):
    """A bounded wait on a queue, mutex or semaphore ran out."""


class ProtocolError(TritonStubError):
    """The peer sent something the protocol does not allow (wrong command, bad reply)."""


class LoaderError(TritonStubError):
    """model.py could not be resolved or imported; the message lists every path that was tried."""


class ConfigError(TritonStubError):
    """A tritonstub parameter or environment variable has a bad name or value."""
