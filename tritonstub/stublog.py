"""Log levels and the stub's own log line: one table, one formatter.

The levels are those of ``pb_utils.Logger`` (INFO 0, WARNING 1, ERROR 2, VERBOSE 3), which the
parent's LogRequest takes as they are. A line the stub writes itself (to stderr, when it cannot
send it to the parent) has the C++ stub's format, docs/protocol/r24.10.md §2.5::

    <L><MMDD> <HH:MM:SS.uuuuuu> <pid> <basename>:<line>]  <message>

with L = W or E for warnings and errors and I otherwise (VERBOSE prints as I), UTC time, and two
spaces after ``]``.
"""
from __future__ import annotations

import os
import time
from typing import Optional

INFO, WARNING, ERROR, VERBOSE = 0, 1, 2, 3
LEVEL_CHAR = {INFO: "I", WARNING: "W", ERROR: "E", VERBOSE: "I"}


def format_line(level: int, filename: str, line: int, message: str, pid: Optional[int] = None,
                now_ns: Optional[int] = None) -> str:
    """One stub-local log line, with its trailing newline."""
    if now_ns is None:
        now_ns = time.time_ns()
    secs, usec = divmod(now_ns // 1000, 1_000_000)
    tm = time.gmtime(secs)
    if pid is None:
        pid = os.getpid()
    return "%s%02d%02d %02d:%02d:%02d.%06d %d %s:%d]  %s\n" % (
        LEVEL_CHAR.get(int(level), "I"), tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min,
        tm.tm_sec, usec, pid & 0xFFFFFFFF, filename.rsplit("/", 1)[-1],
        int(line) & 0xFFFFFFFF, message)


def write_line(level: int, filename: str, line: int, message: str,
               pid: Optional[int] = None) -> None:
    """Write a stub-local line straight to file descriptor 2, as ``std::cerr`` does."""
    data = format_line(level, filename, line, message, pid).encode("utf-8", "surrogateescape")
    try:
        while data:
            written = os.write(2, data)
            data = data[written:]
    except OSError:
        pass
