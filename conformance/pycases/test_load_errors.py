"""Model loading through both stubs: auto_complete_config, and every way a load fails.

The server runs in explicit model-control mode, so ``POST /v2/repository/models/<name>/load``
returns the load error itself; the repository index then shows the model UNAVAILABLE with the
same reason. Errors in model.py's import and in auto_complete_config come from the auto-complete
stub, errors in initialize from the instance stub.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from difftools import DiffModel, Outcome, Target, line_of

FAILING = ["missing_class", "import_error", "syntax_error", "init_raise", "init_tme", "ac_raise",
           "ac_bad_return", "ac_invalid"]
#: Loaded by their test (not preloaded) so that the log lines written meanwhile are theirs.
STDERR = ["missing_class", "ac_raise", "init_raise"]
DIFF_MODELS = ([DiffModel("auto_complete")] + [DiffModel(name) for name in FAILING]
               + [DiffModel(f"{name}_log", source=name, preload=False) for name in STDERR])

_LOAD_FAILED = "load failed for model '{name}_<stub>': version 1 is at UNAVAILABLE state: "


def _reason(name: str, text: str) -> str:
    return _LOAD_FAILED.format(name=name) + text + ";\n"


def _frame(model: str, needle: str, function: str) -> str:
    source = model[:-len("_log")] if model.endswith("_log") else model
    return f"  <repo>/{model}_<stub>/1/model.py({line_of(f'{source}/1/model.py', needle)}): {function}\n"


# ---- auto_complete_config ---------------------------------------------------------------------


def _config(target: Target) -> Outcome:
    return Outcome("value", value=target.normaliser.value(target.config()))


def test_auto_complete_config_fills_in_the_config(pair):
    config = pair.run("auto_complete", _config).value
    assert config["name"] == "auto_complete_<stub>"
    assert config["max_batch_size"] == 4
    assert "dynamic_batching" in config
    assert [(i["name"], i["data_type"], i["dims"], i["optional"]) for i in config["input"]] == [
        ("X", "TYPE_FP32", ["2"] if isinstance(config["input"][0]["dims"][0], str) else [2], False),
        ("FLAG", "TYPE_BOOL", ["1"] if isinstance(config["input"][1]["dims"][0], str) else [1], True)]
    assert [o["name"] for o in config["output"]] == ["Y", "SEEN"]


def test_auto_completed_model_serves(pair):
    x = np.array([[1.0, -2.0], [0.5, 4.0]], dtype=np.float32)
    out = pair.run("auto_complete", lambda t: t.infer({"X": x})).require_ok()
    np.testing.assert_array_equal(out.array("Y"), -x)
    assert json.loads(out.output("SEEN").data[0]) == {"max_batch_size": 4, "inputs": ["X", "FLAG"], "requests": 1}


def test_logging_from_auto_complete_config(pair):
    """During auto-complete the stub logs itself to stderr (its own format, two spaces after ']')."""
    def case(target: Target) -> Outcome:
        return Outcome("value", value=tuple(target.log_lines(f"DIFFLOG[{target.name}]")))

    lines = pair.run("auto_complete", case).value
    assert lines == (f"I model.py:{line_of('auto_complete/1/model.py', 'pb_utils.Logger.log_info')}]  "
                     f"DIFFLOG[auto_complete_<stub>] auto_complete_config saw max_batch_size 4",)


# ---- load failures ----------------------------------------------------------------------------


def _expected_reason(name: str) -> str:
    if name == "missing_class":
        return "Internal: AttributeError: module '1.model' has no attribute 'TritonPythonModel'"
    if name == "syntax_error":
        return "Internal: SyntaxError: expected ':' (model.py, line 5)"
    if name == "init_raise":
        return ("Internal: RuntimeError: init failed on purpose for init_raise_<stub>\n\nAt:\n"
                + _frame("init_raise", "raise RuntimeError", "check_args")
                + _frame("init_raise", "        check_args(args)", "initialize"))
    if name == "init_tme":
        return ("Internal: TritonModelException: initialize refused ✓\n\nAt:\n"
                + _frame("init_tme", "raise pb_utils", "initialize"))
    if name == "ac_raise":
        return ("Internal: ValueError: auto_complete_config raised on purpose\n\nAt:\n"
                + _frame("ac_raise", "raise ValueError", "auto_complete_config"))
    if name == "ac_bad_return":
        return ("Internal: auto_complete_config function in model 'ac_bad_return_<stub>' must return "
                "a valid pb.ModelConfig object.")
    return None  # checked by the test itself


@pytest.mark.parametrize("name", FAILING)
def test_load_error_text(pair, name):
    out = pair.load(name).require_error()
    assert out.status == "400"
    expected = _expected_reason(name)
    if expected is not None:
        assert out.error == _reason(name, expected)
    elif name == "import_error":
        assert out.error.startswith(_reason(name, "Internal: ModuleNotFoundError: No module named "
                                                  "'tritonstub_difftest_no_such_module'\n\nAt:\n")[:-2])
        frames = out.error.split("\n\nAt:\n", 1)[1]
        assert frames.startswith(_frame("import_error", "import tritonstub_difftest_no_such_module", "<module>"))
        assert "  <frozen importlib._bootstrap>(#): _call_with_frames_removed\n" in frames
        # Imported from C++ (no importlib.import_module frame), with the frozen importlib frames.
        assert frames == (_frame("import_error", "import tritonstub_difftest_no_such_module", "<module>")
                          + "  <frozen importlib._bootstrap>(#): _call_with_frames_removed\n"
                          + "  <frozen importlib._bootstrap_external>(#): exec_module\n"
                          + "  <frozen importlib._bootstrap>(#): _load_unlocked\n"
                          + "  <frozen importlib._bootstrap>(#): _find_and_load_unlocked\n"
                          + "  <frozen importlib._bootstrap>(#): _find_and_load\n;\n")
    elif name == "ac_invalid":
        assert out.error.startswith(_reason(name, "Internal: ValueError: input 'NO_TYPE' in auto-complete-config "
                                                  "function for model 'ac_invalid_<stub>' is missing 'data_type' "
                                                  "property.\n\nAt:\n")[:-2])


@pytest.mark.parametrize("name", FAILING)
def test_repository_index_shows_the_reason(pair, name):
    def case(target: Target) -> Outcome:
        pair.servers.load_outcome(target.base, target.stub)  # preloaded: a no-op
        return Outcome("value", value=target.index_entry())

    entry = pair.run(name, case, loaded=False).value
    assert entry["state"] == "UNAVAILABLE"
    assert entry["reason"]


def _stub_log(target: Target) -> Outcome:
    load, lines = target.log_during(target.load)
    return Outcome("value", value=(load.require_error().error, tuple(target.stub_lines(lines))))


def test_stub_log_for_missing_class(pair):
    """The auto-complete stub reports the failure on its own stderr (stub-local format)."""
    _, lines = pair.run("missing_class_log", _stub_log, loaded=False).value
    assert lines == ("I pb_stub.cc:298]  Failed to initialize Python stub for auto-complete: AttributeError: "
                     "module '1.model' has no attribute 'TritonPythonModel'",)


def test_stub_log_for_auto_complete_raising(pair):
    _, lines = pair.run("ac_raise_log", _stub_log, loaded=False).value
    assert lines == ("I pb_stub.cc:298]  Failed to initialize Python stub for auto-complete: ValueError: "
                     "auto_complete_config raised on purpose", "", "At:",
                     _frame("ac_raise_log", "raise ValueError", "auto_complete_config").rstrip("\n"), "")


def test_stub_log_for_initialize_raising(pair):
    """The instance stub sends its initialize failure to the parent's log (core format)."""
    _, lines = pair.run("init_raise_log", _stub_log, loaded=False).value
    assert lines == (
        'I pb_stub.cc:366] "Failed to initialize Python stub: RuntimeError: init failed on purpose for '
        'init_raise_log_<stub>\\n\\nAt:\\n'
        f'  <repo>/init_raise_log_<stub>/1/model.py({line_of("init_raise/1/model.py", "raise RuntimeError")}): check_args\\n'
        f'  <repo>/init_raise_log_<stub>/1/model.py({line_of("init_raise/1/model.py", "        check_args(args)")}): '
        'initialize\\n"',)
