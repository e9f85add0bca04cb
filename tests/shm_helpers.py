"""Helpers for tests that create regions: unique names and guaranteed clean-up."""
from __future__ import annotations

import contextlib
import os
import uuid

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
