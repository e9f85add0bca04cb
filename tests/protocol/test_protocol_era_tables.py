"""The per-era tables and codecs: every era's diff is what its module says, the structs code uses
before the era is known agree in every era, and ``protocol.codecs(era)`` speaks each era in one
process (the module-level codecs staying those of the selected era).

All on a heap over a bytearray: no process, no server.
"""
from __future__ import annotations

import numpy as np
import pytest

from tritonstub import protocol
from tritonstub.ipc.heap import Heap

ERAS = sorted(protocol.TABLES)


@pytest.fixture
def heap():
    h = Heap.create(bytearray(2 << 20))
    start = h.free_memory()
    yield h
    assert h.free_memory() == start


def _fields(layout):
    return {f.name: (f.type, f.offset) for f in layout.fields.values()}


@pytest.mark.parametrize("era", ERAS)
def test_the_common_structs_and_constants_agree_in_every_era(era):
    base, other = protocol.common(), protocol.tables(era)
    for name in protocol.COMMON:
        a, b = getattr(base, name), getattr(other, name)
        assert a.size == b.size, name
        # a later era may add a field in what was padding (r26.03's readiness flag), never
        # move or retype one
        assert _fields(a).items() <= _fields(b).items(), name
    for const in ("OWNERSHIP_HEADER", "SHM_MUTEX_NAME", "TOTAL_SIZE_NAME", "QUEUE_FIELDS",
                  "DUMMY_MESSAGE", "MESSAGE_QUEUE_ELEMENT", "DEFAULT_MESSAGE_QUEUE_SIZE"):
        assert getattr(base, const) == getattr(other, const), const
    for cmd in ("ExecuteRequest", "ExecuteResponse", "InitializeRequest", "InitializeResponse",
                "AutoCompleteRequest", "AutoCompleteResponse", "FinalizeRequest",
                "FinalizeResponse"):
        assert other.PYTHONSTUB_CommandType[cmd] == base.PYTHONSTUB_CommandType[cmd], cmd


def test_each_newer_era_is_its_predecessor_plus_a_diff():
    r24, r25a, r25b, r26 = (protocol.tables(e) for e in ("r24.10", "r25.02", "r25.04", "r26.03"))
    # r25.02: ResponseShm.parameters after outputs_size, everything after it 8 bytes later
    assert _fields(r25a.ResponseShm) == {
        "outputs_size": ("u32", 0), "parameters": ("handle", 8), "error": ("handle", 16),
        "has_error": ("bool", 24), "is_error_set": ("bool", 25), "id": ("intptr", 32),
        "is_last_response": ("bool", 40)}
    assert r24.ResponseShm.size == 40 and r25a.ResponseShm.size == 48
    # r25.04: command 31 and its message
    assert r25b.PYTHONSTUB_CommandType.CancelBLSInferRequest == 31
    assert _fields(r25b.CancelBLSRequestMessage)["infer_payload_id"] == ("intptr", 96)
    assert _fields(r25b.CancelBLSRequestMessage)["is_cancelled"] == ("bool", 104)
    assert r25b.CancelBLSRequestMessage.size == 112
    # r26.03: command 32, the readiness message, the control-block flag in byte 4
    assert r26.PYTHONSTUB_CommandType.UserModelReadinessRequest == 32
    assert r26.IPCControlShm.stub_has_user_model_readiness_fn == 4
    assert {n: _fields(r26.UserModelReadinessMessage)[n] for n in
            ("is_ready", "function_exists", "has_error", "is_error_set", "error")} == {
        "is_ready": ("bool", 89), "function_exists": ("bool", 90), "has_error": ("bool", 91),
        "is_error_set": ("bool", 92), "error": ("handle", 96)}
    assert r26.UserModelReadinessMessage.size == 104
    # append-only enums: every older command keeps its number
    for old, new in ((r24, r25b), (r25b, r26)):
        assert {c.name: c.value for c in old.PYTHONSTUB_CommandType}.items() <= \
            {c.name: c.value for c in new.PYTHONSTUB_CommandType}.items()
    # and what no era changed is the same object, not a copy
    for name, layout in r24.ALL_STRUCTS.items():
        if name not in ("ResponseShm", "IPCControlShm"):
            assert r26.ALL_STRUCTS[name] is layout, name


def test_the_module_level_codecs_are_the_selected_era_and_codecs_of_it_are_them():
    from tritonstub.protocol import control, responses
    assert protocol.selected() == protocol.DEFAULT_ERA      # the codecs above bound it
    c = protocol.codecs(protocol.DEFAULT_ERA)
    assert c.responses is responses and c.control is control
    other = protocol.codecs("r25.02")
    assert other.responses is not responses
    assert other.responses.L is protocol.tables("r25.02")
    assert other.responses.HAS_PARAMETERS and not responses.HAS_PARAMETERS
    assert protocol.codecs("r25.02") is other              # loaded once per era
    # the era-free modules are shared, not reloaded
    import sys
    assert sys.modules["tritonstub._protocol_r25_02.layout"] is sys.modules[
        "tritonstub.protocol.layout"]


@pytest.mark.parametrize("era", ERAS)
def test_responses_round_trip_in_every_era(heap, era):
    c = protocol.codecs(era)
    R = c.responses
    owned = c.scalars.Owned()
    out = np.arange(4, dtype=np.float32)
    params = '{"a": 1, "b": "x", "c": true}'
    ok = R.write_response(heap, R.ResponseData(
        outputs=[("OUT", 11, (4,), out.tobytes())], id=77, is_last_response=False,
        parameters=params), owned)
    bad = R.write_response(heap, R.ResponseData(error=(3, "no"), id=78), owned)
    got = R.read_response(heap, ok)
    assert [(n, d, dims, bytes(memoryview(v).cast("B"))) for n, d, dims, v in got.outputs] == [
        ("OUT", 11, (4,), out.tobytes())]
    assert (got.id, got.is_last_response) == (77, False)
    assert got.parameters == (params if R.HAS_PARAMETERS else "{}")
    assert R.read_response(heap, bad).error == (3, "no")
    assert R.read_response(heap, bad).id == 78
    # the ExecuteResponse block: a returned response with parameters, one without, one saved
    block = R.write_execute_response(heap, [
        R.Returned([("OUT", 11, (4,), out.tobytes())], 0, True, params),
        R.Returned([], 0, True), bad, 0], owned)
    result = R.read_execute_response(heap, block)
    first, second, third, fourth = result.responses
    assert first.parameters == (params if R.HAS_PARAMETERS else "{}")
    assert second.parameters == "{}" and second.outputs == []
    assert third.error == (3, "no") and fourth is None
    if R.HAS_PARAMETERS:
        # what the C++ parent loads: a standalone PbString behind ResponseShm.parameters
        p = heap.payload(R.read_execute_response.__globals__["read_handles"](
            heap, heap.payload(c.control.read_ipc_message(heap, block).args)
            + c.tables.ResponseBatch.size, 4)[0])
        handle = c.tables.ResponseShm.get(heap.buf, p, "parameters")
        assert c.scalars.read_string(heap, handle) == params
    owned.release(heap)
