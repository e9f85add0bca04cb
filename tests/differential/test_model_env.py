"""What model.py observes of the stub that runs it, and what it writes to the server log.

initialize's args, the module's identity (``__name__``, ``__file__``, ``sys.argv``), import paths
(helpers in the version directory, the model directory, a relative import), ``get_model_dir()``,
the pb_utils surface, threads and signals; and Logger output at every level.
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from difftools import DiffModel, Outcome, Target

DIFF_MODELS = [DiffModel("whoami"), DiffModel("model_env"), DiffModel("logging")]
#: Logger.log_verbose needs the server at verbose level 1.
DIFF_LOG_VERBOSE = 1


def _env(target: Target, *keys: str) -> Outcome:
    out = target.infer({"IN": np.array([1], dtype=np.int32)}).require_ok()
    env = out.json("ENV")
    return Outcome("value", value=target.normaliser.value({k: env[k] for k in keys}))


def test_each_side_runs_its_own_stub(pair):
    """Sanity, not a comparison: `_cpp` runs the C++ binary, `_ours` runs Python with tritonstub."""
    def who(target: Target) -> Outcome:
        return Outcome("value", value=target.infer({"IN": np.array([1], dtype=np.int32)}).require_ok().json("WHO"))

    who_am_i = pair.run("whoami", who, compare=False).value
    if pair.is_cpp:
        assert who_am_i["exe"].endswith("/whoami_cpp/triton_python_backend_stub")
        assert who_am_i["version"].startswith("3.11.2")
    else:
        assert "python" in who_am_i["exe"].rsplit("/", 1)[-1]
        assert "tritonstub.stub" in who_am_i["cmdline"]
        assert who_am_i["cmdline"][-9:][0].endswith("/whoami_ours/1/model.py")


def test_initialize_args(pair):
    args = pair.run("model_env", lambda t: _env(t, "args")).value["args"]
    assert args == {
        "model_instance_kind": "CPU",
        "model_instance_name": "model_env_<stub>_0",
        "model_instance_device_id": "0",
        "model_repository": "<repo>/model_env_<stub>",
        "model_version": "1",
        "model_name": "model_env_<stub>",
    }


def test_initialize_arg_types_and_thread(pair):
    got = pair.run("model_env", lambda t: _env(t, "at_initialize", "execute_thread")).value
    assert got["at_initialize"]["args_type"] == "dict"
    assert set(got["at_initialize"]["arg_types"].values()) == {"str"}
    assert got["at_initialize"]["thread"] == got["execute_thread"] == "MainThread"


def test_model_config_json_is_passed_verbatim(pair):
    got = pair.run("model_env", lambda t: _env(t, "model_config_raw", "model_config")).value
    config = got["model_config"]
    assert config["name"] == "model_env_<stub>"
    assert config["parameters"] == {"custom_key": {"string_value": "custom value ✓"}}
    assert json.loads(got["model_config_raw"]) == config


def test_module_identity_at_import(pair):
    def case(target):
        out = _env(target, "at_import")
        out.value["at_import"].pop("pb_utils_has_Tensor")  # differs on purpose, see below
        return out

    at_import = pair.run("model_env", case).value["at_import"]
    assert at_import == {
        "__name__": "1.model",
        "__file__": "<repo>/model_env_<stub>/1/model.py",
        "__package__": "1",
        "spec_name": "1.model",
        "spec_origin": "<repo>/model_env_<stub>/1/model.py",
        "loader": "SourceFileLoader",
        "sys.argv": [""],
        "thread": "MainThread",
    }


def test_pb_utils_tensor_at_import_time(pair):
    """Deliberate difference: the C++ stub injects Tensor & co. into triton_python_backend_utils
    only after importing model.py, so `pb_utils.Tensor` used at import time is missing there
    (AttributeError); ours injects them first."""
    at_import = pair.run("model_env", lambda t: _env(t, "at_import"), compare=False).value["at_import"]
    assert at_import["pb_utils_has_Tensor"] is (not pair.is_cpp)


def test_sys_argv_sys_path_and_model_dir(pair):
    got = pair.run("model_env", lambda t: _env(
        t, "sys.argv", "sys.path[0]", "sys.path[-3:]", "get_model_dir", "pb_utils_file", "class_module",
        "package_in_sys_modules")).value
    assert got["sys.argv"] == [""]
    assert got["sys.path[0]"] == ""
    assert got["sys.path[-3:]"][:2] == ["<repo>/model_env_<stub>/1", "<repo>/model_env_<stub>"]
    assert got["sys.path[-3:]"][2].endswith("/backends/python")
    assert got["get_model_dir"] == "<repo>/model_env_<stub>/1"
    assert got["class_module"] == "1.model"


def test_helper_imports(pair):
    got = pair.run("model_env", lambda t: _env(t, "helpers", "helper_modules")).value
    assert got["helpers"] == ["version directory", "model directory", "relative import as 1.relative_helper"]
    assert got["helper_modules"] == ["helper_in_version_dir", "helper_in_model_dir"]


def test_pb_utils_and_c_python_backend_utils_surface(pair):
    got = pair.run("model_env", lambda t: _env(t, "pb_utils_names", "c_python_backend_utils_names")).value
    for name in ("Tensor", "InferenceRequest", "InferenceResponse", "Logger", "TritonError",
                 "TritonModelException", "get_model_dir", "ModelConfig", "serialize_byte_tensor"):
        assert name in got["pb_utils_names"]
    assert "InferenceResponseSender" in got["c_python_backend_utils_names"]


def test_threads_seen_by_python(pair):
    threads = pair.run("model_env", lambda t: _env(t, "threads")).value["threads"]
    assert threads == ["MainThread"]


def test_signal_dispositions(pair):
    got = pair.run("model_env", lambda t: _env(t, "signals", "stdin_isatty")).value
    assert got["signals"]["SIGINT"] == "None" and got["signals"]["SIGTERM"] == "None"
    assert got["signals"]["SIGPIPE"] == "<Handlers.SIG_IGN: 1>"
    assert got["signals"]["SIGCHLD"] == "<Handlers.SIG_DFL: 0>"
    assert got["stdin_isatty"] is False


def test_main_module_and_working_directory(pair):
    got = pair.run("model_env", lambda t: _env(t, "main_has_file", "main_spec", "cwd")).value
    assert got["main_has_file"] is False
    assert got["main_spec"] == "None"


# ---- Logger -----------------------------------------------------------------------------------

#: initialize: 4 levels; execute: 4 levels + 4 log() calls + 2 special messages.
LOGGER_LINES = 14
_LOGGER_LINE = re.compile(r'^[IWE] \S+:\d+\] "')


def _log(target: Target) -> Outcome:
    """The Logger lines (core format), then, from a second request, the print() lines.

    Two requests because both streams share the server's stdout: Logger records reach it through
    the parent asynchronously, print() writes straight to it, and the two can interleave even
    inside one line.
    """
    tag = f"DIFFLOG[{target.name}_0]"
    out = target.infer({"IN": np.array(["payload ✓".encode()], dtype=object)}).require_ok()
    logger = tuple(line for line in target.log_lines(tag, expect=LOGGER_LINES) if _LOGGER_LINE.match(line))
    target.infer({"IN": np.array([b"print"], dtype=object)}).require_ok()
    printed = tuple(line for line in target.log_lines(tag, expect=LOGGER_LINES + 2)
                    if not _LOGGER_LINE.match(line))
    return Outcome("value", value=(out.output("OUT").data, logger, printed))


def test_logger_lines_in_the_server_log(pair):
    payload, logger, printed = pair.run("logging", _log).value
    tag = "DIFFLOG[logging_<stub>_0]"
    assert payload == (b"payload \xe2\x9c\x93 [('ERROR', 2), ('INFO', 0), ('VERBOSE', 3), ('WARNING', 1)]",)
    assert logger == (
        f'I model.py:14] "{tag} initialize info"',
        f'W model.py:15] "{tag} initialize warn"',
        f'E model.py:16] "{tag} initialize error"',
        f'I model.py:17] "{tag} initialize verbose"',
        f'I model.py:24] "{tag} execute info payload ✓"',
        f'W model.py:25] "{tag} execute warn payload ✓"',
        f'E model.py:26] "{tag} execute error payload ✓"',
        f'I model.py:27] "{tag} execute verbose payload ✓"',
        f'I model.py:28] "{tag} log() default level"',
        f'E model.py:29] "{tag} log() level ERROR"',
        f'W model.py:30] "{tag} log() level WARNING"',
        f'I model.py:31] "{tag} log() level VERBOSE"',
        f'I model.py:32] "{tag} quotes \\" and \'single\', backslash \\\\, tab\\t, newline\\nsecond line, ünïcödé ✓"',
        f'I model.py:33] "{tag}"',
    )
    assert printed == (f"{tag} print to stdout", f"{tag} print to stderr")
