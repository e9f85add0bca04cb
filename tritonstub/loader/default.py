"""The default loader: find model.py by explicit rules, import it exactly as the C++ stub does.

How the C++ stub does it (``ModelContext::Init`` / ``StubSetup``, r24.10), chosen by argv[9]
(runtime_modeldir):

- ``DEFAULT``: the model file is argv[1], ``<model dir>/<version>/model.py``. The version
  directory, then the model directory, then argv[6] (the python backend folder holding
  triton_python_backend_utils.py) are appended to ``sys.path`` and ``<version>.<stem>`` is
  imported: ``1`` is a namespace package found through the model directory, so
  ``__name__ == "1.model"`` and relative imports (``from .helper import f``) work.
- a directory: a "python-based backend" (a backend folder holding ``model.py``). That directory
  and argv[6] are appended and ``model`` is imported.

The parent picks argv[9] by comparing paths as strings, so ``--backend-directory=<dir>/`` (a
trailing slash) makes it pass the python backend's own folder for every model, and the C++ stub
fails with ``ModuleNotFoundError: No module named 'model'``. Our rules decide by what exists:

``model_file``
    argv[1], if that file exists, imported as in the C++ DEFAULT mode (whatever argv[9] says).
``runtime_dir``
    ``<argv[9]>/model.py``, if argv[9] is a directory and that file exists, imported as in the
    C++ python-based-backend mode.

They are tried in ``TRITONSTUB_LOADER_RULES`` order (default ``model_file,runtime_dir``). So a
normal model under a trailing-slash backend directory loads from argv[1], and a python-based
backend, whose argv[1] names a file that is not there, loads from argv[9] as with the C++ stub.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import List, Optional

from ..errors import LoaderError
from .api import WARNING, LoaderContext


@dataclass
class ModelContext:
    model_path: str            # argv[1]
    python_lib: str            # argv[6]
    runtime_modeldir: str      # argv[9], "DEFAULT" or a directory
    version: str               # the path component before the file name
    #: The file the loader imported (set by the loader; None until then).
    resolved_path: Optional[str] = None

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
        """The model file: what the loader imported, else what C++ calls PythonModelPath()."""
        if self.resolved_path is not None:
            return self.resolved_path
        if self.is_default:
            return self.model_path
        return os.path.join(self.runtime_modeldir, "model.py")

    def get_model_dir(self) -> str:
        """pb_utils.get_model_dir(): argv[1] without its file name (in both modes)."""
        return self.version_dir

    def module_stem(self) -> str:
        """The file name without '.py', with the C++ check (its last char must be one of '.py')."""
        return _stem(os.path.basename(self.python_model_path()))

    def cpp_rule(self) -> str:
        """The rule that does what the C++ stub does with these arguments."""
        return "model_file" if self.is_default else "runtime_dir"

    def runtime_dir_is_python_backend(self) -> bool:
        """argv[9] is the python backend's own folder (argv[6]): the trailing-slash case."""
        if self.is_default:
            return False
        try:
            return os.path.samefile(self.runtime_modeldir, self.python_lib)
        except OSError:
            return os.path.normpath(self.runtime_modeldir) == os.path.normpath(self.python_lib)


def _stem(name: str) -> str:
    if not name or name[-1] not in ".py":
        raise LoaderError(f"Model name must end with '.py'. Model name is \"{name}\".")
    return name[:-3]


def split_model_path(model_path: str) -> List[str]:
    return [t for t in model_path.split("/") if t]


def _file_problem(path: str) -> Optional[str]:
    if not os.path.lexists(path):
        return "no such file"
    if not os.path.exists(path):
        return "a dangling symbolic link"
    if os.path.isdir(path):
        return "a directory, not a file"
    if not os.access(path, os.R_OK):
        return "not readable by this process"
    return None


_BACKEND_FOLDER_NOTE = (
    "argv[9] '{d}' is the python backend's own folder (argv[6]), not a python-based backend: "
    "Triton passes it when --backend-directory is spelled differently from the path it loaded "
    "the backend from (e.g. with a trailing slash); the C++ stub would import 'model' from there "
    "and fail with \"ModuleNotFoundError: No module named 'model'\"")


def rule_model_file(ctx: LoaderContext):
    m = ctx.model
    path = m.model_path
    problem = _file_problem(path)
    if problem is not None:
        ctx.report.reject("model_file", path, f"{problem} (argv[1], the model file Triton names)")
        return None
    try:
        name = f"{m.version}.{_stem(os.path.basename(path))}"
    except LoaderError:
        ctx.report.match("model_file", path, "the C++ stub's name check (it must end in '.py')")
        raise
    entries = [m.version_dir, m.model_dir, m.python_lib]
    ctx.report.match("model_file", path, f"importing it as '{name}' with sys.path += "
                                         f"{', '.join(entries)} (as the C++ stub's DEFAULT mode)")
    if m.runtime_dir_is_python_backend():
        ctx.report.note(_BACKEND_FOLDER_NOTE.format(d=m.runtime_modeldir), WARNING)
    sys.path.extend(entries)
    m.resolved_path = path
    module = ctx.import_module(name)
    _check_origin(ctx, module, path, name)
    return module


def rule_runtime_dir(ctx: LoaderContext):
    m = ctx.model
    if m.is_default:
        ctx.report.skip("runtime_dir", "argv[9] is DEFAULT (Triton names a runtime model "
                                       "directory only for python-based backends)")
        return None
    path = os.path.join(m.runtime_modeldir, "model.py")
    problem = _file_problem(path)
    if problem is not None:
        why = f"{problem} (argv[9]/model.py, the python-based backend's model)"
        if m.runtime_dir_is_python_backend():
            why += "; " + _BACKEND_FOLDER_NOTE.format(d=m.runtime_modeldir)
        ctx.report.reject("runtime_dir", path, why)
        return None
    entries = [m.runtime_modeldir, m.python_lib]
    ctx.report.match("runtime_dir", path, f"importing it as 'model' with sys.path += "
                                          f"{', '.join(entries)} (as the C++ stub's python-based "
                                          f"backend mode)")
    sys.path.extend(entries)
    m.resolved_path = path
    module = ctx.import_module("model")
    _check_origin(ctx, module, path, "model")
    return module


RULES = {"model_file": rule_model_file, "runtime_dir": rule_runtime_dir}


def _check_origin(ctx: LoaderContext, module, path: str, name: str) -> None:
    """Python imports by name: an earlier sys.path entry can hold another '<version>/model.py'."""
    got = getattr(module, "__file__", None)
    if not got:
        return
    try:
        same = os.path.samefile(got, path)
    except OSError:
        same = os.path.abspath(got) == os.path.abspath(path)
    if not same:
        ctx.report.note(f"Python imported '{name}' from {got}, not from {path}: an earlier sys.path "
                        f"entry holds a module of that name (the C++ stub imports the same way)",
                        WARNING)
        ctx.model.resolved_path = got


def load(ctx: LoaderContext):
    """The built-in ``default`` loader: the rules in ``TRITONSTUB_LOADER_RULES`` order."""
    for rule in ctx.settings.rules:
        module = RULES[rule](ctx)
        if module is not None:
            return module
    m = ctx.model
    tried = [a.path for a in ctx.report.attempts if a.path]
    headline = f"Python model file not found in '{tried[0] if tried else m.model_path}'"
    hint = (f"What to do: put the model file at {m.model_path}"
            + ("" if m.is_default else f" or {os.path.join(m.runtime_modeldir, 'model.py')}")
            + ", or choose other rules (TRITONSTUB_LOADER_RULES) or another loader "
              "(TRITONSTUB_LOADER).")
    raise ctx.not_found(headline, hint)
