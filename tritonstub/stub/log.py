"""Stub-local log lines on stderr, in the C++ stub's format.

``<L><MMDD> <HH:MM:SS.uuuuuu> <pid> <file>:<line>]  <message>`` with UTC time and two spaces
after ``]`` (pb_stub.cc Logger::Log when backend logging is not active). Used before the
stub->parent worker runs (start-up, auto-complete) and after it stops.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Optional

LEVEL_CHAR = {0: "I", 1: "W", 2: "E", 3: "I"}


def format_line(level_char: str, message: str, filename: str = "pb_stub.py", line: int = 0,
                pid: Optional[int] = None) -> str:
    now = time.time()
    tm = time.gmtime(now)
    usec = int((now - int(now)) * 1e6)
    return (f"{level_char}{tm.tm_mon:02d}{tm.tm_mday:02d} {tm.tm_hour:02d}:{tm.tm_min:02d}:"
            f"{tm.tm_sec:02d}.{usec:06d} {pid or os.getpid()} {os.path.basename(filename)}:"
            f"{line}]  {message}")


def stub_log(level_char: str, message: str, filename: str = "tritonstub", line: int = 0,
             pid: Optional[int] = None) -> None:
    try:
        sys.stderr.write(format_line(level_char, message, filename, line, pid) + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
