"""Fixtures of the differential suite (see difftools.py for the design).

A test module lists its models in ``DIFF_MODELS`` (a list of :class:`difftools.DiffModel`). Its
tests take ``pair`` (and so get parametrized over ``stub`` = ``cpp`` / ``ours``):

- ``pair.run(base, case)`` runs ``case(target)`` against ``<base>_<stub>`` and returns the
  :class:`difftools.Outcome`. On ``[ours]`` it also runs (or reuses) the ``[cpp]`` outcome of the
  same case and asserts the two are equal after normalisation. ``[cpp]`` checks the reference
  behaviour alone, so it passes whatever state our stub is in.
- ``pair.run(..., compare=False)`` for behaviour that differs on purpose; the test then asserts
  each stub's behaviour separately and says why in its docstring.

One server per module (``diff_servers``, module scope), in explicit model-control mode, with every
model preloaded. ``TRITONSTUB_DIFF_STUBS=cpp`` runs only the ``[cpp]`` half.

Modules: test_tensors (arithmetic, dtypes, BYTES, zero-size, sizes, requested outputs),
test_requests (request metadata, sequence batching, dynamic batching), test_model_env (initialize
args, module identity, imports, interpreter, Logger, print, finalize), test_execute_errors,
test_load_errors (auto_complete_config and load failures), test_deliberate (intended differences),
test_normaliser (unit tests, no server). Models live in models/, one directory per theme;
models/syntax_error/1/model.py is invalid Python on purpose.
"""
from __future__ import annotations

import os
from typing import Callable, Optional

import pytest

from difftools import STUBS, DiffServers, Outcome, Target, assert_same

STUBS_ENV = "TRITONSTUB_DIFF_STUBS"


def _selected_stubs():
    chosen = [s.strip() for s in os.environ.get(STUBS_ENV, "").split(",") if s.strip()]
    unknown = set(chosen) - set(STUBS)
    if unknown:
        raise pytest.UsageError(f"{STUBS_ENV}: unknown stub(s) {sorted(unknown)}; use {STUBS}")
    if chosen and "cpp" not in chosen:
        raise pytest.UsageError(f"{STUBS_ENV}={','.join(chosen)}: the [ours] half compares with the C++ stub, "
                                f"so it needs cpp too (leave {STUBS_ENV} unset)")
    return chosen or list(STUBS)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "stub" in metafunc.fixturenames:
        metafunc.parametrize("stub", _selected_stubs())


@pytest.fixture(scope="module")
def diff_servers(triton_reference, tmp_path_factory, request):
    models = getattr(request.module, "DIFF_MODELS", None)
    if not models:
        raise pytest.UsageError(f"{request.module.__name__} uses the differential fixtures but has no DIFF_MODELS")
    workdir = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    # The [cpp] half needs the _ours models too (for nothing), but building both keeps the
    # repository the same whichever half runs; with TRITONSTUB_DIFF_STUBS=cpp only _cpp is built.
    servers = DiffServers(models, triton_reference, workdir,
                          log_verbose=getattr(request.module, "DIFF_LOG_VERBOSE", 1),
                          stubs=_selected_stubs())
    request.config.stash.setdefault(_ACTIVE, []).append(servers)
    try:
        servers.start()
        yield servers
    finally:
        problems = servers.stop()
        request.config.stash[_ACTIVE].remove(servers)
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


_ACTIVE = pytest.StashKey[list]()


class Pair:
    """One test's view of the module's servers for one stub (see the module docstring)."""

    def __init__(self, servers: DiffServers, stub: str, request: pytest.FixtureRequest):
        self.servers = servers
        self.stub = stub
        params = getattr(request.node, "callspec", None)
        params = {} if params is None else {k: v for k, v in params.params.items() if k != "stub"}
        self._key = (request.node.originalname, tuple(sorted((k, repr(v)) for k, v in params.items())))
        self.normaliser = servers.normaliser

    @property
    def is_cpp(self) -> bool:
        return self.stub == "cpp"

    def target(self, base: str, stub: Optional[str] = None) -> Target:
        """``<base>_<stub>``, loaded (the test fails with the load error if it did not load)."""
        return self.servers.loaded(base, stub or self.stub)

    def run(self, base: str, case: Callable[[Target], Outcome], *, key: object = None,
            compare: bool = True, loaded: bool = True) -> Outcome:
        """``case`` on this stub's model; on ``ours`` also compared with the C++ outcome.

        ``loaded=False`` hands the case the target without loading it first (for cases about
        loading, or about models that fail to load).
        """
        mine = self._outcome(base, self.stub, case, key, loaded)
        if compare and self.stub != "cpp":
            assert_same(self._outcome(base, "cpp", case, key, loaded), mine)
        return mine

    def _outcome(self, base: str, stub: str, case: Callable[[Target], Outcome], key: object,
                 loaded: bool) -> Outcome:
        get = self.servers.loaded if loaded else self.servers.target
        return self.servers.memo((self._key, base, stub, key), lambda: case(get(base, stub)))

    def load(self, base: str, *, compare: bool = True, timeout_s: Optional[float] = None) -> Outcome:
        """The load outcome of ``<base>_<stub>`` (ok / error text); compared like :meth:`run`."""
        kwargs = {} if timeout_s is None else {"timeout_s": timeout_s}
        mine = self.servers.load_outcome(base, self.stub, **kwargs)
        if compare and self.stub != "cpp":
            assert_same(self.servers.load_outcome(base, "cpp", **kwargs), mine)
        return mine


@pytest.fixture
def pair(diff_servers: DiffServers, stub: str, request: pytest.FixtureRequest) -> Pair:
    return Pair(diff_servers, stub, request)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when in ("setup", "call"):
        for servers in item.config.stash.get(_ACTIVE, []):
            for server in servers.servers():
                report.sections.append((f"tritonserver pid {server.pid} log ({server.log})", server.log_tail(40)))
