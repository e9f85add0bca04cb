"""KServe v2 HTTP/REST over the harness engine (the second thin front end, as MLServer's
``rest/app.py``): the standard library's ``ThreadingHTTPServer``, one thread per connection,
HTTP/1.1 keep-alive, routes and texts of Triton 2.51's ``src/http_server.cc``.

Routes: ``/v2/health/live|ready``, ``/v2``, ``/v2/models[/NAME[/versions/V]][/ready|config|
stats|infer|generate|generate_stream]``, ``/v2/models/stats``, ``/v2/repository/index``,
``/v2/repository/models/NAME/load|unload`` and ``/metrics`` (Triton serves metrics on its own
port; here they share the HTTP port).

Infer bodies are JSON, or JSON followed by binary tensors when the client sends
``Inference-Header-Content-Length`` (the binary-data extension); the answer is JSON, or JSON and
binary outputs with the same header. ``gzip``/``deflate`` bodies are accepted and given, as
Triton does. ``generate_stream`` answers with server-sent events (``data: {...}\\n\\n``) over
chunked transfer encoding, one event per response.
"""
from __future__ import annotations

import json
import logging
import re
import socket
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Tuple

from ..harness.types import InferError, InferRequest, InferResponse
from . import convert, dataplane
from .metadata import SERVER_EXTENSIONS, SERVER_NAME, SERVER_VERSION

log = logging.getLogger("tritonstub.serve.http")

HEADER_LENGTH = "Inference-Header-Content-Length"

_MODEL = re.compile(r"/v2/models/([^/]+)(?:/versions/([0-9]+))?"
                    r"(?:/(infer|generate|generate_stream|ready|config|stats|trace/setting))?")
_SERVER = re.compile(r"/v2(?:/health/(live|ready))?")
_REPOSITORY = re.compile(r"/v2/repository(?:/([^/]+))?/(index|models/([^/]+)/(load|unload))")

#: Largest body we read (Triton reads what libevhtp gives it; this keeps a client from
#: making us allocate without bound).
MAX_BODY_BYTES = 2**31 - 1
#: How often a request checks that its client is still there while the model runs.
POLL_S = 0.5


class HttpError(Exception):
    """An answer other than 200 that is not an InferError (405, 404 "Not Found")."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


# -------------------------------------------------------------- TritonJson's accessors
# The texts TritonJson gives (common triton_json.h); the server makes them INTERNAL errors.

def _jerr(text: str, context: Optional[str] = None) -> InferError:
    return InferError("INTERNAL", f"{context}: {text}" if context else text)


def _member(obj: Any, name: str, context: Optional[str] = None) -> Any:
    if not isinstance(obj, dict) or name not in obj:
        raise _jerr(f"attempt to access non-existing object member '{name}'", context)
    return obj[name]


def _as_string(v: Any, context: Optional[str] = None) -> str:
    if not isinstance(v, str):
        raise _jerr("attempt to access JSON non-string as string", context)
    return v


def _as_bool(v: Any, context: Optional[str] = None) -> bool:
    if not isinstance(v, bool):
        raise _jerr("attempt to access JSON non-boolean as boolean", context)
    return v


def _as_uint(v: Any, context: Optional[str] = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**64:
        raise _jerr("attempt to access JSON non-unsigned-integer as unsigned-integer", context)
    return v


def _as_array(v: Any, context: Optional[str] = None) -> list:
    if not isinstance(v, list):
        raise _jerr("attempt to access JSON non-array as array", context)
    return v


def _member_array(obj: Any, name: str, context: str) -> list:
    return _as_array(_member(obj, name, context), context)


def _member_string(obj: Any, name: str, context: str) -> str:
    return _as_string(_member(obj, name, context), context)


def parse_json(body: bytes) -> Any:
    """``TritonJson::Parse`` with its error text (the detail is Python's, not rapidjson's)."""
    try:
        return json.loads(body.decode("utf-8", "surrogateescape") if body else "")
    except json.JSONDecodeError as e:
        detail = "The document is empty." if not body.strip() else e.msg
        raise InferError("INTERNAL", f"failed to parse the request JSON buffer: {detail} at "
                                     f"{e.pos}") from None
    except RecursionError:
        raise InferError("INTERNAL", "failed to parse the request JSON buffer: nesting too "
                                     "deep at 0") from None


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8", "surrogateescape")


# -------------------------------------------------------------- infer request / response

class _OutputKinds:
    def __init__(self, default_binary: bool):
        self.default_binary = default_binary
        self.binary: Dict[str, bool] = {}

    def is_binary(self, name: str) -> bool:
        return self.binary.get(name, self.default_binary)


def infer_request_from_http(model_name: str, version: str, body: bytes, header_length: int
                            ) -> Tuple[InferRequest, _OutputKinds, List[convert.DeferredInputError]]:
    """``EVBufferToInput``: the JSON header (and binary tensors after it) -> InferRequest."""
    doc = parse_json(body[:header_length])
    request = InferRequest(model_name, model_version=version)
    if isinstance(doc, dict) and "id" in doc:
        request.request_id = _as_string(doc["id"], "Unable to parse 'id'")
    kinds = _OutputKinds(False)
    if isinstance(doc, dict) and "parameters" in doc:
        params = doc["parameters"]
        if not isinstance(params, dict):
            raise _jerr("attempt to get members for non-object", "failed to get request params.")
        flags = 0
        for key, value in params.items():
            if key == "sequence_id":
                if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                    request.correlation_id = value
                else:
                    request.correlation_id = _as_string(value, "Unable to parse 'sequence_id'")
            elif key == "sequence_start":
                flags |= 1 if _as_bool(value, "Unable to parse 'sequence_start'") else 0
            elif key == "sequence_end":
                flags |= 2 if _as_bool(value, "Unable to parse 'sequence_end'") else 0
            elif key == "priority":
                request.priority = _as_uint(value, "Unable to parse 'priority'")
            elif key == "timeout":
                request.timeout_us = _as_uint(value, "Unable to parse 'timeout'")
            elif key == "binary_data_output":
                kinds.default_binary = _as_bool(value, "Unable to parse 'binary_data_output'")
            elif key.startswith("triton_"):
                raise InferError("INVALID_ARG", "parameter keys starting with 'triton_' are "
                                                "reserved for Triton usage and should not be "
                                                "specified.")
            else:
                request.parameters[key] = _json_parameter(key, value)
        request.flags = flags
    deferred: List[convert.DeferredInputError] = []
    inputs = _member_array(doc, "inputs", "Unable to parse 'inputs'")
    offset = header_length
    for item in inputs:
        _validate_input_content(item)
        name = _member_string(item, "name", "Unable to parse 'name'")
        datatype = _member_string(item, "datatype", "Unable to parse 'datatype'")
        shape = [_as_uint(d, "Unable to parse 'shape'")
                 for d in _member_array(item, "shape", "Unable to parse 'shape'")]
        params = item.get("parameters") if isinstance(item, dict) else None
        if isinstance(params, dict) and "binary_data_size" in params:
            size = _as_uint(params["binary_data_size"], "Unable to parse 'binary_data_size'")
            raw = body[offset:offset + size]
            offset += len(raw)
            if len(raw) != size:
                raise InferError("INVALID_ARG", f"unexpected size for input '{name}', expecting "
                                                f"{size - len(raw)} additional bytes for model "
                                                f"'{model_name}'")
        elif isinstance(params, dict) and "shared_memory_region" in params:
            region = params["shared_memory_region"]
            raise InferError("INVALID_ARG", f"Unable to find shared memory region: '{region}'")
        elif convert.element_count(shape) == 0:
            raw = b""
        else:
            data = _member_array(item, "data", "Unable to parse 'data'")
            raw = convert.json_data_to_raw(name, datatype, shape, data)
        request.inputs.append(convert._tensor_or_placeholder(
            name, datatype, shape, raw, model_name, request.request_id, deferred))
    if offset != len(body):
        raise InferError("INVALID_ARG", f"unexpected additional input data for model "
                                        f"'{model_name}'")
    if isinstance(doc, dict) and "outputs" in doc:
        outputs = _as_array(doc["outputs"], "Unable to parse 'outputs'")
        request.requested_outputs = []
        for item in outputs:
            params = item.get("parameters") if isinstance(item, dict) else None
            name = _member_string(item, "name", "Unable to parse 'name'")
            request.requested_outputs.append(name)
            if isinstance(params, dict):
                if "shared_memory_region" in params:
                    raise InferError("INVALID_ARG", "Unable to find shared memory region: "
                                                    f"'{params['shared_memory_region']}'")
                if "classification" in params:
                    raise InferError("UNSUPPORTED", "tritonstub serve does not support the "
                                                    "classification extension")
                if "binary_data" in params:
                    kinds.binary[name] = _as_bool(params["binary_data"],
                                                  "Unable to parse 'binary_data'")
    return request, kinds, deferred


def _json_parameter(key: str, value: Any):
    """``SetTritonParameterFromJsonParameter``."""
    if isinstance(value, (str, bool, int, float)):
        return value
    raise InferError("INVALID_ARG", f"parameter '{key}' has invalid type. It should be either "
                                    "'int', 'bool', or 'string'.")


def _validate_input_content(io: Any) -> None:
    """``ValidateInputContentType``: exactly one of data / binary_data_size / shm region."""
    has_data = isinstance(io, dict) and "data" in io
    params = io.get("parameters") if isinstance(io, dict) else None
    has_binary = isinstance(params, dict) and "binary_data_size" in params
    has_shm = isinstance(params, dict) and "shared_memory_region" in params
    count = has_data + has_binary + has_shm
    if count != 1:
        text = ("Input must set only one of the following fields: 'data', 'binary_data_size' in "
                "'parameters', 'shared_memory_region' in 'parameters'. But")
        if count == 0:
            text += " no field is set"
        else:
            text += " set" + "".join(f" '{n}'" for n, on in (
                ("data", has_data), ("binary_data_size", has_binary),
                ("shared_memory_region", has_shm)) if on)
        raise InferError("INVALID_ARG", text)


def infer_response_to_http(response: InferResponse, kinds: _OutputKinds
                           ) -> Tuple[bytes, Optional[int]]:
    """``FinalizeResponse``: the body, and the JSON header's length when binary data follows."""
    doc: Dict[str, Any] = {}
    if response.request_id:
        doc["id"] = response.request_id
    doc["model_name"] = response.model_name
    doc["model_version"] = str(response.model_version)
    if response.parameters:
        doc["parameters"] = dict(response.parameters)
    outputs, blobs = [], []
    for t in response.outputs:
        entry: Dict[str, Any] = {"name": t.name, "datatype": t.datatype, "shape": t.shape}
        if kinds.is_binary(t.name):
            raw = convert.tensor_bytes(t)                  # a view: copied once, by the join
            entry["parameters"] = {"binary_data_size": len(raw)}
            if raw:
                blobs.append(raw)
        else:
            entry["data"] = convert.tensor_to_json_data(t)
        outputs.append(entry)
    doc["outputs"] = outputs
    header = _dumps(doc)
    if blobs:
        return b"".join([header, *blobs]), len(header)
    return header, None


# -------------------------------------------------------------- generate

def generate_request(model_name: str, version: str, body: bytes, metadata: Dict[str, Any]
                     ) -> InferRequest:
    """``ConvertGenerateRequest`` with the default schema: a key that names an input becomes
    that tensor (shape from the model's metadata, -1 filled), any other key a parameter."""
    inputs = {i["name"]: i for i in metadata.get("inputs", [])}
    doc = parse_json(body)
    request = InferRequest(model_name, model_version=version)
    if isinstance(doc, dict) and "id" in doc:
        request.request_id = _as_string(doc["id"], "Unable to parse 'id'")
    if not isinstance(doc, dict):
        raise _jerr("attempt to get members for non-object")
    for key, value in doc.items():
        meta = inputs.get(key)
        if meta is None:
            request.parameters[key] = _json_parameter(key, value)
            continue
        datatype = meta.get("datatype", "")
        count = len(value) if isinstance(value, list) else 1
        shape = [int(d) for d in meta.get("shape", [])]
        rest = count
        for d in reversed(shape):
            if d != -1:
                if d == 0 or rest % d:
                    raise InferError("INVALID_ARG", f"The schema can not convert input '{key}' "
                                                    "to tensor with proper shape")
                rest //= d
        for i in range(len(shape) - 1, -1, -1):
            if shape[i] == -1:
                shape[i], rest = rest, 1
        if rest != 1:
            raise InferError("INVALID_ARG", f"The schema can not convert input '{key}' to "
                                            "tensor with proper shape")
        raw = convert.json_data_to_raw(key, datatype, [count], value if isinstance(value, list)
                                       else [value])
        deferred: List[convert.DeferredInputError] = []
        request.inputs.append(convert._tensor_or_placeholder(
            key, datatype, shape, raw, model_name, request.request_id, deferred))
        if deferred:
            raise deferred[0]
    return request


def generate_response_json(response: InferResponse) -> bytes:
    """``GenerateRequestClass::FinalizeResponse``: id, model name and version, parameters and
    outputs as one flat object, keys in sorted order (Triton collects them in a std::map); an
    output of one element is that element, else a flat list."""
    fields: Dict[str, Any] = {}
    if response.request_id:
        fields["id"] = response.request_id
    fields["model_name"] = response.model_name
    fields["model_version"] = str(response.model_version)
    for k, v in response.parameters.items():
        fields.setdefault(k, v)
    for t in response.outputs:
        if t.name in fields:
            continue
        data = convert.tensor_to_json_data(t)
        fields[t.name] = data[0] if len(data) == 1 else data
    return _dumps({k: fields[k] for k in sorted(fields)})


# -------------------------------------------------------------- the server

class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tritonstub"
    sys_version = ""
    front: "HttpFrontEnd"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's name
        log.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_HEAD(self):
        self._dispatch("HEAD")

    # ------------------------------------------------------------ plumbing
    def _body(self) -> bytes:
        self._consumed = True
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537).strip():
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline(3)
            return b"".join(parts)
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        try:
            n = int(length)
        except ValueError:
            raise HttpError(400, f"Unable to parse Content-Length, got: {length}") from None
        if n < 0 or n > MAX_BODY_BYTES:
            raise HttpError(400, f"Content-Length {n} is out of range")
        data = self.rfile.read(n)
        if len(data) != n:
            self.close_connection = True
            raise ConnectionError("client closed the connection mid-body")
        return data

    def _decompressed(self, body: bytes) -> bytes:
        enc = self.headers.get("Content-Encoding", "").strip().lower()
        if enc in ("", "identity"):
            return body
        try:
            if enc == "gzip":
                return zlib.decompress(body, 16 + zlib.MAX_WBITS)
            if enc == "deflate":
                return zlib.decompress(body)
        except zlib.error as e:
            raise InferError("INVALID_ARG", f"failed to decompress the request body: {e}") from None
        raise InferError("UNSUPPORTED", f"Unsupported content-encoding '{enc}'")

    def _compress(self, body: bytes) -> Tuple[bytes, Optional[str]]:
        accept = self.headers.get("Accept-Encoding", "").lower()
        for enc in (e.split(";")[0].strip() for e in accept.split(",")):
            if enc == "deflate":
                return zlib.compress(body), "deflate"
            if enc == "gzip":
                c = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
                return c.compress(body) + c.flush(), "gzip"
        return body, None

    def _send(self, status: int, body: bytes = b"", content_type: Optional[str] = None,
              headers: Optional[Dict[str, str]] = None) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _send_error(self, status: int, message: str) -> None:
        self._send(status, _dumps({"error": message}), "application/json")

    def _dispatch(self, method: str) -> None:
        self._consumed = False
        try:
            try:
                self._route(method, self.path.split("?", 1)[0])
            except InferError as e:
                self._send_error(convert.HTTP_CODES.get(e.code, 400), e.message)
            except HttpError as e:
                self._send_error(e.status, e.message)
        except (ConnectionError, socket.timeout, BrokenPipeError):
            self.close_connection = True
        except Exception as e:  # noqa: BLE001 - the server stays up and says what went wrong
            log.exception("HTTP %s %s failed", method, self.path)
            try:
                self._send_error(500, f"{type(e).__name__}: {e}")
            except OSError:
                self.close_connection = True
        if not self._consumed and (self.headers.get("Content-Length", "0").strip() not in
                                   ("", "0") or self.headers.get("Transfer-Encoding")):
            # a body we did not read would be taken for the next request
            self.close_connection = True

    # ------------------------------------------------------------ routes
    def _route(self, method: str, path: str) -> None:
        engine = self.front.engine
        if path == "/metrics":
            self._body()
            self._need(method, "GET")
            text = engine.metrics_text() if hasattr(engine, "metrics_text") else ""
            self._send(200, text.encode(), "text/plain; charset=utf-8")
            return
        if path == "/v2/models/stats":
            self._body()
            self._need(method, "GET")
            self._stats("", "")
            return
        m = _MODEL.fullmatch(path)
        if m:
            name, version, kind = m.group(1), m.group(2) or "", m.group(3) or ""
            if kind != "trace/setting":
                getattr(self, "_model_" + (kind or "metadata"))(method, name, version)
                return
        if path == "/v2":
            self._body()
            self._need(method, "GET")
            self._send(200, _dumps({"name": SERVER_NAME, "version": SERVER_VERSION,
                                    "extensions": SERVER_EXTENSIONS}), "application/json")
            return
        m = _SERVER.fullmatch(path)
        if m:
            self._body()
            self._need(method, "GET")
            live = self.front.live()
            self._send(200 if live else 400)
            return
        m = _REPOSITORY.fullmatch(path)
        if m:
            repo, kind, name, action = m.groups()
            body = self._body()
            self._need(method, "POST")
            if kind == "index":
                self._repository_index(body)
            else:
                self._repository_control(repo or "", name, action, body)
            return
        self._body()
        raise HttpError(404, "Not Found")

    def _need(self, method: str, wanted: str) -> None:
        if method != wanted:
            raise HttpError(405, "Method Not Allowed")

    def _model_ready(self, method, name, version):
        self._body()
        self._need(method, "GET")
        convert.version_number(version)
        if not self.front.engine.is_ready(name, version):
            raise HttpError(400, "Model version not ready")
        self._send(200)

    def _model_metadata(self, method, name, version):
        self._body()
        self._need(method, "GET")
        convert.version_number(version)
        meta = self.front.engine.model(name, version).metadata()
        self._send(200, _dumps(meta), "application/json")

    def _model_config(self, method, name, version):
        self._body()
        self._need(method, "GET")
        convert.version_number(version)
        config = self.front.engine.model(name, version).config
        self._send(200, _dumps(config), "application/json")

    def _model_stats(self, method, name, version):
        self._body()
        self._need(method, "GET")
        self._stats(name, version)

    def _stats(self, name, version):
        body = dataplane.statistics(self.front.engine, name, version)
        self._send(200, _dumps(body), "application/json")

    def _repository_index(self, body: bytes):
        ready = False
        if body:
            doc = parse_json(body)
            if isinstance(doc, dict) and "ready" in doc:
                ready = _as_bool(doc["ready"])
        out = []
        for e in self.front.engine.index():
            if ready and e.state != "READY":
                continue
            entry = {"name": e.name}
            for k in ("version", "state", "reason"):
                if getattr(e, k):
                    entry[k] = getattr(e, k)
            out.append(entry)
        self._send(200, _dumps(out), "application/json")

    def _repository_control(self, repo: str, name: str, action: str, body: bytes):
        if repo:
            raise InferError("UNSUPPORTED", "'repository_name' specification is not supported")
        engine = self.front.engine
        if action == "load":
            config, files = None, {}
            if body:
                doc = parse_json(body)
                params = doc.get("parameters") if isinstance(doc, dict) else None
                if params is not None:
                    if not isinstance(params, dict):
                        raise _jerr("attempt to get members for non-object")
                    import base64
                    for k, v in params.items():
                        text = _as_string(v)
                        if k == "config":
                            config = text
                        elif k.startswith("file:"):
                            files[k] = base64.b64decode(text + "=" * (-len(text) % 4))
                        else:
                            raise InferError("INTERNAL", "unexpected error on creating Triton "
                                                         "parameter")
            dataplane.load(engine, name, config, files)
        else:
            dependents = False
            if body:
                doc = parse_json(body)
                params = doc.get("parameters") if isinstance(doc, dict) else None
                if isinstance(params, dict) and "unload_dependents" in params:
                    v = params["unload_dependents"]
                    if not isinstance(v, bool):
                        raise InferError("INTERNAL", "Unable to parse 'unload_dependents': "
                                                     "attempt to access JSON non-boolean as "
                                                     "boolean")
                    dependents = v
            dataplane.unload(engine, name, dependents)
        self._send(200, b"", "application/json")

    # ------------------------------------------------------------ inference
    def _model_infer(self, method, name, version):
        body = self._body()
        self._need(method, "POST")
        engine = self.front.engine
        convert.version_number(version)
        model = engine.model(name, version)
        if model.decoupled:
            raise InferError("UNSUPPORTED", "HTTP end point doesn't support models with "
                                            "decoupled transaction policy")
        body = self._decompressed(body)
        header = self.headers.get(HEADER_LENGTH)
        header_length = len(body)
        if header is not None:
            try:
                header_length = int(header.strip())
            except ValueError:
                raise InferError("INVALID_ARG", f"Unable to parse {HEADER_LENGTH}, got: "
                                                f"{header}") from None
            if header_length < 0 or header_length > len(body):
                raise InferError("INVALID_ARG", f"inference header size should be in range "
                                                f"(0, {len(body)}), got: {header}")
        if header_length == 0:
            raise InferError("UNSUPPORTED", "tritonstub serve does not take raw binary infer "
                                            "requests (Inference-Header-Content-Length: 0); "
                                            "send a JSON header")
        request, kinds, deferred = infer_request_from_http(name, version, body, header_length)
        dataplane.check_before_deferred(engine, model, request, deferred)
        call = engine.submit(request)
        while not call.wait(POLL_S):
            if self._client_gone():
                call.cancel()
                raise ConnectionError("client went away while the model ran")
        response = dataplane.single_response(list(call.responses))
        if response.error is not None:
            raise response.error
        out, json_length = infer_response_to_http(response, kinds)
        headers = {}
        if json_length is not None:
            headers[HEADER_LENGTH] = str(json_length)
        out, encoding = self._compress(out)
        if encoding:
            headers["Content-Encoding"] = encoding
        self._send(200, out, "application/octet-stream" if json_length is not None
                   else "application/json", headers)

    def _model_generate(self, method, name, version):
        self._generate(method, name, version, stream=False)

    def _model_generate_stream(self, method, name, version):
        self._generate(method, name, version, stream=True)

    def _generate(self, method, name, version, stream: bool):
        body = self._body()
        self._need(method, "POST")
        engine = self.front.engine
        convert.version_number(version)
        metadata = engine.model(name, version).metadata()
        enc = self.headers.get("Content-Encoding", "").strip().lower()
        if enc not in ("", "identity"):
            raise InferError("INVALID_ARG", "Unsupported content-encoding, only 'identity' is "
                                            "supported.")
        request = generate_request(name, version, body, metadata)
        events: "list" = []
        cond = threading.Condition()
        done = [False]

        def on_response(resp: InferResponse) -> None:
            with cond:
                events.append(resp)
                if resp.final:
                    done[0] = True
                cond.notify_all()

        call = engine.submit(request, on_response)
        started = False
        sent = 0
        try:
            while True:
                with cond:
                    while len(events) == sent and not done[0]:
                        cond.wait(POLL_S)
                        if len(events) == sent and not done[0] and self._client_gone():
                            raise ConnectionError("client went away")
                    batch = events[sent:]
                    sent = len(events)
                    finished = done[0] and sent == len(events)
                for resp in batch:
                    chunk, status = self._generate_chunk(resp)
                    if chunk is None:
                        continue
                    if not stream:
                        continue
                    if not started:
                        self._start_chunked(status, "text/event-stream; charset=utf-8")
                        started = True
                    self._chunk(b"data: " + chunk + b"\n\n")
                if finished:
                    break
            if not stream:
                real = [r for r in events if self._generate_chunk(r)[0] is not None]
                if len(real) != 1:
                    first_status = self._generate_chunk(real[0])[1] if real else 200
                    self._send(first_status, _dumps({"error": (
                        "generate expects model to produce exactly 1 response, use generate "
                        "stream for model that generates various number of responses")}),
                        "application/json")
                    return
                chunk, status = self._generate_chunk(real[0])
                self._send(status, chunk, "application/json")
                return
            if not started:
                self._start_chunked(200, "text/event-stream; charset=utf-8")
            self._chunk(b"")
        except (ConnectionError, OSError):
            call.cancel()
            self.close_connection = True
            raise ConnectionError("client went away mid-stream") from None

    @staticmethod
    def _generate_chunk(resp: InferResponse) -> Tuple[Optional[bytes], int]:
        if resp.error is not None:
            return _dumps({"error": resp.error.message}), convert.HTTP_CODES.get(resp.error.code, 400)
        if resp.empty_final:
            return None, 200
        try:
            return generate_response_json(resp), 200
        except InferError as e:
            return _dumps({"error": e.message}), convert.HTTP_CODES.get(e.code, 400)

    def _client_gone(self) -> bool:
        """Whether the client closed its end (readable with nothing to read)."""
        import select
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _start_chunked(self, status: int, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class HttpFrontEnd:
    """The HTTP server over ``engine``; ``start()`` binds and serves in a thread."""

    def __init__(self, engine, host: str = "127.0.0.1", port: int = 0, *, live=lambda: True):
        self.engine = engine
        self.live = live
        handler = type("Handler", (_Handler,), {"front": self})
        self.httpd = _Server((host, port), handler)
        self.port = self.httpd.server_address[1]
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "HttpFrontEnd":
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="tritonstub-http", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout)
