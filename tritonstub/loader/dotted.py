"""The built-in ``module`` loader: import TritonPythonModel from an installed module.

``TRITONSTUB_LOADER=module`` with ``TRITONSTUB_MODULE=mypkg.models.adder`` imports
``mypkg.models.adder`` from ``sys.path`` (the interpreter's own entries, then
``TRITONSTUB_SYS_PATH``) and uses its ``TritonPythonModel``; ``mypkg.models:Adder`` uses the class
``Adder`` instead. No model.py is needed in the model repository: the model's code ships as a
package, versioned and tested like any other.
"""
from __future__ import annotations

import importlib.util
import sys
import types

from ..errors import LoaderError
from .api import LoaderContext


def load(ctx: LoaderContext):
    target = ctx.settings["TRITONSTUB_MODULE"]
    name, _, attr = target.partition(":")
    m = ctx.model
    if m.python_lib not in sys.path:  # where triton_python_backend_utils lives, as in both C++ modes
        sys.path.append(m.python_lib)
    spec = importlib.util.find_spec(name) if "." not in name else _find_dotted(ctx, name)
    if spec is None:
        ctx.report.reject("module", name, "no such module on sys.path")
        raise ctx.not_found(
            f"tritonstub: module '{name}' (TRITONSTUB_MODULE) was not found",
            "sys.path of this stub:\n" + "\n".join(f"  {p!r}" for p in sys.path)
            + "\nWhat to do: install the package into the Python that runs the stub "
              f"({sys.executable}), or add its directory with TRITONSTUB_SYS_PATH.")
    origin = spec.origin or "(namespace package)"
    ctx.report.match("module", origin, f"importing module '{name}'"
                     + (f" and its class '{attr}'" if attr else ""))
    m.resolved_path = spec.origin
    module = ctx.import_module(name)
    if not attr:
        return module
    if not hasattr(module, attr):
        raise LoaderError(f"module '{name}' has no attribute '{attr}' (TRITONSTUB_MODULE={target})")
    facade = types.ModuleType(name)
    facade.__file__ = getattr(module, "__file__", None)
    facade.TritonPythonModel = getattr(module, attr)
    return facade


def _find_dotted(ctx: LoaderContext, name: str):
    """find_spec for 'a.b.c' needs 'a.b' imported: a missing parent means 'not found'."""
    parent = name.rpartition(".")[0]
    try:
        ctx.import_module(parent)
    except ModuleNotFoundError as e:
        if e.name and (parent == e.name or parent.startswith(e.name + ".")):
            return None
        raise
    return importlib.util.find_spec(name)
