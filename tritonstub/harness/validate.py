"""Request checks the core makes before a request reaches the backend (core r24.10,
``InferenceRequest::Normalize`` / ``ValidateRequestInputs`` / ``ValidateBytesInputs``, and the
model's ``GetInput``/``GetOutput``), with the same texts. Pure functions over the model config
(the completed JSON as a dict) and a :class:`~tritonstub.harness.types.InferRequest`.
"""
from __future__ import annotations

from typing import Dict, List

from .types import CONFIG_TYPES, InferError, InferRequest

WILDCARD = -1
_NOTE = ("NOTE: Setting a non-zero max_batch_size in the model config requires a batch dimension "
         "to be prepended to each input shape. If you want to specify the full shape including the "
         "batch dim in your input dims config, try setting max_batch_size to zero. See the model "
         "configuration docs for more info on max_batch_size.")


def log_request(request: InferRequest) -> str:
    """``InferenceRequest::LogRequest()``: the prefix of every request error."""
    return f"[request id: {request.request_id or '<id_unknown>'}] "


def dims_text(dims) -> str:
    return "[" + ",".join(str(int(d)) for d in dims) + "]"


def _bad(text: str) -> InferError:
    return InferError("INVALID_ARG", text)


def datatype(config_type: str) -> str:
    return CONFIG_TYPES.get(config_type, config_type.replace("TYPE_", ""))


def validate(config: dict, request: InferRequest) -> int:
    """Raise InferError as the core would; return the request's batch size (0 when the model
    does not batch)."""
    name = config["name"]
    inputs_cfg: Dict[str, dict] = {i["name"]: i for i in config.get("input", [])}
    outputs_cfg = {o["name"] for o in config.get("output", [])}
    prefix = log_request(request)
    for out in request.requested_outputs or ():
        if out not in outputs_cfg:
            raise _bad(f"unexpected inference output '{out}' for model '{name}'")
    given = [t.name for t in request.inputs]
    required = [i["name"] for i in config.get("input", []) if not i.get("optional")]
    if len(given) > len(inputs_cfg) or len(given) < len(required):
        # The core's string building, quirks included: no missing input prints "]" (it drops
        # the "[" as if it were a trailing comma); inputs are listed sorted (a std::map).
        missing = ",".join(f"'{n}'" for n in required if n not in given)
        missing = f"[{missing}]" if missing else "]"
        got = "[" + ",".join(f"'{n}'" for n in sorted(given)) + "]"
        if len(required) == len(inputs_cfg):
            raise _bad(f"{prefix}expected {len(inputs_cfg)} inputs but got {len(given)} inputs for "
                       f"model '{name}'. Got input(s) {got}, but missing required input(s) "
                       f"{missing}. Please provide all required input(s).")
        raise _bad(f"{prefix}expected number of inputs between {len(required)} and "
                   f"{len(inputs_cfg)} but got {len(given)} inputs for model '{name}'. Got input(s) "
                   f"{got}, but missing required input(s) {missing}. Please provide all required "
                   f"input(s).")
    for t in request.inputs:
        if t.name not in inputs_cfg:
            raise _bad(f"unexpected inference input '{t.name}' for model '{name}'")
    max_batch = int(config.get("max_batch_size", 0))
    batch = 0
    shapes: Dict[str, List[int]] = {}
    for t in request.inputs:
        shape = t.shape
        if max_batch == 0:
            shapes[t.name] = shape
            continue
        if not shape:
            raise _bad(f"{prefix}input '{t.name}' has no shape but model requires batch dimension "
                       f"for '{name}'")
        if batch == 0:
            batch = shape[0]
        elif shape[0] != batch:
            raise _bad(f"{prefix}input '{t.name}' batch size does not match other inputs for "
                       f"'{name}'")
        shapes[t.name] = shape[1:]
    if batch > max_batch:
        raise _bad(f"{prefix}inference request batch-size must be <= {max_batch} for '{name}'")
    for t in request.inputs:
        cfg = inputs_cfg[t.name]
        want = datatype(cfg.get("data_type", ""))
        if t.datatype != want:
            raise _bad(f"{prefix}inference input '{t.name}' data-type is '{t.datatype}', but model "
                       f"'{name}' expects '{want}'")
        dims = [int(d) for d in cfg.get("dims", [])]
        shape = shapes[t.name]
        ok = len(dims) == len(shape)
        if ok:
            for want_d, got_d in zip(dims, shape):
                if got_d == WILDCARD:
                    raise _bad(f"{prefix}All input dimensions should be specified for input "
                               f"'{t.name}' for model '{name}', got {dims_text(t.shape)}")
                if want_d != WILDCARD and want_d != got_d:
                    ok = False
                    break
        if not ok:
            full = ([WILDCARD] if max_batch > 0 else []) + dims
            raise _bad(f"{prefix}unexpected shape for input '{t.name}' for model '{name}'. "
                       f"Expected {dims_text(full)}, got {dims_text(t.shape)}. "
                       f"{_NOTE if max_batch > 0 else ''}")
    return batch

