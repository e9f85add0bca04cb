"""The two axes of the matrix: servers (columns of the outer kind) and stubs.

A *server column* turns a model repository into a served endpoint (:class:`Served`): KServe v2
HTTP and gRPC at ``127.0.0.1`` ports, the repository API in explicit model-control mode, the
server's log as text, and a stop that reports what was left behind. Two exist:

- :class:`TritonColumn`: the real ``tritonserver`` (the reference install from nvidia-pytriton, or
  ``--triton PATH``), through :class:`tritonstub.testing.tritonserver.TritonServer`;
- :class:`HarnessColumn`: ``tritonstub serve`` (the harness engine behind a KServe v2 front end).

A new column (say an already-running URL) is one more class with ``name``, ``unavailable()``
and ``start()``.

A *stub* is installed per model as ``<model dir>/triton_python_backend_stub`` (the python backend
runs that file instead of its own): ``ours`` (a launcher of this interpreter), ``cpp`` (the
reference C++ stub) or a path to any executable.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Optional, Tuple


STUB_FILE = "triton_python_backend_stub"
#: Where a served model's environment is pinned, so results do not depend on who runs the suite.
SERVER_ENV = {
    "PYTHONUNBUFFERED": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "LANG": "C.UTF-8",
    "LC_ALL": None,
    "PYTHONIOENCODING": None,
    "PYTHONHOME": None,
    "PYTHONSTARTUP": None,
    "PYTHONWARNINGS": None,
}
STOP_TIMEOUT_S = 45.0


# ---- stubs ------------------------------------------------------------------------------------


@dataclasses.dataclass
class Stub:
    """One stub of the matrix: ``label`` names it in the report; ``file`` is copied into each model."""

    label: str
    file: Path
    #: What the user named: "ours", "cpp" or a path (a server that takes a stub option gets it).
    spec: str = ""

    def install(self, model_dir: Path) -> None:
        target = model_dir / STUB_FILE
        shutil.copyfile(self.file, target)
        os.chmod(target, 0o755)


def resolve_stub(spec: str, workdir: Path, reference=None) -> Stub:
    """``ours``, ``cpp`` or a path; raises ValueError with what is missing."""
    if spec == "ours":
        from tritonstub.stub.install import write_launcher

        path = workdir / "stub-ours"
        write_launcher(str(path))
        return Stub("ours", path, "ours")
    if spec == "cpp":
        if reference is None:
            raise ValueError("the C++ stub needs the reference Triton (python -m tritonstub.testing.reference "
                             "--provision)")
        return Stub("cpp", Path(reference.cpp_stub), "cpp")
    path = Path(spec).expanduser().resolve()
    if not path.is_file() or not os.access(path, os.X_OK):
        raise ValueError(f"stub {spec!r}: not an executable file")
    return Stub(path.name, path, str(path))


def find_reference():
    """The reference Triton if it is installed (no provisioning, no network), else None."""
    from tritonstub.testing.reference import find_reference as find

    try:
        return find()
    except Exception:  # noqa: BLE001 - a broken install is the same as none here
        return None


# ---- served endpoints -------------------------------------------------------------------------


def _error_text(body: bytes) -> str:
    import json

    try:
        return json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace")


class Served:
    """What a case sees of a server: ``http_url``/``grpc_url`` (``host:port``), ``http()``,
    ``load()``, ``log_text()``, ``stop()`` → problems (empty after a clean run)."""

    http_url: str
    grpc_url: str
    repo: Path

    def http(self, method: str, path: str, body=None, timeout: float = 30.0) -> Tuple[int, bytes]:
        from tritonstub.testing.tritonserver import http_request

        return http_request(f"http://{self.http_url}", method, path, body, timeout)

    def load(self, name: str, timeout: float) -> Tuple[int, str]:
        status, body = self.http("POST", f"/v2/repository/models/{name}/load", {}, timeout=timeout)
        return status, ("" if status in (0, 200) else _error_text(body))

    def log_text(self) -> str:
        raise NotImplementedError

    def stop(self) -> List[str]:
        raise NotImplementedError


class _TritonServed(Served):
    def __init__(self, server):
        self.server = server
        self.http_url = server.http_url
        self.grpc_url = server.grpc_url
        self.repo = server.model_repository

    def log_text(self) -> str:
        return self.server.log_text()

    def stop(self) -> List[str]:
        from tritonstub.testing.tritonserver import check_stopped

        self.server.stop(timeout=STOP_TIMEOUT_S)
        return check_stopped(self.server)


class TritonColumn:
    """tritonserver (the reference's, or the binary at ``path`` with the reference's backends)."""

    name = "triton"

    def __init__(self, reference=None, path: Optional[str] = None):
        self.reference = reference
        self.path = path

    def unavailable(self) -> Optional[str]:
        if self.reference is None:
            return "tritonserver needs the reference install (python -m tritonstub.testing.reference --provision)"
        if self.path and not os.access(self.path, os.X_OK):
            return f"--triton {self.path}: not an executable"
        return None

    def start(self, repo: Path, workdir: Path, stub: Stub, exit_timeout_s: int = 30) -> Served:
        """Serve ``repo`` (the stub is already installed in each model directory)."""
        from tritonstub.testing.tritonserver import TritonServer

        reference = self.reference
        if self.path:
            reference = dataclasses.replace(reference, tritonserver=Path(self.path).resolve())
        server = TritonServer(repo, reference=reference, log_verbose=1, log_dir=workdir / "server",
                              exit_timeout=exit_timeout_s, env=dict(SERVER_ENV), startup_timeout=60.0,
                              extra_args=["--model-control-mode=explicit"])
        server.start()
        return _TritonServed(server)


class _ServeServed(Served):
    """``tritonstub serve`` through :class:`tritonstub.testing.serve.ServeProcess` (bounded start,
    SIGTERM stop, its stubs and regions found and removed)."""

    def __init__(self, proc, repo: Path):
        self.proc = proc
        self.repo = repo
        self.http_url = proc.http_url
        self.grpc_url = proc.grpc_url

    def log_text(self) -> str:
        try:
            return self.proc.log.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> List[str]:
        self.proc.stop()
        return self.proc.problems()


class HarnessColumn:
    """``tritonstub serve``: the harness engine behind a KServe v2 HTTP + gRPC front end."""

    name = "harness"

    def __init__(self, python: str = sys.executable):
        self.python = python
        self._why: Optional[str] = None
        self._checked = False

    def unavailable(self) -> Optional[str]:
        if not self._checked:
            self._checked = True
            import importlib.util

            if importlib.util.find_spec("tritonstub.testing.serve") is None:  # runs the server
                self._why = "this tritonstub has no `serve` command (issue 12) yet"
                return self._why
            try:
                proc = subprocess.run([self.python, "-m", "tritonstub", "serve", "--help"],
                                      capture_output=True, text=True, timeout=60)
            except (OSError, subprocess.TimeoutExpired) as exc:
                self._why = f"`tritonstub serve --help` failed: {exc}"
            else:
                if proc.returncode != 0:
                    self._why = "this tritonstub has no `serve` command (issue 12) yet"
        return self._why

    def start(self, repo: Path, workdir: Path, stub: Stub, exit_timeout_s: int = 30) -> Served:
        from tritonstub.testing.serve import ServeProcess

        log_dir = workdir / "server"
        log_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in SERVER_ENV.items() if v is not None}
        proc = ServeProcess(repo, "--stub", stub.spec or str(stub.file), "--model-control-mode", "explicit",
                            "--log-verbose", "1", log_dir=log_dir, env=env, python=self.python,
                            startup_timeout=60.0, stop_timeout=STOP_TIMEOUT_S)
        proc.start()
        return _ServeServed(proc, repo)


def make_column(name: str, reference=None, triton_path: Optional[str] = None):
    if name == "triton":
        return TritonColumn(reference, triton_path)
    if name == "harness":
        return HarnessColumn()
    raise ValueError(f"unknown server {name!r}; expected 'triton' or 'harness'")
