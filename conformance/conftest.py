"""pytest set-up for the conformance suite's Python cases (``conformance/pycases``).

Same as ``tests/conftest.py``: the fixtures (``triton_reference`` …) come from
:mod:`tritonstub.testing.pytest_plugin`, loaded here when tritonstub is not pip-installed and
pytest did not load it through its entry point already.
"""
import sys
from pathlib import Path

_PLUGIN = "tritonstub.testing.pytest_plugin"
_ROOT = Path(__file__).resolve().parents[1]

try:
    import tritonstub  # noqa: F401
except ImportError:
    sys.path.insert(0, str(_ROOT))

if _PLUGIN not in sys.modules:
    pytest_plugins = [_PLUGIN]
