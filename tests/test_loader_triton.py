"""tritonstub.loader under the real Triton 2.51: the trailing-slash failure, python-based
backends, parameters and environment, plug-ins, the module loader, debugpy, and every way a load
fails while the server keeps serving.

The backend directory is a copy of the reference's ``backends/`` (python/ holds
libtriton_python.so, triton_python_backend_utils.py and the C++ stub), so a test can add a
python-based backend to it or pass it with a trailing slash.
"""
from __future__ import annotations

import json
import re
import shutil
import textwrap
import threading
import time
from pathlib import Path
from typing import Dict

import numpy as np
import pytest

from loader_support import DapClient
from tritonstub.testing.tritonserver import free_port, install_stub

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "model_repository" / "add_sub"
IN0 = np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32)
IN1 = np.array([10.0, -20.0, 0.5, 4.0], dtype=np.float32)

#: A model whose output says which file it came from: OUT = IN + OFFSET.
OFFSET_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils
{imports}
OFFSET = {offset}


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", (x + OFFSET).astype(np.float32))]))
        return out
"""

OFFSET_CONFIG = """
name: "{name}"
backend: "{backend}"
max_batch_size: 0
input [ {{ name: "IN" data_type: TYPE_FP32 dims: [ 2 ] }} ]
output [ {{ name: "OUT" data_type: TYPE_FP32 dims: [ 2 ] }} ]
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
{parameters}
"""


def offset_model(offset: float, imports: str = "") -> str:
    return OFFSET_MODEL.format(offset=offset, imports=imports)


def config(name: str, backend: str = "python", **parameters: str) -> str:
    params = "\n".join(f'parameters: {{ key: "{k}" value: {{ string_value: "{v}" }} }}'
                       for k, v in parameters.items())
    return OFFSET_CONFIG.format(name=name, backend=backend, parameters=params)


@pytest.fixture
def backends(tmp_path, triton_reference) -> Path:
    """A private copy of the reference's backends directory."""
    target = tmp_path / "backends"
    shutil.copytree(triton_reference.backends_dir, target, ignore=shutil.ignore_patterns("__pycache__"))
    assert (target / "python" / "triton_python_backend_stub").is_file()
    return target


def copy_example(repo: Path, name: str, stub: str) -> Path:
    d = repo / name
    shutil.copytree(EXAMPLE, d, ignore=shutil.ignore_patterns("__pycache__", "triton_python_backend_stub"))
    cfg = d / "config.pbtxt"
    cfg.write_text(cfg.read_text().replace('name: "add_sub"', f'name: "{name}"'))
    install_stub(d, stub)
    return d


def settle(server, names, timeout: float = 60.0) -> dict:
    return server.wait_models_settled(names, timeout)


def infer_add_sub(server, name: str):
    import tritonclient.http as httpclient
    client = server.http_client()
    inputs = []
    for input_name, value in (("INPUT0", IN0), ("INPUT1", IN1)):
        t = httpclient.InferInput(input_name, [4], "FP32")
        t.set_data_from_numpy(value)
        inputs.append(t)
    result = client.infer(name, inputs)
    return result.as_numpy("OUTPUT0"), result.as_numpy("OUTPUT1")


def infer_offset(server, name: str) -> np.ndarray:
    import tritonclient.http as httpclient
    client = server.http_client()
    t = httpclient.InferInput("IN", [2], "FP32")
    t.set_data_from_numpy(np.array([1.0, 2.0], dtype=np.float32))
    return client.infer(name, [t]).as_numpy("OUT")


def loader_lines(server, model: str) -> list:
    """The loader's lines for one model in the Triton log (core format, quoted)."""
    return [line for line in server.log_text().splitlines()
            if "tritonstub.loader:0]" in line and f"model '{model}'" in line]


def load(server, name: str, timeout: float = 60.0):
    status, body = server.http("POST", f"/v2/repository/models/{name}/load", {}, timeout=timeout)
    return status, (json.loads(body).get("error", "") if body else "")


# ---- the trailing slash -----------------------------------------------------------------------


def test_trailing_slash_backend_directory(triton_server, tmp_path, backends):
    """``--backend-directory=<dir>/``: the python backend passes its own folder as argv[9]. The C++
    stub then imports 'model' from there and fails; ours loads argv[1] (rule model_file) and
    says so in the Triton log."""
    repo = tmp_path / "repo"
    copy_example(repo, "add_sub", "ours")
    copy_example(repo, "add_sub_cpp", "cpp")
    server = triton_server(repo, backend_directory=f"{backends}/", wait_for="live", log_verbose=1,
                           extra_args=["--exit-on-error=false"])
    index = settle(server, ["add_sub", "add_sub_cpp"])
    assert index["add_sub"]["state"] == "READY"
    assert index["add_sub_cpp"]["state"] == "UNAVAILABLE"
    assert index["add_sub_cpp"]["reason"] == "Internal: ModuleNotFoundError: No module named 'model'"
    total, difference = infer_add_sub(server, "add_sub")
    np.testing.assert_array_equal(total, IN0 + IN1)
    np.testing.assert_array_equal(difference, IN0 - IN1)

    # the condition: every stub got the backend's own folder as argv[9]
    launches = server.stub_launches()
    assert launches and all(argv[9] == str(backends / "python") for argv in launches)
    lines = loader_lines(server, "add_sub_0_0")
    argv1 = repo / "add_sub" / "1" / "model.py"
    assert any(line.startswith("I") and f"\"model 'add_sub_0_0': rule model_file matched {argv1}: importing it "
               "as '1.model'" in line for line in lines), lines
    assert any(line.startswith("W") and "is the python backend's own folder (argv[6])" in line for line in lines)
    assert any(f"loaded by the 'default' loader, rule model_file, from {argv1}" in line for line in lines)


# ---- python-based backends ------------------------------------------------------------------


def _python_based_backend(backends: Path, offset: float = 100.0) -> Path:
    d = backends / "mybackend"
    d.mkdir()
    (d / "model.py").write_text(offset_model(offset))
    return d


def _backend_model(repo: Path, name: str, stub: str, version_model_py: str = None, **parameters) -> Path:
    d = repo / name
    (d / "1").mkdir(parents=True)
    if version_model_py is not None:
        (d / "1" / "model.py").write_text(version_model_py)
    (d / "config.pbtxt").write_text(config(name, "mybackend", **parameters))
    if stub != "default":
        install_stub(d, stub)
    return d


def test_python_based_backend_loads_with_rule_runtime_dir(triton_server, tmp_path, backends):
    backend = _python_based_backend(backends)
    repo = tmp_path / "repo"
    _backend_model(repo, "pb_ours", "ours")
    _backend_model(repo, "pb_cpp", "default")  # the C++ stub next to libtriton_python.so
    server = triton_server(repo, backend_directory=backends, log_verbose=1)
    np.testing.assert_array_equal(infer_offset(server, "pb_ours"), [101.0, 102.0])
    np.testing.assert_array_equal(infer_offset(server, "pb_cpp"), [101.0, 102.0])
    launches = server.stub_launches()
    assert launches and all(argv[9] == str(backend) for argv in launches)
    lines = loader_lines(server, "pb_ours_0_0")
    argv1 = repo / "pb_ours" / "1" / "model.py"
    assert any(f"rule model_file rejected {argv1}: no such file" in line for line in lines), lines
    assert any(f"rule runtime_dir matched {backend / 'model.py'}: importing it as 'model'" in line
               for line in lines), lines


# ---- parameters and environment -------------------------------------------------------------


def test_parameters_and_environment_change_the_rules(triton_server, tmp_path, backends):
    _python_based_backend(backends)  # OUT = IN + 100
    repo = tmp_path / "repo"
    # Both have a model.py in the version directory too (OUT = IN + 1).
    _backend_model(repo, "by_env", "ours", offset_model(1))
    _backend_model(repo, "by_param", "ours", offset_model(1),
                   TRITONSTUB_LOADER_RULES="model_file,runtime_dir")
    extra = repo / "with_path"
    (extra / "1").mkdir(parents=True)
    (extra / "lib").mkdir()
    (extra / "lib" / "shared_offsets.py").write_text("OFFSET = 7\n")
    (extra / "1" / "model.py").write_text(offset_model("shared_offsets.OFFSET", imports="import shared_offsets"))
    (extra / "config.pbtxt").write_text(config("with_path", TRITONSTUB_SYS_PATH="$$TRITON_MODEL_DIRECTORY/lib"))
    install_stub(extra, "ours")
    server = triton_server(repo, backend_directory=backends,
                           env={"TRITONSTUB_LOADER_RULES": "runtime_dir,model_file"})
    np.testing.assert_array_equal(infer_offset(server, "by_env"), [101.0, 102.0])     # environment
    np.testing.assert_array_equal(infer_offset(server, "by_param"), [2.0, 3.0])       # parameter wins
    np.testing.assert_array_equal(infer_offset(server, "with_path"), [8.0, 9.0])
    assert any("setting TRITONSTUB_LOADER_RULES=runtime_dir,model_file (from environment)" in line
               for line in loader_lines(server, "by_env_0_0"))
    assert any("setting TRITONSTUB_LOADER_RULES=model_file,runtime_dir (from config.pbtxt parameters)" in line
               for line in loader_lines(server, "by_param_0_0"))
    # with_path is a normal python model: runtime_dir does not apply, model_file matches
    lines = loader_lines(server, "with_path_0_0")
    assert any("rule runtime_dir skipped: argv[9] is DEFAULT" in line for line in lines), lines
    assert any(f"rule model_file matched {extra / '1' / 'model.py'}" in line for line in lines), lines


# ---- plug-ins and the module loader ---------------------------------------------------------

PLUGIN_FILES = {
    "tritonstub_testplugin/__init__.py": "",
    "tritonstub_testplugin/models.py": OFFSET_MODEL.format(offset=1000, imports="")
    + "\n\nclass Offset2000(TritonPythonModel):\n    def execute(self, requests):\n"
      "        global OFFSET\n        OFFSET = 2000\n        return super().execute(requests)\n",
    "tritonstub_testplugin/loader.py": """
        import types

        def load(ctx):
            from tritonstub_testplugin import models
            wanted = ctx.parameters.get("REGISTRY_MODEL", "")
            cls = getattr(models, wanted, None)
            if cls is None:
                ctx.report.reject("registry", f"tritonstub_testplugin.models:{wanted}", "no such class")
                raise ctx.not_found(f"registry: no model class '{wanted}'")
            ctx.report.match("registry", f"tritonstub_testplugin.models:{wanted}", "from the registry")
            module = types.ModuleType("registry_model")
            module.TritonPythonModel = cls
            return module
    """,
    # What pip writes for a package with an entry point (the parts importlib.metadata reads).
    "tritonstub_testplugin-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: tritonstub-testplugin\nVersion: 0.1\n",
    "tritonstub_testplugin-0.1.dist-info/entry_points.txt": "[tritonstub.loaders]\nregistry = tritonstub_testplugin.loader:load\n",
    "tritonstub_testplugin-0.1.dist-info/top_level.txt": "tritonstub_testplugin\n",
}


@pytest.fixture
def plugin_site(tmp_path) -> Path:
    """tritonstub-testplugin installed into a site directory of its own (as ``pip install
    --target`` lays it out); the servers run the stub with PYTHONPATH=<that directory>, so the
    venv itself is not touched and nothing needs uninstalling."""
    site = tmp_path / "plugin-site"
    for rel, text in PLUGIN_FILES.items():
        p = site / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return site


def test_plugin_entry_point_and_module_loader(triton_server, tmp_path, plugin_site):
    repo = tmp_path / "repo"
    specs = {
        "plugged": dict(TRITONSTUB_LOADER="registry", REGISTRY_MODEL="Offset2000"),
        "dotted": dict(TRITONSTUB_LOADER="module", TRITONSTUB_MODULE="tritonstub_testplugin.models"),
        "dotted_class": dict(TRITONSTUB_LOADER="module", TRITONSTUB_MODULE="tritonstub_testplugin.models:Offset2000"),
        "plugged_missing": dict(TRITONSTUB_LOADER="registry", REGISTRY_MODEL="Nope"),
    }
    for name, params in specs.items():
        d = repo / name
        (d / "1").mkdir(parents=True)  # no model.py anywhere in the repository
        (d / "config.pbtxt").write_text(config(name, **params))
        install_stub(d, "ours")
    server = triton_server(repo, env={"PYTHONPATH": str(plugin_site)}, wait_for="live",
                           extra_args=["--exit-on-error=false"])
    index = settle(server, specs)
    np.testing.assert_array_equal(infer_offset(server, "plugged"), [2001.0, 2002.0])
    np.testing.assert_array_equal(infer_offset(server, "dotted"), [1001.0, 1002.0])
    np.testing.assert_array_equal(infer_offset(server, "dotted_class"), [2001.0, 2002.0])
    assert any("rule registry matched tritonstub_testplugin.models:Offset2000: from the registry" in line
               for line in loader_lines(server, "plugged_0_0"))
    origin = plugin_site / "tritonstub_testplugin" / "models.py"
    assert any(f"rule module matched {origin}: importing module 'tritonstub_testplugin.models'" in line
               for line in loader_lines(server, "dotted_0_0"))
    missing = index["plugged_missing"]
    assert missing["state"] == "UNAVAILABLE"
    assert missing["reason"].startswith(
        "Internal: registry: no model class 'Nope'\n\ntritonstub loader 'registry' tried:\n"
        "  1. rule registry rejected tritonstub_testplugin.models:Nope: no such class\n")


# ---- debugpy --------------------------------------------------------------------------------


def _start_debugged_load(server, port: int):
    """Start loading 'debugged' (it waits for a debugger on ``port``); return (thread, result, listening).

    ``listening`` is True once the model logged that its debugpy listens on ``port``, False
    when the load ended first (e.g. the port was taken meanwhile: free_port() only says it was
    free a moment ago, and other test runs share the machine).
    """
    result = {}
    marker = f"debugpy is listening on 127.0.0.1:{port}"
    loader = threading.Thread(target=lambda: result.update(load=load(server, "debugged", timeout=90)))
    loader.start()
    deadline = time.monotonic() + 60
    while not any(marker in line for line in loader_lines(server, "debugged_0_0")):
        if not loader.is_alive():
            return loader, result, False
        assert time.monotonic() < deadline, f"debugpy never listened\n{server.log_tail()}"
        time.sleep(0.1)
    return loader, result, True


def test_debugpy_attach_inside_triton(triton_server, tmp_path):
    pytest.importorskip("debugpy")
    repo = tmp_path / "repo"
    d = repo / "debugged"
    (d / "1").mkdir(parents=True)
    (d / "1" / "model.py").write_text(offset_model(5))
    install_stub(d, "ours")
    server = None
    for attempt in range(3):
        port = free_port()
        (d / "config.pbtxt").write_text(config("debugged", TRITONSTUB_DEBUGPY=str(port), TRITONSTUB_DEBUGPY_WAIT="60"))
        # Explicit mode: a startup load would block the server's start until the debugger attaches.
        server = server or triton_server(repo, extra_args=["--model-control-mode=explicit"])
        loader, result, listening = _start_debugged_load(server, port)
        if listening:
            break
        loader.join(10)
        assert "Address already in use" in result.get("load", (0, ""))[1], result
    else:
        pytest.fail(f"three free ports in a row were taken before debugpy could listen on them\n{server.log_tail()}")
    client = None
    try:
        client = DapClient("127.0.0.1", port)
        assert loader.is_alive(), f"the load did not wait for the debugger: {result}"
        replies = client.attach()
        assert replies["attach"]["success"] and replies["configurationDone"]["success"]
        loader.join(60)
        assert result.get("load") == (200, ""), result
        np.testing.assert_array_equal(infer_offset(server, "debugged"), [6.0, 7.0])
    finally:
        if client is not None:
            client.close()
        loader.join(90)
    lines = loader_lines(server, "debugged_0_0")
    assert any(f"debugpy is listening on 127.0.0.1:{port}" in line for line in lines), lines
    assert any("debugpy: a debugger is attached; importing the model" in line for line in lines), lines


# ---- failures -------------------------------------------------------------------------------

HELPER_MODEL = "import helper\n\nclass TritonPythonModel:\n    def execute(self, requests):\n        return []\n"


def _failing_models(repo: Path) -> Dict[str, str]:
    """name -> stub; every one fails to load."""
    models = {
        "nofile": (None, {}, {}),
        "noclass": ("X = 1\n", {}, {}),
        "noclass_report": ("X = 1\n", {"TRITONSTUB_ERROR_REPORT": "always"}, {}),
        "syntax": ("class TritonPythonModel\n    pass\n", {}, {}),
        "syntax_report": ("class TritonPythonModel\n    pass\n", {"TRITONSTUB_ERROR_REPORT": "always"}, {}),
        "helper": (HELPER_MODEL, {}, {"1/helper.py": "import tritonstub_no_such_module\n"}),
        "helper_report": (HELPER_MODEL, {"TRITONSTUB_ERROR_REPORT": "always"},
                          {"1/helper.py": "import tritonstub_no_such_module\n"}),
        "badparam": (offset_model(0), {"TRITONSTUB_LOADER_RULE": "model_file"}, {}),
    }
    stubs = {}
    for name, (source, params, files) in models.items():
        for stub in ("ours", "cpp") if name in ("noclass", "syntax", "helper") else ("ours",):
            model = name if stub == "ours" else f"{name}_cpp"
            d = repo / model
            (d / "1").mkdir(parents=True)
            if source is not None:
                (d / "1" / "model.py").write_text(source)
            for rel, text in files.items():
                (d / rel).write_text(text)
            (d / "config.pbtxt").write_text(config(model, **params))
            install_stub(d, stub)
            stubs[model] = stub
    return stubs


def test_every_failure_is_clear_and_triton_keeps_serving(triton_server, tmp_path):
    repo = tmp_path / "repo"
    copy_example(repo, "good", "ours")
    _failing_models(repo)
    server = triton_server(repo, extra_args=["--model-control-mode=explicit", "--load-model=good"])

    def error(name: str) -> str:
        status, text = load(server, name)
        assert status == 400, (name, status, text)
        prefix = f"load failed for model '{name}': version 1 is at UNAVAILABLE state: Internal: "
        assert text.startswith(prefix) and text.endswith(";\n"), text
        entry = server.model_status(name)
        assert entry["state"] == "UNAVAILABLE"
        assert text[len("load failed for model '"):].endswith(entry["reason"] + ";\n")  # same text
        np.testing.assert_array_equal(infer_add_sub(server, "good")[0], IN0 + IN1)  # still serving
        return text[len(prefix):-2]

    argv1 = {name: repo / name / "1" / "model.py" for name in ("nofile", "noclass_report", "syntax_report",
                                                             "helper_report")}
    assert error("nofile") == (
        f"Python model file not found in '{argv1['nofile']}'\n\n"
        "tritonstub loader 'default' (rules: model_file, runtime_dir) tried:\n"
        f"  1. rule model_file rejected {argv1['nofile']}: no such file (argv[1], the model file Triton names)\n"
        "  2. rule runtime_dir skipped: argv[9] is DEFAULT (Triton names a runtime model directory only for "
        "python-based backends)\n"
        "See docs/loader.md in tritonstub for the rules and the TRITONSTUB_* parameters.\n"
        f"What to do: put the model file at {argv1['nofile']}, or choose other rules (TRITONSTUB_LOADER_RULES) "
        "or another loader (TRITONSTUB_LOADER).")

    # Where the C++ stub loads the same file the same way, the text is the C++ stub's, byte for byte.
    # (The line numbers of frozen importlib frames differ between the venv's Python 3.11.x and the
    # system Python 3.11.y the C++ stub embeds.)
    def frozen(text: str) -> str:
        return re.sub(r"(<frozen [^>]+>)\(\d+\)", r"\1(#)", text)

    for name in ("noclass", "syntax", "helper"):
        ours, cpp = error(name), error(f"{name}_cpp")
        assert frozen(ours) == frozen(cpp.replace(f"/{name}_cpp/", f"/{name}/")), (ours, cpp)
    assert error("noclass") == "AttributeError: module '1.model' has no attribute 'TritonPythonModel'"
    assert error("syntax") == "SyntaxError: expected ':' (model.py, line 1)"
    assert error("helper").startswith("ModuleNotFoundError: No module named 'tritonstub_no_such_module'\n\nAt:\n"
                                      f"  {repo / 'helper' / '1' / 'helper.py'}(1): <module>\n")

    # TRITONSTUB_ERROR_REPORT=always: the same text, then what was tried.
    for name, head in (("noclass_report", "AttributeError: module '1.model' has no attribute 'TritonPythonModel'"),
                       ("syntax_report", "SyntaxError: expected ':' (model.py, line 1)"),
                       ("helper_report", "ModuleNotFoundError: No module named 'tritonstub_no_such_module'\n\nAt:\n")):
        text = error(name)
        assert text.startswith(head), text
        report = text[text.index("\n\ntritonstub loader 'default'") + 2:]
        assert report.startswith("tritonstub loader 'default' (rules: model_file, runtime_dir) tried:\n"
                                 f"  1. rule model_file failed {argv1[name]}: importing it as '1.model'"), report
        assert "setting: TRITONSTUB_ERROR_REPORT=always (from config.pbtxt parameters)" in report

    bad = error("badparam")
    assert bad.startswith("tritonstub: unknown parameter 'TRITONSTUB_LOADER_RULE' (did you mean "
                          "TRITONSTUB_LOADER_RULES?) in config.pbtxt; the valid TRITONSTUB_* parameters are: "
                          "TRITONSTUB_LOADER, TRITONSTUB_LOADER_RULES,"), bad
    assert server.running
