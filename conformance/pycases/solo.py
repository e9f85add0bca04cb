"""Hazardous cases: each stub's side on a server where its failure harms nothing else.

Some cases break the server they run in under the C++ stub (a segfault in the parent, a double
delete that corrupts its heap, a model that can never unload). ``DiffModel(...,
quarantine_cpp=True)`` sends the ``_cpp`` variant to the module's throwaway quarantine server,
which is enough when the case only leaves things behind. Our variant must not share the module's
main server either: if our stub had the same bug it would take every other test of the module
down with it.

A module that imports the ``solo`` fixture gets, on first use, a server of its own that serves
only our variants of the module's ``SOLO_MODELS``:

- :func:`run_hazard` runs our side there, and the C++ side on the quarantine server, or, with
  ``cpp_alone=True``, on a fresh server of its own that is stopped right after the case (for
  cases that kill tritonserver: a module's quarantine server survives only one of those);
- our solo server must stop cleanly (exit status 0, no fatal signal, nothing left behind) or the
  module's last test fails at teardown; the C++ ones are only cleaned up.
"""
from __future__ import annotations

from typing import Callable

import pytest

from difftools import DiffServers, Outcome, Target, assert_same

class Solo:
    """Our variants of the module's ``SOLO_MODELS`` on a server started on first use; C++ ones on
    throwaway servers."""

    def __init__(self, models, reference, workdir):
        self.models = list(models)
        self.reference = reference
        self.workdir = workdir
        self.ours = None
        self._throwaway = 0

    def target(self, base: str) -> Target:
        if self.ours is None:
            self.ours = DiffServers(self.models, self.reference, self.workdir / "ours", stubs=("ours",))
            self.ours.start()
        return self.ours.loaded(base, "ours")

    def run_alone(self, base: str, case: Callable[[Target], Outcome], stub: str = "cpp") -> Outcome:
        """``case`` on ``<base>_<stub>`` served by a server of its own, stopped afterwards."""
        self._throwaway += 1
        model = [m for m in self.models if m.base == base]
        servers = DiffServers(model, self.reference, self.workdir / f"{stub}-{self._throwaway}", stubs=(stub,))
        try:
            servers.start()
            return case(servers.loaded(base, stub))
        finally:
            servers.stop()

    def stop(self):
        if self.ours is None:
            return []
        # DiffServers.stop fails a crash, a model left loaded and anything left behind.
        problems = self.ours.stop()
        server = self.ours.main
        if server is not None and server.returncode != 0:
            problems.append(f"the solo server (our stub only) did not stop cleanly: exit status "
                            f"{server.returncode}; log {server.log}")
        return problems


@pytest.fixture(scope="module")
def solo(triton_reference, tmp_path_factory, request):
    models = getattr(request.module, "SOLO_MODELS", None)
    if not models:
        raise pytest.UsageError(f"{request.module.__name__} uses the solo fixture but has no SOLO_MODELS")
    solo = Solo(models, triton_reference, tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1] + "_solo"))
    try:
        yield solo
    finally:
        problems = solo.stop()
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


def run_hazard(pair, solo: Solo, base: str, case: Callable[[Target], Outcome], *, compare: bool = True,
               key: object = None, cpp_alone: bool = False) -> Outcome:
    """``case`` on ``<base>_cpp`` or ``<base>_ours`` (see the module docstring).

    On ``[ours]`` the C++ outcome is computed too (once) and compared unless ``compare=False``.
    """
    def cpp() -> Outcome:
        def run() -> Outcome:
            return solo.run_alone(base, case) if cpp_alone else case(pair.servers.loaded(base, "cpp"))
        return pair.servers.memo(("hazard", pair._key, base, key), run)

    if pair.is_cpp:
        return cpp()
    mine = case(solo.target(base))
    if compare:
        assert_same(cpp(), mine)
    return mine
