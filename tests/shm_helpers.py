"""Helpers for tests that create or watch regions: unique names, guaranteed clean-up, and
bounded polling on a condition (instead of fixed sleeps)."""
from __future__ import annotations

import contextlib
import os
import time
import uuid
from typing import Callable, TypeVar

T = TypeVar("T")

PREFIX = "tritonstub_test_"


def unique_name(tag: str = "") -> str:
    return f"{PREFIX}{tag}{uuid.uuid4().hex[:12]}"


def remove_region(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join("/dev/shm", name))


def pattern(handle: int, n: int) -> bytes:
    """Deterministic bytes derived from a handle, to detect overwrites."""
    seed = (handle * 2654435761) & 0xFFFFFFFF
    unit = seed.to_bytes(4, "little")
    return (unit * (n // 4 + 1))[:n]


def wait_for(condition: Callable[[], T], timeout_s: float, what: str, interval_s: float = 0.02) -> T:
    """Poll ``condition`` until it returns something true; return that. Fail after ``timeout_s``.

    The bound is generous on purpose: it only matters when the condition never comes.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout_s:g} s (last: {value!r})")
        time.sleep(interval_s)


def allocated_bytes(region: str) -> int:
    """allocated_bytes of a live region. The region is copied without its lock, so a copy taken
    while the parent or the stub changes it can be torn; inspect_region retries those. Its
    default of 3 tries ran out once in a full run under load (test_bls_chain, right after
    200 requests, while the parent was still freeing): 20 tries still fail a region that stays
    inconsistent."""
    from tritonstub.ipc.inspect import inspect_region

    return inspect_region(region, retries=20)["allocated_bytes"]


def settled_allocated(region: str, quiet_s: float = 0.5, timeout_s: float = 10.0) -> int:
    """allocated_bytes once it has not changed for ``quiet_s`` (cleanups arrive asynchronously)."""
    deadline = time.monotonic() + timeout_s
    value, since = allocated_bytes(region), time.monotonic()
    while time.monotonic() - since < quiet_s and time.monotonic() < deadline:
        time.sleep(0.05)
        now = allocated_bytes(region)
        if now != value:
            value, since = now, time.monotonic()
    return value


def wait_allocated(region: str, idle: int, timeout_s: float = 15.0) -> int:
    """allocated_bytes once it is back to ``idle`` (or the last value after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = allocated_bytes(region)
        if value <= idle or time.monotonic() > deadline:
            return value
        time.sleep(0.1)
