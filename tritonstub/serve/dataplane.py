"""What both front ends ask the engine for, beyond one call: the repository calls as Triton's
model control decides them, statistics in Triton's JSON, and the request check that has to come
before a byte-size error. One place, so gRPC and HTTP answer alike."""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

from ..harness.types import InferError, InferRequest
from . import convert

#: core model_repository_manager.cc LoadUnloadModel, when model control is not explicit.
NOT_EXPLICIT = "explicit model load / unload is not allowed if polling is enabled"


def _check_control(engine) -> None:
    if getattr(engine, "control_mode", "explicit") != "explicit":
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


_DURATIONS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output",
              "cache_hit", "cache_miss")


def model_stats(stats: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """One model's ``statistics()`` -> Triton's ``model_stats`` entries. Takes Triton's JSON
    as it is, or the engine's counters (``success``/``fail``/``executions``/``inferences``),
    which carry no durations: every ``ns`` is then 0."""
    if "model_stats" in stats:
        return list(stats["model_stats"])
    if "inference_stats" in stats:
        return [dict(stats)]
    zero = {"count": 0, "ns": 0}
    infer = {k: dict(zero) for k in _DURATIONS}
    infer["success"]["count"] = int(stats.get("success", 0))
    infer["fail"]["count"] = int(stats.get("fail", 0))
    return [{"name": stats.get("name", ""), "version": str(stats.get("version", "")),
             "last_inference": int(stats.get("last_inference", 0)),
             "inference_count": int(stats.get("inferences", 0)),
             "execution_count": int(stats.get("executions", 0)),
             "inference_stats": infer, "response_stats": {}, "batch_stats": [],
             "memory_usage": []}]


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
