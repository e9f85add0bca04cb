"""tritonstub.loader: explicit, logged resolution of the model's code; pluggable; configurable.

:func:`load_model` is what the stub calls before a model can auto-complete or initialize:

1. read the ``TRITONSTUB_*`` settings from the model config's ``parameters`` and the environment
   (settings.py); a bad key or value fails the load with a message that names the valid ones;
2. start debugpy if asked (debug.py);
3. append ``TRITONSTUB_SYS_PATH`` to ``sys.path``; let the stub prepare pb_utils (``prepare``);
4. run the loader named by ``TRITONSTUB_LOADER``: the built-in ``default`` (rules ``model_file``
   and ``runtime_dir``, default.py), the built-in ``module`` (dotted.py), or a plug-in from the
   ``tritonstub.loaders`` entry-point group (the interface is in api.py);
5. check that the result has ``TritonPythonModel``.

Every step is logged through ``emit`` (the stub sends the lines to the Triton log, or to stderr
where the parent does not read logs) and recorded in a :class:`~.api.LoadReport`.

Error texts. Where the C++ stub loads the same file the same way (the default loader, no setting
that changes resolution, and the rule the C++ stub would use), an exception from the model keeps
the C++ stub's exact text: the import error with its ``At:`` frames, the syntax error, the missing
``TritonPythonModel``. Everywhere else (no file found, a fallback rule, another loader, a
``TRITONSTUB_*`` resolution setting, an import that could not find the model module itself, or
``TRITONSTUB_ERROR_REPORT=always``) the error is that text followed by a blank line and the report
of every rule and path that was tried.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable, Optional, Sequence, Tuple

from ..errors import ConfigError, LoaderError
from .api import (ENTRY_POINT_GROUP, ERROR, INFO, VERBOSE, WARNING, Attempt, LoaderContext,
                  LoadReport)
from .registry import available_loaders, find_loader
from .settings import SETTINGS, Settings, from_config, level_enabled

__all__ = [
    "ENTRY_POINT_GROUP", "SETTINGS", "Attempt", "LoadReport", "LoaderContext", "Settings",
    "available_loaders", "find_loader", "load_model", "INFO", "WARNING", "ERROR", "VERBOSE",
]

STUB_AUTO_COMPLETE = "auto_complete"
STUB_INSTANCE = "instance"


class _Log:
    """Level filter in front of the stub's sink; keeps every line for the failure path."""

    def __init__(self, emit: Callable[[int, str], None], prefix: str, demote: bool):
        self.emit = emit
        self.prefix = prefix
        self.demote = demote
        self.threshold = INFO

    def __call__(self, level: int, message: str) -> None:
        shown_as = VERBOSE if self.demote else level
        if level_enabled(shown_as, self.threshold):
            self.emit(level, f"{self.prefix}{message}")

    def undemoted(self, level: int, message: str) -> None:
        """For what the user asked for explicitly (debugpy): shown in the auto-complete stub too."""
        if level_enabled(level, self.threshold):
            self.emit(level, f"{self.prefix}{message}")


def load_model(model, *, stub_name: str, stub_kind: str, config_json: Optional[str],
               emit: Callable[[int, str], None], prepare: Callable[[], None],
               environ=None, notes: Sequence[Tuple[int, str]] = ()) -> Any:
    """Resolve and import the model; return the object that holds ``TritonPythonModel``.

    ``model`` is the stub's :class:`~.default.ModelContext` (argv paths). ``stub_kind`` is
    ``"auto_complete"`` or ``"instance"``. ``emit(level, message)`` writes one log line.
    ``prepare()`` imports pb_utils and injects its attributes; it runs after ``sys.path`` is set
    up and before any model code.
    ``notes`` are (level, text) lines of the stub's own (the protocol it decided on) logged with
    the settings.

    In the auto-complete stub every line is VERBOSE: its stderr stays what the C++ stub prints
    (the instance stubs log the same resolution at INFO a moment later, and a failure carries
    the report in its error text). debugpy's lines are the exception: they answer an explicit
    request (TRITONSTUB_DEBUGPY_STUB=auto_complete) and say where to attach.
    """
    log = _Log(emit, f"model '{stub_name}': ", demote=(stub_kind == STUB_AUTO_COMPLETE))
    settings = from_config(config_json, environ)     # ConfigError: before anything else
    log.threshold = settings.log_threshold
    for warning in settings.warnings:
        log(WARNING, warning)
    for line in settings.describe():
        log(INFO, f"setting {line}")
    for level, text in notes:
        log(level, text)
    from . import debug
    debug.maybe_start(settings, stub_kind, log.undemoted)

    report = LoadReport(settings.loader, log,
                        list(settings.rules) if settings.loader == "default" else None)
    report.settings = settings.describe()
    for entry in settings.sys_path_entries(model.model_dir):
        if not os.path.isdir(entry):
            report.note(f"TRITONSTUB_SYS_PATH entry {entry} is not a directory", WARNING)
        sys.path.append(entry)
    prepare()
    config = json.loads(config_json) if config_json else {}
    ctx = LoaderContext(model=model, stub_name=stub_name, stub_kind=stub_kind,
                        config=config if isinstance(config, dict) else {}, settings=settings,
                        report=report, log=log)
    try:
        loader = find_loader(settings.loader)
        result = loader(ctx)
        if result is None:
            raise ctx.not_found(f"tritonstub: the loader '{settings.loader}' found no model for "
                                f"'{stub_name}'")
        # Read like the C++ stub does (getattr on the module), so the text is the same.
        result.TritonPythonModel  # noqa: B018 - AttributeError: module ... has no attribute
    except ConfigError:
        raise
    except BaseException as e:  # noqa: BLE001 - re-raised, with the report where it belongs
        if getattr(e, "report_included", False):
            log(ERROR, f"no model found: {str(e).split(chr(10), 1)[0]} (the load error lists "
                       f"every rule and path tried)")
            raise
        from ..stub.exc_text import error_text
        text = str(e) if isinstance(e, LoaderError) else error_text(e)
        report.failed(text)
        if not _keeps_cpp_text(ctx, e, text):
            raise LoaderError(text.rstrip("\n") + "\n\n" + report.format()) from None
        raise
    matched = report.matched
    log(INFO, f"loaded by the '{settings.loader}' loader"
              + (f", rule {matched.rule}, from {matched.path}" if matched else ""))
    return result


def _keeps_cpp_text(ctx: LoaderContext, exc: BaseException, text: str) -> bool:
    """True where the error's text must stay the C++ stub's (see the module docstring)."""
    settings, model = ctx.settings, ctx.model
    if settings["TRITONSTUB_ERROR_REPORT"] == "always":
        return False
    if settings.loader != "default" or settings.customised():
        return False
    matched = ctx.report.matched
    if matched is None or matched.rule != model.cpp_rule():
        return False
    if isinstance(exc, ModuleNotFoundError) and ctx.importing and "\n\nAt:\n" not in text:
        # The import machinery could not find the model module itself (no model frame ran).
        name = exc.name or ""
        if name == ctx.importing or ctx.importing.startswith(name + "."):
            return False
    return True
