"""Which protocol era the parent speaks: the stub's I/O around :mod:`tritonstub.protocol.eras`.

The parent's ``libtriton_python.so`` is found through ``/proc/<parent pid>/maps`` (argv[5]), which
lists every file the server mapped; when that cannot be read (another user's process, no /proc),
through argv[6], the directory the python backend passes as its own location. An explicit
``TRITONSTUB_PROTOCOL`` comes from the model config's parameters (the first message carries the
config) or, failing that, from the environment the stub inherits from tritonserver.
"""
from __future__ import annotations

import os
from typing import List, Mapping, Optional, Tuple

from ..errors import ConfigError
from ..protocol import eras

LIBRARY = "libtriton_python.so"


def parent_library(parent_pid: int, python_lib_dir: str) -> Tuple[Optional[str], List[str]]:
    """(path of the parent's libtriton_python.so or None, the places looked at)."""
    searched = []
    maps = f"/proc/{parent_pid}/maps"
    searched.append(maps)
    found: List[str] = []
    try:
        with open(maps, "r", errors="replace") as f:
            for line in f:
                fields = line.rstrip("\n").split(None, 5)
                path = fields[5] if len(fields) == 6 else ""
                if os.path.basename(path) == LIBRARY and path not in found:
                    found.append(path)
    except OSError:
        pass
    beside = os.path.join(python_lib_dir, LIBRARY)
    if found:
        # Several python backends in one server: the one that launched us passed its directory.
        for path in found:
            if os.path.dirname(path) == os.path.normpath(python_lib_dir):
                return path, searched
        return found[0], searched
    searched.append(beside)
    if os.path.isfile(beside):
        return beside, searched
    return None, searched


def override(config_json: Optional[str], environ: Mapping[str, str]) -> Optional[Tuple[str, str]]:
    """(TRITONSTUB_PROTOCOL's value, where it was set), a model's parameter before the environment."""
    from ..loader.settings import parameters_from_config
    try:
        value = parameters_from_config(config_json).get(eras.OVERRIDE_KEY)
    except ConfigError:
        value = None        # the loader reports a malformed parameter when it runs
    if value is not None:
        return value, "config.pbtxt parameter"
    if eras.OVERRIDE_KEY in environ:
        return environ[eras.OVERRIDE_KEY], "environment"
    return None


def decide(config_json: Optional[str], parent_pid: int, python_lib_dir: str,
           environ: Optional[Mapping[str, str]] = None) -> eras.Decision:
    """Decide the parent's era; a bad override value is a decision with no era and says so."""
    environ = os.environ if environ is None else environ
    forced = override(config_json, environ)
    library = None
    path, searched = parent_library(parent_pid, python_lib_dir)
    if path is not None:
        try:
            with open(path, "rb") as f:
                library = (path, f.read())
        except OSError as e:
            searched.append(f"{path} (unreadable: {e.strerror})")
    try:
        return eras.decide(forced, library, environ, searched)
    except ValueError as e:
        return eras.Decision(None, f"{eras.OVERRIDE_KEY}={forced[0]!r} ({forced[1]}), which is "
                                   f"not valid: {e}")
