"""Older Triton servers, for the protocol-era tests: one nvidia-pytriton wheel per Triton release.

Every nvidia-pytriton wheel carries a whole Triton (tritonserver, the python backend, C++ stubs
for several Pythons, the shared libraries it needs) that runs CPU-only on this machine. The
releases cannot share one environment (same package), so the wheel is only downloaded with pip
and the parts a server needs are unpacked into a folder of their own:

    <root>/<triton version>/pytriton/tritonserver/{bin,backends,python_backend_stubs}
    <root>/<triton version>/nvidia_pytriton.libs
    <root>/<triton version>/nvidia_pytriton-<release>.dist-info

That is the layout of a site-packages folder, so :func:`tritonstub.testing.reference.reference_at`
describes it as it describes the main reference. The Python 3.11 C++ stub (the one that links the
system libpython3.11) is copied next to libtriton_python.so, where these releases require a
default stub. ``<root>`` is ``$TRITONSTUB_OLDER_ROOT``, else ``older-tritons`` in the virtual
environment that runs this code (so a fresh venv starts empty and nothing lands in the checkout).

``python -m tritonstub.testing.older --provision`` fetches every release (about 40 MB each);
the set-up (scripts/bootstrap.sh) runs it, so tests never download.
"""
from __future__ import annotations

import argparse
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Dict, Iterable, List, Optional

from .reference import CPP_STUB_PYTHON, STUB_NAME, Reference, ReferenceUnavailable, reference_at

#: Triton server version -> the nvidia-pytriton release that ships it (one per protocol era that
#: has a wheel, and a second release of the longest era).
RELEASES: Dict[str, str] = {
    "2.36.0": "0.3.1",
    "2.39.0": "0.4.2",
    "2.41.0": "0.5.0",
    "2.44.0": "0.5.5",
    "2.45.0": "0.5.7",
    "2.47.0": "0.5.9",
    "2.49.0": "0.5.11",
}
ROOT_ENV_VAR = "TRITONSTUB_OLDER_ROOT"
_PIP_TIMEOUT_S = 300
_KEEP = ("pytriton/tritonserver/bin/", "pytriton/tritonserver/backends/python/",
         f"pytriton/tritonserver/python_backend_stubs/{CPP_STUB_PYTHON}/", "nvidia_pytriton.libs/")


def root() -> Path:
    return Path(os.environ.get(ROOT_ENV_VAR) or Path(sys.prefix) / "older-tritons")


def installed(version: str) -> Optional[Reference]:
    """The server of ``version`` if it is unpacked and complete, else None."""
    ref = reference_at(root() / version)
    if ref is None or not ref.installed_stub.is_file() or not ref.libtriton_python.is_file():
        return None
    return ref


def require(version: str) -> Reference:
    ref = installed(version)
    if ref is None:
        raise ReferenceUnavailable(
            f"Triton {version} (nvidia-pytriton=={RELEASES[version]}) is not unpacked under "
            f"{root()}: run `python -m tritonstub.testing.older --provision` (scripts/bootstrap.sh "
            f"setup does it)")
    return ref


def _unpack(wheel: Path, target: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            name = info.filename
            keep = name.startswith(_KEEP) or (".dist-info/" in name and name.endswith("/METADATA"))
            if not keep or name.endswith("/"):
                continue
            zf.extract(info, target)
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(target / name, mode | stat.S_IRUSR)


def provision(version: str) -> Reference:
    """Download and unpack the server of Triton ``version`` unless it is there already."""
    ref = installed(version)
    if ref is not None:
        return ref
    release = RELEASES[version]
    target = root() / version
    with tempfile.TemporaryDirectory(prefix="tritonstub-older-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
               "--no-deps", "--only-binary=:all:", "-d", tmp, f"nvidia-pytriton=={release}"]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise ReferenceUnavailable(f"pip download of nvidia-pytriton=={release} took over "
                                       f"{_PIP_TIMEOUT_S} s") from None
        wheels = list(Path(tmp).glob("nvidia_pytriton-*.whl"))
        if done.returncode != 0 or not wheels:
            raise ReferenceUnavailable(f"could not download nvidia-pytriton=={release} (Triton "
                                       f"{version}): {done.stderr.strip()[-800:]}")
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        _unpack(wheels[0], partial)
        ref = reference_at(partial)
        if ref is None or not ref.cpp_stub.is_file():
            raise ReferenceUnavailable(f"nvidia-pytriton=={release} has no tritonserver or no "
                                       f"Python {CPP_STUB_PYTHON} stub")
        shutil.copy2(ref.cpp_stub, ref.python_backend_dir / STUB_NAME)
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
    return require(version)


def provision_all(versions: Iterable[str] = RELEASES) -> List[Reference]:
    return [provision(v) for v in versions]


def _main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tritonstub.testing.older", description=__doc__.split("\n\n")[0])
    parser.add_argument("--provision", action="store_true", help="download and unpack every release")
    parser.add_argument("versions", nargs="*", help=f"Triton versions (default: all of {', '.join(RELEASES)})")
    args = parser.parse_args(argv)
    versions = args.versions or list(RELEASES)
    unknown = [v for v in versions if v not in RELEASES]
    if unknown:
        parser.error(f"unknown Triton versions {unknown}; known: {', '.join(RELEASES)}")
    status = 0
    for v in versions:
        try:
            ref = provision(v) if args.provision else require(v)
            print(f"older-triton: {v} at {ref.site_packages}")
        except ReferenceUnavailable as e:
            print(f"older-triton: ERROR: {e}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(_main())
