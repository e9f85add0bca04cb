"""The loader plug-in interface: what a loader gets (:class:`LoaderContext`) and gives back.

A loader is a callable ``load(ctx: LoaderContext) -> object``. It returns the model module, or
any object with a ``TritonPythonModel`` attribute (the class the stub instantiates). It is found
by name (``TRITONSTUB_LOADER``): ``default`` and ``module`` are built in; any other name is looked
up in the ``tritonstub.loaders`` entry-point group::

    [project.entry-points."tritonstub.loaders"]
    frompkg = "mypkg.triton_loader:load"

While it looks for the model a loader records every candidate in ``ctx.report``
(:meth:`LoadReport.reject`, :meth:`LoadReport.skip`, :meth:`LoadReport.match`); each call is
logged as it happens and the whole list ends up in the error if loading fails. When nothing is
found it raises ``ctx.not_found(...)``. To import model code it calls ``ctx.import_module(name)``,
which imports the way the C++ stub does (so tracebacks of the model's own errors read the same).
Exceptions raised by the model's code are left to propagate: the stub reports them in the C++
stub's format, with the report appended (see :func:`tritonstub.loader.load_model`).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from ..errors import LoaderError
from .settings import Settings

#: pb_utils.Logger's level numbers, which the parent's Log command takes as they are.
from ..stublog import ERROR, INFO, VERBOSE, WARNING  # noqa: F401 - part of the loader API

ENTRY_POINT_GROUP = "tritonstub.loaders"      # looked up by ``registry.find_loader``
DOCS = "docs/loader.md"

Log = Callable[[int, str], None]
Loader = Callable[["LoaderContext"], Any]


@dataclass
class Attempt:
    """One candidate a rule looked at: ``outcome`` is matched, rejected, skipped or failed."""

    rule: str
    path: str
    outcome: str
    reason: str

    def line(self) -> str:
        where = f" {self.path}" if self.path else ""
        return f"rule {self.rule} {self.outcome}{where}: {self.reason}"


class LoadReport:
    """What a loader tried, in order; logs each entry as it is recorded."""

    def __init__(self, loader: str, log: Log, rules: Optional[List[str]] = None):
        self.loader = loader
        self.rules = list(rules or [])
        self.attempts: List[Attempt] = []
        self.notes: List[str] = []
        self.settings: List[str] = []
        self._log = log

    @property
    def matched(self) -> Optional[Attempt]:
        for a in self.attempts:
            if a.outcome in ("matched", "failed"):
                return a
        return None

    def _add(self, attempt: Attempt, level: int) -> Attempt:
        self.attempts.append(attempt)
        self._log(level, attempt.line())
        return attempt

    def reject(self, rule: str, path: str, reason: str) -> None:
        """``path`` was looked at and is not the model (no such file, no model.py ...)."""
        self._add(Attempt(rule, path, "rejected", reason), INFO)

    def skip(self, rule: str, reason: str) -> None:
        """The rule does not apply here at all (no path to look at)."""
        self._add(Attempt(rule, "", "skipped", reason), INFO)

    def match(self, rule: str, path: str, how: str) -> None:
        """``path`` is the model; ``how`` says how it is about to be imported."""
        self._add(Attempt(rule, path, "matched", how), INFO)

    def failed(self, text: str) -> None:
        """The matched candidate raised while being imported or checked."""
        a = self.matched
        first = text.split("\n", 1)[0]
        if a is not None:
            a.outcome = "failed"
            a.reason = f"{a.reason}; it failed: {first}"
        self._log(ERROR, f"loading failed: {first}")

    def note(self, text: str, level: int = WARNING) -> None:
        self.notes.append(text)
        self._log(level, text)

    def format(self) -> str:
        """The block a load error carries: what was tried, in order, and what to do."""
        head = f"tritonstub loader '{self.loader}'"
        if self.rules:
            head += f" (rules: {', '.join(self.rules)})"
        lines = [head + " tried:"]
        if not self.attempts:
            lines.append("  nothing (the loader failed before it looked at a file)")
        for i, a in enumerate(self.attempts, 1):
            lines.append(f"  {i}. {a.line()}")
        for n in self.notes:
            lines.append(f"  note: {n}")
        for s in self.settings:
            lines.append(f"  setting: {s}")
        lines.append(f"See {DOCS} in tritonstub for the rules and the TRITONSTUB_* parameters.")
        return "\n".join(lines)


@dataclass
class LoaderContext:
    """Everything a loader may use. ``model`` holds the stub's argv paths (default.ModelContext)."""

    model: Any
    stub_name: str
    stub_kind: str                 # "auto_complete" or "instance"
    config: Dict[str, Any]
    settings: Settings
    report: LoadReport
    log: Log
    #: The module name the last import_module() call imported (for error reports).
    importing: Optional[str] = field(default=None)

    @property
    def parameters(self) -> Dict[str, str]:
        """The model's string parameters (all of them, not only TRITONSTUB_*)."""
        params = self.config.get("parameters") or {}
        return {k: v.get("string_value", "") for k, v in params.items() if isinstance(v, dict)}

    def import_module(self, name: str):
        """Import ``name`` as the C++ stub imports model.py (PyImport_ImportModule) and return it.

        Errors from the model's code propagate unchanged; their text is formatted as the C++
        stub formats it (the frames of this call are not shown).
        """
        from ..stub.exc_text import call_user
        self.importing = name
        # PyImport_ImportModule goes through __import__ with a non-empty fromlist.
        call_user(__import__, name, None, None, ["__doc__"], 0)
        return sys.modules[name]

    def not_found(self, headline: str, hint: str = "") -> LoaderError:
        """The error to raise when no rule found the model: headline, the report, the hint."""
        text = headline + "\n\n" + self.report.format()
        if hint:
            text += "\n" + hint
        error = LoaderError(text)
        error.report_included = True
        return error
