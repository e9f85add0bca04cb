"""Processes and shared-memory regions on this machine, as the real-Triton tests see them.

/proc scanning (who runs, who maps which region, who listens where) and /dev/shm listings, with
no knowledge of tritonserver itself: :mod:`tritonstub.testing.tritonserver` builds the server's
lifecycle and its cleanup checks on these.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Set

#: Default name prefix of the python backend's shm regions (backend config ``shm-region-prefix-name``).
LOOPBACK = "127.0.0.1"
REGION_PREFIX = "triton_python_backend_shm_region_"
SHM_DIR = Path("/dev/shm")




def free_port(host: str = LOOPBACK) -> int:
    """A port the kernel just considered free on ``host`` (it may be taken again before use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def list_regions(prefix: str = REGION_PREFIX) -> Set[str]:
    """Names of the shm regions in /dev/shm that start with ``prefix``."""
    from ..ipc.inspect import list_regions as names
    return set(names(prefix))


def _pids() -> List[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def _read_proc(pid: int, name: str) -> Optional[bytes]:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            return f.read()
    except OSError:
        return None


@dataclass(frozen=True)
class _ProcInfo:
    state: str
    ppid: int
    pgid: int
    starttime: int  # clock ticks after boot

    @property
    def alive(self) -> bool:
        return self.state not in ("Z", "X")


def _proc_info(pid: int) -> Optional[_ProcInfo]:
    stat = _read_proc(pid, "stat")
    if stat is None:
        return None
    # "pid (comm) state ppid pgrp session tty tpgid flags ... starttime(22nd field)";
    # comm may contain spaces and parentheses, so split after the last ')'.
    fields = stat[stat.rfind(b")") + 2:].split()
    return _ProcInfo(state=fields[0].decode(), ppid=int(fields[1]), pgid=int(fields[2]),
                     starttime=int(fields[19]))


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not; a pid that vanished while we read it does not)."""
    info = _proc_info(pid)
    return info is not None and info.alive


_alive = process_alive


def parent_pid(pid: int) -> int:
    """The parent of ``pid``; 0 when it is gone."""
    info = _proc_info(pid)
    return info.ppid if info is not None else 0


def cmdline(pid: int) -> str:
    raw = _read_proc(pid, "cmdline") or b""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def processes_naming(text: str) -> List[int]:
    """Live pids whose command line contains ``text`` (e.g. a region name)."""
    me = os.getpid()
    return [pid for pid in _pids() if pid != me and _alive(pid) and text in cmdline(pid)]


def region_mappers() -> Dict[str, Set[int]]:
    """For every /dev/shm object some live process maps: the pids that map it (from /proc/*/maps)."""
    mappers: Dict[str, Set[int]] = {}
    for pid in _pids():
        maps = _read_proc(pid, "maps")
        if not maps:
            continue
        for line in maps.splitlines():
            idx = line.find(b"/dev/shm/")
            if idx >= 0:
                name = line[idx + 9:].split(b" ")[0].decode(errors="replace")
                mappers.setdefault(name, set()).add(pid)
    return mappers


def listening_ports(pid: int) -> Set[int]:
    """TCP ports that process ``pid`` itself listens on (socket inodes in /proc/net/tcp* vs its fds)."""
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return set()
    owned = set()
    for fd in fds:
        try:
            owned.add(os.readlink(f"{fd_dir}/{fd}"))
        except OSError:  # closed meanwhile
            pass
    ports = set()
    # gRPC binds 127.0.0.1 through an AF_INET6 socket (::ffff:127.0.0.1), so it shows in tcp6.
    for table in ("net/tcp", "net/tcp6"):
        for line in (_read_proc(pid, table) or b"").splitlines()[1:]:
            cols = line.split()
            # cols: sl local_address rem_address st ... inode(9); st 0A = LISTEN
            if len(cols) > 9 and cols[3] == b"0A" and f"socket:[{cols[9].decode()}]" in owned:
                ports.add(int(cols[1].split(b":")[1], 16))
    return ports
