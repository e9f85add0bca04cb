"""Run `tritonstub serve` as a bounded, fully cleaned-up child process (the counterpart of
:class:`tritonstub.testing.tritonserver.TritonServer` for our own server)::

    with ServeProcess(repo, "--stub", "cpp") as server:
        client = tritonclient.grpc.InferenceServerClient(server.grpc_url)
        ...
    assert server.leaked_regions == [] and server.orphans == []

Loopback only, ports chosen by the OS (read back from the startup line); every wait bounded;
:meth:`ServeProcess.stop` sends SIGTERM, waits for a clean exit (the server finalizes every
model), and only then kills what is left. ``leaked_regions``: shm regions the server had mapped
that are still in /dev/shm; ``orphans``: processes still naming one of them (stubs).
"""
from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import List, Optional, Sequence, Set, Union

from tritonstub.errors import TritonStubError
from tritonstub.testing.procs import SHM_DIR, processes_naming, process_alive

_LINE = re.compile(r"^tritonstub serve: (?P<models>.*); (?P<where>(?:grpc|http)=\S+.*)$")
_ROOT = Path(__file__).resolve().parents[2]


class ServeError(TritonStubError):
    pass


class ServeProcess:
    def __init__(self, repository: Union[str, Path], *args: str, startup_timeout: float = 120.0,
                 stop_timeout: float = 60.0, env: Optional[dict] = None,
                 log_dir: Optional[Union[str, Path]] = None, python: str = sys.executable,
                 cwd: Optional[Union[str, Path]] = None):
        self.repository = Path(repository)
        self.args = list(args)
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join(
            [str(_ROOT)] + [p for p in self.env.get("PYTHONPATH", "").split(os.pathsep) if p])
        self.env.update(env or {})
        self.python = python
        self.cwd = cwd
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="tritonstub-serve-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log = self.log_dir / "serve.log"
        self.proc: Optional[subprocess.Popen] = None
        self.grpc_url = self.http_url = ""
        self.models_line = ""
        self.regions: Set[str] = set()
        self.leaked_regions: List[str] = []
        self.orphans: List[int] = []
        self.returncode: Optional[int] = None
        self.stop_seconds: Optional[float] = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> "ServeProcess":
        cmd = [self.python, "-m", "tritonstub", "serve", str(self.repository),
               "--grpc-port", "0", "--http-port", "0", *self.args]
        self._log_file = open(self.log, "wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log_file,
                                     env=self.env, start_new_session=True, cwd=self.cwd)
        lines: "queue.Queue[Optional[str]]" = queue.Queue()

        def read():
            assert self.proc is not None and self.proc.stdout is not None
            for raw in self.proc.stdout:
                lines.put(raw.decode(errors="replace").rstrip("\n"))
            lines.put(None)
        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + self.startup_timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = lines.get(timeout=max(0.05, left))
            except queue.Empty:
                line = ""
            if line is None or (line == "" and time.monotonic() >= deadline):
                self.stop()
                raise ServeError(f"tritonstub serve did not start within {self.startup_timeout:g}"
                                 f" s (exit status {self.returncode}); log:\n{self.log_tail()}")
            m = _LINE.match(line or "")
            if m:
                self.models_line = m.group("models")
                where = dict(kv.split("=", 1) for kv in m.group("where").split())
                self.grpc_url, self.http_url = where.get("grpc", ""), where.get("http", "")
                break
        self.regions = self._mapped_regions()
        return self

    def _mapped_regions(self) -> Set[str]:
        try:
            maps = Path(f"/proc/{self.pid}/maps").read_text(errors="replace")
        except OSError:
            return set()
        # every /dev/shm object this fresh process maps is a region of its stubs
        return {line.split("/dev/shm/", 1)[1].split()[0] for line in maps.splitlines()
                if "/dev/shm/" in line}

    def refresh_regions(self) -> None:
        """Note regions mapped since start (models loaded later)."""
        self.regions |= self._mapped_regions()

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc is None:
            return -1
        if self.proc.poll() is None:
            self.refresh_regions()
            t0 = time.monotonic()
            self.proc.send_signal(sig)
            try:
                self.proc.wait(self.stop_timeout)
                self.stop_seconds = time.monotonic() - t0
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(10)
        self.returncode = self.proc.returncode
        # stubs notice a dead parent within a heartbeat (300 ms); give them a bounded while
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            self.orphans = sorted({p for r in self.regions for p in processes_naming(r)
                                   if process_alive(p)})
            self.leaked_regions = sorted(r for r in self.regions if (Path(SHM_DIR) / r).exists())
            if not self.orphans and not self.leaked_regions:
                break
            time.sleep(0.1)
        for pid in self.orphans:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for r in self.leaked_regions:
            try:
                (Path(SHM_DIR) / r).unlink()
            except OSError:
                pass
        self._log_file.close()
        return self.returncode

    def problems(self, label: str = "tritonstub serve") -> List[str]:
        """After :meth:`stop`: what was wrong (none after a clean run): a non-zero exit status,
        processes or regions left (already killed and removed)."""
        problems = []
        if self.returncode != 0:
            problems.append(f"{label} (pid {self.pid}) exited with status {self.returncode}; "
                            f"log {self.log}:\n{self.log_tail(20)}")
        if self.orphans:
            problems.append(f"{label} left processes {self.orphans} (killed)")
        if self.leaked_regions:
            problems.append(f"{label} left regions {self.leaked_regions} (removed)")
        return problems

    def __enter__(self) -> "ServeProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
