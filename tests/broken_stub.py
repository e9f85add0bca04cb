"""A deliberately broken stub for testing the conformance suite: ours, with one fault injected.

:func:`write_broken_stub` writes a launcher (the stub file a model directory gets) that runs our
stub from this checkout after patching it in one place:

- ``"corrupt-output"``: the last data byte of every output tensor named ``OUTPUT0`` is flipped
  (one field of one message: the response's tensor data);
- ``"drop-logs"``: every second ``pb_utils.Logger`` record is never sent to the server.

Everything else (the handshake, the heartbeat, clean-up at exit) is our stub's, so a suite that
points at it must report exactly the affected cases, and stop and clean up as usual.
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_LAUNCHER = """#!/bin/sh
# Test-only (tests/broken_stub.py): our stub with the fault "{mode}" injected.
if [ "$#" -lt 8 ]; then
  exit 1
fi
exec {python} {script} "$@"
"""

_SCRIPT = '''import sys
sys.path.insert(0, {root!r})
MODE = {mode!r}
if MODE == "corrupt-output":
    from tritonstub.protocol import responses

    real = responses.pack_tensor

    def pack_tensor(buf, handle, head, bname, dtype, dims, payload, nbytes):
        if bname == b"OUTPUT0" and nbytes:
            data = bytearray(bytes(payload[:nbytes]))
            data[-1] ^= 0xFF
            payload = data
        real(buf, handle, head, bname, dtype, dims, payload, nbytes)

    responses.pack_tensor = pack_tensor
elif MODE == "drop-logs":
    from tritonstub.stub import shm_runtime

    real = shm_runtime.ShmRuntime.log
    count = [0]

    def log(self, filename, line, level, message):
        count[0] += 1
        if count[0] % 2 == 0:
            return
        real(self, filename, line, level, message)

    shm_runtime.ShmRuntime.log = log
else:
    raise SystemExit("unknown fault " + MODE)
from tritonstub.stub.__main__ import main
sys.exit(main())
'''

MODES = ("corrupt-output", "drop-logs")


def write_broken_stub(directory: Path, mode: str) -> Path:
    if mode not in MODES:
        raise ValueError(mode)
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / f"broken_stub_{mode}.py"
    script.write_text(_SCRIPT.format(root=str(ROOT), mode=mode))
    launcher = directory / f"broken-{mode}"
    launcher.write_text(_LAUNCHER.format(mode=mode, python=shlex.quote(sys.executable),
                                         script=shlex.quote(str(script))))
    launcher.chmod(0o755)
    return launcher
