"""tritonstub.loader without a server: the rules, the error texts, the plug-ins, debugpy.

Each case runs ``load_model`` in a fresh interpreter with the argv paths the python backend
would pass (tests/loader_support.py); tests/test_loader_triton.py proves the same under real
Triton.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from loader_support import ROOT, RUNNER, DapClient, config_with, model_dir, run_loader

MODEL = """
    import triton_python_backend_utils as pb_utils

    WHO = "{who}"

    class TritonPythonModel:
        def probe(self):
            return [WHO, __name__, pb_utils.get_model_dir()]
"""


@pytest.fixture
def lib(tmp_path) -> Path:
    """argv[6]: a python backend folder (no stock pb_utils: the stub's own fallback is used)."""
    d = tmp_path / "backends" / "python"
    d.mkdir(parents=True)
    return d


def _backend(tmp_path: Path, who: str = "backend") -> Path:
    d = tmp_path / "backends" / "mybackend"
    d.mkdir(parents=True, exist_ok=True)
    (d / "model.py").write_text(textwrap.dedent(MODEL.format(who=who)))
    return d


# ---- the two rules ----------------------------------------------------------------------------


def test_model_file_is_imported_as_the_cpp_stub_imports_it(tmp_path, lib):
    m = model_dir(tmp_path, model_py=MODEL.format(who="argv1"),
                  files={"1/sibling.py": "X = 1\n", "helper_in_model_dir.py": "Y = 2\n"})
    run = run_loader(m / "1" / "model.py", python_lib=lib)
    assert run.ok, run.error
    assert run["module"] == "1.model"
    assert run["probe"] == ["argv1", "1.model", str(m / "1")]
    assert run["sys_path"][-3:] == [str(m / "1"), str(m), str(lib)]
    assert run["sys_path"][0] == ""
    assert run["resolved"] == str(m / "1" / "model.py")
    assert f"rule model_file matched {m / '1' / 'model.py'}: importing it as '1.model'" in run.log_text()
    assert "loaded by the 'default' loader, rule model_file" in run.log_text()


def test_trailing_slash_case_loads_argv1_and_says_why_argv9_is_odd(tmp_path, lib):
    """argv[9] is the python backend's own folder (what a trailing slash on --backend-directory
    gives): the C++ stub imports 'model' from there and fails; we load argv[1] and warn."""
    m = model_dir(tmp_path, model_py=MODEL.format(who="argv1"))
    run = run_loader(m / "1" / "model.py", python_lib=lib, runtime_dir=str(lib))
    assert run.ok, run.error
    assert run["probe"][:2] == ["argv1", "1.model"]
    warnings = [msg for level, msg in run.log if level == 1]
    assert len(warnings) == 1 and "is the python backend's own folder (argv[6])" in warnings[0]
    assert "trailing slash" in warnings[0]


def test_python_based_backend_loads_from_the_runtime_dir(tmp_path, lib):
    backend = _backend(tmp_path)
    m = model_dir(tmp_path)  # the version directory exists, its model.py does not
    run = run_loader(m / "1" / "model.py", python_lib=lib, runtime_dir=str(backend))
    assert run.ok, run.error
    assert run["module"] == "model"
    assert run["probe"] == ["backend", "model", str(m / "1")]
    assert run["sys_path"][-2:] == [str(backend), str(lib)]
    assert run["resolved"] == str(backend / "model.py")
    text = run.log_text()
    assert f"rule model_file rejected {m / '1' / 'model.py'}: no such file" in text
    assert f"rule runtime_dir matched {backend / 'model.py'}: importing it as 'model'" in text


def test_rule_order_from_a_parameter(tmp_path, lib):
    backend = _backend(tmp_path)
    m = model_dir(tmp_path, model_py=MODEL.format(who="argv1"))
    default = run_loader(m / "1" / "model.py", python_lib=lib, runtime_dir=str(backend))
    assert default["probe"][0] == "argv1"
    swapped = run_loader(m / "1" / "model.py", python_lib=lib, runtime_dir=str(backend),
                         parameters={"TRITONSTUB_LOADER_RULES": "runtime_dir,model_file"})
    assert swapped.ok and swapped["probe"][0] == "backend"
    assert "setting TRITONSTUB_LOADER_RULES=runtime_dir,model_file (from config.pbtxt parameters)" \
        in swapped.log_text()


def test_rule_order_from_the_environment_and_the_parameter_wins(tmp_path, lib):
    backend = _backend(tmp_path)
    m = model_dir(tmp_path, model_py=MODEL.format(who="argv1"))
    env = {"TRITONSTUB_LOADER_RULES": "runtime_dir,model_file"}
    by_env = run_loader(m / "1" / "model.py", python_lib=lib, runtime_dir=str(backend), env=env)
    assert by_env["probe"][0] == "backend"
    assert "(from environment)" in by_env.log_text()
    both = run_loader(m / "1" / "model.py", python_lib=lib, runtime_dir=str(backend), env=env,
                      parameters={"TRITONSTUB_LOADER_RULES": "model_file"})
    assert both["probe"][0] == "argv1"


def test_a_single_rule_excludes_the_other(tmp_path, lib):
    backend = _backend(tmp_path)
    m = model_dir(tmp_path)
    run = run_loader(m / "1" / "model.py", python_lib=lib, runtime_dir=str(backend),
                     parameters={"TRITONSTUB_LOADER_RULES": "model_file"})
    assert not run.ok
    assert run.error.startswith(f"Python model file not found in '{m / '1' / 'model.py'}'\n\n"
                                "tritonstub loader 'default' (rules: model_file) tried:\n"
                                f"  1. rule model_file rejected {m / '1' / 'model.py'}: no such file")
    assert "runtime_dir" not in run.error.split("tried:")[1].split("setting:")[0]


# ---- failures ---------------------------------------------------------------------------------


def test_no_file_anywhere_lists_every_rule(tmp_path, lib):
    m = model_dir(tmp_path)
    run = run_loader(m / "1" / "model.py", python_lib=lib)
    assert run["type"] == "LoaderError"
    argv1 = m / "1" / "model.py"
    assert run.error == (
        f"Python model file not found in '{argv1}'\n\n"
        "tritonstub loader 'default' (rules: model_file, runtime_dir) tried:\n"
        f"  1. rule model_file rejected {argv1}: no such file (argv[1], the model file Triton names)\n"
        "  2. rule runtime_dir skipped: argv[9] is DEFAULT (Triton names a runtime model directory "
        "only for python-based backends)\n"
        "See docs/loader.md in tritonstub for the rules and the TRITONSTUB_* parameters.\n"
        f"What to do: put the model file at {argv1}, or choose other rules "
        "(TRITONSTUB_LOADER_RULES) or another loader (TRITONSTUB_LOADER).")


def test_no_file_under_a_trailing_slash_backend_dir(tmp_path, lib):
    m = model_dir(tmp_path)
    run = run_loader(m / "1" / "model.py", python_lib=lib, runtime_dir=str(lib))
    assert not run.ok
    assert f"1. rule model_file rejected {m / '1' / 'model.py'}: no such file" in run.error
    assert f"2. rule runtime_dir rejected {lib / 'model.py'}: no such file" in run.error
    assert "is the python backend's own folder" in run.error


def test_file_without_the_class_keeps_the_cpp_text(tmp_path, lib):
    m = model_dir(tmp_path, model_py="X = 1\n")
    run = run_loader(m / "1" / "model.py", python_lib=lib)
    assert run.error == "AttributeError: module '1.model' has no attribute 'TritonPythonModel'"
    # ... and the log still says which file it was.
    assert f"rule model_file matched {m / '1' / 'model.py'}" in run.log_text()
    assert "loading failed: AttributeError" in run.log_text()


def test_file_without_the_class_with_the_report(tmp_path, lib):
    m = model_dir(tmp_path, model_py="X = 1\n")
    run = run_loader(m / "1" / "model.py", python_lib=lib,
                     parameters={"TRITONSTUB_ERROR_REPORT": "always"})
    assert run.error.startswith("AttributeError: module '1.model' has no attribute 'TritonPythonModel'\n\n"
                                "tritonstub loader 'default' (rules: model_file, runtime_dir) tried:\n"
                                f"  1. rule model_file failed {m / '1' / 'model.py'}: importing it as '1.model'")
    assert "it failed: AttributeError" in run.error


def test_syntax_error_keeps_the_cpp_text(tmp_path, lib):
    m = model_dir(tmp_path, model_py="class TritonPythonModel\n    pass\n")
    run = run_loader(m / "1" / "model.py", python_lib=lib)
    assert run.error == "SyntaxError: expected ':' (model.py, line 1)"
    always = run_loader(m / "1" / "model.py", python_lib=lib, env={"TRITONSTUB_ERROR_REPORT": "always"})
    assert always.error.startswith("SyntaxError: expected ':' (model.py, line 1)\n\ntritonstub loader")
    assert str(m / "1" / "model.py") in always.error


def test_import_error_in_a_helper_keeps_the_cpp_text(tmp_path, lib):
    m = model_dir(tmp_path, model_py="import helper\nclass TritonPythonModel:\n    pass\n",
                  files={"1/helper.py": "import tritonstub_no_such_module\n"})
    run = run_loader(m / "1" / "model.py", python_lib=lib)
    assert run.error.startswith("ModuleNotFoundError: No module named 'tritonstub_no_such_module'\n\nAt:\n"
                                f"  {m / '1' / 'helper.py'}(1): <module>\n")
    assert f"  {m / '1' / 'model.py'}(1): <module>\n" in run.error
    assert "tritonstub loader" not in run.error


def test_import_error_with_a_resolution_setting_carries_the_report(tmp_path, lib):
    m = model_dir(tmp_path, model_py="import helper\nclass TritonPythonModel:\n    pass\n",
                  files={"1/helper.py": "import tritonstub_no_such_module\n", "lib/x.py": ""})
    run = run_loader(m / "1" / "model.py", python_lib=lib,
                     parameters={"TRITONSTUB_SYS_PATH": "$$TRITON_MODEL_DIRECTORY/lib"})
    head, _, report = run.error.partition("\n\ntritonstub loader 'default'")
    assert head.startswith("ModuleNotFoundError: No module named 'tritonstub_no_such_module'\n\nAt:\n")
    assert f"setting: TRITONSTUB_SYS_PATH=$$TRITON_MODEL_DIRECTORY/lib (from config.pbtxt parameters)" in report


def test_import_that_cannot_find_the_model_module_carries_the_report(tmp_path, lib):
    """A regular package '1' earlier on sys.path (here the cwd, sys.path[0] == '') hides the
    model's version directory: Python finds no '1.model'. The C++ stub says only that."""
    m = model_dir(tmp_path, model_py=MODEL.format(who="argv1"))
    cwd = tmp_path / "cwd"
    (cwd / "1").mkdir(parents=True)
    (cwd / "1" / "__init__.py").write_text("")
    run = run_loader(m / "1" / "model.py", python_lib=lib, cwd=cwd)
    assert run.error.startswith("ModuleNotFoundError: No module named '1.model'\n\ntritonstub loader")
    assert f"rule model_file failed {m / '1' / 'model.py'}" in run.error


def test_import_of_another_file_of_the_same_name_is_a_warning(tmp_path, lib):
    m = model_dir(tmp_path, model_py=MODEL.format(who="argv1"))
    cwd = tmp_path / "cwd"
    (cwd / "1").mkdir(parents=True)
    (cwd / "1" / "model.py").write_text(textwrap.dedent(MODEL.format(who="shadow")))
    run = run_loader(m / "1" / "model.py", python_lib=lib, cwd=cwd)
    assert run["probe"][0] == "shadow"  # what Python (and the C++ stub) does
    assert run["resolved"] == str(cwd / "1" / "model.py")
    assert any(level == 1 and f"Python imported '1.model' from {cwd / '1' / 'model.py'}, not from" in msg
               for level, msg in run.log)


def test_model_name_must_end_with_py(tmp_path, lib):
    m = model_dir(tmp_path, files={"1/model.txt": "x = 1\n"})
    run = run_loader(m / "1" / "model.txt", python_lib=lib)
    assert run.error == "Model name must end with '.py'. Model name is \"model.txt\"."


def test_unknown_parameter_names_the_valid_ones(tmp_path, lib):
    m = model_dir(tmp_path, model_py=MODEL.format(who="argv1"))
    run = run_loader(m / "1" / "model.py", python_lib=lib, parameters={"TRITONSTUB_LOADER_RULE": "model_file"})
    assert run["type"] == "ConfigError"
    assert run.error.startswith("tritonstub: unknown parameter 'TRITONSTUB_LOADER_RULE' (did you mean "
                                "TRITONSTUB_LOADER_RULES?) in config.pbtxt; the valid TRITONSTUB_* parameters "
                                "are: TRITONSTUB_LOADER, TRITONSTUB_LOADER_RULES, TRITONSTUB_SYS_PATH")
    assert run.log == []  # nothing was imported or logged before the check


def test_bad_rule_name(tmp_path, lib):
    m = model_dir(tmp_path, model_py=MODEL.format(who="argv1"))
    run = run_loader(m / "1" / "model.py", python_lib=lib, parameters={"TRITONSTUB_LOADER_RULES": "argv1"})
    assert run.error.startswith("tritonstub: bad value 'argv1' for config.pbtxt parameter "
                                "TRITONSTUB_LOADER_RULES: unknown rule(s) argv1; the rules are model_file, runtime_dir.")


# ---- sys.path, log levels ---------------------------------------------------------------------


def test_sys_path_entries_with_the_model_directory(tmp_path, lib):
    m = model_dir(tmp_path, model_py="import shared_helper\n" + textwrap.dedent(MODEL.format(who="argv1")),
                  files={"lib/shared_helper.py": "X = 1\n"})
    run = run_loader(m / "1" / "model.py", python_lib=lib,
                     parameters={"TRITONSTUB_SYS_PATH": "$$TRITON_MODEL_DIRECTORY/lib:/nonexistent-dir"})
    assert run.ok, run.error
    # appended before the rule's own entries, which stay last as in the C++ stub
    assert run["sys_path"][-5:] == [str(m / "lib"), "/nonexistent-dir", str(m / "1"), str(m), str(lib)]
    assert any(level == 1 and "/nonexistent-dir is not a directory" in msg for level, msg in run.log)


def test_auto_complete_stub_logs_only_at_verbose(tmp_path, lib):
    """The auto-complete stub's stderr stays what the C++ stub prints; the instance stubs log
    the resolution at INFO (through the parent) and failures carry it in their text."""
    m = model_dir(tmp_path, model_py=MODEL.format(who="argv1"))
    quiet = run_loader(m / "1" / "model.py", python_lib=lib, runtime_dir=str(lib), kind="auto_complete")
    assert quiet.ok and quiet.log == []
    loud = run_loader(m / "1" / "model.py", python_lib=lib, runtime_dir=str(lib), kind="auto_complete",
                      parameters={"TRITONSTUB_LOG_LEVEL": "verbose"})
    assert "rule model_file matched" in loud.log_text()


def test_log_level_error_keeps_only_errors(tmp_path, lib):
    m = model_dir(tmp_path, model_py="X = 1\n")
    run = run_loader(m / "1" / "model.py", python_lib=lib, env={"TRITONSTUB_LOG_LEVEL": "error"})
    assert [level for level, _ in run.log] == [2]


# ---- the module loader and plug-ins -----------------------------------------------------------


def _package(root: Path) -> None:
    pkg = root / "mymodels"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "adder.py").write_text(textwrap.dedent(MODEL.format(who="package"))
                                  + "\nclass Other(TritonPythonModel):\n    def probe(self):\n"
                                    "        return ['other', __name__]\n")
    (pkg / "empty.py").write_text("X = 1\n")


def test_module_loader_imports_a_dotted_path(tmp_path, lib):
    m = model_dir(tmp_path)  # no model.py at all
    _package(m / "lib")
    params = {"TRITONSTUB_LOADER": "module", "TRITONSTUB_MODULE": "mymodels.adder",
              "TRITONSTUB_SYS_PATH": "$$TRITON_MODEL_DIRECTORY/lib"}
    run = run_loader(m / "1" / "model.py", python_lib=lib, parameters=params)
    assert run.ok, run.error
    assert run["probe"] == ["package", "mymodels.adder", str(m / "1")]
    assert run["resolved"] == str(m / "lib" / "mymodels" / "adder.py")
    assert f"rule module matched {m / 'lib' / 'mymodels' / 'adder.py'}" in run.log_text()
    other = run_loader(m / "1" / "model.py", python_lib=lib,
                       parameters=dict(params, TRITONSTUB_MODULE="mymodels.adder:Other"))
    assert other.ok and other["probe"] == ["other", "mymodels.adder"]


def test_module_loader_failures(tmp_path, lib):
    m = model_dir(tmp_path)
    _package(m / "lib")
    base = {"TRITONSTUB_LOADER": "module", "TRITONSTUB_SYS_PATH": "$$TRITON_MODEL_DIRECTORY/lib"}
    missing = run_loader(m / "1" / "model.py", python_lib=lib, parameters=dict(base, TRITONSTUB_MODULE="mymodels.nope"))
    assert missing.error.startswith("tritonstub: module 'mymodels.nope' (TRITONSTUB_MODULE) was not found\n\n"
                                    "tritonstub loader 'module' tried:\n  1. rule module rejected mymodels.nope")
    assert repr(str(m / "lib")) in missing.error  # sys.path is listed
    no_class = run_loader(m / "1" / "model.py", python_lib=lib, parameters=dict(base, TRITONSTUB_MODULE="mymodels.empty"))
    assert no_class.error.startswith("AttributeError: module 'mymodels.empty' has no attribute 'TritonPythonModel'"
                                     "\n\ntritonstub loader 'module' tried:\n")
    no_module = run_loader(m / "1" / "model.py", python_lib=lib, parameters={"TRITONSTUB_LOADER": "module"})
    assert no_module.error.startswith("tritonstub: TRITONSTUB_LOADER=module needs TRITONSTUB_MODULE")


def _plugin(root: Path, body: str) -> None:
    dist = root / "tritonstub_testplugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tritonstub-testplugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[tritonstub.loaders]\nfixed = tritonstub_testplugin:load\n")
    (root / "tritonstub_testplugin.py").write_text(textwrap.dedent(body))


PLUGIN = """
    import os, types

    def load(ctx):
        path = os.path.join(ctx.model.model_dir, ctx.parameters.get("FIXED_FILE", "elsewhere.py"))
        if not os.path.exists(path):
            ctx.report.reject("fixed", path, "no such file")
            raise ctx.not_found(f"no model at {path}")
        ctx.report.match("fixed", path, "running it")
        ns = {}
        exec(compile(open(path).read(), path, "exec"), ns)
        module = types.ModuleType("fixed_model")
        module.__file__ = path
        module.TritonPythonModel = ns["TritonPythonModel"]
        return module
"""


def test_plugin_from_an_entry_point(tmp_path, lib):
    m = model_dir(tmp_path, files={"elsewhere.py": MODEL.format(who="plugin")})
    _plugin(m / "plugins", PLUGIN)
    params = {"TRITONSTUB_LOADER": "fixed", "TRITONSTUB_SYS_PATH": "$$TRITON_MODEL_DIRECTORY/plugins"}
    run = run_loader(m / "1" / "model.py", python_lib=lib, parameters=params)
    assert run.ok, run.error
    assert run["probe"][0] == "plugin"
    assert f"rule fixed matched {m / 'elsewhere.py'}: running it" in run.log_text()
    assert "loaded by the 'fixed' loader, rule fixed" in run.log_text()
    (m / "elsewhere.py").unlink()
    gone = run_loader(m / "1" / "model.py", python_lib=lib, parameters=params)
    assert gone.error.startswith(f"no model at {m / 'elsewhere.py'}\n\ntritonstub loader 'fixed' tried:\n"
                                 f"  1. rule fixed rejected {m / 'elsewhere.py'}: no such file")


def test_unknown_loader_lists_the_available_ones(tmp_path, lib):
    m = model_dir(tmp_path, model_py=MODEL.format(who="argv1"))
    _plugin(m / "plugins", PLUGIN)
    run = run_loader(m / "1" / "model.py", python_lib=lib,
                     parameters={"TRITONSTUB_LOADER": "nope", "TRITONSTUB_SYS_PATH": "$$TRITON_MODEL_DIRECTORY/plugins"})
    assert run["type"] == "ConfigError"
    assert "no loader named 'nope' (TRITONSTUB_LOADER); the loaders available to" in run.error
    assert "are: default, module, fixed." in run.error


def test_plugin_that_fails_to_import(tmp_path, lib):
    m = model_dir(tmp_path, model_py=MODEL.format(who="argv1"))
    _plugin(m / "plugins", "raise RuntimeError('plugin is broken')\n")
    run = run_loader(m / "1" / "model.py", python_lib=lib,
                     parameters={"TRITONSTUB_LOADER": "fixed", "TRITONSTUB_SYS_PATH": "$$TRITON_MODEL_DIRECTORY/plugins"})
    assert run.error.startswith("tritonstub: the loader plug-in 'fixed' (entry point 'fixed = "
                                "tritonstub_testplugin:load' of tritonstub-testplugin) failed to import: "
                                "RuntimeError: plugin is broken")


# ---- debugpy ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_debugpy_missing_is_a_clear_load_error(tmp_path, lib):
    m = model_dir(tmp_path, model_py=MODEL.format(who="argv1"))
    shadow = tmp_path / "no_debugpy"
    shadow.mkdir()
    (shadow / "debugpy.py").write_text("raise ImportError('debugpy is not installed (test)')\n")
    run = run_loader(m / "1" / "model.py", python_lib=lib, parameters={"TRITONSTUB_DEBUGPY": "5678"},
                     env={"PYTHONPATH": f"{shadow}:{Path(__file__).resolve().parents[1]}"})
    assert run["type"] == "LoaderError"
    assert run.error.startswith("tritonstub: TRITONSTUB_DEBUGPY=5678 asks for debugpy, but it cannot be imported by ")
    assert "pip install 'tritonstub[debug]'" in run.error


def test_debugpy_only_on_loopback(tmp_path, lib):
    m = model_dir(tmp_path, model_py=MODEL.format(who="argv1"))
    run = run_loader(m / "1" / "model.py", python_lib=lib, parameters={"TRITONSTUB_DEBUGPY": "0.0.0.0:5678"})
    assert "debugpy may only listen on loopback" in run.error


def test_debugpy_waits_for_a_debugger_before_the_import(tmp_path, lib):
    pytest.importorskip("debugpy")
    m = model_dir(tmp_path, model_py=MODEL.format(who="argv1"))
    port = _free_port()
    args = {"model_path": str(m / "1" / "model.py"), "python_lib": str(lib), "runtime_dir": "DEFAULT",
            "config": config_with({"TRITONSTUB_DEBUGPY": str(port), "TRITONSTUB_DEBUGPY_WAIT": "60"}),
            "kind": "instance", "name": "m_0_0", "after": ""}
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRITONSTUB_")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, json.dumps(args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=str(lib), start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        client = None
        while client is None:
            try:
                client = DapClient("127.0.0.1", port)
            except OSError:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "debugpy never listened"
                time.sleep(0.1)
        time.sleep(0.5)
        assert proc.poll() is None, "the loader did not wait for the debugger"
        replies = client.attach()
        assert replies["initialize"]["success"] and replies["attach"]["success"]
        proc.wait(timeout=30)
        client.close()  # the adapter (debugpy's own subprocess) exits with the last client
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
    result = json.loads(out.split("LOADER-RESULT ", 1)[1])
    assert result["ok"], result
    log = "\n".join(msg for _, msg in result["log"])
    assert f"debugpy is listening on 127.0.0.1:{port}" in log
    assert "debugpy: a debugger is attached; importing the model" in log


def test_debugpy_in_the_auto_complete_stub_only_when_asked(tmp_path, lib):
    pytest.importorskip("debugpy")
    m = model_dir(tmp_path, model_py=MODEL.format(who="argv1"))
    port = _free_port()
    params = {"TRITONSTUB_DEBUGPY": str(port), "TRITONSTUB_DEBUGPY_STUB": "auto_complete"}
    ac = run_loader(m / "1" / "model.py", python_lib=lib, parameters=params, kind="auto_complete")
    assert ac.ok, ac.error
    # shown although the auto-complete stub's other loader lines are VERBOSE
    assert ac.log == [(0, f"model 'm_0_0': debugpy is listening on 127.0.0.1:{port}: attach a debugger "
                          f"('attach' to 127.0.0.1:{port})")]
    instance = run_loader(m / "1" / "model.py", python_lib=lib, parameters=params)
    assert instance.ok and "debugpy is listening" not in instance.log_text()
