"""Protocol eras without a server: the fingerprint of a parent library, release and version names,
and the decision (override, fingerprint, version cross-check).

The marker sets below are written out by hand from what the libraries of the pip builds contain
(Triton 2.36 ... 2.51, nvidia-pytriton 0.3.1 ... 0.7.0) and what python_backend added after r24.10,
so that they check the classifier rather than restate it.
"""
from __future__ import annotations

import pytest

from tritonstub.protocol import eras
from tritonstub.stub import era_check

SPAWN_CHILD = "TRITONSERVER_InferenceTraceSpawnChildTrace"
ONE_MB_TEXT = "requires at least 1 MB of shared memory"
IS_CANCELLED = "TRITONBACKEND_RequestIsCancelled"
SET_BOOL = "TRITONSERVER_InferenceRequestSetBoolParameter"
TIMEOUT_US = "TRITONBACKEND_InferenceRequestTimeoutMicroseconds"
TRACE_CONTEXT = "TRITONSERVER_InferenceTraceContext"
CORRELATION_STRING = "TRITONBACKEND_RequestCorrelationIdString"
METRIC_OBSERVE = "TRITONSERVER_MetricObserve"
RESPONSE_DELETE = "TRITONBACKEND_ResponseDelete"
STRING_PARAMETER = "TRITONBACKEND_ResponseSetStringParameter"
REQUEST_CANCEL = "TRITONSERVER_InferenceRequestCancel"
IS_READY_TEXT = "Timed out waiting for user-defined is_ready() response"
TEXTS = (ONE_MB_TEXT, IS_READY_TEXT)

R2310_MARKERS = [SPAWN_CHILD, ONE_MB_TEXT, IS_CANCELLED]
R2312_MARKERS = R2310_MARKERS + [SET_BOOL, TIMEOUT_US, RESPONSE_DELETE]
R2404_MARKERS = R2312_MARKERS + [TRACE_CONTEXT, CORRELATION_STRING]
R2410_MARKERS = R2404_MARKERS + [METRIC_OBSERVE]

#: (Triton, symbols its libtriton_python.so imports among the markers, the era). 2.37, 2.38 and
#: 2.40 have no pip build: their sets come from the python_backend sources (r23.08: the child
#: trace of a BLS request; r23.09: the 1 MB shared-memory minimum; r23.11: BLS parameters).
LIBRARIES = [
    ("2.36", [], "r23.07"),
    ("2.37", [SPAWN_CHILD], "r23.08"),
    ("2.38", [SPAWN_CHILD, ONE_MB_TEXT], "r23.09"),
    ("2.39", R2310_MARKERS, "r23.10"),
    ("2.40", R2310_MARKERS + [SET_BOOL, RESPONSE_DELETE], "r23.11"),
    ("2.41", R2312_MARKERS, "r23.12"),
    ("2.43", R2312_MARKERS, "r23.12"),
    ("2.44", R2312_MARKERS + [TRACE_CONTEXT], "r24.03"),
    ("2.45", R2404_MARKERS, "r24.04"),
    ("2.47", [m for m in R2404_MARKERS if m != RESPONSE_DELETE], "r24.06"),
    ("2.49", [m for m in R2410_MARKERS if m != RESPONSE_DELETE], "r24.08"),
    ("2.51", R2410_MARKERS, "r24.10"),
    ("2.55", R2410_MARKERS + [STRING_PARAMETER], "r25.02"),
    ("2.57", R2410_MARKERS + [STRING_PARAMETER, REQUEST_CANCEL], "r25.04"),
    ("2.71", R2410_MARKERS + [STRING_PARAMETER, REQUEST_CANCEL, IS_READY_TEXT], "r26.03"),
]


def fake_library(markers) -> bytes:
    """An ELF-ish blob: symbol names NUL-separated as in .dynstr, texts as in .rodata."""
    names = b"\0".join(m.encode() for m in markers if m not in TEXTS)
    texts = b"".join(b"\0" + m.encode() + b"\0" for m in markers if m in TEXTS)
    return b"\x7fELF" + bytes(64) + b"\0TRITONBACKEND_ModelInitialize\0" + names + b"\0" + texts + b"pad"


@pytest.mark.parametrize("triton, markers, expected", LIBRARIES, ids=[t for t, _, _ in LIBRARIES])
def test_fingerprint_tells_every_era(triton, markers, expected):
    fp = eras.fingerprint(fake_library(markers))
    assert fp.era.name == expected
    # The Triton version of that library names the same era.
    assert eras.era_of_release(eras.release_of_triton(triton)).name == expected
    assert sorted(m.name for m in fp.present) == sorted(markers)


def test_symbol_markers_match_whole_names_only():
    # A longer symbol that starts with a marker's name is not that marker.
    blob = fake_library(R2312_MARKERS) + b"\0TRITONSERVER_InferenceTraceContextX\0"
    assert eras.fingerprint(blob).era.name == "r23.12"


def test_real_reference_library_is_r24_10(triton_reference):
    data = (triton_reference.python_backend_dir / "libtriton_python.so").read_bytes()
    fp = eras.fingerprint(data)
    assert fp.era.name == "r24.10"
    assert fp.evidence() == (f"has {METRIC_OBSERVE} (since r24.08), lacks {STRING_PARAMETER} "
                             f"(since r25.02), has {RESPONSE_DELETE} (absent r24.06-r24.09 only)")


@pytest.mark.parametrize("version, release", [
    ("2.36.0", "r23.07"), ("2.39.0", "r23.10"), ("2.44.0", "r24.03"), ("2.51.0", "r24.10"),
    ("2.54.0", "r25.01"), ("2.55.0", "r25.02"), ("2.59.0", "r25.06"), ("2.59.1", "r25.07"),
    ("2.60.0", "r25.08"), ("2.67.0", "r26.03"), ("2.71", "r26.07"), ("1.15.0", None), ("x", None),
])
def test_release_of_triton_version(version, release):
    assert eras.release_of_triton(version) == release


@pytest.mark.parametrize("release, era_name", [
    ("r23.08", "r23.08"), ("r23.11", "r23.11"), ("r24.01", "r23.12"), ("r24.10", "r24.10"), ("r24.11", "r24.10"), ("25.01", "r24.10"),
    ("r25.03", "r25.02"), ("r25.04", "r25.04"), ("r26.02", "r25.04"), ("r26.07", "r26.03"),
    ("r22.01", "r23.07"),
])
def test_era_of_release(release, era_name):
    assert eras.era_of_release(release).name == era_name


@pytest.mark.parametrize("bad", ["2.51", "r24.13", "newest", "r2410"])
def test_bad_override_values_say_what_is_expected(bad):
    with pytest.raises(ValueError, match="expected 'auto' or a python_backend release"):
        eras.parse_override(bad)


def test_eras_cover_every_release_once():
    names = [e.name for e in eras.ERAS]
    assert names == sorted(names)
    for earlier, later in zip(eras.ERAS, eras.ERAS[1:]):
        assert earlier.last < later.name
    assert set(eras.SUPPORTED) <= {e.name for e in eras.ERAS}
    assert "r24.10" in eras.SUPPORTED


R2410 = ("/x/libtriton_python.so", fake_library(R2410_MARKERS))
R2502 = ("/x/libtriton_python.so", fake_library(R2410_MARKERS + [STRING_PARAMETER]))
R2309 = ("/x/libtriton_python.so", fake_library([SPAWN_CHILD, ONE_MB_TEXT]))


def test_decision_from_the_fingerprint_with_an_agreeing_version():
    d = eras.decide(None, R2410, {"TRITON_SERVER_VERSION": "2.52.0"})
    assert d.supported and d.era.name == "r24.10"
    assert d.summary().startswith("protocol python_backend r24.10-r25.01 (Triton 2.51-2.54), "
                                  f"from the fingerprint of /x/libtriton_python.so: has {METRIC_OBSERVE} "
                                  f"(since r24.08), lacks {STRING_PARAMETER} (since r25.02), ")
    assert "TRITON_SERVER_VERSION=2.52.0 agrees" in d.summary()
    assert d.warnings == []


def test_the_library_decides_over_a_disagreeing_version():
    d = eras.decide(None, R2309, {"NVIDIA_TRITON_SERVER_VERSION": "24.10"})
    assert d.era.name == "r23.09" and not d.supported
    assert d.warnings == ["NVIDIA_TRITON_SERVER_VERSION=24.10 suggests python_backend "
                          "r24.10-r25.01 (Triton 2.51-2.54); the library decides"]
    text = d.refusal()
    assert text.startswith("the parent speaks the protocol of python_backend r23.09 "
                           "(Triton 2.38), which this tritonstub does not speak (decided "
                           f"from the fingerprint of /x/libtriton_python.so: has {ONE_MB_TEXT} "
                           f"(since r23.09), lacks {IS_CANCELLED} (since r23.10)). ")
    assert f"tritonstub speaks {eras.supported_text()}." in text
    assert "Use the C++ triton_python_backend_stub of your Triton release" in text
    assert 'key: "TRITONSTUB_PROTOCOL" value: { string_value: "r24.10" }' in text
    assert text.endswith("the library decides")


@pytest.mark.parametrize("triton", ["2.51", "2.55", "2.57", "2.71"])
def test_every_newer_era_is_spoken(triton):
    markers, expected = next((m, e) for t, m, e in LIBRARIES if t == triton)
    d = eras.decide(None, ("/x/libtriton_python.so", fake_library(markers)), {})
    assert d.supported and d.era.name == expected


def test_an_override_wins_and_the_disagreement_is_reported():
    d = eras.decide(("r24.10", "config.pbtxt parameter"), R2502, {})
    assert d.supported and d.source == "TRITONSTUB_PROTOCOL=r24.10 (config.pbtxt parameter)"
    assert len(d.warnings) == 1 and "says python_backend r25.02-r25.03" in d.warnings[0]
    forced = eras.decide(("r26.07", "environment"), R2410, {})
    assert forced.era.name == "r26.03" and forced.supported
    assert len(forced.warnings) == 1 and "the override wins" in forced.warnings[0]
    refused = eras.decide(("23.09", "environment"), R2410, {})
    assert refused.era.name == "r23.09" and not refused.supported
    assert eras.decide(("auto", "environment"), R2410, {}).source.startswith("the fingerprint")


def test_no_library_is_not_guessed():
    d = eras.decide(None, None, {"TRITON_SERVER_VERSION": "2.51.0"}, ["/proc/1/maps", "/lib/x.so"])
    assert d.era is None and not d.supported
    assert "libtriton_python.so was not found (looked in /proc/1/maps, /lib/x.so)" in d.source
    assert "TRITON_SERVER_VERSION=2.51.0 suggests python_backend r24.10-r25.01" in d.refusal()
    assert d.refusal().startswith("tritonstub could not tell which python_backend protocol")


def test_stub_finds_the_library_in_the_parent_maps(tmp_path, monkeypatch):
    lib = tmp_path / "backends" / "python" / "libtriton_python.so"
    lib.parent.mkdir(parents=True)
    lib.write_bytes(R2502[1])
    maps = tmp_path / "maps"
    maps.write_text(f"7f00-7f10 r--p 00000000 08:01 123  {tmp_path}/other/libtriton_python.so\n"
                    f"7f10-7f20 r-xp 00001000 08:01 124  {lib}\n"
                    "7f20-7f30 rw-p 00000000 00:00 0 \n")
    real_open = open

    def fake_open(path, *a, **k):
        return real_open(maps if path == "/proc/4242/maps" else path, *a, **k)
    monkeypatch.setattr("builtins.open", fake_open)
    assert era_check.parent_library(4242, str(lib.parent)) == (str(lib), ["/proc/4242/maps"])
    d = era_check.decide('{"parameters": {}}', 4242, str(lib.parent), environ={})
    assert d.era.name == "r25.02"
    # No maps (another user's parent, say): argv[6]'s directory.
    assert era_check.parent_library(4243, str(lib.parent)) == (
        str(lib), ["/proc/4243/maps", str(lib)])


def test_override_from_config_before_environment():
    cfg = '{"parameters": {"TRITONSTUB_PROTOCOL": {"string_value": "r24.10"}}}'
    assert era_check.override(cfg, {"TRITONSTUB_PROTOCOL": "r25.02"}) == ("r24.10", "config.pbtxt parameter")
    assert era_check.override("{}", {"TRITONSTUB_PROTOCOL": "r25.02"}) == ("r25.02", "environment")
    assert era_check.override(None, {}) is None
    bad = era_check.decide('{"parameters": {"TRITONSTUB_PROTOCOL": {"string_value": "newest"}}}',
                           4244, "/nonexistent", environ={})
    assert bad.era is None and "TRITONSTUB_PROTOCOL='newest' (config.pbtxt parameter), which is not valid" in bad.source
