"""Install our stub where the python backend looks for one.

Per model: ``<model dir>/triton_python_backend_stub`` (the backend prefers it over its own).
Backend-wide: ``<backend dir>/triton_python_backend_stub``, keeping the original as ``.orig``.

The launcher is a tiny POSIX shell script. It answers the backend's no-argument probe itself
(exit 1 in about a millisecond, no interpreter start) and otherwise ``exec``s the chosen Python,
so the pid Triton waits on and kills is the stub's own.
"""
from __future__ import annotations

import os
import shlex
import shutil
import sys
from typing import Optional

STUB_NAME = "triton_python_backend_stub"

LAUNCHER = """#!/bin/sh
# tritonstub launcher: Triton's python backend runs this instead of its C++ stub.
if [ "$#" -lt 8 ]; then
  echo "I$(date -u +'%m%d %H:%M:%S.%6N') $$ pb_stub.cc:2059]  Expected 9 arguments, found $(($# + 1)) arguments." >&2
  exit 1
fi
exec {python} -m tritonstub.stub "$@"
"""


def launcher_text(python: Optional[str] = None) -> str:
    return LAUNCHER.format(python=shlex.quote(os.path.abspath(python or sys.executable)))


def write_launcher(path: str, python: Optional[str] = None) -> str:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(launcher_text(python))
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)
    return path


def install_stub(model_dir: Optional[str] = None, backend_dir: Optional[str] = None,
                 python: Optional[str] = None) -> str:
    from ..errors import TritonStubError
    if (model_dir is None) == (backend_dir is None):
        raise TritonStubError("give a model directory or --backend-dir (one of them)")
    if model_dir is not None:
        if not os.path.isdir(model_dir):
            raise TritonStubError(f"model directory '{model_dir}' does not exist")
        return write_launcher(os.path.join(model_dir, STUB_NAME), python)
    target = os.path.join(backend_dir, STUB_NAME)
    if not os.path.isdir(backend_dir):
        raise TritonStubError(f"backend directory '{backend_dir}' does not exist")
    backup = target + ".orig"
    if os.path.exists(target) and not os.path.exists(backup):
        with open(target, "rb") as f:
            is_ours = b"tritonstub launcher" in f.read(200)
        if not is_ours:
            shutil.copy2(target, backup)
    return write_launcher(target, python)
