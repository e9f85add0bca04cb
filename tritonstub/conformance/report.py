"""The matrix as a report: Markdown for people, JSON for tools, JUnit XML for CI systems."""
from __future__ import annotations

import json
import platform
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Union

from .runner import VERDICTS, Matrix

_MARK = {"pass": "pass", "expected": "expected", "differs": "**differs**", "error": "**error**"}


def markdown(m: Matrix) -> str:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = ["# Conformance report", "",
             f"{when} on {platform.node() or 'this machine'}; {len(m.cases)} cases x {len(m.cells)} cells "
             f"in {m.wall_s:.0f} s wall time. Reference cell: "
             f"{m.reference or 'not run (cases are compared with their recorded expectations)'}.", ""]
    lines += ["| cell | " + " | ".join(VERDICTS) + " |", "|---|" + "---|" * len(VERDICTS)]
    for cell in m.cells:
        counts = m.counts(cell)
        lines.append(f"| {cell} | " + " | ".join(str(counts[v]) for v in VERDICTS) + " |")
    lines += ["", "| case | " + " | ".join(m.cells) + " |", "|---|" + "---|" * len(m.cells)]
    for case in m.cases:
        row = []
        for cell in m.cells:
            r = m.result(case, cell)
            row.append("" if r is None else _MARK[r.verdict])
        lines.append(f"| `{case}` | " + " | ".join(row) + " |")
    details = [(case, cell, m.result(case, cell)) for case in m.cases for cell in m.cells]
    differing = [(case, cell, r) for case, cell, r in details if r is not None and r.verdict in ("differs", "error")]
    expected = [(case, cell, r) for case, cell, r in details if r is not None and r.verdict == "expected"]
    if differing:
        lines += ["", "## Differences and errors", ""]
        for case, cell, r in differing:
            lines += [f"### `{case}` in {cell}: {r.verdict}", ""]
            if case in m.docs:
                lines += [m.docs[case], ""]
            if r.reason:
                lines += [r.reason, ""]
            lines += ["```", *r.detail, "```", ""]
    if expected:
        lines += ["", "## Expected differences", ""]
        for case, cell, r in expected:
            lines.append(f"- `{case}` in {cell}: {r.reason}")
    if m.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in m.notes]
    return "\n".join(lines).rstrip() + "\n"


def as_json(m: Matrix) -> str:
    doc = {
        "cells": m.cells, "reference": m.reference, "wall_s": round(m.wall_s, 1), "ok": m.ok,
        "summary": {cell: m.counts(cell) for cell in m.cells},
        "results": [
            {"case": case, "cell": cell, "verdict": r.verdict, "reason": r.reason, "detail": r.detail,
             "seconds": round(r.seconds, 2), "outcome": r.outcome}
            for case in m.cases for cell in m.cells for r in [m.result(case, cell)] if r is not None],
        "notes": m.notes,
    }
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def junit(m: Matrix) -> str:
    suites = ET.Element("testsuites", name="tritonstub conformance", time=f"{m.wall_s:.1f}")
    for cell in m.cells:
        counts = m.counts(cell)
        suite = ET.SubElement(suites, "testsuite", name=cell,
                              tests=str(sum(counts.values())), failures=str(counts["differs"]),
                              errors=str(counts["error"]), skipped="0")
        for case in m.cases:
            r = m.result(case, cell)
            if r is None:
                continue
            tc = ET.SubElement(suite, "testcase", classname=f"conformance.{cell.replace('/', '.')}",
                               name=case, time=f"{r.seconds:.2f}")
            if r.verdict == "differs":
                el = ET.SubElement(tc, "failure", message=(r.detail[0] if r.detail else "differs")[:200])
                el.text = "\n".join(([r.reason] if r.reason else []) + r.detail)
            elif r.verdict == "error":
                el = ET.SubElement(tc, "error", message=(r.detail[0] if r.detail else "error")[:200])
                el.text = "\n".join(r.detail)
            elif r.verdict == "expected":
                ET.SubElement(tc, "system-out").text = f"expected difference: {r.reason}"
    return ET.tostring(suites, encoding="unicode") + "\n"


def write(m: Matrix, path: Union[str, Path]) -> None:
    """Write the report; the format follows the suffix (.md, .json, .xml)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        text = as_json(m)
    elif suffix == ".xml":
        text = junit(m)
    elif suffix in (".md", ".markdown", ".txt"):
        text = markdown(m)
    else:
        raise ValueError(f"--report {path}: use a .md, .json or .xml file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
