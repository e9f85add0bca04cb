"""The parent's side of the region set-up: StubLauncher::Setup and the stub launch, in Python.

This is what lets tritonstub play the server: it creates a region exactly as
libtriton_python.so does (SharedMemoryManager(create) → Construct<IPCControlShm> → five
MessageQueue::Create in the parent's order → stub_health_mutex → ResetSemaphores), so that a
stub — ours or the C++ one — started with the real argv cannot tell it from Triton.
"""
from __future__ import annotations

import os
import subprocess
import uuid
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from .. import protocol
from ..ipc.message_queue import MessageQueue
from ..ipc.region import DEFAULT_GROWTH, DEFAULT_SHM_SIZE, Region
from ..ipc.sync import Mutex
from ..protocol import eras

L = protocol.common()

REGION_PREFIX = "triton_python_backend_shm_region_"
#: The protocol era this parent speaks (tritonstub.protocol.eras), told to our stub at launch.
PROTOCOL = protocol.DEFAULT_ERA
PROTOCOL_KEY = eras.OVERRIDE_KEY


def new_region_name(prefix: str = REGION_PREFIX) -> str:
    return f"{prefix}{uuid.uuid4()}"


@dataclass
class ParentSide:
    """A region set up as the parent sets it up, with the five queues opened."""

    region: Region
    ipc_control_handle: int
    queues: Dict[str, MessageQueue] = field(default_factory=dict)

    @classmethod
    def setup(cls, name: Optional[str] = None, size: int = DEFAULT_SHM_SIZE,
              growth: int = DEFAULT_GROWTH, queue_size: int = L.DEFAULT_MESSAGE_QUEUE_SIZE,
              decoupled: bool = False) -> "ParentSide":
        region = Region.create(name or new_region_name(), size, growth)
        try:
            h = region.construct(L.IPCControlShm.size)
            p = region.payload(h)
            # Construct runs no constructor; zero what the parent leaves unset so nothing
            # depends on stale bytes (the C++ parent leaves parent_health etc. as found).
            region.write(p, bytes(L.IPCControlShm.size))
            self = cls(region, h)
            for fname in L.QUEUE_FIELDS:
                self.queues[fname] = MessageQueue.create(region, queue_size)
            self.queues["memory_manager_message_queue"].reset_semaphores()
            buf = region.buf
            L.IPCControlShm.set(buf, p, "decoupled", bool(decoupled))
            for fname in L.QUEUE_FIELDS:
                L.IPCControlShm.set(buf, p, fname, self.queues[fname].handle)
            self.stub_health_mutex.initialize()
            for fname in L.QUEUE_FIELDS[:4]:
                self.queues[fname].reset_semaphores()
        except BaseException:
            region.close(unlink=True)
            raise
        return self

    # -------------------------------------------------------------- control block fields
    @property
    def control(self) -> int:
        return self.ipc_control_handle + L.OWNERSHIP_HEADER

    @property
    def stub_health_mutex(self) -> Mutex:
        return Mutex(self.region.addr(self.control + L.IPCControlShm.stub_health_mutex))

    def read_stub_health(self, reset: bool = False, timeout: float = 1.0) -> bool:
        """Read (and optionally clear) stub_health under its mutex, like the parent's checks."""
        m = self.stub_health_mutex
        m.lock(timeout)
        try:
            v = L.IPCControlShm.get(self.region.buf, self.control, "stub_health")
            if reset:
                L.IPCControlShm.set(self.region.buf, self.control, "stub_health", False)
            return bool(v)
        finally:
            m.unlock()

    def set_uses_env(self, value: bool) -> None:
        L.IPCControlShm.set(self.region.buf, self.control, "uses_env", bool(value))

    # -------------------------------------------------------------- launching a stub
    def stub_argv(self, stub: str, model_path: str, python_lib: str, stub_name: str,
                  runtime_modeldir: str = "DEFAULT", parent_pid: Optional[int] = None) -> List[str]:
        """The ten arguments StubLauncher::Launch passes (r24.10, stub_launcher.cc)."""
        return [stub, model_path, self.region.name, str(self.region.capacity),
                str(self.region.growth), str(parent_pid or os.getpid()), python_lib,
                str(self.ipc_control_handle), stub_name, runtime_modeldir or "DEFAULT"]

    def launch(self, argv: Sequence[str], env: Optional[Dict[str, str]] = None,
               **popen_kwargs) -> subprocess.Popen:
        """Start a stub. We play a PROTOCOL parent and say so (TRITONSTUB_PROTOCOL, unless ``env``
        sets it): a Python parent maps no libtriton_python.so for our stub to fingerprint."""
        self.set_uses_env(False)
        env = dict(os.environ if env is None else env)
        # The era our codecs speak: the default, or the one this process selected before it
        # imported them (a harness playing a newer parent: protocol.select("r25.04") first).
        env.setdefault(PROTOCOL_KEY, protocol.selected() or PROTOCOL)
        popen_kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.Popen(list(argv), env=env, **popen_kwargs)

    def close(self, unlink: bool = True) -> None:
        for q in self.queues.values():
            try:
                q.close()
            except Exception:
                pass
        self.queues.clear()
        self.region.close(unlink=unlink)
