"""The case format: ``conformance/cases/<group>.json``, readable with the standard library only.

A case file is one *group*: the models it needs (served together by one server per cell) and
its cases. Every model is loaded when the group's server starts unless ``"preload": false``::

    {
      "group": "tensors",
      "doc": "Tensors through the stub: arithmetic, dtypes, BYTES, zero-size shapes.",
      "models": [
        {"name": "add_sub"},
        {"name": "add_sub_int32", "source": "add_sub", "config": ["backend: \\"python\\"", "..."]}
      ],
      "cases": [
        {
          "id": "add_sub_fp32",
          "doc": "FP32 sum and difference of two vectors",
          "covers": ["Tensor", "InferenceResponse"],
          "model": "add_sub",
          "infer": {"inputs": {"INPUT0": {"datatype": "FP32", "shape": [2], "data": [1, 2]},
                               "INPUT1": {"datatype": "FP32", "shape": [2], "data": [3, 4]}}},
          "expect": {"kind": "ok", "outputs": [...]},
          "deliberate": [{"cells": "*/ours", "reason": "...", "outcome": {...}}]
        }
      ]
    }

A case does one *action* (one key among :data:`ACTIONS`, see :mod:`.actions`), on the model
named by ``model``. ``expect`` is the normalised outcome recorded from the reference cell
(``tritonstub conformance --record``); ``deliberate`` lists intended differences, each for the
cells matching a glob (``server/stub``), with the reason and the outcome such a cell gives.
Optional per-case keys: ``normalise`` (``[[regex, replacement], ...]`` applied to every text of
the outcome), ``digest`` (compare outputs by SHA-256 instead of listing their data: large
tensors), ``log`` (a marker, or ``{"contains": marker, "excludes": text}``: the outcome also
holds the server-log lines with the marker written during the action, each with its continuation
lines).
"""
from __future__ import annotations

import ast
import fnmatch
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional

from tritonstub.errors import TritonStubError

#: The coverage checklist of the suite (issue 13): every item needs at least one case. Data cases
#: name items in ``"covers"``, Python case modules in a module-level ``COVERS`` list; other tags
#: are allowed and listed too.
COVERAGE = (
    "Tensor", "InferenceRequest", "InferenceResponse", "response sender", "response flags", "Logger",
    "MetricFamily/Metric", "model control (load/unload/is_model_ready)", "BLS sync", "BLS async",
    "BLS streaming", "cancellation", "rescheduling", "DLPack", "async execute",
    "model dir and config access", "TritonError codes", "auto-complete", "lifecycle: initialize error",
    "lifecycle: execute error", "lifecycle: finalize", "lifecycle: exits", "lifecycle: missing model.py",
    "lifecycle: missing class", "lifecycle: missing method", "lifecycle: import error",
    "lifecycle: stub death", "batching: dynamic", "batching: sequence", "dtypes", "BYTES", "zero-size",
)

#: The actions a case may do (exactly one per case).
ACTIONS = ("infer", "infer_many", "stream", "load", "config", "index")


class CaseError(TritonStubError):
    """A case file is malformed; the message names the file and the case."""


def default_suite_dir() -> Optional[Path]:
    """``conformance/`` of the source checkout this package runs from, if there is one."""
    root = Path(__file__).resolve().parents[2]
    suite = root / "conformance"
    return suite if (suite / "cases").is_dir() else None


@dataclass
class ModelDef:
    name: str
    source: str
    config: Optional[str] = None
    preload: bool = True


@dataclass
class Deliberate:
    cells: str
    reason: str
    outcome: Optional[dict] = None

    def matches(self, cell: str) -> bool:
        return fnmatch.fnmatchcase(cell, self.cells)


@dataclass
class Case:
    group: str
    id: str
    doc: str
    model: str
    action: str
    params: dict
    covers: List[str] = field(default_factory=list)
    expect: Optional[dict] = None
    deliberate: List[Deliberate] = field(default_factory=list)
    normalise: List[List[str]] = field(default_factory=list)
    digest: bool = False
    log: object = None  # a marker string, or {"contains": ..., "excludes": ...}

    @property
    def full_id(self) -> str:
        return f"{self.group}/{self.id}"

    def deliberate_for(self, cell: str) -> Optional[Deliberate]:
        for d in self.deliberate:
            if d.matches(cell):
                return d
        return None


@dataclass
class Group:
    name: str
    path: Path
    doc: str
    models: List[ModelDef]
    cases: List[Case]
    raw: dict
    #: Why the group's server cannot stop cleanly on any stub (e.g. a model whose stub died cannot
    #: be unloaded by Triton 2.51): its unclean stop is then reported as expected, unless it crashed.
    unclean_stop: Optional[str] = None
    #: tritonserver's --exit-timeout-secs for the group (how long it tries to unload at the end).
    exit_timeout_s: int = 30

    def model(self, name: str) -> ModelDef:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)


def _need(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise CaseError(f"{where}: {what}")


def parse_group(path: Path, suite_dir: Path) -> Group:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise CaseError(f"{path}: not valid JSON: {exc}") from None
    where = str(path)
    _need(isinstance(raw, dict) and isinstance(raw.get("group"), str), where, "needs a \"group\" name")
    name = raw["group"]
    _need(name == path.stem, where, f"group {name!r} must be named like its file ({path.stem!r})")
    models = []
    for m in raw.get("models", []):
        _need(isinstance(m, dict) and isinstance(m.get("name"), str), where, f"bad model entry {m!r}")
        config = m.get("config")
        if isinstance(config, list):  # a config.pbtxt written as a list of lines
            config = "\n".join(config) + "\n"
        md = ModelDef(m["name"], m.get("source", m["name"]), config, bool(m.get("preload", True)))
        _need((suite_dir / "models" / md.source / "config.pbtxt").is_file() or md.config is not None, where,
              f"model {md.name!r}: no models/{md.source}/config.pbtxt")
        _need((suite_dir / "models" / md.source).is_dir(), where, f"model {md.name!r}: no models/{md.source}/")
        models.append(md)
    names = [m.name for m in models]
    _need(len(set(names)) == len(names), where, f"duplicate model names {names}")
    cases, ids = [], set()
    for c in raw.get("cases", []):
        cw = f"{where}: case {c.get('id')!r}"
        _need(isinstance(c.get("id"), str) and c["id"] not in ids, cw, "needs a unique \"id\"")
        ids.add(c["id"])
        _need(isinstance(c.get("doc"), str) and c["doc"].strip() != "", cw, "needs a one-line \"doc\"")
        _need(c.get("model") in names, cw, f"model {c.get('model')!r} is not one of the group's {names}")
        actions = [a for a in ACTIONS if a in c]
        _need(len(actions) == 1, cw, f"needs exactly one action of {ACTIONS}, has {actions}")
        deliberate = []
        for d in c.get("deliberate", []):
            _need(isinstance(d, dict) and d.get("cells") and d.get("reason"), cw,
                  "a deliberate difference needs \"cells\" and \"reason\"")
            deliberate.append(Deliberate(d["cells"], d["reason"], d.get("outcome")))
        rules = c.get("normalise", [])
        for rule in rules:
            _need(isinstance(rule, list) and len(rule) == 2, cw, f"normalise rule {rule!r} is not [regex, replacement]")
            re.compile(rule[0])
        cases.append(Case(name, c["id"], c["doc"].strip(), c["model"], actions[0], c[actions[0]] or {},
                          list(c.get("covers", [])), c.get("expect"), deliberate, rules,
                          bool(c.get("digest", False)), c.get("log")))
    return Group(name, path, raw.get("doc", ""), models, cases, raw, raw.get("unclean_stop"),
                 int(raw.get("exit_timeout_s", 30)))


def load_groups(suite_dir: Path, patterns: Iterable[str] = ()) -> List[Group]:
    """Every group of ``suite_dir/cases``, keeping only cases whose ``group/id`` (or group)
    matches one of ``patterns`` (globs; none: all). Groups left with no case are dropped."""
    patterns = list(patterns)
    groups = []
    for path in sorted((suite_dir / "cases").glob("*.json")):
        group = parse_group(path, suite_dir)
        if patterns:
            group.cases = [c for c in group.cases
                           if any(fnmatch.fnmatchcase(c.full_id, p) or fnmatch.fnmatchcase(group.name, p)
                                  for p in patterns)]
        if group.cases:
            groups.append(group)
    return groups


# ---- writing case files back (--record) ---------------------------------------------------------


def dumps(value, indent: int = 0, width: int = 100) -> str:
    """JSON with short lists and objects on one line, so that recorded outcomes stay readable."""
    flat = json.dumps(value, ensure_ascii=False)
    if len(flat) + indent <= width or not isinstance(value, (list, dict)) or not value:
        return flat
    pad = " " * (indent + 2)
    if isinstance(value, list):
        items = [pad + dumps(v, indent + 2, width) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"
    items = [pad + json.dumps(k, ensure_ascii=False) + ": " + dumps(v, indent + 2, width).lstrip()
             for k, v in value.items()]
    return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"


def write_group(group: Group) -> None:
    group.path.write_text(dumps(group.raw) + "\n", encoding="utf-8")


def record(group: Group, case_id: str, *, expect: Optional[dict] = None,
           deliberate_cell: Optional[str] = None, outcome: Optional[dict] = None) -> None:
    """Put a recorded outcome into ``group.raw`` (written by :func:`write_group`)."""
    for c in group.raw["cases"]:
        if c["id"] != case_id:
            continue
        if expect is not None:
            c["expect"] = expect
        if deliberate_cell is not None:
            for d in c.get("deliberate", []):
                if fnmatch.fnmatchcase(deliberate_cell, d["cells"]):
                    d["outcome"] = outcome
                    break
        return
    raise KeyError(case_id)


# ---- CASES.md ---------------------------------------------------------------------------------


def python_cases(suite_dir: Path) -> List[tuple]:
    """(module, test name, first docstring line or "", module docstring's first line, why it runs
    on tritonserver only or "") of the Python cases in ``pycases/``."""
    return [case for module in python_modules(suite_dir) for case in module[2]]


def python_modules(suite_dir: Path) -> List[tuple]:
    """(module, COVERS list, cases) per ``pycases/test_*.py``, read with ``ast`` (not imported)."""
    found = []
    for path in sorted((suite_dir / "pycases").glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        module_doc = (ast.get_docstring(tree) or "").strip().splitlines()
        covers: List[str] = []
        cases = []
        for node in tree.body:
            if (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and getattr(node.targets[0], "id", None) == "COVERS"):
                covers = list(ast.literal_eval(node.value))
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                doc = (ast.get_docstring(node) or "").strip().splitlines()
                cases.append((path.stem, node.name, doc[0] if doc else "", module_doc[0] if module_doc else "",
                              _server_only(node)))
        found.append((path.stem, covers, cases))
    return found


def _server_only(node: ast.FunctionDef) -> str:
    """Why a Python case runs on tritonserver only ("" when it runs on the harness column too):
    its ``@pytest.mark.server_specific("why")`` or ``harness_differs("why")``, or the hazard
    fixture ``solo`` (pycases/conftest.py)."""
    for deco in node.decorator_list:
        kind = getattr(getattr(deco, "func", None), "attr", None)
        if (isinstance(deco, ast.Call) and kind in ("server_specific", "harness_differs")
                and deco.args and isinstance(deco.args[0], ast.Constant)):
            return ("" if kind == "server_specific" else "the harness differs: ") + str(deco.args[0].value)
    if any(arg.arg == "solo" for arg in node.args.args):
        return "a hazard: about what breaks tritonserver under the C++ stub"
    return ""


def catalogue(suite_dir: Path) -> str:
    """The text of ``conformance/CASES.md``: one line per case, generated from the case files."""
    groups = load_groups(suite_dir)
    covers: Dict[str, List[str]] = {}
    lines = ["# Conformance cases", "",
             "Generated by `tritonstub conformance --catalogue conformance/CASES.md` from "
             "`conformance/cases/*.json` and `conformance/pycases/test_*.py`; do not edit.", "",
             "Data cases run in every cell of the matrix (`tritonstub conformance`). Python cases "
             "(`pycases/`) are the differential tests not yet expressed as data: pytest runs them on "
             "tritonserver with the C++ stub and ours side by side, and on the harness column "
             "(`tritonstub serve`, each stub) against the tritonserver outcome, except those marked "
             "tritonserver only.", ""]
    total = sum(len(g.cases) for g in groups)
    lines += [f"## Data cases ({total})", ""]
    for g in groups:
        lines += [f"### {g.name} ({len(g.cases)})", ""]
        if g.doc:
            lines += [g.doc, ""]
        for c in g.cases:
            tags = []
            if c.deliberate:
                tags.append("deliberate difference: " + "; ".join(f"{d.cells}: {d.reason}" for d in c.deliberate))
            if c.expect is None:
                tags.append("no recorded expectation")
            tail = f" _({'; '.join(tags)})_" if tags else ""
            cov = f" [{', '.join(c.covers)}]" if c.covers else ""
            lines.append(f"- `{c.full_id}` ({c.action} `{c.model}`){cov}: {c.doc}{tail}")
            for item in c.covers:
                covers.setdefault(item, []).append(c.full_id)
        lines.append("")
    py = python_cases(suite_dir)
    lines += [f"## Python cases ({len(py)})", ""]
    module = None
    for mod, name, doc, mdoc, server_only in py:
        if mod != module:
            module = mod
            lines += ["", f"### pycases/{mod}.py", ""]
            if mdoc:
                lines += [mdoc, ""]
        tail = f" _(tritonserver only: {server_only})_" if server_only else ""
        lines.append(f"- `{mod}::{name}`" + (f": {doc}" if doc else "") + tail)
    py_covers: Dict[str, List[str]] = {}
    for mod, items, _ in python_modules(suite_dir):
        for item in items:
            py_covers.setdefault(item, []).append(f"pycases/{mod}.py")
    lines += ["", "## Coverage", "",
              "The checklist of the suite (`COVERAGE` in tritonstub/conformance/cases.py), then other tags.", "",
              "| item | data cases | Python cases |", "|---|---|---|"]
    for item in list(COVERAGE) + sorted((set(covers) | set(py_covers)) - set(COVERAGE)):
        data = covers.get(item, [])
        shown = ", ".join(f"`{i}`" for i in data[:4]) + (f" and {len(data) - 4} more" if len(data) > 4 else "")
        lines.append(f"| {item} | {shown or '**none**' if item in COVERAGE and not py_covers.get(item) else shown} | "
                     f"{', '.join(py_covers.get(item, []))} |")
    return "\n".join(lines).rstrip() + "\n"
