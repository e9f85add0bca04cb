"""What model.py observes of the stub that runs it, and what it writes to the server log.

initialize's args, the module's identity (``__name__``, ``__file__``, ``sys.argv``), import paths
(helpers in the version directory, the model directory, a relative import), ``get_model_dir()``,
the pb_utils surface, threads and signals; and Logger output at every level.
"""
from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest

from difftools import MODELS_DIR, DiffModel, Outcome, Target, line_of, mask_addresses

#: Items of the conformance checklist these cases cover (conformance/CASES.md).
COVERS = ["model dir and config access", "lifecycle: finalize", "Logger", "interpreter environment"]

GROUP_CONFIG = (MODELS_DIR / "model_env" / "config.pbtxt").read_text() + """
instance_group [ { count: 1 kind: KIND_CPU } ]
"""
DIFF_MODELS = [DiffModel("whoami"), DiffModel("model_env"), DiffModel("logging"),
               DiffModel("model_env_group", source="model_env", config=GROUP_CONFIG),
               DiffModel("finalize")]
#: Logger.log_verbose needs the server at verbose level 1.
DIFF_LOG_VERBOSE = 1


def _env(target: Target, *keys: str) -> Outcome:
    out = target.infer({"IN": np.array([1], dtype=np.int32)}).require_ok()
    env = out.json("ENV")
    return Outcome("value", value=target.normaliser.value({k: env[k] for k in keys}))


def test_each_side_runs_its_own_stub(pair):
    """Sanity, not a comparison: `_cpp` runs the C++ binary, `_ours` runs Python with tritonstub.

    On the harness column: the same interpreter and the same stub arguments but for the region's
    name and the parent's pid; the C++ binary is the one `--stub cpp` names (tritonserver runs
    the copy in the model directory: docs/harness.md)."""
    def who(target: Target) -> Outcome:
        return Outcome("value", value=target.infer({"IN": np.array([1], dtype=np.int32)}).require_ok().json("WHO"))

    if pair.on_harness:
        triton, harness = (o.value for o in pair.columns("whoami", who))
        assert harness["version"] == triton["version"]
        assert harness["ppid"] != triton["ppid"]
        n = len(triton["cmdline"])
        same = [i for i in range(n - 9, n) if i - (n - 9) not in (0, 1, 4)]  # model.py, region, parent pid
        assert len(harness["cmdline"]) == n
        assert [harness["cmdline"][i] for i in same] == [triton["cmdline"][i] for i in same]
        assert harness["cmdline"][n - 9].endswith(f"/harness_repo/whoami_{pair.stub}/1/model.py")
        assert harness["cmdline"][n - 5] == str(harness["ppid"])
        if pair.is_cpp:
            assert harness["exe"].endswith("/python_backend_stubs/3.11/triton_python_backend_stub")
        else:
            assert harness["exe"] == triton["exe"] and harness["cmdline"][:-9] == triton["cmdline"][:-9]
        return
    who_am_i = pair.run("whoami", who, compare=False).value
    if pair.is_cpp:
        assert who_am_i["exe"].endswith("/whoami_cpp/triton_python_backend_stub")
        assert who_am_i["version"].startswith("3.11.2")
    else:
        assert "python" in who_am_i["exe"].rsplit("/", 1)[-1]
        assert "tritonstub.stub" in who_am_i["cmdline"]
        assert who_am_i["cmdline"][-9:][0].endswith("/whoami_ours/1/model.py")


@pytest.mark.parametrize("base,instance", [("model_env", "model_env_<stub>_0"),
                                           ("model_env_group", "model_env_group_<stub>_0_0")])
def test_initialize_args(pair, base, instance):
    args = pair.run(base, lambda t: _env(t, "args")).value["args"]
    assert args == {
        "model_instance_kind": "CPU",
        "model_instance_name": instance,
        "model_instance_device_id": "0",
        "model_repository": f"<repo>/{base}_<stub>",
        "model_version": "1",
        "model_name": f"{base}_<stub>",
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
    """Deliberate difference: both stubs survive SIGINT/SIGTERM with a no-op handler, but the
    C++ stub installs it from C before Python starts, so ``signal.getsignal`` reports None; ours
    is a Python no-op function (there is no way to make Python report None afterwards)."""
    def case(t: Target) -> Outcome:  # a handler's address differs between processes
        return Outcome("value", value=json.loads(mask_addresses(json.dumps(_env(t, "signals", "stdin_isatty").value))))
    got = pair.run("model_env", case, compare=False).value
    if pair.is_cpp:
        assert got["signals"]["SIGINT"] == "None" and got["signals"]["SIGTERM"] == "None"
    else:
        assert got["signals"]["SIGINT"].startswith("<function _noop")
        assert got["signals"]["SIGTERM"].startswith("<function _noop")
    assert got["signals"]["SIGPIPE"] == "<Handlers.SIG_IGN: 1>"
    assert got["signals"]["SIGCHLD"] == "<Handlers.SIG_DFL: 0>"
    assert got["stdin_isatty"] is False


def test_main_module_and_working_directory(pair):
    got = pair.run("model_env", lambda t: _env(t, "main_has_file", "main_spec", "cwd")).value
    assert got["main_has_file"] is False
    assert got["main_spec"] == "None"


def test_environment_variables_seen_by_the_model(pair):
    """The stub process inherits the server's environment; a stub must not add or drop variables.

    On the harness column the one difference is TRITONSTUB_PROTOCOL, which the harness adds to
    every stub's environment: it is how a Python parent tells our stub the protocol era (there is
    no libtriton_python.so in its address space to fingerprint). docs/harness.md lists it."""
    case = lambda t: _env(t, "environ_keys")  # noqa: E731
    if pair.on_harness:
        triton, harness = (o.value["environ_keys"] for o in pair.columns("model_env", case))
        assert sorted(set(harness) - set(triton)) == ["TRITONSTUB_PROTOCOL"] and set(triton) <= set(harness)
        return
    keys = pair.run("model_env", case).value["environ_keys"]
    assert "LD_LIBRARY_PATH" in keys


def test_interpreter_settings(pair):
    """Standard streams, encodings and interpreter flags as model.py sees them.

    The C++ stub initialises its embedded interpreter isolated (pybind11's scoped_interpreter):
    it ignores PYTHON* variables (here PYTHONPATH, PYTHONUNBUFFERED, PYTHONDONTWRITEBYTECODE, set
    by difftools.SERVER_ENV) and does not adopt the locale (LANG=C.UTF-8), so its streams and file
    names are ASCII.
    """
    got = pair.run("model_env", lambda t: _env(t, "interpreter"), compare=False).value["interpreter"]
    if not pair.is_cpp:
        # Deliberate difference: our stub is the user's own interpreter, so it honours the
        # PYTHON* variables and the locale like any Python program (UTF-8 streams here).
        assert got["filesystem_encoding"] == "utf-8"
        assert got["stdout"] == ["utf-8", "surrogateescape", False]
        assert got["dont_write_bytecode"] == 1 and got["pythonpath_probe_importable"] is True
        assert got["recursion_limit"] == 1000 and got["switch_interval"] == 0.005
        return
    assert got == {
        "default_displayhook": True,
        "default_excepthook": True,
        "dont_write_bytecode": 0,
        "filesystem_encoding": "ascii",
        "pythonpath_probe_importable": False,
        "recursion_limit": 1000,
        "stderr": ["ascii", "backslashreplace", True],
        "stdin": "'<stdin>'",
        "stdout": ["ascii", "surrogateescape", False],
        "switch_interval": 0.005,
        "utf8_mode": 0,
    }


# ---- Logger -----------------------------------------------------------------------------------

#: initialize: 4 levels; execute: 4 levels + 4 log() calls + 2 special messages.
LOGGER_LINES = 14
_LOGGER_LINE = re.compile(r'^[IWE] \S+:\d+\] "')


BARE_TAG_CALL = 'logger.log_info(f"{self.tag}")'


def _line_of(text: str) -> int:
    """The line of models/logging/1/model.py that logs ``text`` (the file:line the log shows)."""
    lines = (MODELS_DIR / "logging" / "1" / "model.py").read_text().splitlines()
    found = [i for i, line in enumerate(lines, 1) if text in line and "log" in line]
    assert len(found) == 1, (text, found)
    return found[0]


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
    expected = [("I", "initialize info"), ("W", "initialize warn"), ("E", "initialize error"),
                ("I", "initialize verbose"), ("I", "execute info payload ✓"), ("W", "execute warn payload ✓"),
                ("E", "execute error payload ✓"), ("I", "execute verbose payload ✓"),
                ("I", "log() default level"), ("E", "log() level ERROR"), ("W", "log() level WARNING"),
                ("I", "log() level VERBOSE")]
    assert logger[:12] == tuple(f'{level} model.py:{_line_of(text.split(" payload")[0])}] "{tag} {text}"'
                                for level, text in expected)
    # The core quotes and escapes the message.
    assert logger[12:] == (
        f'I model.py:{_line_of("quotes")}] "{tag} quotes \\" and \'single\', backslash \\\\, tab\\t, '
        f'newline\\nsecond line, ünïcödé ✓"',
        f'I model.py:{_line_of(BARE_TAG_CALL)}] "{tag}"',
    )
    assert printed == (f"{tag} print to stdout", f"{tag} print to stderr")


def test_print_without_flush_is_block_buffered(pair):
    """model.py's stdout is the server's log file, so print() is block-buffered: the line shows up
    only when the buffer fills or the stub exits (PYTHONUNBUFFERED=1 in the server's environment
    does not apply to the C++ stub's embedded interpreter)."""
    def case(target: Target) -> Outcome:
        _, lines = target.log_during(
            lambda: target.infer({"IN": np.array([b"print_unflushed"], dtype=object)}).require_ok(), settle_s=1.0)
        return Outcome("value", value=tuple(target.normaliser.text(line) for line in lines if "unflushed" in line))

    lines = pair.run("logging", case, compare=False).value
    if pair.is_cpp:
        assert lines == ()
    else:
        # Deliberate difference: PYTHONUNBUFFERED=1 applies to our (ordinary) interpreter.
        assert len(lines) == 1


def test_print_of_non_ascii_text(pair):
    """The C++ stub's embedded interpreter writes stdout as ASCII (it ignores LANG=C.UTF-8), so
    print() of non-ASCII text raises in model.py."""
    def case(t: Target) -> Outcome:
        out, lines = t.log_during(lambda: t.infer({"IN": np.array([b"print_unicode"], dtype=object)}))
        return Outcome("value", value=(out.require_ok().output("OUT").data,
                                       tuple(t.normaliser.text(line) for line in lines if "DIFFLOG" in line)))
    result, printed = pair.run("logging", case, compare=False).value
    if pair.is_cpp:
        assert result == (b"UnicodeEncodeError: 'ascii' codec can't encode character "
                          b"'\\xfc' in position 23: ordinal not in range(128)",)
        assert printed == ()
    else:
        # Deliberate difference: our interpreter follows the locale (C.UTF-8), so it prints.
        assert result == (b"printed",)
        assert printed == ("DIFFLOG[logging_<stub>_0] \u00fcn\u00efc\u00f6d\u00e9 \u2713",), printed


# ---- unload -----------------------------------------------------------------------------------


def _unload(target: Target) -> Outcome:
    """Unload the model; the log lines of its finalize (Logger and the stub's own) until it is gone."""
    target.infer({"IN": np.array([1.0], dtype=np.float32)}).require_ok()
    done = f"successfully unloaded '{target.name}'"

    def unload():
        status, body = target.server.http("POST", f"/v2/repository/models/{target.name}/unload", {})
        deadline = time.monotonic() + 15
        while done not in target.server.log_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        return status

    status, lines = target.log_during(unload)
    assert done in "\n".join(lines), f"{target.name} did not unload within 15 s"
    tag = f"DIFFLOG[{target.name}_0]"
    return Outcome("value", value=(status, tuple(target.normaliser.log_line(line) for line in lines if tag in line)))


def test_finalize_logs_and_raises_at_unload(pair):
    """The exception from finalize is logged (through the parent) by the stub, which then exits."""
    status, lines = pair.run("finalize", _unload).value
    tag = "DIFFLOG[finalize_<stub>_0]"
    assert status == 200
    assert lines == (
        f'I model.py:{line_of("finalize/1/model.py", "finalize called")}] "{tag} finalize called"',
        f'I pb_stub.cc:978] "RuntimeError: {tag} finalize failed on purpose\\n\\nAt:\\n'
        f'  <repo>/finalize_<stub>/1/model.py({line_of("finalize/1/model.py", "raise RuntimeError")}): finalize\\n"',
    )
