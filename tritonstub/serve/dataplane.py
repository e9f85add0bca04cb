"""What both front ends ask the engine for, beyond one call: the repository calls as Triton's
model control decides them, statistics in Triton's JSON, and the request check that has to come
before a byte-size error. One place, so gRPC and HTTP answer alike."""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

from ..harness.types import InferError, InferRequest, InferResponse
from . import convert

#: core model_repository_manager.cc LoadUnloadModel, when model control is not explicit.
NOT_EXPLICIT = "explicit model load / unload is not allowed if polling is enabled"


def _check_control(engine) -> None:
    mode = getattr(engine, "control_mode", "explicit")
    if mode != "explicit":
        raise InferError("UNAVAILABLE", NOT_EXPLICIT)


def load(engine, name: str, config: Optional[str], files: Optional[Mapping[str, bytes]]) -> None:
    _check_control(engine)
    engine.load(name, config=config, files=files or None)


def unload(engine, name: str, unload_dependents: bool) -> None:
    _check_control(engine)
    engine.unload(name, unload_dependents=unload_dependents)


def check_before_deferred(engine, model, request: InferRequest,
                          deferred: List[convert.DeferredInputError]) -> None:
    """Triton checks names, datatypes and shapes before byte sizes: run the engine's check on
    the request (placeholders stand for the inputs whose bytes were wrong), then raise the
    first byte-size error."""
    if not deferred:
        return
    try:
        from ..harness.validate import validate
    except ImportError:                     # an engine without the core's request checks
        validate = None
    if validate is not None and isinstance(getattr(model, "config", None), dict) \
            and model.config.get("input") is not None:
        validate(model.config, request)
    elif hasattr(engine, "validate"):
        engine.validate(request)
    raise deferred[0]


def single_response(responses: List[InferResponse]) -> InferResponse:
    """The one response of a unary call (gRPC ModelInfer, HTTP infer). A non-decoupled model
    that answers through its response sender sends the final flag on its own after the response
    (``send(r)`` then ``send(flags=FINAL)``); Triton gives the client that response, so the
    flag-only final is not a second response here."""
    real = [r for r in responses if not (r.empty_final and len(responses) > 1)]
    if len(real) != 1:
        raise InferError("INTERNAL", f"expected a single response, got {len(real)}")
    return real[0]


def model_stats(stats: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """One model's ``statistics()`` (Triton's JSON: one ``model_stats`` entry, or the whole
    answer) -> Triton's ``model_stats`` entries."""
    if "model_stats" in stats:
        return list(stats["model_stats"])
    return [dict(stats)]


def statistics(engine, name: str, version: str) -> Dict[str, Any]:
    """``{"model_stats": [...]}`` for one model, or for every ready model when ``name`` is ""."""
    convert.version_number(version)
    if name:
        return {"model_stats": model_stats(engine.model(name, version).statistics())}
    out: List[Dict[str, Any]] = []
    for entry in engine.index():
        if entry.state == "READY":
            try:
                out.extend(model_stats(engine.model(entry.name).statistics()))
            except InferError:
                continue                    # unloaded meanwhile
    return {"model_stats": out}
