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

Columns: each test also takes ``column`` (``triton`` / ``harness``). On ``harness`` the case runs
on ``tritonstub serve`` with the same stub (:class:`difftools.HarnessServer`) and its outcome must
equal the tritonserver outcome of that stub (computed once, shared with the ``triton`` test).
A test that is about tritonserver itself (its crash, its own log lines, its exit) is marked
``@pytest.mark.server_specific("why")`` and runs on ``triton`` only; so do the hazards (tests
that take the ``solo`` fixture: they are about what breaks tritonserver under the C++ stub), and
the cases where the harness still differs, ``@pytest.mark.harness_differs("why")`` (listed in
docs/harness.md).
``TRITONSTUB_PYCASE_COLUMNS`` picks the columns (``triton,harness`` by default; ``triton`` alone
skips the harness column, ``harness`` alone still starts tritonserver for the reference outcomes).

Modules: test_tensors (arithmetic, dtypes, BYTES, zero-size, sizes, requested outputs),
test_requests (request metadata, sequence batching, dynamic batching), test_model_env (initialize
args, module identity, imports, interpreter, Logger, print, finalize), test_execute_errors,
test_load_errors (auto_complete_config and load failures), test_deliberate (intended differences),
test_normaliser (unit tests, no server). Models live in models/, one directory per theme;
models/syntax_error/1/model.py is invalid Python on purpose.
"""
from __future__ import annotations

import os
from typing import Callable, Optional, Tuple

import pytest

from difftools import STUBS, DiffServers, Outcome, Target, assert_same, assert_same_server

STUBS_ENV = "TRITONSTUB_DIFF_STUBS"
COLUMNS_ENV = "TRITONSTUB_PYCASE_COLUMNS"
COLUMNS = ("triton", "harness")


def _selected_stubs():
    chosen = [s.strip() for s in os.environ.get(STUBS_ENV, "").split(",") if s.strip()]
    unknown = set(chosen) - set(STUBS)
    if unknown:
        raise pytest.UsageError(f"{STUBS_ENV}: unknown stub(s) {sorted(unknown)}; use {STUBS}")
    if chosen and "cpp" not in chosen:
        raise pytest.UsageError(f"{STUBS_ENV}={','.join(chosen)}: the [ours] half compares with the C++ stub, "
                                f"so it needs cpp too (leave {STUBS_ENV} unset)")
    return chosen or list(STUBS)


def _selected_columns():
    chosen = [c.strip() for c in os.environ.get(COLUMNS_ENV, "").split(",") if c.strip()]
    unknown = set(chosen) - set(COLUMNS)
    if unknown:
        raise pytest.UsageError(f"{COLUMNS_ENV}: unknown column(s) {sorted(unknown)}; use {COLUMNS}")
    return chosen or list(COLUMNS)


def server_specific_reason(metafunc: pytest.Metafunc) -> Optional[str]:
    """Why a test runs on tritonserver only (None: it runs on the harness column too)."""
    for name in ("server_specific", "harness_differs"):
        marker = metafunc.definition.get_closest_marker(name)
        if marker is not None:
            return marker.args[0] if marker.args else name
    if "solo" in metafunc.fixturenames:
        return "a hazard: the case is about what breaks tritonserver under the C++ stub (solo.py)"
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "server_specific(why): a Python case about tritonserver itself; "
                                       "it does not run on the harness column")
    config.addinivalue_line("markers", "harness_differs(why): the harness gives another outcome than "
                                       "tritonserver, not closed yet (docs/harness.md lists it); it "
                                       "does not run on the harness column")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "column" in metafunc.fixturenames:
        columns = _selected_columns()
        if server_specific_reason(metafunc) is not None:
            columns = [c for c in columns if c == "triton"] or ["triton"]
        metafunc.parametrize("column", columns)
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

    def __init__(self, servers: DiffServers, stub: str, request: pytest.FixtureRequest, column: str = "triton"):
        self.servers = servers
        self.stub = stub
        self.column = column
        params = getattr(request.node, "callspec", None)
        params = {} if params is None else {k: v for k, v in params.params.items() if k not in ("stub", "column")}
        self._key = (request.node.originalname, tuple(sorted((k, repr(v)) for k, v in params.items())))
        self.normaliser = servers.normaliser

    @property
    def is_cpp(self) -> bool:
        return self.stub == "cpp"

    @property
    def on_harness(self) -> bool:
        return self.column == "harness"

    def target(self, base: str, stub: Optional[str] = None) -> Target:
        """``<base>_<stub>`` on this column, loaded (the test fails with the load error if it did not load)."""
        return self.servers.loaded(base, stub or self.stub, self.column)

    def run(self, base: str, case: Callable[[Target], Outcome], *, key: object = None,
            compare: bool = True, loaded: bool = True) -> Outcome:
        """``case`` on this stub's model; on ``ours`` also compared with the C++ outcome; on the
        harness column compared with the tritonserver outcome of the same stub (always: the
        harness must not differ from tritonserver even where the stubs differ on purpose).

        ``loaded=False`` hands the case the target without loading it first (for cases about
        loading, or about models that fail to load).
        """
        if self.on_harness:
            mine = self._outcome(base, self.stub, case, key, loaded, "harness")
            assert_same_server(self.stub, self._outcome(base, self.stub, case, key, loaded), mine)
            return mine
        mine = self._outcome(base, self.stub, case, key, loaded)
        if compare and self.stub != "cpp":
            assert_same(self._outcome(base, "cpp", case, key, loaded), mine)
        return mine

    def columns(self, base: str, case: Callable[[Target], Outcome], *, key: object = None,
                loaded: bool = True) -> Tuple[Outcome, Outcome]:
        """(tritonserver outcome, harness outcome) of ``case`` on this stub, not compared: for a
        documented difference between the servers, which the test then asserts exactly."""
        assert self.on_harness, "Pair.columns is for the harness column"
        return (self._outcome(base, self.stub, case, key, loaded),
                self._outcome(base, self.stub, case, key, loaded, "harness"))

    def _outcome(self, base: str, stub: str, case: Callable[[Target], Outcome], key: object,
                 loaded: bool, column: str = "triton") -> Outcome:
        get = self.servers.loaded if loaded else self.servers.target
        memo_key = (self._key, base, stub, key) if column == "triton" else (column, self._key, base, stub, key)
        return self.servers.memo(memo_key, lambda: case(get(base, stub, column)))

    def load(self, base: str, *, compare: bool = True, timeout_s: Optional[float] = None) -> Outcome:
        """The load outcome of ``<base>_<stub>`` (ok / error text); compared like :meth:`run`."""
        kwargs = {} if timeout_s is None else {"timeout_s": timeout_s}
        mine = self.servers.load_outcome(base, self.stub, column=self.column, **kwargs)
        if self.on_harness:
            assert_same_server(self.stub, self.servers.load_outcome(base, self.stub, **kwargs), mine)
        elif compare and self.stub != "cpp":
            assert_same(self.servers.load_outcome(base, "cpp", **kwargs), mine)
        return mine


@pytest.fixture
def pair(diff_servers: DiffServers, stub: str, column: str, request: pytest.FixtureRequest) -> Pair:
    return Pair(diff_servers, stub, request, column)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when in ("setup", "call"):
        for servers in item.config.stash.get(_ACTIVE, []):
            for server in servers.servers():
                report.sections.append((f"tritonserver pid {server.pid} log ({server.log})", server.log_tail(40)))
