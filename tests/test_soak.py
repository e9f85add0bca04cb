"""The short version of the soak (benchmarks/soak.py, issue 15 step 4): 30 s of mixed traffic
through our stub under the real Triton 2.51 (unary of mixed sizes, decoupled streams with
cancellations, a BLS chain, metrics, load/unload from model.py), sampled every 5 s. No call may
fail, the server must exit cleanly, and after the first 10 s no stub's RSS, descriptors or
region allocation may grow by more than half (the hour-long run holds them to 10 %)."""
from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _soak():
    spec = importlib.util.spec_from_file_location("soak", ROOT / "benchmarks" / "soak.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_short_soak_has_no_errors_and_flat_resources(triton_reference, tmp_path):
    soak = _soak()
    rc = soak.run(minutes=0.5, interval=5.0, out=tmp_path / "soak", warmup=10.0, tolerance=0.5)
    rows = list(csv.DictReader(open(tmp_path / "soak" / "samples.csv")))
    assert len(rows) >= 4, rows
    assert int(rows[-1]["calls"]) > 0 and rows[-1]["errors"] == "0", rows[-1]
    assert rc == 0, (tmp_path / "soak", rows[-1])
