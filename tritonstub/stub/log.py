"""Stub-local log lines on stderr (pb_stub.cc Logger::Log when backend logging is not active),
and the pb_stub.cc line numbers the C++ stub logs its own messages under.

Used before the stub->parent worker runs (start-up, auto-complete) and after it stops. The line
format is tritonstub.stublog's.
"""
from __future__ import annotations

import sys
from typing import Optional

from ..stublog import ERROR, INFO, WARNING, format_line  # noqa: F401 - levels for the callers

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


def stub_log(level: int, message: str, filename: str = CPP, line: int = 0,
             pid: Optional[int] = None) -> None:
    """One stub-local line on stderr (a ``stublog`` level: INFO, WARNING, ERROR, VERBOSE)."""
    try:
        sys.stderr.write(format_line(level, filename, line, message, pid))
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
