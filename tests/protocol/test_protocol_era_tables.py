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
    for cmd in ("ExecuteRequest", "ExecuteResponse", "InitializeRequest", "InitializeResponse"):
        assert other.PYTHONSTUB_CommandType[cmd] == base.PYTHONSTUB_CommandType[cmd], cmd
    # the auto-complete request is read before the era is known, by its number in each era
    from tritonstub.protocol import eras
    C = other.PYTHONSTUB_CommandType
    assert C.AutoCompleteRequest == eras.era(era).auto_complete_request
    assert C.AutoCompleteResponse == C.AutoCompleteRequest + 1


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
    # before r23.09 an error carries no code: it reads back as INTERNAL (1)
    assert R.read_response(heap, bad).error == ((3 if c.tables.ERRORS_CARRY_CODES else 1), "no")
    assert R.read_response(heap, bad).id == 78
    # the ExecuteResponse block: a returned response with parameters, one without, one saved
    block = R.write_execute_response(heap, [
        R.Returned([("OUT", 11, (4,), out.tobytes())], 0, True, params),
        R.Returned([], 0, True), bad, 0], owned)
    result = R.read_execute_response(heap, block)
    first, second, third, fourth = result.responses
    assert first.parameters == (params if R.HAS_PARAMETERS else "{}")
    assert second.parameters == "{}" and second.outputs == []
    assert third.error == ((3 if c.tables.ERRORS_CARRY_CODES else 1), "no") and fourth is None
    if R.HAS_PARAMETERS:
        # what the C++ parent loads: a standalone PbString behind ResponseShm.parameters
        p = heap.payload(R.read_execute_response.__globals__["read_handles"](
            heap, heap.payload(c.control.read_ipc_message(heap, block).args)
            + c.tables.ResponseBatch.size, 4)[0])
        handle = c.tables.ResponseShm.get(heap.buf, p, "parameters")
        assert c.scalars.read_string(heap, handle) == params
    owned.release(heap)


def test_the_older_eras_are_their_successor_minus_a_diff(heap):
    r24_06, r24_08, r24_10 = (protocol.tables(e) for e in ("r24.06", "r24.08", "r24.10"))
    # r24.08: ResponseBatch without is_response_factory_deleted; the era-B switches
    assert "is_response_factory_deleted" not in r24_08.ResponseBatch.fields
    assert r24_08.ResponseBatch.size == 112 and r24_10.ResponseBatch.size == 120
    assert (r24_08.RESPONSES_THROUGH_SENDER, r24_08.SENDS_ON_PARENT_MQ,
            r24_08.STUB_DELETES_FACTORY_ON_FINAL) == (True, True, True)
    assert not (r24_10.RESPONSES_THROUGH_SENDER or r24_10.SENDS_ON_PARENT_MQ
                or r24_10.STUB_DELETES_FACTORY_ON_FINAL)
    # r24.06: no MetricRequestObserve, so the four commands after it move down by one
    C6, C8 = r24_06.PYTHONSTUB_CommandType, r24_08.PYTHONSTUB_CommandType
    assert "MetricRequestObserve" not in C6.__members__ and C8.MetricRequestObserve == 26
    assert (C6.LoadModelRequest, C6.UnloadModelRequest, C6.ModelReadinessRequest,
            C6.IsRequestCancelled) == (26, 27, 28, 29)
    assert all(C6[c.name] == c.value for c in C8 if c.value < 26)
    assert _fields(r24_06.MetricShm) == {
        "labels_shm_handle": ("handle", 0), "operation_value": ("f64", 8),
        "metric_address": ("intptr", 16), "metric_family_address": ("intptr", 24)}
    # a metric round trip in r24.06; buckets cannot travel there
    c = protocol.codecs("r24.06")
    owned = c.scalars.Owned()
    h = c.control.write_metric(heap, '{"a": "b"}', None, 2.5, 11, 22, owned)
    f = c.control.read_metric(heap, h)
    assert (f["labels"], f["operation_value"], f["metric_address"],
            f["metric_family_address"], f["buckets"]) == ('{"a": "b"}', 2.5, 11, 22, None)
    with pytest.raises(ValueError, match="r24.08 or later"):
        c.control.write_metric(heap, "{}", [1.0, 2.0], 0.0, 0, 0, owned)
    owned.release(heap)
    # the era-B ExecuteResponse: a message whose args is a ResponseBatch block of its own
    c8 = protocol.codecs("r24.08")
    owned = c8.scalars.Owned()
    for error in (None, "Failed: x"):
        msg = c8.responses.write_execute_reply(heap, owned, error)
        command, args = c8.control.read_command(heap, msg)
        assert command == C8.ExecuteResponse
        assert heap.payload(args) != heap.payload(msg) + r24_08.IPCMessageShm.size
        result = c8.responses.read_execute_response(heap, msg)
        assert (result.error, result.responses) == (error, [])
    owned.release(heap)


def test_r23_10_is_r23_12_minus_a_diff(heap):
    r23_10, r23_12 = protocol.tables("r23.10"), protocol.tables("r23.12")
    C10, C12 = r23_10.PYTHONSTUB_CommandType, r23_12.PYTHONSTUB_CommandType
    # no CUDAPoolInitializeRequest (4) nor InferStreamExecResponse (11), one cleanup command
    assert "CUDAPoolInitializeRequest" not in C10.__members__
    assert "InferStreamExecResponse" not in C10.__members__
    assert C10.CleanupRequest == C10.BLSDecoupledInferPayloadCleanup == 15
    assert [(c.name, c.value) for c in C10][-1] == ("IsRequestCancelled", 26)
    assert (C10.FinalizeRequest, C10.AutoCompleteRequest, C10.LogRequest,
            C10.MetricFamilyRequestNew) == (4, 12, 14, 16)
    assert (C12.FinalizeRequest, C12.AutoCompleteRequest, C12.LogRequest,
            C12.MetricFamilyRequestNew) == (5, 14, 16, 19)
    # InferRequestShm: int32 timeout @52, no release flags, 80 bytes
    assert _fields(r23_10.InferRequestShm)["timeout"] == ("i32", 52)
    assert _fields(r23_12.InferRequestShm)["timeout"] == ("u64", 56)
    assert "request_release_flags" not in r23_10.InferRequestShm.fields
    assert (r23_10.InferRequestShm.size, r23_12.InferRequestShm.size) == (80, 96)
    assert _fields(r23_10.InferRequestShm)["trace"] == ("intptr", 72)
    # MemoryShm before the CUDA pool
    assert _fields(r23_10.MemoryShm) == {
        "gpu_pointer_offset": ("u64", 0), "memory_type": ("enum", 8),
        "memory_type_id": ("i64", 16), "byte_size": ("u64", 24),
        "is_cuda_handle_set": ("bool", 32), "memory_release_id": ("u64", 40)}
    assert (r23_10.MemoryShm.size, r23_12.MemoryShm.size) == (48, 56)
    # the parent owns response factories; its parent_to_stub messages carry no command
    assert (r23_10.STUB_RELEASES_FACTORIES, r23_10.STUB_DELETES_FACTORY_ON_FINAL,
            r23_10.PARENT_TO_STUB_COMMANDS) == (False, False, False)
    assert (r23_12.STUB_RELEASES_FACTORIES, r23_12.STUB_DELETES_FACTORY_ON_FINAL,
            r23_12.PARENT_TO_STUB_COMMANDS) == (True, True, True)
    # a tensor in r23.10: byte size @24 of its MemoryShm, data right after the 48 bytes
    c = protocol.codecs("r23.10")
    owned = c.scalars.Owned()
    x = np.arange(5, dtype=np.int32)
    h = c.tensors.write_tensor(heap, "T", 8, (5,), x.tobytes(), owned)
    mp = heap.payload(h) + r23_10.TensorShm.size + 8 + r23_10.StringShm.size + 1
    assert r23_10.MemoryShm.get(heap.buf, mp, "byte_size") == 20
    assert r23_10.MemoryShm.get(heap.buf, mp, "memory_type") == 0
    assert bytes(heap.buf[mp + 48:mp + 68]) == x.tobytes()
    assert bytes(memoryview(c.tensors.read_tensor(heap, h).data).cast("B")) == x.tobytes()
    # no release flags to write: a clear error; reading them says RELEASE_ALL
    from tritonstub.errors import ProtocolError
    rh = c.requests.write_request(heap, c.requests.RequestData(inputs=[], requested_output_names=[]),
                                  owned)
    assert c.requests.read_release_flags(heap, rh) == r23_10.TRITONSERVER_REQUEST_RELEASE_ALL
    with pytest.raises(ProtocolError, match="r23.11 or later"):
        c.requests.write_release_flags(heap, rh, 2)
    owned.release(heap)


def test_r23_07_is_r23_10_minus_a_diff(heap):
    r23_07, r23_10 = protocol.tables("r23.07"), protocol.tables("r23.10")
    C7, C10 = r23_07.PYTHONSTUB_CommandType, r23_10.PYTHONSTUB_CommandType
    # no IsRequestCancelled; every other command keeps its r23.10 number
    assert "IsRequestCancelled" not in C7.__members__ and C10.IsRequestCancelled == 26
    assert {c.name: c.value for c in C7} == {c.name: c.value for c in C10
                                             if c.name != "IsRequestCancelled"}
    assert C7.BLSDecoupledInferPayloadCleanup == C7.CleanupRequest == 15
    # no trace in the request: the first 72 bytes of r23.10's
    assert _fields(r23_07.InferRequestShm) == {
        k: v for k, v in _fields(r23_10.InferRequestShm).items() if k != "trace"}
    assert (r23_07.InferRequestShm.size, r23_10.InferRequestShm.size) == (72, 80)
    assert not hasattr(r23_07, "PbErrorShm") and not hasattr(r23_07, "IsCancelledMessage")
    assert (r23_07.ERRORS_CARRY_CODES, r23_10.ERRORS_CARRY_CODES) == (False, True)
    c = protocol.codecs("r23.07")
    owned = c.scalars.Owned()
    # an error is the bare message string; its code does not travel (the parent says INTERNAL)
    bad = c.responses.write_response(heap, c.responses.ResponseData(error=(3, "no"), id=5), owned)
    eh = r23_07.ResponseShm.get(heap.buf, heap.payload(bad), "error")
    assert c.scalars.read_string(heap, eh) == "no"
    assert c.responses.read_response(heap, bad).error == (1, "no")
    # a request without a trace: read back with the factory's default
    rh = c.requests.write_request(heap, c.requests.RequestData(
        inputs=[], requested_output_names=["O"], model_name="m", trace_address=99), owned)
    got = c.requests.read_request(heap, rh)
    assert (got.model_name, list(got.requested_output_names), got.trace_address) == ("m", ["O"], 0)
    owned.release(heap)


@pytest.mark.parametrize("era", ["r23.07", "r23.10", "r23.12", "r24.03", "r24.10"])
def test_requests_round_trip_with_embedded_or_standalone_strings(heap, era):
    c = protocol.codecs(era)
    R = c.requests
    owned = c.scalars.Owned()
    x = np.arange(3, dtype=np.float32)
    sent = R.RequestData(inputs=[c.tensors.RawTensor("IN", 11, (3,), x.tobytes())],
                         requested_output_names=["B", "A"], request_id="id-é",
                         correlation_id=42, model_name="peer", model_version=3, flags=2,
                         timeout=7, parameters='{"k": 1}')
    h = R.write_request(heap, sent, owned)
    got = R.read_request(heap, h)
    assert (got.request_id, got.correlation_id, got.model_name, got.model_version, got.flags,
            got.timeout, got.parameters) == ("id-é", 42, "peer", 3, 2, 7, '{"k": 1}')
    assert got.requested_output_names == ["A", "B"] or tuple(got.requested_output_names) == \
        ("A", "B")
    assert bytes(memoryview(got.inputs[0].data).cast("B")) == x.tobytes()
    if era in ("r23.07", "r23.10", "r23.12", "r24.03"):
        assert c.tables.InferRequestShm.get(heap.buf, heap.payload(h), "correlation_id") == 42
        from tritonstub.errors import ProtocolError
        with pytest.raises(ProtocolError, match="r24.04 or later"):
            R.write_request(heap, R.RequestData(inputs=[], requested_output_names=[],
                                                correlation_id="s"), owned)
    owned.release(heap)
