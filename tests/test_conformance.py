"""The conformance suite's data cases (conformance/cases/*.json) under pytest.

The matrix {tritonserver} x {C++ stub, ours} (plus the harness column, ``tritonstub serve``, when
this tritonstub has it) runs once per session through :func:`run_matrix`, exactly as
``tritonstub conformance`` runs it; each (case, cell) is then one test, so a failure names its
case and shows the difference. With ``TRITONSTUB_CONFORMANCE_REPORT=DIR`` the run's report is
also written there as report.md, report.json and report.xml (CI does that).

Without a server: the case files parse, every case has a recorded expectation, CASES.md is up to
date, and the report formats are well-formed.
"""
from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tritonstub.conformance import cases as C
from tritonstub.conformance import columns, report, runner
from tritonstub.conformance.actions import canonical

SUITE = Path(__file__).resolve().parents[1] / "conformance"
GROUPS = C.load_groups(SUITE)
CASE_IDS = [c.full_id for g in GROUPS for c in g.cases]
REPORT_ENV = "TRITONSTUB_CONFORMANCE_REPORT"


# ---- no server --------------------------------------------------------------------------------


def test_every_case_has_a_recorded_expectation():
    missing = [c.full_id for g in GROUPS for c in g.cases if c.expect is None]
    assert not missing, f"record them with `tritonstub conformance --record`: {missing}"


def test_every_deliberate_difference_has_its_outcome_and_reason():
    bad = [c.full_id for g in GROUPS for c in g.cases for d in c.deliberate if d.outcome is None or not d.reason]
    assert not bad


def test_cases_md_is_generated_from_the_case_files():
    assert (SUITE / "CASES.md").read_text() == C.catalogue(SUITE), \
        "regenerate it: tritonstub conformance --catalogue conformance/CASES.md"


def test_case_files_are_written_in_their_canonical_form():
    """--record rewrites a case file; a hand edit in another layout would make noisy diffs."""
    for g in GROUPS:
        assert g.path.read_text() == C.dumps(g.raw) + "\n", f"{g.path}: reformat with cases.dumps"


def _matrix():
    results = {
        ("g/a", "triton/cpp"): runner.Result("g/a", "triton/cpp", "pass"),
        ("g/a", "triton/ours"): runner.Result("g/a", "triton/ours", "differs", ["--- reference", "+++ this cell",
                                                                              "-1", "+2"]),
        ("g/b", "triton/cpp"): runner.Result("g/b", "triton/cpp", "pass"),
        ("g/b", "triton/ours"): runner.Result("g/b", "triton/ours", "expected", reason="on purpose"),
        ("g/(server)", "triton/ours"): runner.Result("g/(server)", "triton/ours", "error", ["left a region"]),
    }
    return runner.Matrix(["triton/cpp", "triton/ours"], ["g/a", "g/b", "g/(server)"], results, "triton/cpp",
                         12.0, {"g/a": "doc a", "g/b": "doc b"})


def test_report_formats():
    m = _matrix()
    assert not m.ok
    md = report.markdown(m)
    assert "| `g/a` | pass | **differs** |" in md
    assert "### `g/a` in triton/ours: differs" in md and "+2" in md
    assert "- `g/b` in triton/ours: on purpose" in md
    doc = json.loads(report.as_json(m))
    assert doc["summary"]["triton/ours"] == {"pass": 0, "expected": 1, "differs": 1, "error": 1}
    suites = ET.fromstring(report.junit(m))
    ours = [s for s in suites if s.get("name") == "triton/ours"][0]
    assert (ours.get("failures"), ours.get("errors"), ours.get("tests")) == ("1", "1", "3")
    assert ours.find("testcase[@name='g/a']/failure") is not None


def test_verdicts():
    case = C.Case("g", "a", "doc", "m", "infer", {}, expect={"kind": "ok", "x": 1},
                  deliberate=[C.Deliberate("*/ours", "why", {"kind": "ok", "x": 2})])
    def verdict(cell, outcome, ref=None):
        r = runner.Result(case.full_id, cell, "", outcome=outcome)
        runner.judge(case, cell, r, ref, "triton/cpp" if ref is not None else None)
        return r.verdict
    assert verdict("triton/ours", {"kind": "ok", "x": 1}) == "pass"
    assert verdict("triton/ours", {"kind": "ok", "x": 2}) == "expected"
    assert verdict("triton/other", {"kind": "ok", "x": 2}) == "differs"
    assert verdict("triton/ours", {"kind": "ok", "x": 3}) == "differs"
    # The live reference wins over the recorded expectation.
    assert verdict("triton/ours", {"kind": "ok", "x": 3}, ref={"kind": "ok", "x": 3}) == "pass"
    assert verdict("triton/cpp", {"kind": "ok", "x": 3}, ref={"kind": "ok", "x": 3}) == "differs"


# ---- the matrix on real servers -----------------------------------------------------------------


def _cells(reference, workdir):
    cells = [runner.Cell(columns.TritonColumn(reference), columns.resolve_stub(s, workdir, reference))
             for s in ("cpp", "ours")]
    harness = columns.HarnessColumn()
    if harness.unavailable() is None:
        cells += [runner.Cell(harness, columns.resolve_stub(s, workdir, reference)) for s in ("cpp", "ours")]
    return cells


@pytest.fixture(scope="module")
def matrix(triton_reference, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("conformance")
    m = runner.run_matrix(GROUPS, _cells(triton_reference, workdir), SUITE, jobs=2, workdir=workdir / "runs")
    out = os.environ.get(REPORT_ENV)
    if out:
        for name in ("report.md", "report.json", "report.xml"):
            report.write(m, Path(out) / name)
    return m


CELLS = ["triton/cpp", "triton/ours"]


@pytest.mark.slow
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("case", CASE_IDS)
def test_case(matrix, case, cell):
    r = matrix.result(case, cell)
    assert r is not None
    assert r.verdict in ("pass", "expected"), "\n".join([f"{case} in {cell}: {r.verdict}", r.reason] + r.detail)


@pytest.mark.slow
def test_servers_stopped_cleanly(matrix):
    rows = [(case, cell, r.detail) for (case, cell), r in matrix.results.items()
            if case.endswith("/(server)") and r.verdict != "expected" and cell in CELLS]
    assert not rows


@pytest.mark.slow
def test_harness_column(matrix):
    """The harness column ({tritonstub serve} x {cpp, ours}) runs every case, stops cleanly and
    gives what tritonserver gives: any difference fails (the first matrix on it found five, all
    fixed in the harness: docs/conformance.md, "Status")."""
    why = columns.HarnessColumn().unavailable()
    if why:
        pytest.skip(f"the harness column cannot run: {why}")
    bad = [f"{case} in {cell}: {r.verdict}: {(r.detail or [''])[0][:150]}"
           for (case, cell), r in sorted(matrix.results.items())
           if cell.startswith("harness/") and r.verdict not in ("pass", "expected")]
    ran = [r for (case, cell), r in matrix.results.items() if cell.startswith("harness/")]
    assert ran, "the harness column ran no case"
    assert not bad, f"{len(bad)} harness differences:\n" + "\n".join(bad[:40])


def test_outcomes_compare_as_canonical_json():
    assert canonical({"a": float("nan"), "b": [1]}) == canonical({"b": [1], "a": float("nan")})


# ---- a broken stub must be caught ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("mode,affected", [
    ("corrupt-output", {"tensors/add_sub_fp32", "tensors/add_sub_int32_wraps_around"}),
    ("drop-logs", {"logging/logger_lines_in_execute"}),
])
def test_a_broken_stub_fails_exactly_the_affected_cases(triton_reference, tmp_path, mode, affected):
    """The suite pointed at ours with one fault (tests/broken_stub.py), without the reference
    cell: the affected cases differ from their recorded expectations, with a difference that
    shows the faulty field; the others pass; nothing hangs or is left behind."""
    from broken_stub import write_broken_stub
    from tritonstub.testing.procs import processes_naming

    stub = columns.resolve_stub(str(write_broken_stub(tmp_path / "stub", mode)), tmp_path, triton_reference)
    groups = C.load_groups(SUITE, ["tensors/add_sub_*", "tensors/numeric_round_trip_INT8",
                                   "tensors/bytes_round_trip_*", "logging/*"])
    cell = runner.Cell(columns.TritonColumn(triton_reference), stub)
    m = runner.run_matrix(groups, [cell], SUITE, jobs=2, workdir=tmp_path / "runs")
    label = cell.label
    assert m.reference is None and m.cells == [label]
    verdicts = {case: m.result(case, label).verdict for case in m.cases}
    assert {c for c, v in verdicts.items() if v != "pass"} == affected, report.markdown(m)
    assert all(verdicts[c] == "differs" for c in affected)
    for case in affected:
        detail = "\n".join(m.result(case, label).detail)
        assert "--- recorded expectation\n+++ this cell" in detail, detail
        if mode == "corrupt-output":
            assert '"name": "OUTPUT0"' in detail or '"data"' in detail, detail
        else:
            assert "-" in detail and "DIFFLOG[logging_0]" in detail, detail
    assert m.wall_s < 180, f"the broken-stub run took {m.wall_s:.0f} s"
    # Each server's stop checked its own regions and processes (a "<group>/(server)" error row
    # otherwise, which the verdicts above would show); nothing of this test runs any more.
    assert not [c for c in m.cases if c.endswith("/(server)")]
    assert processes_naming(str(tmp_path)) == []


def test_every_item_of_the_coverage_checklist_has_a_case():
    covered = {item for g in GROUPS for c in g.cases for item in c.covers}
    covered |= {item for _, items, _ in C.python_modules(SUITE) for item in items}
    assert [item for item in C.COVERAGE if item not in covered] == []
