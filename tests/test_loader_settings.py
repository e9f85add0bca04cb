"""TRITONSTUB_* settings: parsing, precedence, and the errors a user sees for a bad key or value."""
from __future__ import annotations

import json

import pytest

from tritonstub.errors import ConfigError
from tritonstub.loader import settings as S


def _config(**params) -> str:
    return json.dumps({"name": "m", "parameters": {k: {"string_value": v} for k, v in params.items()}})


def test_defaults():
    s = S.from_config(json.dumps({"name": "m"}), environ={})
    assert s.loader == "default"
    assert s.rules == ("model_file", "runtime_dir")
    assert s["TRITONSTUB_SYS_PATH"] == ()
    assert s["TRITONSTUB_DEBUGPY"] is None
    assert s["TRITONSTUB_DEBUGPY_WAIT"] is None
    assert s["TRITONSTUB_ERROR_REPORT"] == "auto"
    assert s.log_threshold == S.LOG_LEVELS["info"]
    assert s.customised() == [] and s.describe() == [] and s.warnings == []


def test_parameter_beats_environment_beats_default():
    env = {"TRITONSTUB_LOADER_RULES": "runtime_dir", "TRITONSTUB_LOG_LEVEL": "verbose"}
    s = S.from_config(_config(TRITONSTUB_LOADER_RULES="model_file"), environ=env)
    assert s.rules == ("model_file",)
    assert s.sources["TRITONSTUB_LOADER_RULES"] == "parameter"
    assert s["TRITONSTUB_LOG_LEVEL"] == "verbose"
    assert s.sources["TRITONSTUB_LOG_LEVEL"] == "environment"
    assert s.describe() == ["TRITONSTUB_LOADER_RULES=model_file (from config.pbtxt parameters)",
                            "TRITONSTUB_LOG_LEVEL=verbose (from environment)"]
    assert s.customised() == ["TRITONSTUB_LOADER_RULES"]


def test_other_parameters_are_not_ours():
    s = S.from_config(_config(EXECUTION_ENV_PATH="/x", add_sub_mode="fast"), environ={})
    assert s.describe() == []


def test_unknown_parameter_is_an_error_naming_the_valid_ones():
    with pytest.raises(ConfigError) as e:
        S.from_config(_config(TRITONSTUB_LOADR="module", TRITONSTUB_XYZ="1"), environ={})
    text = str(e.value)
    assert text.startswith("tritonstub: unknown parameters 'TRITONSTUB_LOADR' (did you mean TRITONSTUB_LOADER?), "
                           "'TRITONSTUB_XYZ' in config.pbtxt; the valid TRITONSTUB_* parameters are: ")
    for key in S.SETTINGS:
        assert key in text


def test_parameter_without_a_string_value():
    cfg = json.dumps({"parameters": {"TRITONSTUB_LOADER": {"int_value": 3}}})
    with pytest.raises(ConfigError, match="must have a string_value"):
        S.from_config(cfg, environ={})


def test_unknown_environment_variables_are_only_warned_about_when_close():
    env = {"TRITONSTUB_LOADER_RULE": "x", "TRITONSTUB_REQUIRE_REFERENCE": "1", "TRITONSTUB_SOMETHING_ELSE": "1"}
    s = S.from_config(None, environ=env)
    assert s.warnings == ["environment variable TRITONSTUB_LOADER_RULE is not a tritonstub setting and is "
                          "ignored; did you mean TRITONSTUB_LOADER_RULES?"]


@pytest.mark.parametrize("key,value,message", [
    ("TRITONSTUB_LOADER_RULES", "", "give at least one rule of model_file, runtime_dir"),
    ("TRITONSTUB_LOADER_RULES", "model_file,model_file", "a rule is listed twice"),
    ("TRITONSTUB_LOADER_RULES", "argv1", "unknown rule(s) argv1"),
    ("TRITONSTUB_SYS_PATH", "relative/dir", "must be an absolute path or start with $$TRITON_MODEL_DIRECTORY"),
    ("TRITONSTUB_MODULE", "not a module", "expected a dotted module path"),
    ("TRITONSTUB_LOG_LEVEL", "debug", "expected one of verbose, info, warning, error"),
    ("TRITONSTUB_ERROR_REPORT", "never", "expected one of auto, always"),
    ("TRITONSTUB_DEBUGPY", "10.0.0.1:5678", "debugpy may only listen on loopback"),
    ("TRITONSTUB_DEBUGPY", "70000", "port 70000 is out of range"),
    ("TRITONSTUB_DEBUGPY", "port", "expected a port number or host:port"),
    ("TRITONSTUB_DEBUGPY_WAIT", "-1", "the number of seconds must be positive"),
    ("TRITONSTUB_DEBUGPY_STUB", "both", "expected one of instance, auto_complete, all"),
])
def test_bad_values(key, value, message):
    with pytest.raises(ConfigError) as e:
        S.from_config(_config(**{key: value}), environ={})
    assert f"bad value '{value}' for config.pbtxt parameter {key}: " in str(e.value)
    assert message in str(e.value)
    with pytest.raises(ConfigError, match=f"for environment variable {key}: "):
        S.from_config(None, environ={key: value})


def test_sys_path_expansion():
    s = S.from_config(_config(TRITONSTUB_SYS_PATH="$$TRITON_MODEL_DIRECTORY/lib: /opt/shared :"), environ={})
    assert s.sys_path_entries("/models/m") == ["/models/m/lib", "/opt/shared"]


@pytest.mark.parametrize("value,host,port", [
    ("5678", "127.0.0.1", 5678), ("localhost:5679", "localhost", 5679), ("[::1]:5680", "::1", 5680)])
def test_debugpy_addresses(value, host, port):
    address = S.from_config(_config(TRITONSTUB_DEBUGPY=value), environ={})["TRITONSTUB_DEBUGPY"]
    assert (address.host, address.port) == (host, port)


@pytest.mark.parametrize("value,expected", [("no", None), ("yes", float("inf")), ("true", float("inf")),
                                            ("2.5", 2.5)])
def test_debugpy_wait(value, expected):
    assert S.from_config(_config(TRITONSTUB_DEBUGPY_WAIT=value), environ={})["TRITONSTUB_DEBUGPY_WAIT"] == expected


def test_module_loader_needs_a_module():
    with pytest.raises(ConfigError, match="TRITONSTUB_LOADER=module needs TRITONSTUB_MODULE"):
        S.from_config(_config(TRITONSTUB_LOADER="module"), environ={})
    s = S.from_config(_config(TRITONSTUB_MODULE="pkg.mod"), environ={})
    assert s.warnings == ["TRITONSTUB_MODULE is set but TRITONSTUB_LOADER is 'default', not 'module': it is ignored"]


def test_log_level_order():
    info = S.LOG_LEVELS["info"]
    assert S.level_enabled(2, info) and S.level_enabled(1, info) and S.level_enabled(0, info)
    assert not S.level_enabled(3, info)
    assert S.level_enabled(3, S.LOG_LEVELS["verbose"])
    assert not S.level_enabled(1, S.LOG_LEVELS["error"])
