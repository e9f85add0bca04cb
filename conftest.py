"""Set-up of both test trees (``tests/`` and the conformance suite's ``conformance/``) that also
works from a plain checkout (tritonstub not pip-installed).

The fixtures live in :mod:`tritonstub.testing.pytest_plugin`. When tritonstub is installed, pytest
already loaded that module through the ``pytest11`` entry point ``tritonstub``. Listing it again
in ``pytest_plugins`` would register it twice, so it is only listed when it is not loaded yet.
"""
import sys
from pathlib import Path

_PLUGIN = "tritonstub.testing.pytest_plugin"
_ROOT = Path(__file__).resolve().parent

try:
    import tritonstub  # noqa: F401
except ImportError:
    sys.path.insert(0, str(_ROOT))

# The conformance cases share test helpers (shm_helpers, crashing_stub) with tests/; pytest puts
# tests/ on sys.path only when it collects a file there, so a run of conformance/ alone needs this.
if str(_ROOT / "tests") not in sys.path:
    sys.path.append(str(_ROOT / "tests"))

if _PLUGIN not in sys.modules:
    pytest_plugins = [_PLUGIN]
