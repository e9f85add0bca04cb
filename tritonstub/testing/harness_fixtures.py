"""pytest fixtures that run a model.py through the harness (no tritonserver), part of the
``tritonstub`` pytest plugin.

- ``harness_model``: a factory. ``harness_model("path/to/model_dir")`` loads the model (auto-complete,
  one stub per instance, initialize) and returns a :class:`ModelHandle`; finalize, stub exit and
  region removal happen at teardown, which fails the test if a stub process or region is left.
- ``harness_repository``: a factory for a whole repository (BLS, model control):
  ``harness_repository("path/to/repo")`` returns the started :class:`~tritonstub.harness.engine.Engine`.
- ``harness_stub``: which stub the factories use: ``ours`` by default; ``pytest
  --tritonstub-stubs=ours,cpp`` runs every test that uses the fixtures once per stub.

A ``ModelHandle`` has ``infer(**arrays) -> {name: array}`` (a model error raises
:class:`~tritonstub.harness.types.InferError` with Triton's code and text), ``infer_batch([{...},
...])`` (several requests in ONE execute, as the dynamic batcher would), ``stream(**arrays)`` (every
response of a decoupled model, the final flag included), ``submit(**arrays)`` (a
:class:`~tritonstub.harness.engine.Call`: ``cancel()``, ``wait()``, ``responses``), ``request(...)``
(an InferRequest with ids, parameters, flags), ``config``, ``logs`` (the server log's lines) and
``metrics`` (Prometheus text).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import pytest

STUBS_OPTION = "--tritonstub-stubs"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(STUBS_OPTION, default="ours",
                     help="stubs the harness fixtures run each test on, comma-separated: "
                          "ours, cpp or paths (default: ours)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "harness_stub" in metafunc.fixturenames:
        stubs = [s.strip() for s in metafunc.config.getoption(STUBS_OPTION).split(",") if s.strip()]
        metafunc.parametrize("harness_stub", stubs, scope="module")


class ModelHandle:
    """One loaded model (see the module docstring)."""

    def __init__(self, engine, name: str):
        self.engine = engine
        self.name = name

    @property
    def config(self) -> dict:
        return self.engine.model(self.name).config

    @property
    def logs(self) -> List[str]:
        return self.engine.log.lines

    @property
    def metrics(self) -> str:
        return self.engine.metrics_text()

    def request(self, inputs: Optional[Dict[str, object]] = None, **fields):
        from tritonstub.harness.types import InferRequest
        return InferRequest.make(self.name, inputs or {}, **fields)

    @staticmethod
    def _arrays(response) -> Dict[str, object]:
        if response.error is not None:
            raise response.error
        return {t.name: t.array for t in response.outputs}

    def infer(self, _request=None, *, timeout_s: float = 120.0, **arrays) -> Dict[str, object]:
        """One request (``infer(IN=array)`` or ``infer(handle.request(...))``); its outputs."""
        request = _request if _request is not None else self.request(arrays)
        responses = self.engine.infer(request, timeout_s=timeout_s)
        return self._arrays(responses[-1] if responses[-1].outputs or len(responses) == 1
                            else responses[0])

    def infer_batch(self, batch: Sequence[Dict[str, object]], *, timeout_s: float = 120.0):
        """Several requests in ONE execute; the outputs of each."""
        results = self.engine.execute([self.request(inputs) for inputs in batch], timeout_s=timeout_s)
        return [self._arrays(r[0]) for r in results]

    def stream(self, _request=None, *, timeout_s: float = 120.0, **arrays):
        """Every response of one request (InferResponse objects, ``.final`` on the last)."""
        request = _request if _request is not None else self.request(arrays)
        return self.engine.infer(request, timeout_s=timeout_s)

    def submit(self, _request=None, on_response=None, **arrays):
        request = _request if _request is not None else self.request(arrays)
        return self.engine.submit(request, on_response)

    def cancel(self, call) -> None:
        call.cancel()


class _Engines:
    def __init__(self):
        self.engines = []
        self.pids: List[int] = []

    def start(self, engine):
        engine.start()
        self.engines.append(engine)
        return engine

    def close(self) -> List[str]:
        stubs = [s for e in self.engines for m in e.models.values() for s in m.instances]
        pids = [s.proc.pid for s in stubs if s.proc is not None]
        names = [s.region.name for s in stubs]
        for engine in self.engines:
            engine.close()
        problems = []
        left = [p for p in pids if _alive(p)]
        if left:
            problems.append(f"stub processes left running: {left}")
        regions = [n for n in names if os.path.exists(f"/dev/shm/{n}")]
        if regions:
            problems.append(f"harness regions left in /dev/shm: {regions}")
        return problems


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def harness_stub() -> str:
    """The stub of the harness fixtures (parametrised by --tritonstub-stubs)."""
    return "ours"


@pytest.fixture
def harness_model(harness_stub: str, request: pytest.FixtureRequest):
    """Factory: ``harness_model(model_dir, repository=None, **Engine kwargs) -> ModelHandle``."""
    from tritonstub.harness.engine import Engine
    if harness_stub == "cpp":
        request.getfixturevalue("triton_reference")
    engines = _Engines()

    def load(model_dir: Union[str, Path], repository: Union[str, Path, None] = None, **kwargs):
        model_dir = Path(model_dir).resolve()
        kwargs.setdefault("log_stream", None)
        engine = Engine(repository or model_dir.parent, stub=kwargs.pop("stub", harness_stub),
                        model_control="explicit", **kwargs)
        name = engine.add_model_dir(model_dir)
        engines.start(engine)
        engine.load(name)
        return ModelHandle(engine, name)
    yield load
    problems = engines.close()
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.fixture
def harness_repository(harness_stub: str, request: pytest.FixtureRequest):
    """Factory: ``harness_repository(repo, **Engine kwargs) -> Engine`` (every model loaded, or
    ``models=[...]`` with ``model_control="explicit"``)."""
    from tritonstub.harness.engine import Engine
    if harness_stub == "cpp":
        request.getfixturevalue("triton_reference")
    engines = _Engines()

    def start(repository: Union[str, Path], **kwargs):
        kwargs.setdefault("log_stream", None)
        kwargs.setdefault("stub", harness_stub)
        return engines.start(Engine(repository, **kwargs))
    yield start
    problems = engines.close()
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)
