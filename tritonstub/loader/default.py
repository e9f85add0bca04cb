"""How the C++ stub finds and imports model.py (ModelContext::Init / StubSetup, r24.10).

Two modes, chosen by argv[9] (runtime_modeldir):

- ``DEFAULT``: the model file is argv[1], ``<model dir>/<version>/model.py``. The version
  directory, then the model directory, then argv[6] (the python backend folder holding
  triton_python_backend_utils.py) are appended to ``sys.path`` and ``<version>.<stem>`` is
  imported: ``1`` is a namespace package found through the model directory, so
  ``__name__ == "1.model"`` and relative imports (``from .helper import f``) work.
- a directory: a "python-based backend" (a backend folder holding ``model.py``). That directory
  and argv[6] are appended and ``model`` is imported.

The loader issue extends this with explicit, logged rules; this module is the faithful base.
"""
from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import List


@dataclass
class ModelContext:
    model_path: str            # argv[1]
    python_lib: str            # argv[6]
    runtime_modeldir: str      # argv[9], "DEFAULT" or a directory
    version: str               # the path component before the file name

    @property
    def is_default(self) -> bool:
        return self.runtime_modeldir in ("", "DEFAULT")

    @property
    def version_dir(self) -> str:
        return self.model_path[:self.model_path.rfind("/")] if "/" in self.model_path else "."

    @property
    def model_dir(self) -> str:
        d = self.version_dir
        return d[:d.rfind("/")] if "/" in d else "."

    def python_model_path(self) -> str:
        """What C++ calls PythonModelPath(): argv[1], or <runtime_modeldir>/model.py."""
        if self.is_default:
            return self.model_path
        return os.path.join(self.runtime_modeldir, "model.py")

    def get_model_dir(self) -> str:
        """pb_utils.get_model_dir(): argv[1] without its file name (in both modes)."""
        return self.version_dir

    def module_stem(self) -> str:
        """The file name without '.py', with the C++ check (its last char must be one of '.py')."""
        from ..errors import LoaderError
        name = os.path.basename(self.python_model_path())
        if not name or name[-1] not in ".py":
            raise LoaderError(f"Model name must end with '.py'. Model name is \"{name}\".")
        return name[:-3]


def split_model_path(model_path: str) -> List[str]:
    return [t for t in model_path.split("/") if t]


def import_default(ctx: ModelContext) -> ModuleType:
    """The C++ import, step for step (raises ImportError/SyntaxError etc. as Python does)."""
    stem = ctx.module_stem()
    if ctx.is_default:
        sys.path.append(ctx.version_dir)
        sys.path.append(ctx.model_dir)
        sys.path.append(ctx.python_lib)
        return importlib.import_module(f"{ctx.version}.{stem}")
    sys.path.append(ctx.runtime_modeldir)
    sys.path.append(ctx.python_lib)
    return importlib.import_module(stem)
