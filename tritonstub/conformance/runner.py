"""The matrix: every case of every group in every (server, stub) cell, and the verdicts.

Work is cut into *jobs*, one per (cell, group): build the group's repository with the cell's stub
installed in every model, start the cell's server, load the group's models (explicit model
control, four at a time), run the cases one after another, stop the server and check that it left
nothing behind. Jobs run ``jobs`` at a time (default 2: this is sized for a 2-core machine).

Verdicts, per (case, cell):

- ``pass``: the outcome equals the reference cell's outcome (when the reference cell ran) or the
  case's recorded expectation (when it did not; the reference cell itself is held to the
  recorded expectation too, so a change of the reference shows);
- ``expected``: it differs, and equals the outcome of a deliberate difference the case declares
  for this cell (reported with the reason);
- ``differs``: it differs otherwise (the report shows the first lines of a diff);
- ``error``: the case could not be run (the server did not start, the client failed, no
  expectation to compare with). A model that did not load is not an error of the runner: its
  load failure (``{"kind": "load-error", ...}``) is the outcome of each of its cases.

A server that does not stop cleanly adds an ``error`` row ``<group>/(server)`` for its cell
(``expected``, with the reason, where the group declares ``unclean_stop`` and the server did not
crash).
"""
from __future__ import annotations

import difflib
import json
import shutil
import tempfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .actions import Context, canonical, run_case
from .cases import Case, Group, record, write_group
from .columns import STUB_FILE, Stub
from .normalise import Normaliser

REFERENCE_CELL = "triton/cpp"
VERDICTS = ("pass", "expected", "differs", "error")
DIFF_LINES = 16


@dataclass
class Cell:
    column: object  # a server column (columns.TritonColumn / HarnessColumn)
    stub: Stub

    @property
    def label(self) -> str:
        return f"{self.column.name}/{self.stub.label}"


@dataclass
class Result:
    case: str
    cell: str
    verdict: str
    detail: List[str] = field(default_factory=list)
    reason: str = ""
    outcome: Optional[dict] = None
    seconds: float = 0.0


@dataclass
class Matrix:
    cells: List[str]
    cases: List[str]
    results: Dict[tuple, Result]
    reference: Optional[str]
    wall_s: float
    docs: Dict[str, str] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)

    def result(self, case: str, cell: str) -> Optional[Result]:
        return self.results.get((case, cell))

    def counts(self, cell: Optional[str] = None) -> Dict[str, int]:
        counts = {v: 0 for v in VERDICTS}
        for (_, c), r in self.results.items():
            if cell is None or c == cell:
                counts[r.verdict] = counts.get(r.verdict, 0) + 1
        return counts

    @property
    def ok(self) -> bool:
        """No unexpected difference and no error."""
        return all(r.verdict in ("pass", "expected") for r in self.results.values())


def build_repository(group: Group, suite_dir: Path, repo: Path, stub: Stub) -> None:
    repo.mkdir(parents=True, exist_ok=True)
    for model in group.models:
        target = repo / model.name
        shutil.copytree(suite_dir / "models" / model.source, target,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", STUB_FILE))
        if model.config is not None:
            (target / "config.pbtxt").write_text(model.config)
        stub.install(target)


def _job(group: Group, cell: Cell, suite_dir: Path, workdir: Path, log) -> Dict[str, Result]:
    """Run one group in one cell; returns ``case id -> Result`` (outcome filled, verdict later)."""
    results: Dict[str, Result] = {}
    label = cell.label
    repo = workdir / "repo"
    served = None
    try:
        build_repository(group, suite_dir, repo, cell.stub)
        served = cell.column.start(repo, workdir, cell.stub, group.exit_timeout_s)
        normaliser = Normaliser((), [repo])
        loads: Dict[str, tuple] = {}
        preload = [m.name for m in group.models if m.preload]
        with ThreadPoolExecutor(max_workers=4) as pool:
            for name, got in zip(preload, pool.map(lambda n: served.load(n, 60.0), preload)):
                loads[name] = got
        for case in group.cases:
            started = time.monotonic()
            model = group.model(case.model)
            if model.preload and loads[case.model][0] != 200:
                # The model's load failure is this case's outcome (compared like any other: a
                # model that loads with one stub and not with another differs there).
                status, text = loads[case.model]
                ctx = Context(served, case.model, normaliser)
                outcome = ({"kind": "load-timeout"} if status == 0 else
                           {"kind": "load-error", "status": str(status), "error": ctx.text(text, case)})
                results[case.full_id] = Result(case.full_id, label, "", outcome=outcome)
                continue
            try:
                outcome = run_case(Context(served, case.model, normaliser), case)
            except Exception as exc:  # noqa: BLE001 - one case's failure is that case's error
                results[case.full_id] = Result(case.full_id, label, "error",
                                               traceback.format_exception_only(type(exc), exc)[-1:]
                                               + [f"(server log: {workdir / 'server'})"])
                continue
            results[case.full_id] = Result(case.full_id, label, "", outcome=outcome,
                                           seconds=time.monotonic() - started)
            log(f"{label} {case.full_id} done in {time.monotonic() - started:.1f}s")
    except Exception as exc:  # noqa: BLE001 - the server or the repository could not be set up
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip().splitlines()
        for case in group.cases:
            results.setdefault(case.full_id, Result(case.full_id, label, "error",
                                                    ["the group's server could not be set up:"] + text[-DIFF_LINES:]))
    finally:
        if served is not None:
            try:
                problems = served.stop()
            except Exception as exc:  # noqa: BLE001
                problems = [f"stopping the server failed: {exc!r}"]
            if problems:
                crashed = any("crashed" in p for p in problems)
                expected = group.unclean_stop is not None and not crashed
                results[f"{group.name}/(server)"] = Result(
                    f"{group.name}/(server)", label, "expected" if expected else "error",
                    "\n".join(problems).splitlines()[:DIFF_LINES], reason=(group.unclean_stop or "") if expected else "")
    return results


def _diff(expected: dict, got: dict, expected_name: str) -> List[str]:
    from .cases import dumps

    a = dumps(expected, width=60).splitlines()
    b = dumps(got, width=60).splitlines()
    lines = list(difflib.unified_diff(a, b, expected_name, "this cell", n=3, lineterm=""))
    return lines[:DIFF_LINES] + ([f"... ({len(lines) - DIFF_LINES} more diff lines)"] if len(lines) > DIFF_LINES else [])


def judge(case: Case, cell: str, result: Result, reference: Optional[dict], reference_cell: Optional[str]) -> None:
    """Set ``result.verdict`` (see the module docstring)."""
    if result.verdict:  # already an error
        return
    got = result.outcome
    if reference is not None and cell != reference_cell:
        expected, name = reference, f"reference ({reference_cell})"
    else:
        expected, name = case.expect, "recorded expectation"
    if expected is None:
        result.verdict = "error"
        result.detail = [f"no expectation: the case has none recorded and the reference cell ({REFERENCE_CELL}) "
                         "did not run; record one with `tritonstub conformance --record`"]
        return
    if canonical(got) == canonical(expected):
        result.verdict = "pass"
        return
    deliberate = case.deliberate_for(cell)
    if deliberate is not None and deliberate.outcome is not None and canonical(got) == canonical(deliberate.outcome):
        result.verdict = "expected"
        result.reason = deliberate.reason
        return
    result.verdict = "differs"
    result.detail = _diff(expected, got, name)
    if deliberate is not None:
        result.reason = f"(a deliberate difference is declared for {deliberate.cells}, but this outcome is not it)"


def run_matrix(groups: Sequence[Group], cells: Sequence[Cell], suite_dir: Path, *, jobs: int = 2,
               workdir: Optional[Path] = None, record_expectations: bool = False,
               progress=None) -> Matrix:
    """Run every group in every cell and judge each case (see the module docstring)."""
    started = time.monotonic()
    log = progress or (lambda msg: None)
    own_tmp = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="tritonstub-conformance-")) if own_tmp else Path(workdir)
    labels = [c.label for c in cells]
    if len(set(labels)) != len(labels):
        raise ValueError(f"two cells have the same name: {labels}")
    lock = threading.Lock()
    raw: Dict[tuple, Result] = {}

    def job(args):
        n, group, cell = args
        res = _job(group, cell, suite_dir, workdir / f"{n:03d}-{group.name}-{cell.label.replace('/', '-')}", log)
        with lock:
            for case_id, r in res.items():
                raw[(case_id, cell.label)] = r

    work = [(n, g, c) for n, (g, c) in enumerate((g, c) for g in groups for c in cells)]
    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            list(pool.map(job, work))
    finally:
        if own_tmp:
            shutil.rmtree(workdir, ignore_errors=True)

    reference_cell = REFERENCE_CELL if REFERENCE_CELL in labels else None
    notes = record_outcomes(groups, raw, labels, reference_cell) if record_expectations else []
    cases, docs = [], {}
    for g in groups:
        for c in g.cases:
            cases.append(c.full_id)
            docs[c.full_id] = c.doc
            ref_result = raw.get((c.full_id, reference_cell)) if reference_cell else None
            ref = ref_result.outcome if ref_result is not None and not ref_result.verdict else None
            for cell in labels:
                judge(c, cell, raw[(c.full_id, cell)], ref, reference_cell if ref is not None else None)
    extra = sorted({case for case, _ in raw if case not in docs})
    return Matrix(labels, cases + extra, raw, reference_cell, time.monotonic() - started, docs, notes)


def record_outcomes(groups: Sequence[Group], raw: Dict[tuple, Result], cells: Sequence[str],
                    reference_cell: Optional[str]) -> List[str]:
    """Write the reference cell's outcomes into the case files as ``expect``; fill a deliberate
    difference's missing ``outcome`` from the first cell it matches."""
    if reference_cell is None:
        return [f"--record needs the reference cell ({REFERENCE_CELL}); nothing was recorded"]
    notes = []
    for g in groups:
        changed = False
        for c in g.cases:
            ref = raw.get((c.full_id, reference_cell))
            if ref is None or ref.outcome is None or ref.verdict == "error":
                notes.append(f"{c.full_id}: not recorded (the reference cell gave no outcome)")
                continue
            if canonical(ref.outcome) != canonical(c.expect):
                record(g, c.id, expect=ref.outcome)
                c.expect = ref.outcome
                changed = True
            for d in c.deliberate:
                if d.outcome is not None:
                    continue
                for cell in cells:
                    r = raw.get((c.full_id, cell))
                    if d.matches(cell) and r is not None and r.outcome is not None and not r.verdict:
                        record(g, c.id, deliberate_cell=cell, outcome=r.outcome)
                        d.outcome = r.outcome
                        changed = True
                        break
        if changed:
            write_group(g)
            notes.append(f"recorded {g.path}")
    return notes


def dumps_outcome(outcome: Optional[dict]) -> str:
    return json.dumps(outcome, ensure_ascii=False)
