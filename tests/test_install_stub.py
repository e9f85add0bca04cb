"""`tritonstub install-stub`: per model and backend-wide, and the launcher's probe answer."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from tritonstub.errors import TritonStubError
from tritonstub.stub.install import STUB_NAME, install_stub


def _probe(path: str) -> subprocess.CompletedProcess:
    return subprocess.run([path], capture_output=True, text=True, timeout=30)


def test_per_model_launcher_answers_the_probe_without_python(tmp_path):
    """The python backend probes the stub without arguments; the launcher answers from the shell,
    without starting Python (fast: benchmarks/probe_time.py measures it). Proof without a clock:
    the same launcher pointing at a Python that does not exist answers the same."""
    model = tmp_path / "m"
    model.mkdir()
    path = install_stub(str(model))
    assert path == str(model / STUB_NAME)
    assert os.stat(path).st_mode & stat.S_IXUSR
    text = open(path).read()
    assert f"exec {sys.executable} -m tritonstub.stub" in text or "exec '" in text
    r = _probe(path)
    assert r.returncode == 1
    assert "pb_stub.cc:2059]  Expected 9 arguments, found 1 arguments." in r.stderr
    assert sys.executable in text
    no_python = tmp_path / "no_python_stub"
    no_python.write_text(text.replace(sys.executable, str(tmp_path / "no-such-python")))
    no_python.chmod(0o755)
    r2 = _probe(str(no_python))
    assert (r2.returncode, r2.stdout) == (1, "")
    assert r2.stderr.split("]", 1)[1] == r.stderr.split("]", 1)[1], (r.stderr, r2.stderr)


def test_console_script_exits_1_without_arguments():
    r = subprocess.run([sys.executable, "-m", "tritonstub.stub"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1
    assert "Expected 9 arguments, found 1 arguments." in r.stderr


def test_backend_dir_install_keeps_the_original(tmp_path):
    backend = tmp_path / "python"
    backend.mkdir()
    original = backend / STUB_NAME
    original.write_bytes(b"\x7fELF original C++ stub")
    install_stub(backend_dir=str(backend))
    assert (backend / (STUB_NAME + ".orig")).read_bytes() == b"\x7fELF original C++ stub"
    assert b"tritonstub launcher" in original.read_bytes()
    install_stub(backend_dir=str(backend))       # again: the backup is not overwritten
    assert (backend / (STUB_NAME + ".orig")).read_bytes() == b"\x7fELF original C++ stub"


def test_cli_reports_bad_directories(tmp_path):
    with pytest.raises(TritonStubError, match="does not exist"):
        install_stub(str(tmp_path / "nope"))
    r = subprocess.run([sys.executable, "-m", "tritonstub", "install-stub", str(tmp_path / "nope")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "does not exist" in r.stderr
