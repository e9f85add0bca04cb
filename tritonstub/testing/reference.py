"""Find and provision the reference Triton: the real tritonserver 2.51.0 from ``nvidia-pytriton``.

nvidia-pytriton 0.7.0 ships a complete Triton 2.51.0 (python_backend r24.10) inside its wheel::

    <site-packages>/pytriton/tritonserver/bin/tritonserver
    <site-packages>/pytriton/tritonserver/backends/python/libtriton_python.so
    <site-packages>/pytriton/tritonserver/backends/python/triton_python_backend_utils.py
    <site-packages>/pytriton/tritonserver/python_backend_stubs/<py>/triton_python_backend_stub
    <site-packages>/nvidia_pytriton.libs/                      (needs LD_LIBRARY_PATH)

Two things are missing before a python model can run on it with the C++ stub:

1. The python backend looks for ``triton_python_backend_stub`` next to ``libtriton_python.so``
   (unless a model directory has its own). The wheel keeps one stub per Python version
   elsewhere, so :func:`provision` copies the 3.11 one into place. Only that stub resolves on a
   Debian 12 machine: it links the system ``libpython3.11.so.1.0``.
2. The C++ stub embeds that system Python and ignores PYTHONPATH, so ``numpy`` must be importable
   by ``/usr/bin/python3.11``. :func:`provision` installs ``python3-numpy`` with apt when it can
   (root), and otherwise says what to run.

``python -m tritonstub.testing.reference --provision`` is what ``scripts/bootstrap.sh`` runs.
"""
from __future__ import annotations

import argparse
import dataclasses
import filecmp
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, List, Optional

from tritonstub.errors import TritonStubError

log = logging.getLogger(__name__)

#: The pytriton release whose Triton (2.51.0, python_backend r24.10) the suite is calibrated on.
EXPECTED_PYTRITON_VERSION = "0.7.0"
#: The server version that pytriton release carries.
EXPECTED_SERVER_VERSION = "2.51.0"
#: The Python version of the C++ stub we use: the one that links Debian 12's libpython3.11.
CPP_STUB_PYTHON = "3.11"
#: The interpreter whose site-packages the embedded Python of that stub sees.
SYSTEM_PYTHON_CANDIDATES = (f"/usr/bin/python{CPP_STUB_PYTHON}", "/usr/bin/python3")
#: Environment variable naming the one site-packages (or ``pip install --target``) directory to use.
ROOT_ENV_VAR = "TRITONSTUB_REFERENCE_ROOT"

STUB_NAME = "triton_python_backend_stub"
_PYTRITON_DIST = "nvidia-pytriton"
_SUBPROCESS_TIMEOUT_S = 60
_APT_TIMEOUT_S = 900


class ReferenceUnavailable(TritonStubError):
    """The reference Triton is not installed or cannot be made usable on this machine."""


@dataclass(frozen=True)
class Reference:
    """Paths of one installed reference Triton (all absolute)."""

    site_packages: Path
    tritonserver: Path
    backends_dir: Path
    python_backend_dir: Path
    libtriton_python: Path
    ld_library_path: str
    cpp_stub: Path
    tpbu: Path
    pytriton_version: Optional[str] = None

    @property
    def installed_stub(self) -> Path:
        """Where the python backend looks for its default stub (next to libtriton_python.so)."""
        return self.python_backend_dir / STUB_NAME

    def env(self, base: Optional[dict] = None) -> dict:
        """``base`` (default: ``os.environ``) with the reference's libraries first on LD_LIBRARY_PATH."""
        env = dict(os.environ if base is None else base)
        old = env.get("LD_LIBRARY_PATH", "")
        env["LD_LIBRARY_PATH"] = self.ld_library_path + (":" + old if old else "")
        return env

    def as_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}


def _repo_root() -> Optional[Path]:
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else None


def _candidate_roots() -> Iterator[Path]:
    """Directories that may hold ``pytriton/`` (site-packages or ``pip --target`` dirs), best first."""
    override = os.environ.get(ROOT_ENV_VAR)
    if override:  # explicit: look nowhere else
        yield Path(override)
        return
    spec = importlib.util.find_spec("pytriton")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            yield Path(loc).parent
    for entry in sys.path:
        if entry:
            yield Path(entry)
    root = _repo_root()
    if root is not None:
        yield root / ".reference"
        yield from sorted((root / ".venv" / "lib").glob("python3*/site-packages"))


def _pytriton_version(site_packages: Path) -> Optional[str]:
    for dist in importlib.metadata.distributions(path=[str(site_packages)]):
        if (dist.metadata.get("Name") or "").lower() == _PYTRITON_DIST:
            return dist.version
    return None


def reference_at(site_packages: Path) -> Optional[Reference]:
    """The reference installed under ``site_packages``, or None when its tritonserver is absent."""
    sp = Path(site_packages).resolve()
    triton = sp / "pytriton" / "tritonserver"
    server = triton / "bin" / "tritonserver"
    if not server.is_file():
        return None
    backends = triton / "backends"
    python_dir = backends / "python"
    return Reference(
        site_packages=sp,
        tritonserver=server,
        backends_dir=backends,
        python_backend_dir=python_dir,
        libtriton_python=python_dir / "libtriton_python.so",
        ld_library_path=str(sp / "nvidia_pytriton.libs"),
        cpp_stub=triton / "python_backend_stubs" / CPP_STUB_PYTHON / STUB_NAME,
        tpbu=python_dir / "triton_python_backend_utils.py",
        pytriton_version=_pytriton_version(sp),
    )


def find_reference() -> Optional[Reference]:
    """The first reference Triton found (see :func:`_candidate_roots` for the order), or None."""
    seen = set()
    for root in _candidate_roots():
        try:
            key = root.resolve()
        except OSError:
            continue
        if key in seen:
            continue
        seen.add(key)
        ref = reference_at(key)
        if ref is not None:
            return ref
    return None


def _searched() -> List[str]:
    return list(dict.fromkeys(str(p) for p in _candidate_roots()))


def system_python() -> Optional[str]:
    """The interpreter matching the libpython the C++ stub embeds, if present."""
    for cand in SYSTEM_PYTHON_CANDIDATES:
        if os.access(cand, os.X_OK):
            return cand
    return None


def _system_numpy_ok(python: str) -> bool:
    try:
        proc = subprocess.run([python, "-c", "import numpy"], capture_output=True,
                              timeout=_SUBPROCESS_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def _apt(*args: str) -> bool:
    cmd = ["apt-get", *args]
    log.info("running %s", " ".join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_APT_TIMEOUT_S,
                              env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("%s failed: %s", " ".join(cmd), exc)
        return False
    if proc.returncode != 0:
        log.warning("%s exited %d:\n%s", " ".join(cmd), proc.returncode, proc.stderr[-2000:])
    return proc.returncode == 0


def _apt_install_numpy() -> None:
    """Install Debian's numpy; refresh the package lists once if the first try fails."""
    install = ("install", "-y", "--no-install-recommends", "python3-numpy")
    if not _apt(*install):
        _apt("update")
        _apt(*install)


def _check_stub_runs(stub: Path, ref: Reference) -> None:
    """Run ``stub`` without arguments, as the python backend's probe does: it must exit 1."""
    try:
        proc = subprocess.run([str(stub)], capture_output=True, text=True, env=ref.env(),
                              timeout=_SUBPROCESS_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ReferenceUnavailable(f"cannot run the C++ stub {stub}: {exc}") from exc
    if proc.returncode != 1:
        raise ReferenceUnavailable(
            f"the C++ stub {stub} exited {proc.returncode} when run without arguments (expected 1).\n"
            f"stderr: {proc.stderr.strip()[-1500:]}\n"
            f"It links the system libpython{CPP_STUB_PYTHON}.so.1.0; on Debian/Ubuntu install it with "
            f"`apt-get install -y libpython{CPP_STUB_PYTHON}`.")


def _install_default_stub(ref: Reference) -> bool:
    """Copy the C++ stub next to libtriton_python.so unless an identical copy is there; True if copied."""
    target = ref.installed_stub
    if target.is_file() and filecmp.cmp(ref.cpp_stub, target, shallow=False) and os.access(target, os.X_OK):
        return False
    try:
        tmp = target.with_name(target.name + ".tmp")
        shutil.copyfile(ref.cpp_stub, tmp)
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    except OSError as exc:
        raise ReferenceUnavailable(
            f"cannot copy the C++ stub {ref.cpp_stub} to {target}: {exc}. "
            f"Make {ref.python_backend_dir} writable, or copy the file there by hand.") from exc
    return True


def provision(*, allow_apt: bool = True) -> Reference:
    """Make the reference Triton ready to run python models with the C++ stub; return its paths.

    Idempotent and fast when everything is in place. Raises :class:`ReferenceUnavailable` with
    what to do when something cannot be fixed from here.
    """
    ref = find_reference()
    if ref is None:
        raise ReferenceUnavailable(
            f"the reference Triton (pip package {_PYTRITON_DIST}=={EXPECTED_PYTRITON_VERSION}) was not "
            f"found in any of: {', '.join(_searched())}. Install it with "
            f"`pip install {_PYTRITON_DIST}=={EXPECTED_PYTRITON_VERSION}` (or run `bash scripts/bootstrap.sh test`), "
            f"or point {ROOT_ENV_VAR} at the directory that holds pytriton/.")
    if ref.pytriton_version not in (None, EXPECTED_PYTRITON_VERSION):
        log.warning("found %s %s at %s; the suite is calibrated on %s (Triton %s)", _PYTRITON_DIST,
                    ref.pytriton_version, ref.site_packages, EXPECTED_PYTRITON_VERSION, EXPECTED_SERVER_VERSION)
    for path in (ref.libtriton_python, ref.tpbu, ref.cpp_stub):
        if not path.is_file():
            raise ReferenceUnavailable(f"the reference Triton at {ref.site_packages} is incomplete: {path} is "
                                       f"missing. Reinstall it: `pip install --force-reinstall "
                                       f"{_PYTRITON_DIST}=={EXPECTED_PYTRITON_VERSION}`.")
    if not os.access(ref.cpp_stub, os.X_OK):
        raise ReferenceUnavailable(f"{ref.cpp_stub} is not executable; reinstall {_PYTRITON_DIST}.")
    _check_stub_runs(ref.cpp_stub, ref)
    if _install_default_stub(ref):
        log.info("installed the C++ stub as %s", ref.installed_stub)

    python = system_python()
    if python is None:
        raise ReferenceUnavailable(
            f"no system Python {CPP_STUB_PYTHON} ({' or '.join(SYSTEM_PYTHON_CANDIDATES)}): the C++ stub "
            f"embeds it. Install it with `apt-get install -y python{CPP_STUB_PYTHON} python3-numpy`.")
    if not _system_numpy_ok(python):
        if allow_apt and os.geteuid() == 0 and shutil.which("apt-get"):
            _apt_install_numpy()
        if not _system_numpy_ok(python):
            raise ReferenceUnavailable(
                f"numpy is not importable by {python}, the Python the C++ stub embeds (it ignores "
                f"PYTHONPATH and virtual environments). Install it with `apt-get install -y python3-numpy` "
                f"(as root), or `{python} -m pip install numpy`.")
    return ref


def _main(argv: Optional[Iterable[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tritonstub.testing.reference",
        description="Find (and with --provision, prepare) the reference Triton 2.51.0 from nvidia-pytriton.")
    parser.add_argument("--provision", action="store_true",
                        help="copy the C++ stub into the python backend and make sure the system Python has numpy")
    parser.add_argument("--no-apt", action="store_true", help="never run apt-get")
    parser.add_argument("--json", action="store_true", help="print the paths as JSON")
    args = parser.parse_args(None if argv is None else list(argv))
    logging.basicConfig(level=logging.INFO, format="reference: %(message)s")

    start = time.monotonic()
    try:
        ref = provision(allow_apt=not args.no_apt) if args.provision else find_reference()
    except ReferenceUnavailable as exc:
        print(f"reference: ERROR: {exc}", file=sys.stderr)
        return 1
    if ref is None:
        print(f"reference: not found; searched {', '.join(_searched())}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(ref.as_dict(), indent=2))
    else:
        what = "provisioned" if args.provision else "found"
        print(f"reference: {what} {_PYTRITON_DIST} {ref.pytriton_version or '?'} at {ref.site_packages} "
              f"in {time.monotonic() - start:.1f}s")
        print(f"reference: tritonserver {ref.tritonserver}")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
