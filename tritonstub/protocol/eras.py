"""Protocol eras: which python_backend releases speak which wire, and which one a parent speaks.

Theory of operation
-------------------
The stub <-> parent protocol has no version field anywhere: not in argv, not in the IPC control
block, not in any message. Releases of python_backend that speak the same bytes form an *era*,
named after its first release branch (``r24.10`` = r24.10 ... r25.01 = Triton 2.51-2.54). A stub
that answers in another era's layout corrupts the parent's memory: a r24.10 stub makes a r25.02+
tritonserver segfault on its first response. So the stub finds out which era its parent speaks
before it answers anything, and refuses the eras it cannot speak.

What the stub can rely on whatever the era (python_backend r23.07 to r26.07): argv (argv[9] is
the model's platform before r23.10, the runtime model directory after), the IPC control
block, the message queues, the "health thread started" message, IPCMessageShm, StringShm and
the PbMap of the InitializeRequest, and AutoCompleteResponseShm / InitializeResponseShm. So the
decision can wait for the parent's first command (AutoCompleteRequest or InitializeRequest), whose
model config may carry an explicit override, and a refusal can be answered with an error reply
that every era reads: the model fails to load with our message and tritonserver stays up.

How the era is decided (:func:`decide`), first match wins:

1. an explicit override, ``TRITONSTUB_PROTOCOL`` (config.pbtxt parameter, then environment);
2. the fingerprint of the parent's ``libtriton_python.so`` (:func:`fingerprint`): each era
   added or dropped a Triton API import or a message text, and dynamic-symbol names and
   read-only strings survive ``strip``. The markers (:data:`MARKERS`) were checked on the pip
   builds of Triton 2.36 ... 2.51 and on parents built from python_backend r25.02 ... r26.07;
   those of r23.08, r23.09 and r23.11 (no pip build) come from the sources, their edges checked
   on the 2.36, 2.39 and 2.41 builds;
3. nothing else: a parent whose library cannot be read is not guessed at.

``TRITON_SERVER_VERSION`` / ``NVIDIA_TRITON_SERVER_VERSION`` (set in NGC images) are a
cross-check only: a disagreement is logged, the library decides (a rebuilt backend may sit in
any server).

This module is pure: it takes bytes and strings; the stub reads /proc and the file.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

#: The setting (config.pbtxt parameter or environment variable) that forces an era.
OVERRIDE_KEY = "TRITONSTUB_PROTOCOL"
AUTO = "auto"


@dataclass(frozen=True)
class Era:
    name: str           # first release branch of the era
    last: str           # last release branch of the era ("" = up to the newest release)
    tritons: str        # Triton server versions of those releases
    change: str         # what sets it apart from the era before
    #: PYTHONSTUB_AutoCompleteRequest in this era's command enum (the response is the next value).
    auto_complete_request: int

    @property
    def releases(self) -> str:
        if not self.last:
            return f"{self.name} and later"
        return self.name if self.last == self.name else f"{self.name}-{self.last}"

    def describe(self) -> str:
        return f"python_backend {self.releases} (Triton {self.tritons})"


#: Oldest first. Two eras never share a release; every release from r23.07 on is in one.
ERAS: Tuple[Era, ...] = (
    Era("r23.07", "r23.07", "2.36", "argv[9] is the platform ('NONE'); no request trace, errors "
        "are bare strings, no request cancellation", 12),
    Era("r23.08", "r23.08", "2.37", "InferRequestShm trace pointer", 12),
    Era("r23.09", "r23.09", "2.38", "errors as PbErrorShm (error codes)", 12),
    Era("r23.10", "r23.10", "2.39", "IsRequestCancelled", 12),
    Era("r23.11", "r23.11", "2.40", "command enum renumbered (CUDA pool, stream responses), "
        "request release flags, BLS parameters", 14),
    Era("r23.12", "r24.02", "2.41-2.43", "u64 timeout; the stub deletes response factories "
        "(two cleanup commands)", 14),
    Era("r24.03", "r24.03", "2.44", "InferRequestShm trace handle", 14),
    Era("r24.04", "r24.05", "2.45-2.46", "InferRequestShm handles for names and correlation ids", 14),
    Era("r24.06", "r24.07", "2.47-2.48", "every response through the response sender", 14),
    Era("r24.08", "r24.09", "2.49-2.50", "histogram metrics (MetricShm buckets)", 14),
    Era("r24.10", "r25.01", "2.51-2.54", "inline responses, BLS on stub_to_parent_mq", 14),
    Era("r25.02", "r25.03", "2.55-2.56", "ResponseShm gains parameters", 14),
    Era("r25.04", "r26.02", "2.57-2.66", "BLS request cancellation (command 31)", 14),
    Era("r26.03", "", "2.67 and later", "user model readiness (command 32)", 14),
)
_BY_NAME: Dict[str, Era] = {e.name: e for e in ERAS}

#: The eras this tritonstub speaks.
SUPPORTED: Tuple[str, ...] = ("r23.07", "r23.10", "r23.12", "r24.03", "r24.04", "r24.06", "r24.08", "r24.10", "r25.02", "r25.04", "r26.03")

#: What an era adds to the model API (c_python_backend_utils), kept by every later era.
API_FEATURES: Dict[str, Tuple[str, ...]] = {
    "r23.08": ("request_trace",),           # InferenceRequest.trace(), InferenceRequest(trace=)
    "r23.09": ("error_codes",),             # TritonError(message, code), codes on the wire
    "r23.10": ("request_cancellation",),    # InferenceRequest.is_cancelled()
    "r23.11": ("request_rescheduling",      # InferenceRequest.set_release_flags()
               "bls_parameters"),           # InferenceRequest(parameters=) for BLS
    "r24.08": ("metric_histogram",),        # MetricFamily.HISTOGRAM, Metric.observe, buckets=
    "r25.02": ("response_parameters",),     # InferenceResponse(parameters=), .parameters()
    "r25.04": ("bls_cancel",),              # ResponseIterator.cancel()
    "r26.03": ("user_model_readiness",),    # the model's optional is_ready()
}


def features(name: str) -> frozenset:
    """The model-API features of era ``name`` (those of API_FEATURES up to it)."""
    key = _key(name)
    return frozenset(f for e, fs in API_FEATURES.items() if _key(e) <= key for f in fs)


def feature_era(feature: str) -> Era:
    """The first era whose model API has ``feature``."""
    for name, fs in API_FEATURES.items():
        if feature in fs:
            return era(name)
    raise KeyError(feature)


def needs(what: str, feature: str) -> str:
    """The text of the error a model gets when its parent's era lacks ``feature``."""
    e = feature_era(feature)
    return (f"{what} needs python_backend {e.name} or later (Triton {e.tritons.split('-')[0]}+): "
            f"this Triton's python backend speaks an older protocol")


def era(name: str) -> Era:
    return _BY_NAME[name]


def supported(e: Era) -> bool:
    return e.name in SUPPORTED


def supported_text() -> str:
    """The supported eras, consecutive ones merged: "python_backend r24.10 and later (Triton
    2.51 and later)"."""
    runs: List[List[Era]] = []
    for e in ERAS:
        if e.name not in SUPPORTED:
            continue
        if runs and ERAS.index(runs[-1][-1]) == ERAS.index(e) - 1:
            runs[-1].append(e)
        else:
            runs.append([e])
    texts = []
    for run in runs:
        first, last = run[0], run[-1]
        start = first.tritons.split("-")[0].split(" ")[0]
        if not last.last:
            texts.append(f"python_backend {first.name} and later (Triton {start} and later)")
        else:
            end = last.tritons.split("-")[-1]
            releases = first.name if first.name == last.last else f"{first.name}-{last.last}"
            tritons = start if start == end else f"{start}-{end}"
            texts.append(f"python_backend {releases} (Triton {tritons})")
    return ", ".join(texts)


# ---------------------------------------------------------------------------- release names

_RELEASE = re.compile(r"^r?(\d{2})\.(\d{2})$")
_TRITON = re.compile(r"^2\.(\d+)(?:\.(\d+))?")


def _key(release: str) -> Tuple[int, int]:
    m = _RELEASE.match(release)
    if not m:
        raise ValueError(release)
    return int(m.group(1)), int(m.group(2))


def era_of_release(release: str) -> Era:
    """The era of a python_backend release branch (``r24.11``, ``24.11``)."""
    key = _key(release.strip().lower())
    if key[1] < 1 or key[1] > 12:
        raise ValueError(f"no month {key[1]} in release {release!r}")
    found = None
    for e in ERAS:
        if _key(e.name) <= key:
            found = e
    if found is None:
        return ERAS[0]          # older than r23.07: no better era to name
    return found


def release_of_triton(version: str) -> Optional[str]:
    """The python_backend release of a Triton server version (``2.51.0`` -> ``r24.10``).

    One release a month from 2.36 (r23.07) to 2.59.0 (r25.06); 2.59.1 was r25.07, and from 2.60
    (r25.08) on one a month again."""
    m = _TRITON.match(version.strip())
    if not m:
        return None
    minor, patch = int(m.group(1)), int(m.group(2) or 0)
    if minor < 36:
        return None
    if minor < 59 or (minor == 59 and patch == 0):
        months = 2023 * 12 + 6 + (minor - 36)
    elif minor == 59:
        months = 2025 * 12 + 6
    else:
        months = 2025 * 12 + 7 + (minor - 60)
    return f"r{months // 12 % 100:02d}.{months % 12 + 1:02d}"


def parse_override(value: str) -> Optional[str]:
    """``TRITONSTUB_PROTOCOL``: ``auto`` (None) or a release branch, whose era is returned."""
    v = value.strip().lower()
    if v in ("", AUTO):
        return None
    try:
        return era_of_release(v).name
    except ValueError:
        raise ValueError("expected 'auto' or a python_backend release such as r24.10 (the "
                         "NGC container version, YY.MM)") from None


# ---------------------------------------------------------------------------- fingerprint

@dataclass(frozen=True)
class Marker:
    text: bytes
    since: str          # the first release whose libtriton_python.so has it
    symbol: bool        # a dynamic-symbol name (matched whole) rather than a message text

    @property
    def name(self) -> str:
        return self.text.decode()

    def found_in(self, data: bytes) -> bool:
        if self.symbol:
            return b"\0" + self.text + b"\0" in data
        return self.text in data


def _sym(name: str, since: str) -> Marker:
    return Marker(name.encode(), since, True)


RESPONSE_DELETE = _sym("TRITONBACKEND_ResponseDelete", "")   # gone r24.06-r24.09 only
MARKERS: Tuple[Marker, ...] = (
    _sym("TRITONSERVER_InferenceTraceSpawnChildTrace", "r23.08"),
    Marker(b"requires at least 1 MB of shared memory", "r23.09", False),
    _sym("TRITONBACKEND_RequestIsCancelled", "r23.10"),
    _sym("TRITONSERVER_InferenceRequestSetBoolParameter", "r23.11"),
    _sym("TRITONBACKEND_InferenceRequestTimeoutMicroseconds", "r23.12"),
    _sym("TRITONSERVER_InferenceTraceContext", "r24.03"),
    _sym("TRITONBACKEND_RequestCorrelationIdString", "r24.04"),
    _sym("TRITONSERVER_MetricObserve", "r24.08"),
    _sym("TRITONBACKEND_ResponseSetStringParameter", "r25.02"),
    _sym("TRITONSERVER_InferenceRequestCancel", "r25.04"),
    Marker(b"Timed out waiting for user-defined is_ready() response", "r26.03", False),
)


@dataclass
class Fingerprint:
    era: Era
    present: List[Marker] = field(default_factory=list)
    absent: List[Marker] = field(default_factory=list)

    def evidence(self) -> str:
        """What decided: the newest marker the library has and the next one it lacks."""
        has = [m for m in self.present if m is not RESPONSE_DELETE]
        lacks = [m for m in self.absent if m is not RESPONSE_DELETE]
        parts = []
        if has:
            parts.append(f"has {has[-1].name} (since {has[-1].since})")
        if lacks:
            parts.append(f"lacks {lacks[0].name} (since {lacks[0].since})")
        if "r24.04" <= self.era.name <= "r24.10":
            verb = "has" if RESPONSE_DELETE in self.present else "lacks"
            parts.append(f"{verb} {RESPONSE_DELETE.name} (absent r24.06-r24.09 only)")
        return ", ".join(parts)


def fingerprint(data: bytes) -> Fingerprint:
    """The era of a ``libtriton_python.so`` from its bytes.

    The newest era whose marker the library has, counting the one marker that went away and came
    back: ``TRITONBACKEND_ResponseDelete`` is absent exactly from r24.06 to r24.09, the releases
    that send every response through the response sender."""
    found = {m.since: m.found_in(data) for m in MARKERS}
    has_delete = RESPONSE_DELETE.found_in(data)
    present = [m for m in MARKERS if found[m.since]]
    absent = [m for m in MARKERS if not found[m.since]]
    if not found["r23.08"]:
        name = "r23.07"
    elif not found["r23.09"]:
        name = "r23.08"
    elif not found["r23.10"]:
        name = "r23.09"
    elif not found["r23.11"]:
        name = "r23.10"
    elif not found["r23.12"]:
        name = "r23.11"
    elif not found["r24.03"]:
        name = "r23.12"
    elif not found["r24.04"]:
        name = "r24.03"
    elif not found["r24.08"]:
        name = "r24.04" if has_delete else "r24.06"
    elif not has_delete:
        name = "r24.08"
    elif found["r26.03"]:
        name = "r26.03"
    elif found["r25.04"]:
        name = "r25.04"
    elif found["r25.02"]:
        name = "r25.02"
    else:
        name = "r24.10"
    (present if has_delete else absent).append(RESPONSE_DELETE)
    return Fingerprint(era(name), present, absent)


# ---------------------------------------------------------------------------- the decision

@dataclass
class Decision:
    era: Optional[Era]          # None: could not tell
    source: str                 # how it was decided
    evidence: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)

    @property
    def supported(self) -> bool:
        return self.era is not None and supported(self.era)

    def summary(self) -> str:
        """One log line: the era, how it was decided and on what evidence."""
        what = f"protocol {self.era.describe()}" if self.era else "protocol unknown"
        text = f"{what}, from {self.source}"
        if self.evidence:
            text += ": " + "; ".join(self.evidence)
        return text

    def refusal(self) -> str:
        """The error the model fails to load with when we cannot speak the parent's era."""
        how = (f"set {OVERRIDE_KEY} to the python_backend release your parent speaks (config.pbtxt "
               f"parameters {{ key: \"{OVERRIDE_KEY}\" value: {{ string_value: \"r24.10\" }} }} "
               f"or the environment of tritonserver)")
        if self.era is None:
            found = "tritonstub could not tell which python_backend protocol its parent speaks"
            todo = f"If your Triton is one of those, {how}; otherwise use the C++ " \
                   f"triton_python_backend_stub of your Triton release for this model."
        else:
            found = (f"the parent speaks the protocol of {self.era.describe()}, which this "
                     f"tritonstub does not speak")
            todo = (f"Use the C++ triton_python_backend_stub of your Triton release for this "
                    f"model. If this is wrong, {how}.")
        text = (f"{found} (decided from {self.source}"
                + (": " + "; ".join(self.evidence) if self.evidence else "") + "). "
                f"tritonstub speaks {supported_text()}. The stub stops here rather than answer "
                f"in a layout the server would misread. {todo}")
        for w in self.warnings:
            text += f" Note: {w}"
        return text


def _version_hint(environ: Mapping[str, str]) -> Tuple[Optional[str], Optional[str]]:
    """(release, evidence) from the NGC version variables, if any."""
    ngc = environ.get("NVIDIA_TRITON_SERVER_VERSION", "").strip()
    if _RELEASE.match(ngc):
        return "r" + ngc.lstrip("r"), f"NVIDIA_TRITON_SERVER_VERSION={ngc}"
    version = environ.get("TRITON_SERVER_VERSION", "").strip()
    release = release_of_triton(version) if version else None
    if release:
        return release, f"TRITON_SERVER_VERSION={version}"
    return None, None


def decide(override: Optional[Tuple[str, str]], library: Optional[Tuple[str, bytes]],
           environ: Mapping[str, str], searched: Sequence[str] = ()) -> Decision:
    """The parent's era.

    ``override``: (value of TRITONSTUB_PROTOCOL, where it was set) or None. ``library``: (path,
    bytes) of the parent's libtriton_python.so, or None when none was found (``searched`` then
    says where we looked). ``environ``: for the version cross-check. Raises ValueError for a bad
    override value."""
    hint_release, hint = _version_hint(environ)
    hint_era = None
    if hint_release:
        try:
            hint_era = era_of_release(hint_release)
        except ValueError:
            hint_era = None
    print_fp = None
    if library is not None:
        print_fp = fingerprint(library[1])
    if override is not None and parse_override(override[0]) is not None:
        d = Decision(era(parse_override(override[0])), f"{OVERRIDE_KEY}={override[0]} ({override[1]})")
        if print_fp is not None:
            d.evidence.append(f"the fingerprint of {library[0]} says {print_fp.era.name}")
            if print_fp.era is not d.era:
                d.warnings.append(f"the fingerprint of {library[0]} says {print_fp.era.describe()} "
                                  f"({print_fp.evidence()}); the override wins")
        return d
    if print_fp is not None:
        d = Decision(print_fp.era, f"the fingerprint of {library[0]}", [print_fp.evidence()])
    else:
        where = ", ".join(searched) if searched else "nowhere"
        d = Decision(None, "no parent library: libtriton_python.so was not found (looked in "
                           f"{where})")
    if hint:
        if d.era is None or hint_era is None:
            d.evidence.append(f"{hint} suggests {hint_era.describe() if hint_era else hint_release}")
        elif hint_era is d.era:
            d.evidence.append(f"{hint} agrees")
        else:
            d.warnings.append(f"{hint} suggests {hint_era.describe()}; the library decides")
    return d
