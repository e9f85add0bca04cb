"""Control messages: IPCMessageShm, the start-up exchanges and the SendMessageBase family.

Every message on a queue is the handle of an ``IPCMessageShm {command, args, inline_response,
response_handle, response_mutex, response_cond}``; ``args`` names the command's payload. With
``inline_response`` the message carries its own process-shared mutex and condition (Construct'ed
separately; the handshake initialises them) for the peer to answer on.

Start-up (pattern R, the parent asks, the stub answers on ``parent_message_queue``):
AutoCompleteRequest's ``args`` is the model config as a standalone string, answered by an
``AutoCompleteResponseShm`` (an error string, or the completed config); InitializeRequest's
``args`` is a PbMap of parameters, answered by an ``InitializeResponseShm``.

The SendMessageBase family (logs, cleanups, cancellation, metrics, model control, the CUDA pool
request) starts with ``{mutex, condition, waiting_on_stub}``; ResponseSendMessage has the same
three with ``is_stub_turn`` as the flag. The handshakes that run over them (lock, push, wait for
the flag, notify) live in the I/O layer; this module writes and reads the structs and says where
each message keeps its mutex, condition and flag (:class:`Mailbox`).
"""
from __future__ import annotations

import struct
from typing import Dict, NamedTuple, Optional, Sequence, Tuple

from . import current
from .layout import StructLayout
from .responses import response_plan, write_response
from .scalars import Owned, read_map, read_string, write_map, write_string

L = current()
H = L.OWNERSHIP_HEADER
Command = L.PYTHONSTUB_CommandType
_M = L.IPCMessageShm
_AC = L.AutoCompleteResponseShm
_INIT = L.InitializeResponseShm
assert _M.names == ("command", "args", "inline_response", "response_handle",
                    "response_mutex", "response_cond")


class IPCMessage(NamedTuple):
    command: int
    args: int
    inline_response: bool
    response_handle: int
    response_mutex: int
    response_cond: int


class Mailbox(NamedTuple):
    """Byte offsets of a message's synchronisation members (payload-relative + payload)."""
    payload: int
    mutex: int
    cond: int
    flag: int


# ------------------------------------------------------------------ IPCMessageShm
def write_ipc_message(heap, command: int, args: int, owned: Owned, inline: bool = False,
                      sync_sizes: Tuple[int, int] = (0, 0)) -> Tuple[int, int, int]:
    """IPCMessage::Create. Returns (message, mutex, condition) handles (0, 0 unless inline).

    With ``inline`` the mutex and condition blocks (``sync_sizes`` bytes) are Construct'ed in
    the same round; the caller initialises them. C++ Constructs them with ``aligned=true``
    (32 bytes); pthread objects need 8 and every payload is 16-aligned, so plain blocks do,
    and an aligned allocation costs the allocator two or three tree updates more.
    """
    mu = cv = 0
    if inline:
        h, mu, cv = heap.construct_many((_M.size,) + tuple(sync_sizes))
        owned.extend((h, mu, cv))
    else:
        h = heap.construct(_M.size)
        owned.append(h)
    pack_ipc_message(heap.buf, h, command, args, mu, cv)
    return h, mu, cv


def pack_ipc_message(buf, h: int, command: int, args: int, mutex: int = 0, cond: int = 0) -> None:
    """Fill a Construct'ed IPCMessageShm block; inline when it names a mutex and condition."""
    _M.packer("command", "args", "inline_response", "response_mutex", "response_cond")(
        buf, h + H, int(command), args, bool(mutex), mutex, cond)


def write_blank_message(heap) -> int:
    """A zeroed IPCMessageShm (the stub's "health thread started", which nobody reads)."""
    h = heap.construct(_M.size)
    _M.pack(heap.buf, h + H)
    return h


def read_ipc_message(heap, handle: int) -> IPCMessage:
    p = heap.payload(handle)
    heap.ensure_mapped(p, _M.size)
    return IPCMessage(*_M.struct.unpack_from(heap.buf, p))


def read_command(heap, handle: int) -> Tuple[int, int]:
    """(command, args) of a message: the dispatch loop's one read."""
    p = heap.payload(handle)
    heap.ensure_mapped(p, _M.size)
    return _M.struct.unpack_from(heap.buf, p)[:2]


def set_command(heap, handle: int, command: int) -> None:
    """Turn a received message into its answer in place (FinalizeRequest -> FinalizeResponse)."""
    _M.set(heap.buf, heap.payload(handle), "command", int(command))


def set_args(heap, handle: int, args: int) -> None:
    _M.set(heap.buf, heap.payload(handle), "args", args)


def set_response_handle(heap, handle: int, response: int) -> None:
    """The parent's answer to an inline message (a BLS request) goes here."""
    _M.set(heap.buf, heap.payload(handle), "response_handle", response)


def read_response_handle(heap, handle: int) -> int:
    return _M.get(heap.buf, heap.payload(handle), "response_handle")


# ------------------------------------------------------------------ auto-complete / initialize
def write_auto_complete_request(heap, config_json: str, owned: Owned) -> int:
    """The parent's AutoCompleteRequest ``args``: the model config JSON."""
    return write_string(heap, config_json, owned)


def read_auto_complete_request(heap, args: int) -> str:
    return read_string(heap, args)


def write_initialize_request(heap, params: Dict[str, str], owned: Owned) -> int:
    """The parent's InitializeRequest ``args``: model_config, model_instance_kind, ..."""
    return write_map(heap, params, owned)


def read_initialize_request(heap, args: int) -> Dict[str, str]:
    return read_map(heap, args)


def write_auto_complete_response(heap, owned: Owned, config: Optional[str] = None,
                                 error: Optional[str] = None,
                                 command: int = int(Command.AutoCompleteResponse)) -> int:
    """The stub's answer: an IPCMessageShm(AutoCompleteResponse) whose ``args`` is an
    AutoCompleteResponseShm with the completed config, or the error text. ``command`` is the
    response's number in the parent's era when that is not ours (the era refusal: this reply
    reads the same in every era: protocol/eras.py)."""
    reply = heap.construct(_M.size)
    owned.append(reply)
    resp = heap.construct(_AC.size)
    owned.append(resp)
    fields = {}
    if error is not None:
        fields = dict(response_has_error=True, response_is_error_set=True,
                      response_error=write_string(heap, error, owned))
    elif config is not None:
        fields = dict(response_has_model_config=True,
                      response_model_config=write_string(heap, config, owned))
    _AC.pack(heap.buf, resp + H, **fields)
    _M.pack(heap.buf, reply + H, command=int(command), args=resp)
    return reply


def read_auto_complete_response(heap, reply: int) -> Tuple[Optional[str], Optional[str]]:
    """(completed config or None, error text or None), the parent's side."""
    args = read_command(heap, reply)[1]
    f = _AC.read(heap.buf, heap.payload(args))
    if f["response_has_error"]:
        return None, (read_string(heap, f["response_error"])
                      if f["response_is_error_set"] and f["response_error"] else "")
    if f["response_has_model_config"]:
        return read_string(heap, f["response_model_config"]), None
    return None, None


def write_initialize_response(heap, owned: Owned, error: Optional[str] = None) -> int:
    """The stub's answer: an IPCMessageShm(InitializeResponse) with an InitializeResponseShm."""
    reply = heap.construct(_M.size)
    owned.append(reply)
    resp = heap.construct(_INIT.size)
    owned.append(resp)
    fields = {}
    if error is not None:
        fields = dict(response_has_error=True, response_is_error_set=True,
                      response_error=write_string(heap, error, owned))
    _INIT.pack(heap.buf, resp + H, **fields)
    _M.pack(heap.buf, reply + H, command=int(Command.InitializeResponse), args=resp)
    return reply


def read_initialize_response(heap, reply: int) -> Optional[str]:
    """The error text, or None when initialize succeeded (the parent's side)."""
    args = read_command(heap, reply)[1]
    f = _INIT.read(heap.buf, heap.payload(args))
    if not f["response_has_error"]:
        return None
    return (read_string(heap, f["response_error"])
            if f["response_is_error_set"] and f["response_error"] else "")


# ------------------------------------------------------------------ SendMessageBase family
_MAILBOXES: Dict[StructLayout, Tuple[int, int, int]] = {}


def mailbox(layout: StructLayout, payload: int) -> Mailbox:
    """Where the handshake finds the mutex, condition and flag of a message at ``payload``."""
    offsets = _MAILBOXES.get(layout)
    if offsets is None:
        flag = layout.is_stub_turn if "is_stub_turn" in layout.fields else layout.waiting_on_stub
        offsets = _MAILBOXES[layout] = (layout.mu, layout.cv, flag)
    return Mailbox(payload, payload + offsets[0], payload + offsets[1], payload + offsets[2])


def write_send_message(heap, layout: StructLayout, owned: Owned, extra: int = 0,
                       **fields) -> int:
    """Construct a message of ``layout`` (+ ``extra`` bytes) with ``fields``, every other byte
    zero: its mutex and condition are to be initialised by the handshake."""
    h = heap.construct(layout.size + extra)
    owned.append(h)
    layout.pack(heap.buf, h + H, **fields)
    return h


def read_send_message(heap, payload: int, layout: StructLayout) -> dict:
    """All scalar fields of a message at byte offset ``payload``."""
    heap.ensure_mapped(payload, layout.size)
    return layout.read(heap.buf, payload)


def write_reply(heap, payload: int, layout: StructLayout, **fields) -> None:
    """The answering side fills its fields in place (flag excluded: the handshake sets it)."""
    layout.write(heap.buf, payload, **fields)


def read_reply_error(heap, payload: int, layout: StructLayout,
                     default: str = "") -> Optional[str]:
    """:func:`reply_error` of the message at ``payload``, reading only its error fields."""
    heap.ensure_mapped(payload, layout.size)
    buf = heap.buf
    if not layout.get(buf, payload, "has_error"):
        return None
    return _error_text(heap, layout.get(buf, payload, "is_error_set"),
                       layout.get(buf, payload, "error"), default)


def reply_error(heap, reply: dict, default: str = "") -> Optional[str]:
    """The error a reply carries (``has_error``/``is_error_set``/``error`` string), else None."""
    if not reply.get("has_error"):
        return None
    return _error_text(heap, reply.get("is_error_set"), reply.get("error"), default)


def _error_text(heap, is_error_set, error: int, default: str) -> str:
    """A reply with ``has_error``: its string when one is set, else ``default``."""
    return read_string(heap, error) if is_error_set and error else default


# ---- log (LogRequest)
class LogRecord(NamedTuple):
    filename: str
    line: int
    level: int
    message: str


def write_log_message(heap, filename: str, line: int, level: int, message: str,
                      owned: Owned) -> int:
    fh = write_string(heap, filename, owned)
    mh = write_string(heap, message, owned)
    return write_send_message(heap, L.LogSendMessage, owned, filename=fh, line=int(line),
                              log_message=mh, level=int(level))


def read_log_message(heap, handle: int) -> LogRecord:
    f = read_send_message(heap, heap.payload(handle), L.LogSendMessage)
    return LogRecord(read_string(heap, f["filename"]), f["line"], f["level"],
                     read_string(heap, f["log_message"]))


# ---- cleanups (BLSDecoupledInferPayloadCleanup, DecoupledResponseFactoryCleanup)
def write_cleanup_message(heap, ident: int, owned: Owned) -> int:
    """A CleanupMessage; its own mutex/condition stay unused (the inline ones of the
    IPCMessageShm carry the handshake)."""
    return write_send_message(heap, L.CleanupMessage, owned, extra=L.CLEANUP_MESSAGE_EXTRA,
                              id=ident, waiting_on_stub=False)


def read_cleanup_message(heap, handle: int) -> int:
    return L.CleanupMessage.get(heap.buf, heap.payload(handle), "id")


# ---- cancellation (IsRequestCancelled)
def write_is_cancelled(heap, request_address: int, factory_address: int, owned: Owned) -> int:
    return write_send_message(heap, L.IsCancelledMessage, owned,
                              response_factory_address=factory_address,
                              request_address=request_address, is_cancelled=False)


# ---- metrics (MetricFamilyRequest*, MetricRequest*)
def write_metric_family(heap, name: str, description: str, kind: int, address: int,
                        owned: Owned) -> int:
    """A MetricFamilyShm, the ``message`` of a CustomMetricsMessage."""
    nh = write_string(heap, name, owned)
    dh = write_string(heap, description, owned)
    return write_send_message(heap, L.MetricFamilyShm, owned, name_shm_handle=nh,
                              description_shm_handle=dh, kind=int(kind),
                              metric_family_address=address)


def read_metric_family(heap, handle: int) -> Tuple[str, str, int, int]:
    f = L.MetricFamilyShm.read(heap.buf, heap.payload(handle))
    return (read_string(heap, f["name_shm_handle"]), read_string(heap, f["description_shm_handle"]),
            f["kind"], f["metric_family_address"])


def write_metric(heap, labels: str, buckets: Optional[Sequence[float]], value: float,
                 metric_address: int, family_address: int, owned: Owned) -> int:
    """A MetricShm; histogram buckets travel as a standalone CPU MemoryShm of f64."""
    bh = 0
    if buckets is not None:
        data = struct.pack(f"<{len(buckets)}d", *buckets)
        bh = heap.construct(L.MemoryShm.size + len(data))
        owned.append(bh)
        L.MemoryShm.pack(heap.buf, bh + H, memory_type=int(L.TRITONSERVER_MemoryType.CPU),
                         byte_size=len(data))
        heap.write(bh + H + L.MemoryShm.size, data)
    lh = write_string(heap, labels, owned)
    fields = dict(labels_shm_handle=lh, operation_value=float(value),
                  metric_address=metric_address, metric_family_address=family_address)
    if "buckets_shm_handle" in L.MetricShm.fields:        # r24.08+ (histograms)
        fields["buckets_shm_handle"] = bh
    elif bh:
        raise ValueError("histogram buckets need python_backend r24.08 or later")
    return write_send_message(heap, L.MetricShm, owned, **fields)


def read_metric(heap, handle: int) -> dict:
    """A MetricShm's fields, labels as text and buckets as a list (None without)."""
    f = L.MetricShm.read(heap.buf, heap.payload(handle))
    f["labels"] = read_string(heap, f["labels_shm_handle"])
    f["buckets"] = None
    if f.get("buckets_shm_handle"):
        mp = heap.payload(f["buckets_shm_handle"])
        n = L.MemoryShm.get(heap.buf, mp, "byte_size") // 8
        f["buckets"] = list(struct.unpack_from(f"<{n}d", heap.buf, mp + L.MemoryShm.size))
    return f


def write_custom_metrics_message(heap, message: int, value: float, owned: Owned) -> int:
    return write_send_message(heap, L.CustomMetricsMessage, owned, message=message,
                              value=float(value))


# ---- model control (LoadModelRequest, UnloadModelRequest, ModelReadinessRequest)
def write_model_loader_request(heap, name: str, version: str, unload_dependents: bool,
                               config: str, files: Dict[str, object], owned: Owned) -> int:
    """A ModelLoaderRequestShm. ModelLoader::SaveToSharedMemory always writes a PbMap of files
    (the parent loads it unconditionally): an empty one when there are none."""
    h = heap.construct(L.ModelLoaderRequestShm.size)
    owned.append(h)
    files_h = write_map(heap, files or {}, owned)
    L.ModelLoaderRequestShm.pack(
        heap.buf, h + H, name_shm_handle=write_string(heap, name, owned),
        version_shm_handle=write_string(heap, version, owned),
        unload_dependents=bool(unload_dependents),
        config_shm_handle=write_string(heap, config, owned), files_shm_handle=files_h)
    return h


def read_model_loader_request(heap, handle: int) -> dict:
    f = L.ModelLoaderRequestShm.read(heap.buf, heap.payload(handle))
    return {"name": read_string(heap, f["name_shm_handle"]),
            "version": read_string(heap, f["version_shm_handle"]),
            "unload_dependents": f["unload_dependents"],
            "config": read_string(heap, f["config_shm_handle"]),
            "files": read_map(heap, f["files_shm_handle"])}


def write_model_loader_message(heap, request: int, owned: Owned) -> int:
    return write_send_message(heap, L.ModelLoaderMessage, owned, message=request)


# ---- ResponseSend
def response_send_plan(response, request_address: int, factory_address: int, flags: int):
    """ResponseSender::Send's blocks for a ``ResponseData`` without error, as ``(sizes, fill)``:
    the sizes to Construct, in its order (the response's blocks, the ResponseSendMessage, the
    IPCMessageShm that names it), and ``fill(buf, handles)``, which writes them and returns the
    (message, ResponseSendMessage) handles. For a sender that brings its blocks itself (the
    stub's kept blocks, messaging.py); :func:`write_response_send` Constructs them."""
    S = L.ResponseSendMessage
    sizes, fill_response = response_plan(response)
    sizes.append(S.size)
    sizes.append(_M.size)
    pack_send = S.packer("request_address", "response_factory_address", "response", "flags")
    flags = int(flags)

    def fill(buf, handles) -> Tuple[int, int]:
        rh = fill_response(buf, handles)
        h, msg = handles[-2], handles[-1]
        pack_send(buf, h + H, request_address, factory_address, rh, flags)
        pack_ipc_message(buf, msg, Command.ResponseSend, h)
        return msg, h
    return sizes, fill


def write_response_send(heap, request_address: int, factory_address: int, response,
                        flags: int, owned: Owned) -> Tuple[int, int]:
    """ResponseSender::Send's blocks, in its order: the response (a ``ResponseData``; None for
    a send of flags alone), the ResponseSendMessage (C++ Constructs it aligned; see
    :func:`write_ipc_message`) and the IPCMessageShm that names it, all in one Construct run
    for a response without error. Returns (message, ResponseSendMessage) handles; the
    message's mutex and condition are the handshake's to initialise."""
    if response is not None and response.error is None:
        sizes, fill = response_send_plan(response, request_address, factory_address, flags)
        handles = heap.construct_many(sizes)
        owned.extend(handles)
        return fill(heap.buf, handles)
    S = L.ResponseSendMessage
    rh = write_response(heap, response, owned) if response is not None else 0
    h, msg = heap.construct_many((S.size, _M.size))
    owned.extend((h, msg))
    S.pack(heap.buf, h + H, request_address=request_address,
           response_factory_address=factory_address, response=rh, flags=int(flags))
    pack_ipc_message(heap.buf, msg, Command.ResponseSend, h)
    return msg, h


# ---- BLS cancellation (CancelBLSInferRequest, r25.04+)
def write_cancel_bls(heap, infer_payload_id: int, owned: Owned) -> int:
    """The stub's CancelBLSRequestMessage for the BLS stream whose responses carry
    ``infer_payload_id`` (the parent's InferPayload address); the parent sets is_cancelled."""
    return write_send_message(heap, L.CancelBLSRequestMessage, owned,
                              infer_payload_id=infer_payload_id, is_cancelled=False)


# ---- the user model's readiness (UserModelReadinessRequest, r26.03+)
def write_user_model_readiness(heap, owned: Owned) -> int:
    """The parent's UserModelReadinessMessage, every answer field false (python_be.cc)."""
    return write_send_message(heap, L.UserModelReadinessMessage, owned)


def set_user_model_readiness_fn(heap, control_payload: int, value: bool) -> None:
    """IPCControlShm.stub_has_user_model_readiness_fn (byte 4, r26.03+): the stub says its
    model has ``is_ready`` (the parent asks only then)."""
    L.IPCControlShm.set(heap.buf, control_payload, "stub_has_user_model_readiness_fn", bool(value))
