"""Hazardous cases: the C++ side on the quarantine server, our side on a server of its own.

Some cases break the server they run in under the C++ stub (a segfault in the parent, a double
delete that corrupts its heap, a model that can never unload). ``DiffModel(...,
quarantine_cpp=True)`` already sends the ``_cpp`` variant to a throwaway server. For such a
case our variant must not share the module's main server either: if our stub had the same bug
it would take every other test of the module down with it. A module that imports the ``solo``
fixture gets, per test and on first use, a server of its own that serves only the ``_ours``
variants of the module's ``SOLO_MODELS``; :func:`run_hazard` runs a
case on the right server for each stub and compares, and that server must stop cleanly (exit
status 0, no fatal signal, nothing left behind) or the test fails at teardown.
"""
from __future__ import annotations

import re
from typing import Callable

import pytest

from difftools import DiffServers, Outcome, Target, assert_same

#: What tritonserver prints when it dies of a signal or glibc finds its heap corrupted.
_FATAL = re.compile(r"^Signal \((?:6|11|7|4)\) received\.|double free|corrupted|unaligned tcache|free\(\): ",
                    re.MULTILINE)


class Solo:
    """Our variants of the module's ``SOLO_MODELS``, on a server started on first use (one per test)."""

    def __init__(self, models, reference, workdir):
        self.models = {m.base: m for m in models}
        self.reference = reference
        self.workdir = workdir
        self.servers = None

    def target(self, base: str) -> Target:
        if self.servers is None:
            self.servers = DiffServers(list(self.models.values()), self.reference, self.workdir, stubs=("ours",))
            self.servers.start()
        return self.servers.loaded(base, "ours")

    def stop(self):
        if self.servers is None:
            return []
        problems = self.servers.stop()
        server = self.servers.main
        if server is not None:
            fatal = _FATAL.findall(server.log_text())
            if fatal or server.returncode not in (0, None):
                problems.append(f"the solo server (our stub only) did not stop cleanly: exit status "
                                f"{server.returncode}, {fatal}; log {server.log}")
        return problems


@pytest.fixture
def solo(triton_reference, tmp_path, request):
    models = getattr(request.module, "SOLO_MODELS", None)
    if not models:
        raise pytest.UsageError(f"{request.module.__name__} uses the solo fixture but has no SOLO_MODELS")
    solo = Solo(models, triton_reference, tmp_path / "solo")
    try:
        yield solo
    finally:
        problems = solo.stop()
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)

def run_hazard(pair, solo: Solo, base: str, case: Callable[[Target], Outcome], *, compare: bool = True,
               key: object = None) -> Outcome:
    """``case`` on ``<base>_cpp`` (quarantine server) or ``<base>_ours`` (solo server).

    On ``[ours]`` the C++ outcome is computed too (once) and compared unless ``compare=False``.
    """
    def cpp() -> Outcome:
        return pair.servers.memo(("hazard", pair._key, base, key), lambda: case(pair.servers.loaded(base, "cpp")))

    if pair.is_cpp:
        return cpp()
    mine = case(solo.target(base))
    if compare:
        # The two servers' repositories differ; make the solo server's paths read like the main one's.
        assert_same(cpp(), mine)
    return mine
