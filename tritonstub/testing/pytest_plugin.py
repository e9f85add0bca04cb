"""pytest fixtures for tests that run the real tritonserver (registered as the ``tritonstub`` plugin).

- ``triton_reference`` (session): the provisioned reference Triton (:class:`Reference`). When it
  is missing the test is *skipped* with the reason. With ``TRITONSTUB_REQUIRE_REFERENCE=1`` (set by
  ``scripts/bootstrap.sh test``, hence CI) it *fails* instead, so CI never skips real-Triton tests
  silently.
- ``triton_server``: a factory. ``triton_server(repo, **TritonServer kwargs)`` starts a server and
  returns it. Every server is stopped at teardown. The test then fails if a server left processes or
  shm regions behind, unless it was started with ``check_cleanup=False``, and if a server crashed
  (died of a signal or logged a fatal error: :meth:`TritonServer.crash_report`), unless it was
  started with ``expect_crash=True`` (then it fails if that server did *not* crash; the test
  asserts what the crash was).
  ``triton_server.repository(models, stub=...)`` builds a repository under ``tmp_path``
  (see :func:`make_model_repository`).
- ``example_model_repository``: the bundled ``examples/model_repository`` directory.

Tests that use these fixtures get the ``triton`` marker automatically. When a test fails, the tail
of each of its servers' logs is attached to the report. A SIGTERM to pytest ends the run as Ctrl-C
does, so that the servers of the running test are stopped (:func:`_interrupt_on_sigterm`).
"""
from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import List, Mapping, Optional, Union

import pytest

from tritonstub.testing.reference import Reference, ReferenceUnavailable, provision
from tritonstub.testing.tritonserver import ModelSpec, TritonServer, check_stopped, make_model_repository

# The harness fixtures (harness_model, harness_repository, harness_stub, --tritonstub-stubs).
from tritonstub.testing.harness_fixtures import (harness_model, harness_repository,  # noqa: F401,E402
                                                 harness_stub, pytest_addoption,
                                                 pytest_generate_tests)

REQUIRE_ENV = "TRITONSTUB_REQUIRE_REFERENCE"
_TRITON_FIXTURES = {"triton_reference", "triton_server"}
_SERVERS_KEY = pytest.StashKey[List[TritonServer]]()


def reference_required() -> bool:
    return os.environ.get(REQUIRE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def missing_reference(reason: str) -> None:
    """Skip the calling test because something it compares with is missing, or fail it when
    ``TRITONSTUB_REQUIRE_REFERENCE`` is set (CI): no comparison is ever skipped silently there."""
    if reference_required():
        pytest.fail(f"{REQUIRE_ENV} is set but {reason}", pytrace=False)
    pytest.skip(f"{reason}; set {REQUIRE_ENV}=1 to make this an error")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "triton: needs the reference Triton server (nvidia-pytriton 0.7.0)")
    _interrupt_on_sigterm()


def _interrupt_on_sigterm() -> None:
    """SIGTERM (a CI job's timeout, ``kill PID``) ends pytest as Ctrl-C does: the running test's
    fixtures tear down, so the tritonservers it started are stopped and their regions removed,
    instead of pytest dying at once and leaving tritonserver and its stubs running. Installed
    only where SIGTERM still has its default action; a second SIGTERM kills at once."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def on_sigterm(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise KeyboardInterrupt("SIGTERM")

    signal.signal(signal.SIGTERM, on_sigterm)


def pytest_collection_modifyitems(items: List[pytest.Item]) -> None:
    for item in items:
        if _TRITON_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.triton)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when in ("setup", "call"):
        for server in item.stash.get(_SERVERS_KEY, []):
            report.sections.append((f"tritonserver pid {server.pid} log ({server.log})", server.log_tail(80)))


@pytest.fixture(scope="session")
def triton_reference() -> Reference:
    """The reference Triton, provisioned (stub in place, numpy checked); skip or fail if missing."""
    try:
        return provision(allow_apt=False)
    except ReferenceUnavailable as exc:
        problem = str(exc)
    if reference_required():
        pytest.fail(f"{REQUIRE_ENV} is set but the reference Triton is not usable: {problem}", pytrace=False)
    pytest.skip(f"reference Triton not available ({problem}); set {REQUIRE_ENV}=1 to make this an error")


class TritonServerFactory:
    """Starts :class:`TritonServer` instances for one test and cleans all of them up."""

    def __init__(self, reference: Reference, tmp_path: Path, servers: List[TritonServer]):
        self.reference = reference
        self.tmp_path = tmp_path
        self.servers = servers
        self._unchecked: set = set()
        self._crashing: set = set()

    def __call__(self, model_repository: Union[str, Path], *, check_cleanup: bool = True,
                 expect_crash: bool = False, **kwargs) -> TritonServer:
        kwargs.setdefault("reference", self.reference)
        kwargs.setdefault("log_dir", self.tmp_path / f"tritonserver-{len(self.servers)}")
        server = TritonServer(model_repository, **kwargs)
        self.servers.append(server)
        if not check_cleanup:
            self._unchecked.add(id(server))
        if expect_crash:
            self._crashing.add(id(server))
        server.start()
        return server

    def repository(self, models: Mapping[str, Union[ModelSpec, Path, str]], *, stub: Optional[str] = None,
                   name: str = "model_repository") -> Path:
        """Build a model repository under the test's tmp_path (see :func:`make_model_repository`)."""
        return make_model_repository(self.tmp_path / name, models, stub=stub, reference=self.reference)

    def stop_all(self) -> List[str]:
        problems = []
        for server in self.servers:
            server.stop()
            problems += check_stopped(server, check_cleanup=id(server) not in self._unchecked,
                                      expect_crash=id(server) in self._crashing)
        return problems



@pytest.fixture
def triton_server(triton_reference: Reference, tmp_path: Path, request: pytest.FixtureRequest):
    """Factory fixture: ``triton_server(repo, **kwargs) -> TritonServer`` (started, stopped at teardown)."""
    servers: List[TritonServer] = []
    request.node.stash[_SERVERS_KEY] = servers
    factory = TritonServerFactory(triton_reference, tmp_path, servers)
    yield factory
    problems = factory.stop_all()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture(scope="session")
def example_model_repository() -> Path:
    """The repository's bundled ``examples/model_repository`` (read-only: copy it before changing it)."""
    from tritonstub.testing.demo import example_repository

    return example_repository()
