"""`tritonstub serve`'s gRPC and HTTP front ends over a fake engine (tests/serve_fake.py), with
the unmodified tritonclient clients and raw requests: routes, conversions, Triton's status codes
and front-end error texts, streaming, and bad input that must leave the server up."""
from __future__ import annotations

import http.client
import json
import queue
import socket
import struct
import time

import grpc
import numpy as np
import pytest

tritonclient_grpc = pytest.importorskip("tritonclient.grpc")
import tritonclient.http as tritonclient_http  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from tritonstub.harness.types import InferResponse, InferTensor  # noqa: E402
from tritonstub.serve import Server  # noqa: E402
from tritonstub.serve import convert  # noqa: E402

from serve_fake import FakeEngine  # noqa: E402


@pytest.fixture(scope="module")
def served():
    engine = FakeEngine()
    with Server(engine, grpc_port=0, http_port=0) as server:
        yield server, engine


@pytest.fixture
def gclient(served):
    server, _ = served
    c = tritonclient_grpc.InferenceServerClient(server.grpc_url)
    yield c
    c.close()


@pytest.fixture
def hclient(served):
    server, _ = served
    c = tritonclient_http.InferenceServerClient(server.http_url, network_timeout=10.0)
    yield c
    c.close()


def _add_sub_inputs(mod, binary=None):
    a = np.arange(4, dtype=np.float32)
    b = np.ones(4, dtype=np.float32)
    ins = [mod.InferInput("INPUT0", [4], "FP32"), mod.InferInput("INPUT1", [4], "FP32")]
    for i, arr in zip(ins, (a, b)):
        if binary is None:
            i.set_data_from_numpy(arr)
        else:
            i.set_data_from_numpy(arr, binary_data=binary)
    return ins, a, b


def _http(server, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


# ------------------------------------------------------------------ codec

def test_bytes_elements_are_length_prefixed_and_round_trip():
    arr = np.array([b"a", b"", "\u00e9".encode()], dtype=object)
    raw = convert.serialize_bytes(arr)
    assert raw == b"\x01\x00\x00\x00a\x00\x00\x00\x00\x02\x00\x00\x00\xc3\xa9"
    t = convert.decode_bytes("X", "BYTES", [3], raw, model_name="m")
    assert list(t.array) == list(arr)


def test_byte_size_mismatch_is_deferred_with_the_core_text():
    with pytest.raises(convert.DeferredInputError) as e:
        convert.decode_bytes("X", "FP32", [4], b"\0" * 12, model_name="m", request_id="7")
    assert e.value.message == ("[request id: 7] input byte size mismatch for input 'X' for "
                               "model 'm'. Expected 16, got 12")
    with pytest.raises(convert.DeferredInputError) as e:
        convert.decode_bytes("S", "BYTES", [1], convert.serialize_bytes(
            np.array([b"a", b"b"], dtype=object)), model_name="m")
    assert "unexpected number of string elements 2 for inference input 'S'" in e.value.message


@pytest.mark.parametrize("outputs", [
    [],
    [("OUT", "FP32", np.arange(6, dtype=np.float32).reshape(2, 3))],
    [("E", "INT8", np.zeros((0,), np.int8)), ("S", "BYTES", np.array([b"a", b"", b"xyz"], object)),
     ("H", "FP16", np.ones(3, np.float16)), ("B", "BOOL", np.array([True, False]))],
    [("BIG", "UINT8", np.arange(300_000, dtype=np.uint32).astype(np.uint8)),     # 3-byte lengths
     ("T", "INT32", np.arange(12, dtype=np.int32).reshape(3, 4).T),              # not contiguous
     ("W", "FP64", np.arange(3, dtype=">f8"))],                                  # big-endian
])
def test_grpc_infer_response_made_by_hand_is_protobufs_byte_for_byte(outputs):
    """ModelInfer sends response_to_wire's bytes (one copy of each output), which must be what
    protobuf makes of the same response."""
    response = InferResponse("m", 3, "id-7", [InferTensor(n, d, a) for n, d, a in outputs],
                             parameters={"triton_final_response": True, "k": 5, "s": "x"})
    wire = convert.response_to_wire(response)
    assert wire == convert.response_to_pb(response).SerializeToString()
    back = convert.response_from_pb(convert.pb_modules()[0].ModelInferResponse.FromString(wire))
    assert [t.name for t in back.outputs] == [n for n, _, _ in outputs]
    for t, (_, _, a) in zip(back.outputs, outputs):
        assert t.array.tolist() == a.tolist()


def test_version_strings_as_triton_reads_them():
    assert convert.version_number("") == -1
    assert convert.version_number("3") == 3
    with pytest.raises(Exception, match="failed to get model version from specified version "
                                         "string 'x' \\(details: stol\\)"):
        convert.version_number("x")
    with pytest.raises(Exception, match="invalid model version specified '-1'"):
        convert.version_number("-1")


# ------------------------------------------------------------------ gRPC

def test_grpc_health_and_metadata(gclient):
    assert gclient.is_server_live() and gclient.is_server_ready()
    assert gclient.is_model_ready("add_sub") and not gclient.is_model_ready("nope")
    meta = gclient.get_server_metadata()
    assert meta.name == "triton" and meta.version == "2.51.0"
    mm = gclient.get_model_metadata("add_sub", as_json=True)
    assert mm["inputs"][0] == {"name": "INPUT0", "datatype": "FP32", "shape": ["4"]}
    cfg = gclient.get_model_config("repeat", as_json=True)["config"]
    assert cfg["model_transaction_policy"] == {"decoupled": True}
    assert cfg["input"][0]["dims"] == ["1"]


def test_grpc_infer_raw_and_requested_outputs(gclient):
    ins, a, b = _add_sub_inputs(tritonclient_grpc)
    r = gclient.infer("add_sub", ins, request_id="r1")
    np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(r.as_numpy("OUTPUT1"), a - b)
    assert r.get_response().id == "r1" and r.get_response().model_version == "1"
    r = gclient.infer("add_sub", ins, outputs=[tritonclient_grpc.InferRequestedOutput("OUTPUT1")])
    assert [o.name for o in r.get_response().outputs] == ["OUTPUT1"]


def test_grpc_bytes_and_fp16(gclient):
    i = tritonclient_grpc.InferInput("IN", [3], "BYTES")
    data = np.array([b"x", b"", b"\xff\x00z"], dtype=object)
    i.set_data_from_numpy(data)
    assert list(gclient.infer("echo", [i]).as_numpy("OUT")) == list(data)
    i = tritonclient_grpc.InferInput("IN", [2], "FP16")
    h = np.array([1.5, -2], dtype=np.float16)
    i.set_data_from_numpy(h)
    np.testing.assert_array_equal(gclient.infer("echo_fp16", [i]).as_numpy("OUT"), h)


def test_grpc_typed_contents(served):
    service_pb2, service_pb2_grpc, _ = convert.pb_modules()
    server, _ = served
    with grpc.insecure_channel(server.grpc_url) as ch:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(ch)
        req = service_pb2.ModelInferRequest(model_name="add_sub")
        for name in ("INPUT0", "INPUT1"):
            t = req.inputs.add(name=name, datatype="FP32", shape=[4])
            t.contents.fp32_contents.extend([1, 2, 3, 4])
        resp = stub.ModelInfer(req, timeout=10)
        out = convert.response_from_pb(resp)
        np.testing.assert_array_equal(out["OUTPUT0"], [2, 4, 6, 8])
        # typed contents of the wrong type: the front end's text
        req.inputs[0].contents.Clear()
        req.inputs[0].contents.int_contents.extend([1, 2, 3, 4])
        with pytest.raises(grpc.RpcError) as e:
            stub.ModelInfer(req, timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert e.value.details() == ("unexpected explicit tensor data for input tensor 'INPUT0' "
                                     "for model 'add_sub' of type 'INT32', expected datatype "
                                     "'FP32'")
        # no data at all
        req = service_pb2.ModelInferRequest(model_name="add_sub")
        req.inputs.add(name="INPUT0", datatype="FP32", shape=[4])
        with pytest.raises(grpc.RpcError) as e:
            stub.ModelInfer(req, timeout=10)
        assert e.value.details() == ("unable to find data for input tensor 'INPUT0' for model "
                                     "'add_sub' in request.")


def test_grpc_errors_have_tritons_codes_and_texts(gclient):
    ins, _, _ = _add_sub_inputs(tritonclient_grpc)
    with pytest.raises(InferenceServerException) as e:
        gclient.infer("nope", ins)
    assert e.value.status() == "StatusCode.NOT_FOUND"
    assert e.value.message() == "Request for unknown model: 'nope' is not found"
    i = tritonclient_grpc.InferInput("IN", [1], "INT32")
    i.set_data_from_numpy(np.array([2], dtype=np.int32))
    with pytest.raises(InferenceServerException) as e:
        gclient.infer("repeat", [i])
    assert e.value.status() == "StatusCode.UNIMPLEMENTED"
    assert e.value.message() == ("ModelInfer RPC doesn't support models with decoupled "
                                 "transaction policy")
    with pytest.raises(InferenceServerException) as e:
        gclient.infer("fail", [i])
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT" and e.value.message() == "model says no"
    bad = tritonclient_grpc.InferInput("INPUT0", [3], "FP32")
    bad.set_data_from_numpy(np.zeros(3, np.float32))
    with pytest.raises(InferenceServerException) as e:
        gclient.infer("add_sub", [bad, ins[1]])
    assert "unexpected shape for input 'INPUT0' for model 'add_sub'. Expected [4], got [3]" \
        in e.value.message()
    with pytest.raises(InferenceServerException) as e:
        gclient.infer("add_sub", ins, model_version="x")
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT"


def test_grpc_byte_size_error_comes_after_the_engines_checks(served):
    service_pb2, service_pb2_grpc, _ = convert.pb_modules()
    server, _ = served
    with grpc.insecure_channel(server.grpc_url) as ch:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(ch)
        req = service_pb2.ModelInferRequest(model_name="add_sub", id="q")
        req.inputs.add(name="INPUT0", datatype="FP32", shape=[4])
        req.inputs.add(name="INPUT1", datatype="FP32", shape=[4])
        req.raw_input_contents.extend([b"\0" * 16, b"\0" * 8])
        with pytest.raises(grpc.RpcError) as e:
            stub.ModelInfer(req, timeout=10)
        assert e.value.details() == ("[request id: q] input byte size mismatch for input "
                                     "'INPUT1' for model 'add_sub'. Expected 16, got 8")
        req.inputs[1].name = "WRONG"
        with pytest.raises(grpc.RpcError) as e:
            stub.ModelInfer(req, timeout=10)
        assert "unexpected inference input 'WRONG'" in e.value.details()


def _stream(client, model, inputs_list, **kw):
    results: "queue.Queue" = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        for inputs in inputs_list:
            client.async_stream_infer(model, inputs, **kw)
        out = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                out.append(results.get(timeout=0.5))
            except queue.Empty:
                if out:
                    break
        return out
    finally:
        client.stop_stream()


def test_grpc_stream_decoupled_final_flags(gclient):
    i = tritonclient_grpc.InferInput("IN", [1], "INT32")
    i.set_data_from_numpy(np.array([3], dtype=np.int32))
    got = _stream(gclient, "repeat", [[i]], request_id="s")
    assert [e for _, e in got] == [None] * 3
    assert [int(r.as_numpy("OUT")[0]) for r, _ in got] == [0, 1, 2]
    params = [r.get_response().parameters for r, _ in got]
    assert all(not p["triton_final_response"].bool_param for p in params)
    got = _stream(gclient, "repeat", [[i]], enable_empty_final_response=True)
    assert len(got) == 4
    last = got[-1][0].get_response()
    assert last.parameters["triton_final_response"].bool_param and not last.outputs
    assert last.model_name == "repeat"


def test_grpc_stream_errors_keep_the_stream(gclient):
    ins, a, b = _add_sub_inputs(tritonclient_grpc)
    i = tritonclient_grpc.InferInput("IN", [1], "INT32")
    i.set_data_from_numpy(np.array([1], dtype=np.int32))
    results: "queue.Queue" = queue.Queue()
    gclient.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        gclient.async_stream_infer("nope", ins, request_id="a")
        gclient.async_stream_infer("fail", [i], request_id="b")
        gclient.async_stream_infer("add_sub", ins, request_id="c")
        got = [results.get(timeout=10) for _ in range(3)]
    finally:
        gclient.stop_stream()
    assert str(got[0][1]) == "Request for unknown model: 'nope' is not found"
    assert str(got[1][1]) == "model says no"
    r = got[2][0]
    np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), a + b)
    assert r.get_response().parameters["triton_final_response"].bool_param


def test_grpc_stream_cancel_reaches_the_engine(served):
    server, engine = served
    engine.slow.set()
    try:
        c = tritonclient_grpc.InferenceServerClient(server.grpc_url)
        i = tritonclient_grpc.InferInput("IN", [1], "INT32")
        i.set_data_from_numpy(np.array([50], dtype=np.int32))
        first = queue.Queue()
        c.start_stream(callback=lambda result, error: first.put(result))
        n = len(engine.calls)
        c.async_stream_infer("repeat", [i])
        first.get(timeout=10)
        c.stop_stream(cancel_requests=True)
        c.close()
        call = engine.calls[n]
        assert call.cancelled.wait(5) and call.wait(5)
    finally:
        engine.slow.clear()


def test_grpc_repository_and_statistics(gclient, served):
    names = {m.name: m.state for m in gclient.get_model_repository_index().models}
    assert names["add_sub"] == "READY"
    gclient.unload_model("echo")
    assert not gclient.is_model_ready("echo")
    gclient.load_model("echo")
    assert gclient.is_model_ready("echo")
    with pytest.raises(InferenceServerException, match="failed to load 'zzz'"):
        gclient.load_model("zzz")
    stats = gclient.get_inference_statistics("add_sub", as_json=True)
    assert stats["model_stats"][0]["name"] == "add_sub"
    allstats = gclient.get_inference_statistics(as_json=True)
    assert len(allstats["model_stats"]) == 5


def test_grpc_garbage_message_is_an_error_and_the_server_stays_up(served, gclient):
    server, _ = served
    with grpc.insecure_channel(server.grpc_url) as ch:
        call = ch.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                              request_serializer=lambda x: x, response_deserializer=lambda x: x)
        with pytest.raises(grpc.RpcError) as e:
            call(b"\xff\xff\xff\xff garbage", timeout=10)
        assert e.value.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT)
    assert gclient.is_server_live()


# ------------------------------------------------------------------ HTTP

def test_http_health_metadata_config(hclient, served):
    server, _ = served
    assert hclient.is_server_live() and hclient.is_server_ready()
    assert hclient.is_model_ready("add_sub") and not hclient.is_model_ready("nope")
    assert hclient.get_server_metadata()["name"] == "triton"
    assert hclient.get_model_metadata("add_sub")["inputs"][0]["shape"] == [4]
    assert hclient.get_model_config("repeat")["model_transaction_policy"] == {"decoupled": True}
    status, _, body = _http(server, "GET", "/v2/models/nope")
    assert status == 404
    assert json.loads(body) == {"error": "Request for unknown model: 'nope' is not found"}
    status, _, body = _http(server, "POST", "/v2/health/live")
    assert status == 405 and json.loads(body) == {"error": "Method Not Allowed"}
    status, _, body = _http(server, "GET", "/v2/nothing")
    assert status == 404 and json.loads(body) == {"error": "Not Found"}


@pytest.mark.parametrize("binary", [False, True])
def test_http_infer_json_and_binary(hclient, binary):
    ins, a, b = _add_sub_inputs(tritonclient_http, binary=binary)
    outs = [tritonclient_http.InferRequestedOutput("OUTPUT0", binary_data=binary),
            tritonclient_http.InferRequestedOutput("OUTPUT1", binary_data=not binary)]
    r = hclient.infer("add_sub", ins, outputs=outs, request_id="h1")
    np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(r.as_numpy("OUTPUT1"), a - b)
    assert r.get_response()["id"] == "h1"


def test_http_bytes_and_fp16(hclient):
    i = tritonclient_http.InferInput("IN", [2], "BYTES")
    data = np.array([b"hello", "\u00e9t\u00e9".encode()], dtype=object)
    i.set_data_from_numpy(data, binary_data=False)
    assert list(hclient.infer("echo", [i]).as_numpy("OUT")) == list(data)
    i = tritonclient_http.InferInput("IN", [2], "FP16")
    h = np.array([1.5, -2], dtype=np.float16)
    i.set_data_from_numpy(h, binary_data=True)
    r = hclient.infer("echo_fp16", [i],
                      outputs=[tritonclient_http.InferRequestedOutput("OUT", binary_data=True)])
    np.testing.assert_array_equal(r.as_numpy("OUT"), h)
    with pytest.raises(InferenceServerException, match="sending FP16 data via JSON is not "
                                                       "supported"):
        hclient.infer("echo_fp16", [i],
                      outputs=[tritonclient_http.InferRequestedOutput("OUT", binary_data=False)])


def test_http_errors(hclient, served):
    server, _ = served
    i = tritonclient_http.InferInput("IN", [1], "INT32")
    i.set_data_from_numpy(np.array([2], dtype=np.int32))
    with pytest.raises(InferenceServerException) as e:
        hclient.infer("repeat", [i])
    assert e.value.message() == ("HTTP end point doesn't support models with decoupled "
                                 "transaction policy")
    status, _, body = _http(server, "POST", "/v2/models/add_sub/infer", b"{not json")
    assert status == 500
    assert json.loads(body)["error"].startswith("failed to parse the request JSON buffer: ")
    status, _, body = _http(server, "POST", "/v2/models/add_sub/infer", b'{"inputs": 3}')
    assert json.loads(body) == {"error": "Unable to parse 'inputs': attempt to access JSON "
                                         "non-array as array"}
    doc = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [4], "data": [1, 2, 3]},
                      {"name": "INPUT1", "datatype": "FP32", "shape": [4], "data": [1, 2, 3, 4]}]}
    status, _, body = _http(server, "POST", "/v2/models/add_sub/infer", json.dumps(doc))
    assert status == 500 and json.loads(body) == {
        "error": "Unable to parse 'data': Shape does not match true shape of 'data' field"}
    doc["inputs"][0] = {"name": "INPUT0", "datatype": "FP32", "shape": [4]}
    status, _, body = _http(server, "POST", "/v2/models/add_sub/infer", json.dumps(doc))
    assert status == 400 and json.loads(body)["error"].endswith("But no field is set")
    with pytest.raises(InferenceServerException) as e:
        hclient.infer("fail", [i])
    assert e.value.message() == "model says no"
    assert hclient.is_server_live()


def test_http_raw_binary_request(served):
    server, _ = served
    a = np.arange(4, dtype=np.float32)
    header = json.dumps({"inputs": [
        {"name": "INPUT0", "datatype": "FP32", "shape": [4], "parameters": {"binary_data_size": 16}},
        {"name": "INPUT1", "datatype": "FP32", "shape": [4], "data": [1, 1, 1, 1]}],
        "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True}}]}).encode()
    status, headers, body = _http(server, "POST", "/v2/models/add_sub/infer", header + a.tobytes(),
                                  {"Inference-Header-Content-Length": str(len(header))})
    assert status == 200, body
    n = int(headers["Inference-Header-Content-Length"])
    doc = json.loads(body[:n])
    assert doc["outputs"] == [{"name": "OUTPUT0", "datatype": "FP32", "shape": [4],
                               "parameters": {"binary_data_size": 16}}]
    np.testing.assert_array_equal(np.frombuffer(body[n:], np.float32), a + 1)
    # a binary input that is short
    status, _, body = _http(server, "POST", "/v2/models/add_sub/infer", header + a.tobytes()[:8],
                            {"Inference-Header-Content-Length": str(len(header))})
    assert status == 400 and json.loads(body)["error"] == (
        "unexpected size for input 'INPUT0', expecting 8 additional bytes for model 'add_sub'")


def test_http_gzip_both_ways(served):
    import gzip
    server, _ = served
    doc = {"inputs": [{"name": n, "datatype": "FP32", "shape": [4], "data": [1, 2, 3, 4]}
                      for n in ("INPUT0", "INPUT1")]}
    status, headers, body = _http(server, "POST", "/v2/models/add_sub/infer",
                                  gzip.compress(json.dumps(doc).encode()),
                                  {"Content-Encoding": "gzip", "Accept-Encoding": "gzip"})
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert json.loads(gzip.decompress(body))["outputs"][0]["data"] == [2, 4, 6, 8]


def test_http_repository_stats_metrics(hclient, served):
    server, _ = served
    index = {m["name"]: m for m in hclient.get_model_repository_index()}
    assert index["add_sub"] == {"name": "add_sub", "version": "1", "state": "READY"}
    hclient.unload_model("echo")
    assert not hclient.is_model_ready("echo")
    hclient.load_model("echo")
    assert hclient.is_model_ready("echo")
    assert hclient.get_inference_statistics("add_sub")["model_stats"][0]["name"] == "add_sub"
    status, _, body = _http(server, "GET", "/metrics")
    assert status == 200 and b"fake_metric 1" in body


def test_http_generate_and_stream(served):
    server, _ = served
    status, _, body = _http(server, "POST", "/v2/models/add_sub/generate", json.dumps(
        {"INPUT0": [1, 2, 3, 4], "INPUT1": [1, 1, 1, 1], "id": "g"}))
    assert status == 200, body
    doc = json.loads(body)
    assert list(doc) == sorted(doc)
    assert doc["OUTPUT0"] == [2, 3, 4, 5] and doc["id"] == "g" and doc["model_version"] == "1"
    status, headers, body = _http(server, "POST", "/v2/models/repeat/generate_stream",
                                  json.dumps({"IN": 3}))
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    events = [json.loads(x[len("data: "):]) for x in body.decode().split("\n\n") if x]
    assert [e["OUT"] for e in events] == [0, 1, 2]
    status, _, body = _http(server, "POST", "/v2/models/repeat/generate", json.dumps({"IN": 3}))
    assert json.loads(body)["error"].startswith("generate expects model to produce exactly 1 "
                                                "response")
    status, _, body = _http(server, "POST", "/v2/models/nope/generate_stream", "{}")
    assert status == 404


def test_http_client_gone_mid_stream_leaves_the_server_up(served, hclient):
    server, engine = served
    engine.slow.set()
    try:
        n = len(engine.calls)
        s = socket.create_connection(("127.0.0.1", server.http_port), timeout=10)
        body = json.dumps({"IN": 50}).encode()
        s.sendall(b"POST /v2/models/repeat/generate_stream HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        assert s.recv(100).startswith(b"HTTP/1.1 200")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        assert engine.calls[n].cancelled.wait(10)
    finally:
        engine.slow.clear()
    assert hclient.is_server_live()


def test_many_dropped_connections_leave_the_server_up(served, hclient, gclient):
    server, _ = served
    for port in (server.http_port, server.grpc_port):
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
    assert hclient.is_server_live() and gclient.is_server_live()


def test_grpc_unary_call_cancelled_when_the_client_gives_up(served):
    server, engine = served
    engine.slow.set()
    try:
        n = len(engine.calls)
        c = tritonclient_grpc.InferenceServerClient(server.grpc_url)
        i = tritonclient_grpc.InferInput("IN", [1], "INT32")
        i.set_data_from_numpy(np.array([1], dtype=np.int32))
        # "fail" answers at once; the slow decoupled path is not unary, so stall add_sub
        engine.models["add_sub"].fn, orig = (lambda inputs: time.sleep(3) or
                                             [{"OUTPUT0": inputs["INPUT0"],
                                               "OUTPUT1": inputs["INPUT1"]}]), \
            engine.models["add_sub"].fn
        try:
            ins, _, _ = _add_sub_inputs(tritonclient_grpc)
            with pytest.raises(InferenceServerException) as e:
                c.infer("add_sub", ins, client_timeout=0.5)
            assert "Deadline" in str(e.value.status()) or "DEADLINE" in str(e.value.status())
            assert engine.calls[n].cancelled.wait(5)
        finally:
            engine.models["add_sub"].fn = orig
            c.close()
    finally:
        engine.slow.clear()
