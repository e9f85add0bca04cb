"""A test-only stub that takes tritonserver down when its model instance is unloaded.

:func:`install_crashing_stub` wraps a stub already installed in a model directory: the python
backend then runs the wrapper, which runs the real stub to the end (load, requests, finalize,
exit) and, for a model *instance* (argv[8] is the instance name; the auto-complete stub gets
the bare model name), sends tritonserver, its parent, a fatal signal
before it exits itself. tritonserver is then inside the instance's finalize, waiting for the
stub process to end, so it dies at unload, every time: what a stub that corrupted the parent's
state at unload would cause. Tests use it to prove that the fixtures fail such a run even though
every stub and region is cleaned up.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Union

from tritonstub.testing.reference import STUB_NAME

REAL_STUB = "real_triton_python_backend_stub"

_WRAPPER = """#!/bin/sh
# Test-only (tests/crashing_stub.py): run the real stub, then kill tritonserver with {name}.
"$(dirname "$0")/{real}" "$@"
status=$?
# argv[8] is the instance name; the auto-complete stub gets the model's (directory's) name.
if [ "$8" != "$(basename "$(dirname "$0")")" ]; then
  kill -{number} "$PPID"
fi
exit $status
"""


def install_crashing_stub(model_dir: Union[str, Path], sig: int = signal.SIGSEGV) -> Path:
    """Wrap the stub installed in ``model_dir`` so that unloading an instance kills the server with ``sig``."""
    model_dir = Path(model_dir)
    stub = model_dir / STUB_NAME
    if not stub.is_file():
        raise FileNotFoundError(f"no stub installed in {model_dir} to wrap")
    stub.rename(model_dir / REAL_STUB)
    stub.write_text(_WRAPPER.format(name=signal.Signals(sig).name, real=REAL_STUB, number=int(sig)))
    os.chmod(stub, 0o755)
    return stub
