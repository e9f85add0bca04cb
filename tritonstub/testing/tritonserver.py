"""Run a real ``tritonserver`` (the reference Triton) as a bounded, fully cleaned-up child process.

:class:`TritonServer` is what every real-Triton test uses::

    with TritonServer(repo, log_verbose=1) as server:
        client = tritonclient.http.InferenceServerClient(server.http_url)
        ...
    assert server.leaked_regions == [] and server.orphans == []

What it guarantees:

- **Loopback only, free ports.** HTTP, gRPC and metrics listen on 127.0.0.1 at ports picked by
  binding port 0. Another process can still grab a port before tritonserver does, so a start that
  dies with "address in use" is retried with new ports.
- **Own process group.** tritonserver starts in a new session. The python backend launches its
  stubs with fork + ``bash -c exec``, so they join that group, and a crash of the server cannot
  leave them out of reach.
- **Every wait is bounded.** Start-up waits for ``/v2/health/ready`` (and any named model) at most
  ``startup_timeout`` seconds. An early exit or a timeout raises :class:`TritonServerError` with the
  tail of the server log.
- **Stop cleans up and reports.** :meth:`TritonServer.stop` sends SIGTERM by pid, then SIGKILLs the
  group when the grace time runs out. It kills any process of the group that is still alive, or any
  process whose command line names one of this server's shm regions (``orphans``). Then it unlinks
  the ``/dev/shm/triton_python_backend_shm_region_*`` regions of this server that are still there
  and that no live process maps any more (``leaked_regions``). A clean run leaves both lists empty.
  Tests assert that. Each server gets its own region-name prefix by default, so this holds with
  other servers running next to it.
- **Stubs get their own bound first.** When tritonserver exits without finalizing its stubs (exit
  timeout, crash), both stubs notice that their parent is gone from their heartbeat (every
  300 ms), unlink their region and exit. :meth:`TritonServer.stop` waits up to
  :data:`STUB_EXIT_GRACE_S` for that before it kills anything, so ``orphans`` lists only
  processes that would really have stayed, and ``outlived`` says how long each stub lived on.
- **A crash is never a clean stop.** :meth:`TritonServer.crash_report` says whether tritonserver
  died of a signal (negative exit status, other than the SIGKILL :meth:`stop` itself sent) or
  logged a fatal error (its "Signal (11) received." handler line, glibc's heap-corruption aborts,
  ``terminate called``). Both stubs clean up after a dead parent, so leftovers alone cannot show
  a crash; every fixture checks this report.

The stub a model uses is chosen per model: the python backend runs
``<model dir>/triton_python_backend_stub`` when that file exists. :func:`install_cpp_stub` and
:func:`install_our_stub` put one there. :func:`make_model_repository` builds a repository from
sources or from example directories.
"""
from __future__ import annotations

import atexit
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import uuid
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple, Union

from tritonstub.errors import TritonStubError
from tritonstub.testing.procs import (  # noqa: F401 - re-exported for the tests and faults.py
    LOOPBACK, REGION_PREFIX, SHM_DIR, _alive, _pids, _proc_info, cmdline, free_port,
    list_regions, listening_ports, process_alive, processes_naming, region_mappers)
from tritonstub.testing.reference import STUB_NAME, Reference, ReferenceUnavailable, find_reference, provision

_PORT_IN_USE = re.compile(r"address already in use|already in use|address in use|bind.*failed", re.IGNORECASE)
_LIVE_MODEL = re.compile(r'"(\S+ v\d+: [A-Z_]+)"')
_STUB_LAUNCH = re.compile(r"Starting Python backend stub:\s*(.*?)\"?\s*$")
_POLL_S = 0.1
_HTTP_TIMEOUT_S = 5.0
_START_ATTEMPTS = 3
_GONE_TIMEOUT_S = 10.0
#: How long stop() lets the stubs of a server that exited without finalizing them leave by
#: themselves. Both stubs check their parent every 300 ms (the heartbeat period of r24.10);
#: measured over 6 such exits: ours 0.00-0.28 s, the C++ stub 0.10-0.29 s after
#: tritonserver was reaped. The rest is headroom for a loaded machine (3 s was passed once at
#: load average 18; the wait ends as soon as the stubs are gone).
STUB_EXIT_GRACE_S = 10.0
#: Lines tritonserver (or the C/C++ runtime in it) writes when the process is dying: its signal
#: handler's "Signal (N) received." for SIGILL/SIGABRT/SIGBUS/SIGFPE/SIGSEGV (2 and 15 are the
#: ordinary stop signals), glibc's heap-corruption aborts, and std::terminate.
FATAL_LOG = re.compile(
    r"Signal \((?:4|6|7|8|11)\) received\.|terminate called (?:after throwing|without an active)"
    r"|double free or corruption|free\(\): invalid|malloc\(\): |corrupted size vs\. prev_size"
    r"|corrupted double-linked list|munmap_chunk\(\): invalid|unaligned tcache chunk")



def _fatal_lines(text: str) -> List[str]:
    """Each log line FATAL_LOG matches, whole (at most 300 characters), with the ``what():`` line
    a ``terminate called after throwing`` is followed by: what was thrown is the diagnosis."""
    lines = text.splitlines()
    found: List[str] = []
    for i, line in enumerate(lines):
        if FATAL_LOG.search(line):
            found.append(line.strip()[:300])
            if "terminate called after throwing" in line and i + 1 < len(lines) \
                    and "what():" in lines[i + 1]:
                found.append(lines[i + 1].strip()[:300])
    return list(dict.fromkeys(found))


def crash_report(returncode: Optional[int], killed: bool, log_text: str, log: object) -> str:
    """"" unless a tritonserver that ended with ``returncode`` died of a signal or logged a fatal
    error in ``log_text``; then what it was, the fatal lines quoted, and where its ``log`` is.

    Not a crash: exit status 0, 1 (e.g. the exit timeout ran out: see
    :meth:`TritonServer.models_left`), or the SIGKILL that :meth:`TritonServer.stop` itself
    sent after its grace time (``killed``).
    """
    problems = []
    code = returncode
    if code is not None and code < 0 and not (killed and code == -signal.SIGKILL):
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        problems.append(f"tritonserver died of {name} (exit status {code})")
    fatal = _fatal_lines(log_text)
    if fatal:
        problems.append("tritonserver logged a fatal error:\n  " + "\n  ".join(fatal))
    if problems:
        problems.append(f"log: {log}")
    return "\n".join(problems)


def http_request(base: str, method: str, path: str, body: Optional[object] = None,
                 timeout: float = _HTTP_TIMEOUT_S) -> Tuple[int, bytes]:
    """A raw HTTP request to ``base`` (``http://host:port``) with ``body`` as JSON; returns
    (status, body). Connection errors give status 0."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data is not None else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return 0, b""

class TritonServerError(TritonStubError):
    """tritonserver did not start, exited early, or a bounded wait on it ran out."""


class StubInstallError(TritonStubError):
    """A stub could not be installed into a model directory."""


# --------------------------------------------------------------------------------------------
# stubs and repositories


def install_cpp_stub(model_dir: Union[str, Path], reference: Optional[Reference] = None) -> Path:
    """Copy the reference C++ stub (Python 3.11 build) to ``<model_dir>/triton_python_backend_stub``."""
    ref = reference or find_reference()
    if ref is None:
        raise ReferenceUnavailable("the reference Triton is not installed; run "
                                   "`python -m tritonstub.testing.reference --provision`")
    target = Path(model_dir) / STUB_NAME
    shutil.copyfile(ref.cpp_stub, target)
    os.chmod(target, 0o755)
    return target


def install_our_stub(model_dir: Union[str, Path], python: str = sys.executable, timeout: float = 60.0) -> Path:
    """Install tritonstub's stub into ``model_dir`` with ``python -m tritonstub install-stub``."""
    target = Path(model_dir) / STUB_NAME
    cmd = [python, "-m", "tritonstub", "install-stub", str(model_dir)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StubInstallError(f"`{shlex.join(cmd)}` failed: {exc}") from exc
    if proc.returncode != 0 or not target.is_file():
        raise StubInstallError(
            f"`{shlex.join(cmd)}` exited {proc.returncode} and {'wrote' if target.is_file() else 'did not write'} "
            f"{target}.\n{(proc.stdout + proc.stderr).strip()[-2000:]}")
    return target


def install_stub(model_dir: Union[str, Path], kind: str, reference: Optional[Reference] = None) -> Optional[Path]:
    """Install the stub ``kind`` into ``model_dir``: ``"cpp"``, ``"ours"``, ``"default"`` (none), or
    the path of any stub executable (copied; e.g. ours installed for another interpreter by
    ``pypy3 -m tritonstub install-stub DIR``)."""
    if kind == "cpp":
        return install_cpp_stub(model_dir, reference)
    if kind == "ours":
        return install_our_stub(model_dir)
    if kind == "default":
        (Path(model_dir) / STUB_NAME).unlink(missing_ok=True)
        return None
    if os.sep in kind and os.path.isfile(kind) and os.access(kind, os.X_OK):
        target = Path(model_dir) / STUB_NAME
        shutil.copy2(kind, target)
        return target
    raise ValueError(f"unknown stub kind {kind!r}; expected 'cpp', 'ours', 'default' or the path of "
                     "an executable stub")


@dataclass
class ModelSpec:
    """One python model for :func:`make_model_repository`.

    ``config`` is the config.pbtxt text (default: just ``backend: "python"``). ``files`` maps extra
    paths relative to the model directory to their content. ``stub`` installs a per-model stub:
    ``"cpp"``, ``"ours"`` or None (use the backend's default stub).
    """

    model_py: str
    config: Optional[str] = None
    version: Union[int, str] = 1
    files: Mapping[str, Union[str, bytes]] = field(default_factory=dict)
    stub: Optional[str] = None


def make_model_repository(
    root: Union[str, Path],
    models: Mapping[str, Union[ModelSpec, Path, str]],
    *,
    stub: Optional[str] = None,
    reference: Optional[Reference] = None,
) -> Path:
    """Create (or add to) the model repository ``root`` and return it.

    Each value of ``models`` is a :class:`ModelSpec`, a model.py source string (default config), or
    a :class:`~pathlib.Path` of an existing model directory to copy (e.g. an example). ``stub`` is
    the per-model stub for every model whose spec does not name one.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for name, spec in models.items():
        model_dir = root / name
        if isinstance(spec, Path):
            shutil.copytree(spec, model_dir, ignore=shutil.ignore_patterns("__pycache__", STUB_NAME))
            kind = stub
        else:
            if isinstance(spec, str):
                spec = ModelSpec(model_py=spec)
            version_dir = model_dir / str(spec.version)
            version_dir.mkdir(parents=True, exist_ok=True)
            (version_dir / "model.py").write_text(spec.model_py)
            config = spec.config if spec.config is not None else f'name: "{name}"\nbackend: "python"\n'
            (model_dir / "config.pbtxt").write_text(config)
            for rel, content in spec.files.items():
                path = model_dir / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(content, bytes):
                    path.write_bytes(content)
                else:
                    path.write_text(content)
            kind = spec.stub if spec.stub is not None else stub
        if kind is not None:
            install_stub(model_dir, kind, reference)
    return root


def check_stopped(server: TritonServer, *, check_cleanup: bool = True, expect_crash: bool = False) -> List[str]:
    """What is wrong with a stopped server; [] when all is well.

    A crash (or a missing one, when ``expect_crash``); with ``check_cleanup`` also models that it
    could not unload before its exit timeout (their stubs were never finalized, even if they
    then left by themselves) and anything left behind.
    """
    problems = []
    crash = server.crash_report()
    if crash and not expect_crash:
        problems.append(f"tritonserver pid {server.pid} crashed:\n{crash}")
    elif expect_crash and not crash:
        problems.append(f"tritonserver pid {server.pid} was expected to crash but exited with status "
                        f"{server.returncode} and logged no fatal error (log {server.log})")
    if not check_cleanup:
        return problems
    left = server.models_left()
    if left:
        problems.append(f"tritonserver pid {server.pid} exited without unloading {', '.join(left)} "
                        f"(--exit-timeout-secs={server.exit_timeout} ran out; log {server.log})"
                        + ("; hint: an HTTP client kept its connection open (use server.http_client(), "
                           "which stop() closes)" if "HTTP service connections" in server.log_text() else ""))
    report = server.cleanup_report()
    if report:
        problems.append(f"tritonserver pid {server.pid} (log {server.log}) left things behind:\n{report}")
    return problems


# --------------------------------------------------------------------------------------------
# the server


_running: Set["TritonServer"] = set()  # started and not yet stopped


@atexit.register
def _stop_all_at_exit() -> None:
    for server in list(_running):
        server.stop(timeout=10)


class Clients:
    """The tritonclient clients a test opened on a server, closed when the server stops.

    Closing matters: tritonserver waits for open HTTP keep-alive connections before it unloads
    models (up to its exit timeout) and then exits *without* finalizing the stubs, which leaks
    their regions. A class that mixes this in sets ``_clients = []`` and has ``http_url`` and
    ``grpc_url``."""

    _clients: list

    def http_client(self, **kwargs):
        """A ``tritonclient.http.InferenceServerClient`` for this server, closed at its stop."""
        import tritonclient.http

        client = tritonclient.http.InferenceServerClient(self.http_url, **kwargs)
        self._clients.append(client)
        return client

    def grpc_client(self, **kwargs):
        """A ``tritonclient.grpc.InferenceServerClient`` for this server, closed at its stop."""
        import tritonclient.grpc

        client = tritonclient.grpc.InferenceServerClient(self.grpc_url, **kwargs)
        self._clients.append(client)
        return client

    def _close_clients(self) -> None:
        while self._clients:
            client = self._clients.pop()
            try:
                client.close()
            except Exception:  # a client that cannot close must not stop the clean-up
                pass


class TritonServer(Clients):
    """A real tritonserver serving ``model_repository`` on loopback (see the module docstring).

    ``wait_for`` picks what :meth:`start` waits for: ``"ready"`` (``/v2/health/ready``: the server
    and every loaded model are ready), ``"live"`` (the server answers, even if models failed) or
    ``"none"``. ``models`` are also waited for, each until it is ready. ``env`` entries override
    the inherited environment (None removes a variable). The server's cwd is ``log_dir`` (a fresh
    temporary directory by default), so neither the cwd nor the repository root is on the stub's
    import path.

    ``http_url``, ``grpc_url`` and ``metrics_url`` are ``host:port`` strings, the form tritonclient
    takes. ``http_base`` is the ``http://`` URL for raw requests.

    Region names: by default each server gets its own prefix,
    ``triton_python_backend_shm_region_<8 hex>_`` (backend config ``shm-region-prefix-name``), so
    that its regions, leaks and orphan stubs are told apart from other servers' exactly. Pass
    ``region_prefix=REGION_PREFIX`` to run with the python backend's default names.

    ``exit_timeout`` is ``--exit-timeout-secs``: how long tritonserver waits for open HTTP
    connections at shutdown before it exits *without* unloading models (leaking stubs and
    regions). Clients from :meth:`http_client` / :meth:`grpc_client` are closed before the stop.

    ``preexec`` runs in the server's process just before it executes tritonserver (after
    Python has restored the default signal actions): resource limits, signal dispositions.

    The C++ stub embeds the system Python, but takes its ``sys.prefix`` from the ``python3`` found on
    PATH. With a virtualenv's ``bin`` first on PATH it uses that venv's site-packages (and numpy), so
    pass ``env={"PATH": ...}`` when that matters.
    """

    def __init__(
        self,
        model_repository: Union[str, Path],
        *,
        reference: Optional[Reference] = None,
        extra_args: Sequence[str] = (),
        log_verbose: int = 0,
        backend_directory: Optional[Union[str, Path]] = None,
        env: Optional[Mapping[str, Optional[str]]] = None,
        startup_timeout: float = 60.0,
        log_dir: Optional[Union[str, Path]] = None,
        wait_for: str = "ready",
        models: Iterable[str] = (),
        region_prefix: Optional[str] = None,
        exit_timeout: int = 5,
        preexec: Optional[Callable[[], None]] = None,
    ):
        if wait_for not in ("ready", "live", "none"):
            raise ValueError(f"wait_for must be 'ready', 'live' or 'none', not {wait_for!r}")
        self.model_repository = Path(model_repository)
        self.reference = reference or provision()
        self.extra_args = tuple(extra_args)
        self.log_verbose = log_verbose
        # Kept as given: the python backend compares it as a string (a trailing slash matters).
        self.backend_directory = str(backend_directory or self.reference.backends_dir)
        self.env_overrides = dict(env or {})
        self.startup_timeout = startup_timeout
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="tritonserver-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log = self.log_dir / "server.log"
        self.wait_for = wait_for
        self.models = tuple(models)
        # A prefix of its own makes "the regions of this server" exact even with other servers
        # running; REGION_PREFIX (the python backend's default) falls back to a before/after diff.
        self.region_prefix = region_prefix if region_prefix is not None else f"{REGION_PREFIX}{uuid.uuid4().hex[:8]}_"
        self.exit_timeout = exit_timeout
        self.preexec = preexec

        self.http_port = self.grpc_port = self.metrics_port = 0
        self.args: List[str] = []
        self.returncode: Optional[int] = None
        self.killed = False
        self.leaked_regions: List[str] = []
        self.orphans: List[Tuple[int, str]] = []
        #: pid -> seconds a process of the server's group lived on after tritonserver was reaped
        #: (None: it had to be killed). Filled by stop() with the processes still running then;
        #: one that is not listed was gone before.
        self.outlived: Dict[int, Optional[float]] = {}
        self.startup_seconds: Optional[float] = None
        self._proc: Optional[subprocess.Popen] = None
        self._log_file = None
        self._clients: list = []
        self._regions_before: Set[str] = set()
        self._leader_starttime = 0
        self._stopped = False

    # ---- addresses ---------------------------------------------------------------------------

    @property
    def http_url(self) -> str:
        return f"{LOOPBACK}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{LOOPBACK}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"{LOOPBACK}:{self.metrics_port}"

    @property
    def http_base(self) -> str:
        return f"http://{self.http_url}"

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # ---- start -------------------------------------------------------------------------------

    def _command(self) -> List[str]:
        return [
            str(self.reference.tritonserver),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={self.backend_directory}",
            f"--http-port={self.http_port}", f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}",
            f"--http-address={LOOPBACK}", f"--grpc-address={LOOPBACK}", f"--metrics-address={LOOPBACK}",
            f"--log-verbose={self.log_verbose}",
            f"--exit-timeout-secs={self.exit_timeout}",
            *([f"--backend-config=python,shm-region-prefix-name={self.region_prefix}"]
              if self.region_prefix != REGION_PREFIX else []),
            *self.extra_args,
        ]

    def _environment(self) -> Dict[str, str]:
        env = dict(os.environ)
        for key, value in self.env_overrides.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return self.reference.env(env)

    def start(self) -> "TritonServer":
        """Start tritonserver and wait as ``wait_for`` / ``models`` say; raise on failure."""
        if self._proc is not None:
            raise TritonServerError("this TritonServer was already started; make a new one")
        began = time.monotonic()
        for attempt in range(1, _START_ATTEMPTS + 1):
            ports: Set[int] = set()
            while len(ports) < 3:
                ports.add(free_port())
            self.http_port, self.grpc_port, self.metrics_port = sorted(ports)
            self.args = self._command()
            (self.log_dir / "server.cmd").write_text(shlex.join(self.args) + "\n")
            self._regions_before = list_regions(self.region_prefix)
            self._log_file = open(self.log, "wb")
            try:
                self._proc = subprocess.Popen(
                    self.args, stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
                    env=self._environment(), cwd=self.log_dir, start_new_session=True, close_fds=True,
                    preexec_fn=self.preexec)
            except OSError as exc:
                self._log_file.close()
                raise TritonServerError(f"cannot run {self.args[0]}: {exc}") from exc
            _running.add(self)
            info = _proc_info(self._proc.pid)
            self._leader_starttime = info.starttime if info else 0
            try:
                self._wait_started(began + self.startup_timeout)
            except BaseException as exc:
                text = self.log_text()
                self.stop(timeout=10)
                if not isinstance(exc, TritonServerError):
                    raise
                if attempt < _START_ATTEMPTS and self.returncode not in (None, 0) and _PORT_IN_USE.search(text):
                    self._reset_for_retry()
                    continue
                raise
            break
        self.startup_seconds = time.monotonic() - began
        return self

    def _reset_for_retry(self) -> None:
        self._proc = None
        self._stopped = False
        self.returncode = None
        self.killed = False

    def _expected_ports(self) -> Set[int]:
        ports = {self.http_port, self.grpc_port, self.metrics_port}
        for flag, port in (("--allow-http", self.http_port), ("--allow-grpc", self.grpc_port),
                           ("--allow-metrics", self.metrics_port)):
            if any(arg in (f"{flag}=false", f"{flag}=0") for arg in self.extra_args):
                ports.discard(port)
        return ports

    def _wait_started(self, deadline: float) -> None:
        # The ports must be listened on by *this* process: a port picked as free can be taken by
        # someone else before tritonserver binds it (then tritonserver exits, after HTTP may
        # already have answered, since it starts gRPC, HTTP, metrics in turn).
        expected = self._expected_ports()
        self._poll_until(lambda: expected <= listening_ports(self._proc.pid), deadline,
                         f"tritonserver to listen on ports {sorted(expected)}")
        if self.wait_for != "none":
            path = "/v2/health/ready" if self.wait_for == "ready" else "/v2/health/live"
            self._poll_until(lambda: self._http_status("GET", path) == 200, deadline, f"GET {path} == 200")
        for name in self.models:
            self._poll_until(lambda: self._http_status("GET", f"/v2/models/{name}/ready") == 200, deadline,
                             f"model {name!r} ready")

    def _poll_until(self, check, deadline: float, what: str) -> None:
        while True:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                raise TritonServerError(f"tritonserver exited with status {code} while waiting for {what}."
                                        f"\n{self._log_tail_block()}")
            if check():
                return
            if time.monotonic() >= deadline:
                raise TritonServerError(f"timed out waiting for {what} (pid {self.pid}).\n{self._log_tail_block()}")
            time.sleep(_POLL_S)

    def wait_models_settled(self, names: Iterable[str], timeout: float = 60.0) -> Dict[str, dict]:
        """Wait until every model of ``names`` is READY or UNAVAILABLE; their repository index
        entries by name (state, and the reason of a failed load)."""
        names = set(names)
        deadline = time.monotonic() + timeout
        while True:
            index = {e["name"]: e for e in self.repository_index() if e.get("name") in names}
            if set(index) == names and all(e.get("state") in ("READY", "UNAVAILABLE") for e in index.values()):
                return index
            if time.monotonic() >= deadline:
                raise TritonServerError(f"models did not settle: {index}\n{self.log_tail()}")
            time.sleep(0.2)

    def wait_model_ready(self, name: str, timeout: float = 60.0, version: Optional[Union[int, str]] = None) -> None:
        """Wait until model ``name`` (optionally one version) reports ready; raise after ``timeout`` s."""
        path = f"/v2/models/{name}" + (f"/versions/{version}" if version is not None else "") + "/ready"
        try:
            self._poll_until(lambda: self._http_status("GET", path) == 200, time.monotonic() + timeout,
                             f"model {name!r} ready")
        except TritonServerError as exc:
            raise TritonServerError(f"{exc}\nrepository index entry: {self.model_status(name)}") from None

    # ---- HTTP helpers --------------------------------------------------------------------------

    def http(self, method: str, path: str, body: Optional[object] = None,
             timeout: float = _HTTP_TIMEOUT_S) -> Tuple[int, bytes]:
        """A raw HTTP request to the server; returns (status, body). Connection errors give status 0."""
        return http_request(self.http_base, method, path, body, timeout)

    def _http_status(self, method: str, path: str) -> int:
        return self.http(method, path, timeout=1.0)[0]

    def repository_index(self) -> List[dict]:
        """``POST /v2/repository/index``: one dict per model version (name, version, state, reason)."""
        status, body = self.http("POST", "/v2/repository/index", {})
        if status != 200:
            raise TritonServerError(f"POST /v2/repository/index returned {status}: {body[:500]!r}")
        return json.loads(body)

    def model_status(self, name: str) -> Optional[dict]:
        """The repository index entry of model ``name`` (state READY/UNAVAILABLE/…, reason), or None."""
        try:
            entries = [e for e in self.repository_index() if e.get("name") == name]
        except TritonServerError:
            return None
        return entries[0] if entries else None

    def metadata(self) -> dict:
        """``GET /v2``: server name, version and extensions."""
        status, body = self.http("GET", "/v2")
        if status != 200:
            raise TritonServerError(f"GET /v2 returned {status}")
        return json.loads(body)

    def metrics(self) -> str:
        """The Prometheus text from the metrics endpoint."""
        try:
            with urllib.request.urlopen(f"http://{self.metrics_url}/metrics", timeout=_HTTP_TIMEOUT_S) as resp:
                return resp.read().decode()
        except (urllib.error.URLError, OSError) as exc:
            raise TritonServerError(f"GET {self.metrics_url}/metrics failed: {exc}") from exc

    def regions(self) -> List[str]:
        """The shm regions of this server that exist now (one per live stub)."""
        names = list_regions(self.region_prefix) - self._regions_before
        if self.region_prefix == REGION_PREFIX and self.pid is not None:  # shared prefix: keep ours only
            names = {n for n in names if self.pid in region_mappers().get(n, set())}
        return sorted(names)

    # ---- clients -------------------------------------------------------------------------------

    # ---- log -----------------------------------------------------------------------------------

    def log_text(self) -> str:
        """Everything tritonserver and its stubs wrote to stdout/stderr so far."""
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _log_tail_block(self) -> str:
        return f"--- last lines of {self.log} ---\n{self.log_tail()}\n--- end of log ---"

    def stub_launches(self) -> List[List[str]]:
        """argv of every stub the python backend started (needs ``log_verbose >= 1``)."""
        launches = []
        for line in self.log_text().splitlines():
            m = _STUB_LAUNCH.search(line)
            if m:
                tokens = m.group(1).split()
                launches.append(tokens[1:] if tokens and tokens[0] == "exec" else tokens)
        return launches

    # ---- stop ----------------------------------------------------------------------------------

    def stop(self, timeout: float = 30.0) -> Optional[int]:
        """Stop the server (SIGTERM, then SIGKILL of its group after ``timeout`` s) and clean up.

        Fills ``orphans`` (processes that were still alive and got killed) and ``leaked_regions``
        (shm regions left behind, now unlinked). Returns tritonserver's exit status. Idempotent.
        """
        if self._stopped or self._proc is None:
            return self.returncode
        self._stopped = True
        proc = self._proc
        self._close_clients()
        try:
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.killed = True
                    self._killpg()
                    try:
                        proc.wait(_GONE_TIMEOUT_S)
                    except subprocess.TimeoutExpired:
                        pass
            self.returncode = proc.returncode
            self._await_stubs_leaving()
            self.orphans = self._kill_leftovers()
            self.leaked_regions = self._remove_new_regions()
        finally:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
            _running.discard(self)
        return self.returncode

    def crash_report(self) -> str:
        """"" unless tritonserver died of a signal or logged a fatal error; then what it was
        (:func:`crash_report`)."""
        return crash_report(self.returncode, self.killed, self.log_text(), self.log)

    def models_left(self) -> List[str]:
        """``name vN: STATE`` of the models tritonserver could not unload before its exit timeout
        ran out (from its last "Found N live models" report); [] after a complete shutdown."""
        text = self.log_text()
        if "Exit timeout expired" not in text:
            return []
        last = text.rfind("live models and")
        return _LIVE_MODEL.findall(text[last:]) if last >= 0 else []

    def cleanup_report(self) -> str:
        """"" after a clean stop; otherwise what was left behind, and the likely reason."""
        problems = []
        if self.orphans:
            problems.append("processes outlived tritonserver and were killed: "
                            + "; ".join(f"{pid}: {line[:200]}" for pid, line in self.orphans))
        if self.leaked_regions:
            problems.append(f"shm regions were left in {SHM_DIR} and were removed: {', '.join(self.leaked_regions)}")
        if problems and "HTTP service connections" in self.log_text():
            problems.append("hint: an HTTP client kept its connection open, so tritonserver gave up waiting "
                            f"after --exit-timeout-secs={self.exit_timeout} and exited without finalizing its "
                            "stubs; close tritonclient HTTP clients (or use server.http_client()) before stopping")
        if problems and self.killed:
            problems.append("hint: tritonserver did not exit after SIGTERM and was SIGKILLed")
        return "\n".join(problems)

    def _killpg(self) -> None:
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _group_members(self) -> List[int]:
        """Live processes of the server's process group (forked stubs), the leader excepted."""
        pgid = self._proc.pid
        members = []
        for pid in _pids():
            info = _proc_info(pid)
            if pid != pgid and info is not None and info.alive and info.pgid == pgid \
                    and info.starttime >= self._leader_starttime:
                members.append(pid)
        return members

    def _await_stubs_leaving(self) -> None:
        """Give what tritonserver left running :data:`STUB_EXIT_GRACE_S` to exit by itself.

        A stub whose parent died unlinks its region on its way out; killing it at once would
        leave that region behind (and blame the stub for it).
        """
        began = time.monotonic()
        waiting = set(self._group_members())
        self.outlived = {pid: None for pid in waiting}
        while waiting and time.monotonic() - began < STUB_EXIT_GRACE_S:
            time.sleep(0.01)
            for pid in [p for p in waiting if not _alive(p)]:
                self.outlived[pid] = time.monotonic() - began
                waiting.discard(pid)

    def _kill_leftovers(self) -> List[Tuple[int, str]]:
        """Kill what outlived tritonserver; return (pid, cmdline) of each.

        Two kinds: members of the server's process group (stubs are forked into it), and processes
        whose command line names a region that appeared since start and that no other live
        process maps (a stub that left the group). A region that a process outside its namers
        still maps belongs to another live server, so its stubs are left alone.
        """
        pgid = self._proc.pid
        me = os.getpid()
        new_regions = list_regions(self.region_prefix) - self._regions_before
        mappers = region_mappers() if new_regions else {}
        leftovers: Dict[int, str] = {}
        for pid in _pids():
            info = _proc_info(pid)
            if pid in (me, pgid) or info is None or not info.alive:
                continue
            line = cmdline(pid)
            # pid == pgid was excluded above: once the leader is reaped, a process with that pid
            # is a stranger. Members were all born after the leader.
            if info.pgid == pgid and info.starttime >= self._leader_starttime:
                leftovers[pid] = line
                continue
            for region in new_regions:
                if region in line:
                    namers = set(processes_naming(region))
                    if not (mappers.get(region, set()) - namers):
                        leftovers[pid] = line
                    break
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + _GONE_TIMEOUT_S
        while any(_alive(pid) for pid in leftovers) and time.monotonic() < deadline:
            time.sleep(0.05)
        # An empty command line is a process already exiting when we looked (it had released
        # its memory): it was on its way out, not left behind.
        return sorted((pid, line) for pid, line in leftovers.items() if line or _alive(pid))

    def _remove_new_regions(self) -> List[str]:
        """Unlink regions that appeared since start and that no live process maps (others' are kept)."""
        new = list_regions(self.region_prefix) - self._regions_before
        if not new:
            return []
        in_use = set(region_mappers())
        leaked = []
        for name in sorted(new - in_use):
            try:
                (SHM_DIR / name).unlink()
                leaked.append(name)
            except FileNotFoundError:
                pass
        return leaked

    # ---- context manager -----------------------------------------------------------------------

    def __enter__(self) -> "TritonServer":
        if self._proc is None:
            self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else ("stopped" if self._stopped else "new")
        return f"<TritonServer pid={self.pid} http={self.http_url} {state} repo={self.model_repository}>"
