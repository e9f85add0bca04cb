"""Every message of the protocol, both ways, on a heap over a bytearray: no server, no process.

Each test plays both peers with the ``tritonstub.protocol`` codecs: the parent's writer, the
stub's reader, the stub's writer, the parent's reader, and checks the values survive. The last
check of each is that releasing what the writers recorded in ``Owned`` gives every byte back.
"""
from __future__ import annotations

import numpy as np
import pytest

from tritonstub import protocol
from tritonstub.ipc.heap import Heap
from tritonstub.protocol import control, requests, responses, scalars
from tritonstub.protocol.dtypes import serialize_bytes
from tritonstub.protocol.requests import DATA_FACTORY, RequestData, RequestFactory
from tritonstub.protocol.responses import ResponseData, Returned
from tritonstub.protocol.scalars import Owned
from tritonstub.protocol.tensors import RawTensor

L = protocol.current()
C = L.PYTHONSTUB_CommandType


@pytest.fixture
def heap():
    h = Heap.create(bytearray(4 << 20))
    h.initial_free = h.free_memory()
    yield h
    # Every test releases what it built: the allocator is back where it started.
    assert h.free_memory() == h.initial_free


def release(heap, *owned_lists):
    for owned in owned_lists:
        owned.release(heap)


def raw(name, array, dtype_code):
    array = np.ascontiguousarray(array)
    return RawTensor(name, dtype_code, tuple(array.shape), array.tobytes())


def as_bytes(data) -> bytes:
    return bytes(memoryview(data).cast("B")) if not isinstance(data, bytes) else data


# ------------------------------------------------------------------ scalars
@pytest.mark.parametrize("text", ["", "x", "héllo wörld", "\udcff raw byte", "a" * 5000])
def test_string_round_trip(heap, text):
    owned = Owned()
    h = scalars.write_string(heap, text, owned)
    assert scalars.read_string(heap, h) == text
    assert scalars.string_reader(heap)(h) == text
    release(heap, owned)


def test_map_and_error_round_trip(heap):
    owned = Owned()
    m = {"model_config": '{"name": "m"}', "model_instance_kind": "CPU", "empty": ""}
    assert scalars.read_map(heap, scalars.write_map(heap, m, owned)) == m
    assert scalars.read_map(heap, scalars.write_map(heap, {}, owned)) == {}
    e = scalars.write_error(heap, L.TRITONSERVER_Error_Code.INVALID_ARG, "bad input", owned)
    assert scalars.read_error(heap, e) == (L.TRITONSERVER_Error_Code.INVALID_ARG, "bad input")
    release(heap, owned)


# ------------------------------------------------------------------ execute
def _requests():
    return [
        RequestData(
            inputs=[raw("IN0", np.arange(12, dtype=np.float32).reshape(3, 4), 11),
                    raw("IN1", np.array([True, False]), 1)],
            requested_output_names=["OUT1", "OUT0", "OUT1"], request_id="req-1",
            correlation_id=42, model_name="add_sub", model_version=3, flags=1, timeout=7,
            address=0x1000, response_factory_address=0x2000, preferred_memory_type=2,
            preferred_memory_device_id=0, parameters='{"p": 1}', trace_address=0x3000,
            trace_context="ctx", is_decoupled=True),
        RequestData(
            inputs=[RawTensor("TEXT", 13, (2,), serialize_bytes(np.array([b"ab", b""], object))),
                    raw("EMPTY", np.zeros((0, 3), np.int64), 9),
                    RawTensor("HALF", 14, (2,), b"\x80\x3f\x00\x40")],
            requested_output_names=[], request_id="", correlation_id="seq-α",
            model_name="m", model_version=-1, parameters="{}"),
    ]


def _same_request(got: RequestData, sent: RequestData):
    assert got.requested_output_names == sorted(set(sent.requested_output_names))
    for field in ("request_id", "correlation_id", "model_name", "model_version", "flags",
                  "timeout", "address", "response_factory_address", "preferred_memory_type",
                  "preferred_memory_device_id", "parameters", "trace_address", "is_decoupled"):
        assert getattr(got, field) == getattr(sent, field), field
    assert (got.trace_context or None) == (sent.trace_context or None)
    assert [(t.name, t.dtype, t.dims, as_bytes(t.data)) for t in got.inputs] == \
        [(t.name, t.dtype, t.dims, as_bytes(t.data)) for t in sent.inputs]


def test_execute_request_and_response_both_ways(heap):
    parent, stub = Owned(), Owned()
    # parent writes the ExecuteRequest
    sent = _requests()
    batch = requests.write_request_batch(
        heap, [requests.write_request(heap, r, parent) for r in sent], parent)
    msg, _, _ = control.write_ipc_message(heap, C.ExecuteRequest, batch, parent)
    # stub reads it
    command, args = control.read_command(heap, msg)
    assert command == C.ExecuteRequest
    handles = requests.read_request_batch(heap, args)
    got = [requests.read_request(heap, h, DATA_FACTORY) for h in handles]
    for g, s in zip(got, sent):
        _same_request(g, s)
    requests.write_release_flags(heap, handles[1], L.TRITONSERVER_REQUEST_RELEASE_RESCHEDULE)
    assert requests.read_release_flags(heap, handles[1]) == \
        L.TRITONSERVER_REQUEST_RELEASE_RESCHEDULE
    # stub answers: one returned response, one error response saved apart, one "none"
    out = np.arange(6, dtype=np.int32).reshape(2, 3)
    error = responses.write_response(
        heap, ResponseData(error=(L.TRITONSERVER_Error_Code.INTERNAL, "boom"), id=9), stub)
    block = responses.write_execute_response(heap, [
        Returned([("OUT0", 8, (2, 3), out.tobytes()), ("OUT1", 13, (1,),
                  serialize_bytes(np.array([b"xyz"], object)))], 0, True),
        error, 0], stub)
    # parent reads the answer
    result = responses.read_execute_response(heap, block)
    assert result.error is None and not result.is_response_factory_deleted
    first, second, third = result.responses
    assert [(n, d, dims, as_bytes(data)) for n, d, dims, data in first.outputs] == [
        ("OUT0", 8, (2, 3), out.tobytes()), ("OUT1", 13, (1,), b"\x03\x00\x00\x00xyz")]
    assert first.error is None and first.is_last_response
    assert second.error == (L.TRITONSERVER_Error_Code.INTERNAL, "boom") and second.id == 9
    assert third is None
    release(heap, stub, parent)


def test_execute_error_block(heap):
    owned = Owned()
    block = responses.write_execute_error(heap, "Failed to process: x", True, owned)
    assert control.read_command(heap, block)[0] == C.ExecuteResponse
    result = responses.read_execute_response(heap, block)
    assert result.error == "Failed to process: x"
    assert result.is_response_factory_deleted and result.responses == []
    release(heap, owned)


class Recording(RequestFactory):
    """A factory that says which path built each tensor."""
    def tensor(self, name, dtype, dims, array):
        return ("fast", name, array.copy())

    def raw_tensor(self, raw):
        return ("general", raw.name, raw)

    def trace(self, address, context):
        return ("trace", address, context)

    def preferred_memory(self, memory_type, device_id):
        return (memory_type, device_id)

    def request(self, *fields):
        return fields


def test_request_reader_fast_path_and_fallback(heap):
    owned = Owned()
    sent = _requests()
    hs = [requests.write_request(heap, r, owned) for r in sent]
    fields = requests.read_request(heap, hs[0], Recording())
    inputs = fields[2]
    assert [(how, name) for how, name, _ in inputs] == [("fast", "IN0"), ("fast", "IN1")]
    np.testing.assert_array_equal(inputs[0][2], np.arange(12, dtype=np.float32).reshape(3, 4))
    assert fields[9] == ("trace", 0x3000, "ctx")
    fields = requests.read_request(heap, hs[1], Recording())
    assert [how for how, _, _ in fields[2]] == ["general"] * 3      # BYTES, zero-size, BF16
    assert fields[9] is None                                         # no trace: the default
    release(heap, owned)


# ------------------------------------------------------------------ start-up
@pytest.mark.parametrize("outcome", ["config", "error", "nothing"])
def test_auto_complete_both_ways(heap, outcome):
    parent, stub = Owned(), Owned()
    args = control.write_auto_complete_request(heap, '{"name": "m"}', parent)
    msg, _, _ = control.write_ipc_message(heap, C.AutoCompleteRequest, args, parent)
    command, args = control.read_command(heap, msg)
    assert (command, control.read_auto_complete_request(heap, args)) == \
        (C.AutoCompleteRequest, '{"name": "m"}')
    kwargs = {"config": {"config": '{"name": "m", "max_batch_size": 4}'},
              "error": {"error": "no TritonPythonModel"}, "nothing": {}}[outcome]
    reply = control.write_auto_complete_response(heap, stub, **kwargs)
    assert control.read_command(heap, reply)[0] == C.AutoCompleteResponse
    assert control.read_auto_complete_response(heap, reply) == \
        (kwargs.get("config"), kwargs.get("error"))
    release(heap, stub, parent)


@pytest.mark.parametrize("error", [None, "initialize raised"])
def test_initialize_both_ways(heap, error):
    parent, stub = Owned(), Owned()
    params = {"model_config": "{}", "model_instance_kind": "CPU", "model_repository": "/r"}
    args = control.write_initialize_request(heap, params, parent)
    assert control.read_initialize_request(heap, args) == params
    reply = control.write_initialize_response(heap, stub, error=error)
    assert control.read_command(heap, reply)[0] == C.InitializeResponse
    assert control.read_initialize_response(heap, reply) == error
    release(heap, stub, parent)


def test_finalize_and_health_messages(heap):
    owned = Owned()
    msg, _, _ = control.write_ipc_message(heap, C.FinalizeRequest, 0, owned)
    control.set_command(heap, msg, C.FinalizeResponse)
    assert control.read_ipc_message(heap, msg) == control.IPCMessage(
        int(C.FinalizeResponse), 0, False, 0, 0, 0)
    blank = control.write_blank_message(heap)
    owned.append(blank)
    assert control.read_ipc_message(heap, blank) == control.IPCMessage(0, 0, False, 0, 0, 0)
    release(heap, owned)


# ------------------------------------------------------------------ BLS
@pytest.mark.parametrize("fails", [False, True])
def test_bls_request_and_reply_both_ways(heap, fails):
    stub, parent = Owned(), Owned()
    sent = _requests()[0]
    sent.address = sent.response_factory_address = 0
    rh = requests.write_request(heap, sent, stub)
    batch = requests.write_request_batch(heap, [rh], stub)
    msg, mu, cv = control.write_ipc_message(heap, C.InferExecRequest, batch, stub, inline=True,
                                            sync_sizes=(40, 48))
    # the parent reads the request
    m = control.read_ipc_message(heap, msg)
    assert m.command == C.InferExecRequest and m.inline_response
    assert (m.response_mutex, m.response_cond) == (mu, cv)
    (h,) = requests.read_request_batch(heap, m.args)
    _same_request(requests.read_request(heap, h), sent)
    # ... answers with a response or an error ...
    if fails:
        answer = "model 'x' is not ready"
    else:
        answer = responses.write_response(heap, ResponseData(
            outputs=[("OUT", 11, (2,), np.array([1.5, 2.5], np.float32).tobytes())],
            id=0x77, is_last_response=False), parent)
    reply_batch = responses.write_response_batch(heap, answer, parent)
    reply, _, _ = control.write_ipc_message(heap, C.InferExecResponse, reply_batch, parent)
    control.set_response_handle(heap, msg, reply)
    # ... which the stub reads back
    got = responses.read_response_batch(
        heap, control.read_command(heap, control.read_response_handle(heap, msg))[1], "default")
    if fails:
        assert got == answer
    else:
        assert got.id == 0x77 and not got.is_last_response
        assert [(n, d, dims, as_bytes(data)) for n, d, dims, data in got.outputs] == \
            [("OUT", 11, (2,), np.array([1.5, 2.5], np.float32).tobytes())]
    responses.set_waiting_on_stub(heap, reply_batch)
    assert L.ResponseBatch.get(heap.buf, heap.payload(reply_batch), "waiting_on_stub")
    release(heap, parent, stub)


def test_bls_reply_without_error_text_uses_the_default(heap):
    owned = Owned()
    b = heap.construct(L.ResponseBatch.size + 8)
    owned.append(b)
    L.ResponseBatch.pack(heap.buf, b + L.OWNERSHIP_HEADER, has_error=True)
    assert responses.read_response_batch(heap, b, "An error occurred") == "An error occurred"
    release(heap, owned)


# ------------------------------------------------------------------ SendMessageBase family
def _answer(heap, handle, layout, owned, error=None, **fields):
    """The parent's side of pattern B/D: read the message, fill the reply in place."""
    p = heap.payload(handle)
    got = control.read_send_message(heap, p, layout)
    if error is not None:
        fields.update(has_error=True, is_error_set=True,
                      error=scalars.write_string(heap, error, owned))
    control.write_reply(heap, p, layout, **fields)
    box = control.mailbox(layout, p)
    heap.buf[box.flag] = 1
    return got, control.read_send_message(heap, p, layout)


def test_log_message(heap):
    stub = Owned()
    h = control.write_log_message(heap, "model.py", 12, L.LogLevel.WARNING, "careful", stub)
    assert control.read_log_message(heap, h) == ("model.py", 12, L.LogLevel.WARNING, "careful")
    box = control.mailbox(L.LogSendMessage, heap.payload(h))
    assert heap.buf[box.flag] == 0 and box.flag - box.payload == L.LogSendMessage.waiting_on_stub
    release(heap, stub)


def test_cleanup_message(heap):
    stub = Owned()
    h = control.write_cleanup_message(heap, 0xABCDEF, stub)
    assert control.read_cleanup_message(heap, h) == 0xABCDEF
    assert heap.segment.usable_size(h) >= L.OWNERSHIP_HEADER + L.CleanupMessage.size + 8
    release(heap, stub)


@pytest.mark.parametrize("cancelled", [False, True])
def test_is_cancelled(heap, cancelled):
    stub, parent = Owned(), Owned()
    h = control.write_is_cancelled(heap, 0x10, 0x20, stub)
    got, reply = _answer(heap, h, L.IsCancelledMessage, parent, is_cancelled=cancelled)
    assert (got["request_address"], got["response_factory_address"]) == (0x10, 0x20)
    assert reply["is_cancelled"] is cancelled and reply["waiting_on_stub"]
    assert control.reply_error(heap, reply) is None
    release(heap, parent, stub)


@pytest.mark.parametrize("error", [None, "Failed to create metric family"])
def test_metric_family_message(heap, error):
    stub, parent = Owned(), Owned()
    payload = control.write_metric_family(heap, "requests", "count them", 0, 0, stub)
    h = control.write_custom_metrics_message(heap, payload, 0.0, stub)
    got, reply = _answer(heap, h, L.CustomMetricsMessage, parent, error=error, address=0x99)
    assert control.read_metric_family(heap, got["message"]) == ("requests", "count them", 0, 0)
    assert reply["address"] == 0x99
    assert control.reply_error(heap, reply) == error
    release(heap, parent, stub)


@pytest.mark.parametrize("buckets", [None, [0.5, 1.0, 2.5]])
def test_metric_message(heap, buckets):
    stub, parent = Owned(), Owned()
    payload = control.write_metric(heap, '{"a": "b"}', buckets, 3.5, 0x50, 0x60, stub)
    h = control.write_custom_metrics_message(heap, payload, 3.5, stub)
    got, reply = _answer(heap, h, L.CustomMetricsMessage, parent, value=7.25)
    m = control.read_metric(heap, got["message"])
    assert (m["labels"], m["buckets"], m["operation_value"], m["metric_address"],
            m["metric_family_address"]) == ('{"a": "b"}', buckets, 3.5, 0x50, 0x60)
    assert got["value"] == 3.5 and reply["value"] == 7.25
    release(heap, parent, stub)


def test_model_loader_message(heap):
    stub, parent = Owned(), Owned()
    req = control.write_model_loader_request(heap, "m", "2", True, '{"x": 1}',
                                             {"file:1/model.py": b"code"}, stub)
    h = control.write_model_loader_message(heap, req, stub)
    got, reply = _answer(heap, h, L.ModelLoaderMessage, parent, is_model_ready=True)
    assert control.read_model_loader_request(heap, got["message"]) == {
        "name": "m", "version": "2", "unload_dependents": True, "config": '{"x": 1}',
        "files": {"file:1/model.py": "code"}}
    assert reply["is_model_ready"]
    release(heap, parent, stub)


@pytest.mark.parametrize("error", [None, "Response sender has been closed"])
def test_response_send_message(heap, error):
    stub, parent = Owned(), Owned()
    msg, h = control.write_response_send(heap, 0x100, 0x200, ResponseData(
        outputs=[("OUT", 9, (1,), np.array([5], np.int64).tobytes())], id=3),
        L.TRITONSERVER_RESPONSE_COMPLETE_FINAL, stub)
    assert control.read_ipc_message(heap, msg)[:2] == (C.ResponseSend, h)
    got, reply = _answer(heap, h, L.ResponseSendMessage, parent, error=error)
    assert (got["request_address"], got["response_factory_address"], got["flags"]) == \
        (0x100, 0x200, L.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
    assert responses.read_response(heap, got["response"]).outputs[0][:3] == ("OUT", 9, (1,))
    assert reply["is_stub_turn"]
    assert control.reply_error(heap, reply, "default") == error
    assert control.read_reply_error(heap, heap.payload(h), L.ResponseSendMessage,
                                    "default") == error
    release(heap, parent, stub)


def test_an_error_flag_without_its_text_reads_as_the_default(heap):
    stub = Owned()
    _, h = control.write_response_send(heap, 0x100, 0x200, None, 1, stub)
    S = L.ResponseSendMessage
    control.write_reply(heap, heap.payload(h), S, has_error=True, is_error_set=False)
    assert control.read_reply_error(heap, heap.payload(h), S, "default") == "default"
    assert control.reply_error(heap, control.read_send_message(heap, heap.payload(h), S),
                               "default") == "default"
    stub.release(heap)


@pytest.mark.parametrize("response", [
    None,
    ResponseData(outputs=[("OUT", 8, (1,), np.array([5], np.int32).tobytes())], id=0,
                 is_last_response=False),
    ResponseData(outputs=[("A", 11, (2, 3), np.zeros((2, 3), np.float32).tobytes()),
                          ("LONGER_NAME", 13, (0,), b"")], id=7, parameters='{"k": 1}'),
    ResponseData(error=(3, "bad input"), id=0)])
def test_a_response_send_is_the_blocks_the_cpp_stub_constructs_one_by_one(response):
    """write_response_send builds the response, the ResponseSendMessage and the IPCMessageShm
    in one Construct run: the region must end up byte for byte as with the three built one
    after the other (the C++ stub's order), and release to its idle state."""
    from tritonstub.ipc.heap import Heap
    run, steps = Heap.create(bytearray(1 << 16)), Heap.create(bytearray(1 << 16))
    idle = run.free_memory()
    owned_run, owned_steps = Owned(), Owned()
    msg, h = control.write_response_send(run, 0x100, 0x200, response, 0, owned_run)
    rh = responses.write_response(steps, response, owned_steps) if response is not None else 0
    h2 = control.write_send_message(steps, L.ResponseSendMessage, owned_steps,
                                    request_address=0x100, response_factory_address=0x200,
                                    response=rh, flags=0)
    msg2, _, _ = control.write_ipc_message(steps, C.ResponseSend, h2, owned_steps)
    assert (msg, h, list(owned_run)) == (msg2, h2, list(owned_steps))
    assert bytes(run.buf) == bytes(steps.buf)
    owned_run.release(run)
    owned_steps.release(steps)
    assert bytes(run.buf) == bytes(steps.buf)
    assert run.free_memory() == idle


def test_cuda_pool_refusal(heap):
    parent, stub = Owned(), Owned()
    h = control.write_send_message(heap, L.CUDAMemPoolMessage, parent, device_id=0)
    got, reply = _answer(heap, h, L.CUDAMemPoolMessage, stub, error="GPU tensors are not supported")
    assert control.reply_error(heap, reply) == "GPU tensors are not supported"
    release(heap, stub, parent)


def test_a_loaded_object_outlives_the_writers_release(heap):
    """A reader that Load()s an object keeps it alive after the writer releases its list."""
    owned = Owned()
    h = scalars.write_string(heap, "kept", owned)
    heap.load(h)
    release(heap, owned)
    assert heap.ref_count(h) == 1
    assert heap.free_memory() < heap.initial_free
    heap.release(h)                       # the fixture checks that everything is free again
