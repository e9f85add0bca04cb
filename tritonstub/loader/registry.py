"""Which loaders exist: the built-in ``default`` and ``module``, and the entry-point plug-ins.

Kept apart from ``api`` (the interface every loader imports) so that the built-in loaders can
import the interface without the interface importing them back.
"""
from __future__ import annotations

import importlib.metadata
import sys
from typing import Dict, List

from ..errors import ConfigError, LoaderError
from .api import ENTRY_POINT_GROUP, Loader


def builtin_loaders() -> Dict[str, Loader]:
    from . import default, dotted        # imported on demand: a plug-in run never needs them
    return {"default": default.load, "module": dotted.load}


def _entry_points() -> List[importlib.metadata.EntryPoint]:
    eps = importlib.metadata.entry_points()
    if hasattr(eps, "select"):
        return list(eps.select(group=ENTRY_POINT_GROUP))
    return list(eps.get(ENTRY_POINT_GROUP, []))  # Python < 3.10


def available_loaders() -> List[str]:
    names = list(builtin_loaders())
    for ep in _entry_points():
        if ep.name not in names:
            names.append(ep.name)
    return names


def find_loader(name: str) -> Loader:
    """The loader called ``name``: a built-in, else the entry point of that name.

    ``default`` and ``module`` always mean the built-ins. A missing name is a ConfigError that
    lists the loaders there are; an entry point that fails to import is a LoaderError.
    """
    builtins = builtin_loaders()
    if name in builtins:
        return builtins[name]
    matches = [ep for ep in _entry_points() if ep.name == name]
    if not matches:
        raise ConfigError(f"tritonstub: no loader named '{name}' (TRITONSTUB_LOADER); the loaders "
                          f"available to {sys.executable} are: {', '.join(available_loaders())}. "
                          f"A package provides one with an entry point in the "
                          f"'{ENTRY_POINT_GROUP}' group.")
    ep = matches[0]
    try:
        loader = ep.load()
    except BaseException as e:  # noqa: BLE001 - any import failure of a plug-in is a load error
        from ..stub.exc_text import error_text
        dist = getattr(getattr(ep, "dist", None), "name", None)
        raise LoaderError(f"tritonstub: the loader plug-in '{name}' (entry point "
                          f"'{ep.name} = {ep.value}'{f' of {dist}' if dist else ''}) failed to "
                          f"import: {error_text(e)}") from None
    if not callable(loader):
        raise LoaderError(f"tritonstub: the loader plug-in '{name}' ({ep.value}) is not callable; "
                          f"an entry point in '{ENTRY_POINT_GROUP}' must name a function "
                          f"load(ctx) -> module")
    return loader
