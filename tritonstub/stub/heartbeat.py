"""The stub's heartbeat, in a forked helper process so the GIL can never starve it.

The C++ stub sets ``IPCControlShm.stub_health`` every 300 ms from a native thread that needs no
GIL, and polls the parent's pid; if the parent is gone it logs "Non-graceful termination
detected." and exits 1. The parent clears the flag and, if it is still clear a second later while
it waits for a reply, fails with "Stub process '<name>' is not healthy." A Python thread cannot
promise 300 ms: a model that runs one long C call holding the GIL (numpy, a C extension, a tight
pure-Python loop in a busy interpreter) would starve it and get the instance declared unhealthy.

So we fork one small helper process right after the region is mapped, before any thread exists
(fork is then safe). It inherits the mapping, so it sets the flag under ``stub_health_mutex``
itself, every 300 ms, with its own interpreter and its own GIL. It also watches both ends:
- the stub (its parent) died → PR_SET_PDEATHSIG wakes it at once (SIGUSR1, waited for with
  sigtimedwait as its sleep). It stops beating, so Triton sees the instance unhealthy exactly as
  with a dead C++ stub, and if tritonserver is alive it speaks for the dead stub one last time
  (salvage.py: the robust mutexes the stub died holding, the response factories it held, so
  that the model can still be unloaded); then it exits;
- tritonserver died → it logs the C++ message, unlinks the region (as the C++ stub does on
  parent death), SIGKILLs the stub and exits: the stub is gone well within one second.
A stopped stub (SIGSTOP, a debugger's stop) gets no beat, as a stopped C++ stub gives none.
The stub ends the helper with SIGUSR2 when it exits normally (the helper may be inside a beat,
holding ``stub_health_mutex``: a SIGKILL there would leave the parent a dead owner's mutex).
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from typing import Callable, Optional

from .. import protocol
from ..ipc.region import Region, region_path
from ..ipc.sync import Mutex
from .log import INFO, SITE_NON_GRACEFUL, stub_log

L = protocol.common()

PR_SET_PDEATHSIG = 1
#: What the helper hears: the stub died (PR_SET_PDEATHSIG), or the stub asks it to exit.
STUB_DIED, STOP = signal.SIGUSR1, signal.SIGUSR2


def process_state(pid: int) -> bytes:
    """The state letter of /proc/<pid>/stat (b"R", b"S", b"T" stopped, b"Z" zombie...), b"" if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return b""
    end = stat.rfind(b")")
    return stat[end + 2:end + 3]


def pid_alive(pid: int) -> bool:
    """kill(pid, 0) as the C++ stub does, but a zombie counts as dead.

    A SIGKILLed tritonserver stays a zombie until its own parent reaps it; the C++ stub keeps
    running against it until then. We treat it as gone at once.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return process_state(pid) not in (b"Z", b"X")


def start(region: Region, control_payload: int, parent_pid: int,
          on_stub_death: Optional[Callable[[int], bool]] = None) -> int:
    """Fork the heartbeat process; returns its pid (in the stub). ``on_stub_death(stub_pid)``
    runs in the helper when the stub dies while tritonserver lives; if it returns True the
    helper stays until tritonserver is gone and unlinks the region then."""
    mutex_addr = region.addr(control_payload + L.IPCControlShm.stub_health_mutex)
    flag_off = control_payload + L.IPCControlShm.stub_health
    buf = region.buf
    stub_pid = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    # ---- in the helper: never return from here
    code = 1
    try:
        code = _run(buf, region.name, mutex_addr, flag_off, parent_pid, stub_pid, on_stub_death)
    except BaseException:  # noqa: BLE001 - nothing may escape into the forked copy of the stub
        code = 1
    finally:
        os._exit(code)


def stop(pid: int, timeout: float = 2.0) -> None:
    """End the helper from the stub (normal exit): SIGUSR2, then SIGKILL if it lingers."""
    try:
        os.kill(pid, STOP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
            time.sleep(0.002)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except OSError:
        pass


def _wait_for_signal(signals: set, timeout: float) -> Optional[int]:
    """The first of ``signals`` (blocked) to arrive within ``timeout``, or None.
    ``signal.sigtimedwait``; PyPy 3.9 lacks it: there, ``sigpending`` every 10 ms, and
    ``sigwait`` takes the pending one."""
    if hasattr(signal, "sigtimedwait"):
        info = signal.sigtimedwait(signals, timeout)
        return None if info is None else info.si_signo
    deadline = time.monotonic() + timeout
    while True:
        if signal.sigpending() & signals:
            return signal.sigwait(signals)
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        time.sleep(min(0.01, left))


def _run(buf, region_name: str, mutex_addr: int, flag_off: int, parent_pid: int,
         stub_pid: int, on_stub_death) -> int:
    # Blocked, then waited for with sigtimedwait: the helper's sleep ends the moment the stub
    # dies or asks it to stop, and no handler can interrupt it while it holds the mutex.
    signal.pthread_sigmask(signal.SIG_BLOCK, {STUB_DIED, STOP})
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, STUB_DIED, 0, 0, 0)
    except OSError:
        pass
    # The stub survives SIGINT and SIGTERM (the C++ stub installs no-op handlers), so its heartbeat
    # must too: a SIGTERM to the whole process group (systemd, `kill -- -PGID`) would otherwise
    # stop the beat, the parent would find the instance unhealthy at unload and SIGKILL the stub
    # instead of sending FinalizeRequest, and finalize() and its log lines would be lost.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    mutex = Mutex(mutex_addr)
    period = L.STUB_HEALTH_PERIOD_S
    while True:
        # The stub may have died before the prctl: then getppid() is no longer the stub.
        heard = None if os.getppid() != stub_pid else _wait_for_signal({STUB_DIED, STOP}, period)
        if heard == STOP:
            return 0
        if heard is not None or os.getppid() != stub_pid:
            # The stub is gone: stop beating, and speak for it if the parent is still there.
            if on_stub_death is not None and pid_alive(parent_pid) and on_stub_death(stub_pid):
                # The model cannot be unloaded (salvage.py), so tritonserver will not unlink
                # the region, and the stub cannot: stay, not beating, until the server is gone.
                while pid_alive(parent_pid):
                    time.sleep(period)
                try:
                    os.unlink(region_path(region_name))
                except OSError:
                    pass
            return 0
        if process_state(stub_pid) in (b"T", b"t"):
            # The stub is stopped (SIGSTOP, a debugger): the C++ stub's heartbeat thread stops
            # with it, the parent then finds it unhealthy and fails its requests in about a
            # second. A beat from here would make the parent wait for it for ever.
            continue
        try:
            mutex.lock(1.0)
        except Exception:
            continue
        try:
            buf[flag_off] = 1
        finally:
            mutex.unlock()
        if not pid_alive(parent_pid):
            stub_log(INFO, "Non-graceful termination detected. ", line=SITE_NON_GRACEFUL,
                     pid=stub_pid)
            try:
                os.unlink(region_path(region_name))
            except OSError:
                pass
            try:
                os.kill(stub_pid, signal.SIGKILL)
            except OSError:
                pass
            return 1
