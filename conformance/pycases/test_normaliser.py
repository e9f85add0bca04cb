"""The differential suite's normaliser: it must hide exactly the legitimate differences, no more.

Pure unit tests (no server): every rewrite the Normaliser documents, and the near misses it must
leave alone.
"""
from __future__ import annotations

import sysconfig

from difftools import Normaliser, Outcome, Output, assert_same

#: Items of the conformance checklist these cases cover (conformance/CASES.md).
COVERS = []

REPO = "/tmp/pytest-of-x/pytest-1/test_mod0/repo"
QUARANTINE = "/tmp/pytest-of-x/pytest-1/test_mod0/quarantine_repo"
OURS_STDLIB = sysconfig.get_path("stdlib")


def _n() -> Normaliser:
    return Normaliser(["add_sub", "add_sub_int32", "m"], [REPO, QUARANTINE])


def test_model_and_instance_names():
    n = _n()
    assert n.text("model 'add_sub_cpp_0_0', message") == n.text("model 'add_sub_ours_0_0', message") \
        == "model 'add_sub_<stub>_0_0', message"
    assert n.text("add_sub_int32_cpp") == "add_sub_int32_<stub>"
    assert n.text("load failed for model 'm_ours': ...") == "load failed for model 'm_<stub>': ..."


def test_names_are_only_replaced_whole():
    n = _n()
    # Not a base of the module, or a longer word that merely contains one: left alone.
    for text in ("other_cpp", "xadd_sub_cpp", "add_sub_cppx", "add_sub_cpp2", "xm_cpp", "m_cppx", "m_ours9"):
        assert n.text(text) == text


def test_repository_roots_and_paths():
    n = _n()
    assert n.text(f"{REPO}/add_sub_cpp/1/model.py") == "<repo>/add_sub_<stub>/1/model.py"
    assert n.text(f"{QUARANTINE}/m_cpp/1/model.py") == n.text(f"{REPO}/m_ours/1/model.py")
    # A directory that only starts like the repository is not the repository.
    assert n.text(f"{REPO}2/m_cpp") == f"{REPO}2/m_<stub>"


def test_stdlib_frames_in_pybind11_at_blocks():
    n = _n()
    cpp = ("ValueError: x\n\nAt:\n"
           f"  {REPO}/m_cpp/1/model.py(4): <module>\n"
           "  <frozen importlib._bootstrap>(241): _call_with_frames_removed\n"
           "  /usr/lib/python3.11/importlib/__init__.py(126): import_module\n")
    ours = ("ValueError: x\n\nAt:\n"
            f"  {REPO}/m_ours/1/model.py(4): <module>\n"
            "  <frozen importlib._bootstrap>(253): _call_with_frames_removed\n"
            f"  {OURS_STDLIB}/importlib/__init__.py(90): import_module\n")
    assert n.text(cpp) == n.text(ours) == (
        "ValueError: x\n\nAt:\n"
        "  <repo>/m_<stub>/1/model.py(4): <module>\n"
        "  <frozen importlib._bootstrap>(#): _call_with_frames_removed\n"
        "  <stdlib>/importlib/__init__.py(#): import_module\n")


def test_model_frames_keep_their_line_numbers():
    n = _n()
    assert n.text(f"  {REPO}/m_cpp/1/model.py(4): execute\n") != n.text(f"  {REPO}/m_ours/1/model.py(5): execute\n")


def test_frames_must_match_in_name_function_and_order():
    n = _n()
    a = "At:\n  <frozen importlib._bootstrap>(1): _find_and_load\n  <frozen zipimport>(2): load_module\n"
    b = "At:\n  <frozen zipimport>(2): load_module\n  <frozen importlib._bootstrap>(1): _find_and_load\n"
    assert n.text(a) != n.text(b)
    assert n.text("  /usr/lib/python3.11/json/decoder.py(3): decode\n") != \
        n.text("  /usr/lib/python3.11/json/decoder.py(3): raw_decode\n")


def test_site_packages_frames_are_not_stdlib():
    n = _n()
    frame = "  /usr/lib/python3.11/site-packages/numpy/core/fromnumeric.py(58): _wrapfunc\n"
    assert n.text(frame) == frame
    dist = "  /usr/lib/python3/dist-packages/numpy/core/fromnumeric.py(58): _wrapfunc\n"
    assert n.text(dist) == dist


def test_python_traceback_format():
    n = _n()
    cpp = '  File "/usr/lib/python3.11/threading.py", line 975, in run\n'
    ours = f'  File "{OURS_STDLIB}/threading.py", line 982, in run\n'
    assert n.text(cpp) == n.text(ours) == '  File "<stdlib>/threading.py", line #, in run\n'
    model = f'  File "{REPO}/m_cpp/1/model.py", line 7, in execute\n'
    assert n.text(model) == '  File "<repo>/m_<stub>/1/model.py", line 7, in execute\n'


def test_log_lines_lose_time_and_pid_only():
    n = _n()
    line = 'I1121 06:11:11.415474 15542 model.py:17] "m_cpp: initialized"'
    assert n.log_line(line) == 'I model.py:17] "m_<stub>: initialized"'
    stub_local = "I1121 06:23:27.199077 6306 pb_stub.cc:298]  Failed to initialize: x"
    assert n.log_line(stub_local) == "I pb_stub.cc:298]  Failed to initialize: x"
    assert n.log_line("plain print from m_ours") == "plain print from m_<stub>"


def test_values_recursively():
    n = _n()
    assert n.value({"m_cpp": ["m_cpp_0", ("m_cpp",)], "n": 1}) == {"m_<stub>": ["m_<stub>_0", ("m_<stub>",)], "n": 1}


def test_outcome_equality_ignores_only_the_raw_text():
    a = Outcome("error", error="e", status="500", raw="raw one")
    b = Outcome("error", error="e", status="500", raw="raw two")
    assert_same(a, b)
    assert Outcome("error", error="e", status="400") != a
    x = Outcome("ok", outputs=(Output("O", "FP32", (1,), b"\0\0\0\0"),))
    y = Outcome("ok", outputs=(Output("O", "FP32", (1,), b"\0\0\0\x80"),))
    assert x != y
