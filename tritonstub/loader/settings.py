"""The loader's settings: ``TRITONSTUB_*`` keys in config.pbtxt ``parameters`` or the environment.

A model sets them the way Triton models set backend options, as string parameters::

    parameters: { key: "TRITONSTUB_LOADER_RULES" value: { string_value: "runtime_dir,model_file" } }

The stub sees them in the config JSON that Triton sends before anything is imported (the
AutoCompleteRequest's config, Initialize's ``model_config``). The same names work as
environment variables of the tritonserver process, for every model it loads. A model's parameter
wins over the environment.

Every key is in :data:`SETTINGS` (name, default, what it does, how its value is checked). An
unknown ``TRITONSTUB_*`` parameter is a :class:`~tritonstub.errors.ConfigError` that names the
valid ones. An unknown ``TRITONSTUB_*`` environment variable is only warned about when it is
close to a valid name: the environment is shared with other tools (the test suite has its own
``TRITONSTUB_*`` variables).
"""
from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from ..errors import ConfigError
from ..protocol import eras

PREFIX = "TRITONSTUB_"
MODEL_DIR_VAR = "$$TRITON_MODEL_DIRECTORY"

#: The default loader's rules, in their default order (see default.py).
RULES = ("model_file", "runtime_dir")
#: Log levels, lowest first; the numbers are pb_utils.Logger's (INFO 0, WARNING 1, ERROR 2, VERBOSE 3).
LOG_LEVELS = {"verbose": 3, "info": 0, "warning": 1, "error": 2}
_LEVEL_RANK = {3: 0, 0: 1, 1: 2, 2: 3}
DEBUGPY_STUBS = ("instance", "auto_complete", "all")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_TRUE = ("1", "yes", "true", "on")
_FALSE = ("0", "no", "false", "off", "")


# ---------------------------------------------------------------------------- value checks

def _one_of(choices) -> Callable[[str], str]:
    def parse(value: str) -> str:
        v = value.strip().lower()
        if v not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return v
    return parse


def _rules(value: str) -> Tuple[str, ...]:
    rules = tuple(r.strip() for r in value.split(",") if r.strip())
    if not rules:
        raise ValueError(f"give at least one rule of {', '.join(RULES)}")
    unknown = [r for r in rules if r not in RULES]
    if unknown:
        raise ValueError(f"unknown rule(s) {', '.join(unknown)}; the rules are {', '.join(RULES)}")
    if len(set(rules)) != len(rules):
        raise ValueError("a rule is listed twice")
    return rules


def _loader_name(value: str) -> str:
    v = value.strip()
    if not v:
        raise ValueError("empty loader name")
    return v


_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(:[A-Za-z_]\w*)?$")


def _module_path(value: str) -> str:
    v = value.strip()
    if v and not _DOTTED.match(v):
        raise ValueError("expected a dotted module path, optionally with ':ClassName' "
                         "(e.g. 'mypkg.models.adder' or 'mypkg.models:Adder')")
    return v


def _sys_path(value: str) -> Tuple[str, ...]:
    entries = []
    for raw in value.split(os.pathsep):
        entry = raw.strip()
        if not entry:
            continue
        if not (entry.startswith("/") or entry.startswith(MODEL_DIR_VAR)):
            raise ValueError(f"entry '{entry}' must be an absolute path or start with "
                             f"{MODEL_DIR_VAR}")
        entries.append(entry)
    return tuple(entries)


@dataclass(frozen=True)
class DebugpyAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _debugpy(value: str) -> Optional[DebugpyAddress]:
    v = value.strip()
    if not v:
        return None
    host, sep, port = v.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", v
    host = host.strip("[]") or "127.0.0.1"
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"debugpy may only listen on loopback ({', '.join(LOOPBACK_HOSTS)}), "
                         f"not '{host}'")
    try:
        number = int(port)
    except ValueError:
        raise ValueError("expected a port number or host:port") from None
    if not 0 < number < 65536:
        raise ValueError(f"port {number} is out of range 1-65535")
    return DebugpyAddress(host, number)


def _wait(value: str) -> Optional[float]:
    """None: do not wait; float('inf'): wait for ever; else seconds."""
    v = value.strip().lower()
    if v in _FALSE:
        return None
    if v in _TRUE:
        return float("inf")
    try:
        seconds = float(v)
    except ValueError:
        raise ValueError("expected yes, no, or a number of seconds") from None
    if seconds <= 0:
        raise ValueError("the number of seconds must be positive")
    return seconds


def _protocol(value: str) -> str:
    return eras.parse_override(value) or eras.AUTO


@dataclass(frozen=True)
class Setting:
    key: str
    default: str
    parse: Callable[[str], Any]
    doc: str
    #: True when the value changes how model.py is found or imported (see Settings.customised).
    resolution: bool = False


SETTINGS: Dict[str, Setting] = {s.key: s for s in (
    Setting("TRITONSTUB_LOADER", "default", _loader_name,
            "the loader: 'default' (the rules), 'module' (TRITONSTUB_MODULE), or the name of an "
            "entry point in the 'tritonstub.loaders' group", resolution=True),
    Setting("TRITONSTUB_LOADER_RULES", ",".join(RULES), _rules,
            "the default loader's rules, in order, comma-separated: model_file (argv[1]), "
            "runtime_dir (argv[9]/model.py)", resolution=True),
    Setting("TRITONSTUB_SYS_PATH", "", _sys_path,
            "extra sys.path entries, ':'-separated, appended before the rule's own; "
            "$$TRITON_MODEL_DIRECTORY is replaced by the model directory", resolution=True),
    Setting("TRITONSTUB_MODULE", "", _module_path,
            "for TRITONSTUB_LOADER=module: the dotted module path holding TritonPythonModel "
            "('pkg.mod', or 'pkg.mod:ClassName' for another class name)", resolution=True),
    Setting("TRITONSTUB_ERROR_REPORT", "auto", _one_of(("auto", "always")),
            "'auto': a load error keeps the C++ stub's exact text where the C++ stub loads the "
            "same file the same way, and carries the loader's report everywhere else; 'always': "
            "the report is appended to every load error"),
    Setting("TRITONSTUB_LOG_LEVEL", "info", _one_of(tuple(LOG_LEVELS)),
            "the lowest level of the loader's own log lines: verbose, info, warning, error"),
    Setting("TRITONSTUB_DEBUGPY", "", _debugpy,
            "start debugpy listening on this loopback port ('5678' or '127.0.0.1:5678') before "
            "the model is imported"),
    Setting("TRITONSTUB_DEBUGPY_WAIT", "no", _wait,
            "wait for the debugger to attach before importing the model: no, yes (no time "
            "limit), or a number of seconds"),
    Setting("TRITONSTUB_DEBUGPY_STUB", "instance", _one_of(DEBUGPY_STUBS),
            "which stub processes start debugpy: instance (each model instance), auto_complete "
            "(the auto-complete stub, where auto_complete_config runs), all"),
    Setting(eras.OVERRIDE_KEY, eras.AUTO, _protocol,
            "the python_backend protocol the parent speaks: 'auto' (told from the parent's "
            "libtriton_python.so) or a release such as r24.10; the stub refuses a protocol it "
            "does not speak"),
)}

#: TRITONSTUB_* environment variables that belong to other tools (the test suite, bootstrap.sh).
_FOREIGN_ENV = {"TRITONSTUB_REQUIRE_REFERENCE", "TRITONSTUB_REFERENCE_ROOT", "TRITONSTUB_VENV",
                "TRITONSTUB_FORCE_INSTALL", "TRITONSTUB_DIFF_STUBS", "TRITONSTUB_STOCK_TPBU",
                "TRITONSTUB_PYBIND11_210_INCLUDE", "TRITONSTUB_BLOCK_REUSE", "TRITONSTUB_PROFILE",
                "TRITONSTUB_PROFILE_CLOCK"}


def valid_keys() -> str:
    return ", ".join(SETTINGS)


def _close(key: str, cutoff: float) -> Optional[str]:
    """The valid key ``key`` is probably a misspelling of (compared without the prefix)."""
    names = {k[len(PREFIX):]: k for k in SETTINGS}
    close = difflib.get_close_matches(key[len(PREFIX):], list(names), n=1, cutoff=cutoff)
    return names[close[0]] if close else None


@dataclass
class Settings:
    """Resolved values (``values[key]`` is the parsed value) and where each came from."""

    values: Dict[str, Any]
    sources: Dict[str, str]               # key -> "parameter" | "environment" | "default"
    raw: Dict[str, str]
    warnings: List[str] = field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    @property
    def loader(self) -> str:
        return self.values["TRITONSTUB_LOADER"]

    @property
    def rules(self) -> Tuple[str, ...]:
        return self.values["TRITONSTUB_LOADER_RULES"]

    @property
    def log_threshold(self) -> int:
        return LOG_LEVELS[self.values["TRITONSTUB_LOG_LEVEL"]]

    def customised(self) -> List[str]:
        """Keys set (not defaulted) that change how model.py is found or imported."""
        return [k for k, s in SETTINGS.items() if s.resolution and self.sources[k] != "default"]

    def describe(self) -> List[str]:
        """One 'KEY=value (from ...)' per key that is not at its default."""
        where = {"parameter": "config.pbtxt parameters", "environment": "environment"}
        return [f"{k}={self.raw[k]} (from {where[self.sources[k]]})"
                for k in SETTINGS if self.sources[k] != "default"]

    def sys_path_entries(self, model_dir: str) -> List[str]:
        return [model_dir + e[len(MODEL_DIR_VAR):] if e.startswith(MODEL_DIR_VAR) else e
                for e in self.values["TRITONSTUB_SYS_PATH"]]


def level_enabled(level: int, threshold: int) -> bool:
    return _LEVEL_RANK.get(level, 1) >= _LEVEL_RANK.get(threshold, 1)


def parameters_from_config(config_json: Optional[str]) -> Dict[str, str]:
    """The ``TRITONSTUB_*`` entries of the model config's ``parameters``, as strings.

    Raises ConfigError for a parameter that has no ``string_value``.
    """
    if not config_json:
        return {}
    try:
        config = json.loads(config_json)
    except ValueError as e:
        raise ConfigError(f"tritonstub: the model config Triton sent is not JSON ({e})") from None
    params = config.get("parameters") if isinstance(config, dict) else None
    if not isinstance(params, dict):
        return {}
    out = {}
    for key, value in params.items():
        if not key.startswith(PREFIX):
            continue
        if not (isinstance(value, dict) and isinstance(value.get("string_value"), str)):
            raise ConfigError(f"tritonstub: parameter '{key}' must have a string_value "
                              f"(parameters: {{ key: \"{key}\" value: {{ string_value: \"...\" }} }})")
        out[key] = value["string_value"]
    return out


def resolve(parameters: Mapping[str, str], environ: Optional[Mapping[str, str]] = None) -> Settings:
    """Check and merge parameters over environment over defaults. Raises ConfigError."""
    environ = os.environ if environ is None else environ
    unknown = sorted(k for k in parameters if k not in SETTINGS)
    if unknown:
        hints = []
        for k in unknown:
            close = _close(k, 0.6)
            hints.append(f"'{k}'" + (f" (did you mean {close}?)" if close else ""))
        raise ConfigError(f"tritonstub: unknown parameter{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(hints)} in config.pbtxt; the valid TRITONSTUB_* "
                          f"parameters are: {valid_keys()}")
    warnings = []
    for k in sorted(environ):
        if k.startswith(PREFIX) and k not in SETTINGS and k not in _FOREIGN_ENV:
            close = _close(k, 0.8)
            if close:
                warnings.append(f"environment variable {k} is not a tritonstub setting and is "
                                f"ignored; did you mean {close}?")
    values, sources, raw = {}, {}, {}
    for key, setting in SETTINGS.items():
        if key in parameters:
            text, source = parameters[key], "parameter"
        elif key in environ:
            text, source = environ[key], "environment"
        else:
            text, source = setting.default, "default"
        try:
            values[key] = setting.parse(text)
        except ValueError as e:
            where = ("config.pbtxt parameter" if source == "parameter"
                     else "environment variable" if source == "environment" else "default")
            raise ConfigError(f"tritonstub: bad value '{text}' for {where} {key}: {e}. "
                              f"{key}: {setting.doc}") from None
        sources[key], raw[key] = source, text
    settings = Settings(values, sources, raw, warnings)
    if settings.loader == "module" and not settings["TRITONSTUB_MODULE"]:
        raise ConfigError("tritonstub: TRITONSTUB_LOADER=module needs TRITONSTUB_MODULE, the "
                          "dotted path of the module that defines TritonPythonModel")
    if settings["TRITONSTUB_MODULE"] and settings.loader != "module":
        settings.warnings.append(f"TRITONSTUB_MODULE is set but TRITONSTUB_LOADER is "
                                 f"'{settings.loader}', not 'module': it is ignored")
    return settings


def from_config(config_json: Optional[str], environ: Optional[Mapping[str, str]] = None) -> Settings:
    return resolve(parameters_from_config(config_json), environ)
