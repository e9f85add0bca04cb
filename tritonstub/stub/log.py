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

# Where the C++ stub logs each of its own messages (pb_stub.cc, r24.10). We report the same
# source location so log scrapers and the differential tests see identical lines.
CPP = "pb_stub.cc"
SITE_INSTANTIATE = 199
SITE_GPU_BUFFERS = 406
SITE_AUTO_COMPLETE_FAILED = 298
SITE_INITIALIZE_FAILED = 366
SITE_EXECUTE_FAILED = 714
SITE_FINALIZE_EXCEPTION = 978
SITE_ARGC = 2059
SITE_BAD_PATH = 2087
SITE_PREINIT = 2105
SITE_NON_GRACEFUL = 2145


def format_line(level_char: str, message: str, filename: str = CPP, line: int = 0,
                pid: Optional[int] = None) -> str:
    now = time.time()
    tm = time.gmtime(now)
    usec = int((now - int(now)) * 1e6)
    return (f"{level_char}{tm.tm_mon:02d}{tm.tm_mday:02d} {tm.tm_hour:02d}:{tm.tm_min:02d}:"
            f"{tm.tm_sec:02d}.{usec:06d} {pid or os.getpid()} {os.path.basename(filename)}:"
            f"{line}]  {message}")


def stub_log(level_char: str, message: str, filename: str = CPP, line: int = 0,
             pid: Optional[int] = None) -> None:
    try:
        sys.stderr.write(format_line(level_char, message, filename, line, pid) + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
