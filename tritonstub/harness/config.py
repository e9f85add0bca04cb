"""Model configuration as Triton 2.51 hands it to the python stub: config.pbtxt -> ModelConfig -> JSON.

Theory of operation
-------------------
tritonserver reads ``config.pbtxt`` with protobuf's text format into ``inference.ModelConfig``
(model_config.proto; we use the generated module that tritonclient ships), completes it before the
python backend sees it, and passes it on as JSON: in the AutoCompleteRequest, and again, after the
model's ``auto_complete_config`` and another completion, as ``model_config`` in the
InitializeRequest. A harness that plays the server must give the stub the same text, so this
module repeats what the core does (core r24.10, ``model_config_utils.cc``):

- ``AutoCompleteBackendFields``: the name from the directory; for a python model (``backend:
  "python"``, or no backend and a ``model.py`` in the first version directory) the backend and
  ``default_model_filename: "model.py"``;
- ``NormalizeModelConfig``: version policy ``latest { num_versions: 1 }``; dynamic batching's
  preferred batch size defaults to ``[max_batch_size]``; a sequence batcher's idle time to 1 s;
  input and output pinned memory enabled;
- ``NormalizeInstanceGroup``: one group named after the model when there is none; unnamed groups
  ``<model>_<index>``; ``KIND_AUTO`` is ``KIND_CPU`` (no GPU here); a count below 1 is 1;
- ``ModelConfigToJson``: protobuf's JSON with proto field names and every field that has no
  presence (scalars, repeated, maps: defaults included; message fields only when set), in
  declaration order; then the core turns a fixed list of 64-bit fields, which protobuf writes as
  strings, into numbers (:data:`_INT64_FIXES` — the others stay strings, as in Triton).

Errors in config.pbtxt are :class:`~tritonstub.errors.ConfigError` with file, line and column.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple, Union

from ..errors import ConfigError

PYTHON_BACKEND = "python"
PYTHON_FILENAME = "model.py"
SEQUENCE_IDLE_DEFAULT_MICROSECONDS = 1000000


def _pb():
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ConfigError("the harness needs tritonclient's generated model_config_pb2: "
                          "pip install 'tritonclient[grpc]'") from e
    return model_config_pb2


# ---------------------------------------------------------------------------- reading

def parse(text: str, path: Union[str, Path] = "config.pbtxt"):
    """config.pbtxt text -> ModelConfig; a ConfigError says where the text is wrong."""
    from google.protobuf import text_format
    pb = _pb()
    config = pb.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as e:
        line, column = getattr(e, "_line", None), getattr(e, "_column", None)
        where = f"{path}:{line}:{column}" if line is not None else str(path)
        message = str(e)
        if line is not None and message.startswith(f"{line}:{column} : "):
            message = message[len(f"{line}:{column} : "):]
        raise ConfigError(f"{where}: {message}") from None
    return config


def load(model_dir: Union[str, Path]):
    """The ModelConfig of a model directory (an absent config.pbtxt is an empty config)."""
    path = Path(model_dir) / "config.pbtxt"
    if not path.is_file():
        return _pb().ModelConfig()
    return parse(path.read_text(), path)


def from_json(text: str):
    """The ModelConfig of a JSON text (what auto_complete_config returns)."""
    from google.protobuf import json_format
    config = _pb().ModelConfig()
    try:
        json_format.Parse(text, config)
    except json_format.ParseError as e:
        raise ConfigError(f"the model configuration is not valid: {e}") from None
    return config


# ---------------------------------------------------------------------------- completing

def _version_dirs(model_dir: Path) -> Iterable[Path]:
    if not model_dir.is_dir():
        return []
    return sorted(p for p in model_dir.iterdir() if p.is_dir())


def complete(config, model_dir: Union[str, Path], model_name: Optional[str] = None):
    """AutoCompleteBackendFields + NormalizeModelConfig + NormalizeInstanceGroup, in place."""
    pb = _pb()
    model_dir = Path(model_dir)
    if not config.name:
        config.name = model_name or model_dir.name
    if not config.backend and not config.platform and not config.default_model_filename:
        versions = list(_version_dirs(model_dir))
        if versions and (versions[0] / PYTHON_FILENAME).exists():
            config.backend = PYTHON_BACKEND
    if config.backend == PYTHON_BACKEND and not config.default_model_filename:
        config.default_model_filename = PYTHON_FILENAME

    if not config.HasField("version_policy"):
        config.version_policy.latest.num_versions = 1
    if config.HasField("dynamic_batching") and not config.dynamic_batching.preferred_batch_size:
        if config.max_batch_size > 0:
            config.dynamic_batching.preferred_batch_size.append(config.max_batch_size)
    if config.HasField("sequence_batching"):
        seq = config.sequence_batching
        if seq.max_sequence_idle_microseconds == 0:
            seq.max_sequence_idle_microseconds = SEQUENCE_IDLE_DEFAULT_MICROSECONDS
        if seq.HasField("oldest") and not seq.oldest.preferred_batch_size and config.max_batch_size > 0:
            seq.oldest.preferred_batch_size.append(config.max_batch_size)
    if not config.HasField("ensemble_scheduling"):
        if not config.optimization.HasField("input_pinned_memory"):
            config.optimization.input_pinned_memory.enable = True
        if not config.optimization.HasField("output_pinned_memory"):
            config.optimization.output_pinned_memory.enable = True

    if not config.HasField("ensemble_scheduling"):
        group_type = pb.ModelInstanceGroup
        if not config.instance_group:
            config.instance_group.add(name=config.name)
        for index, group in enumerate(config.instance_group):
            if not group.name:
                group.name = f"{config.name}_{index}"
            if group.kind == group_type.KIND_AUTO:
                group.kind = group_type.KIND_CPU      # no GPU is used here
            if group.count < 1:
                group.count = 1
    return config


# ---------------------------------------------------------------------------- JSON

#: (path, how) of the 64-bit fields ModelConfigToJson turns into numbers. A path step "*" is
#: every element of an array or every value of a map.
_INT64_FIXES: Tuple[Tuple[Tuple[str, ...], str], ...] = (
    (("input", "*", "dims"), "array"),
    (("input", "*", "reshape", "shape"), "array"),
    (("output", "*", "dims"), "array"),
    (("output", "*", "reshape", "shape"), "array"),
    (("version_policy", "specific", "versions"), "array"),
    (("dynamic_batching", "max_queue_delay_microseconds"), "value"),
    (("dynamic_batching", "priority_levels"), "value"),
    (("dynamic_batching", "default_priority_level"), "value"),
    (("dynamic_batching", "default_queue_policy", "default_timeout_microseconds"), "value"),
    (("dynamic_batching", "priority_queue_policy", "*", "default_timeout_microseconds"), "value"),
    (("sequence_batching", "max_sequence_idle_microseconds"), "value"),
    (("sequence_batching", "oldest", "max_queue_delay_microseconds"), "value"),
    (("sequence_batching", "direct", "max_queue_delay_microseconds"), "value"),
    (("sequence_batching", "state", "*", "dims"), "array"),
    (("ensemble_scheduling", "step", "*", "model_version"), "value"),
    (("model_warmup", "*", "inputs", "*", "dims"), "array"),
)


def _value(field, value) -> Any:
    from google.protobuf.descriptor import FieldDescriptor as F
    if field.type == F.TYPE_MESSAGE:
        return _message(value)
    if field.type == F.TYPE_ENUM:
        enum = field.enum_type.values_by_number.get(value)
        return enum.name if enum is not None else value
    if field.type in (F.TYPE_INT64, F.TYPE_UINT64, F.TYPE_SINT64, F.TYPE_FIXED64, F.TYPE_SFIXED64):
        return str(value)                  # protobuf's JSON; _fix_int64 turns some back
    if field.type in (F.TYPE_FLOAT, F.TYPE_DOUBLE):
        if field.type == F.TYPE_FLOAT:
            import numpy as np
            value = float(repr(np.float32(value)))   # float32's shortest text, as protobuf writes it
        return int(value) if value == int(value) else value
    if field.type == F.TYPE_BYTES:
        import base64
        return base64.b64encode(value).decode()
    return value


def _is_repeated(field) -> bool:
    flag = getattr(field, "is_repeated", None)     # protobuf >= 5.28; label() is deprecated
    if isinstance(flag, bool):
        return flag
    return field.label == field.LABEL_REPEATED


def _message(msg) -> Dict[str, Any]:
    """protobuf JSON (preserve_proto_field_names, always_print_primitive_fields), field order."""
    out: Dict[str, Any] = {}
    for field in msg.DESCRIPTOR.fields:
        is_map = (field.message_type is not None and field.message_type.GetOptions().map_entry)
        repeated = _is_repeated(field)
        value = getattr(msg, field.name)
        if is_map:
            value_field = field.message_type.fields_by_name["value"]
            out[field.name] = {str(k): _value(value_field, v) for k, v in value.items()}
        elif repeated:
            out[field.name] = [_value(field, v) for v in value]
        elif field.type == field.TYPE_MESSAGE or field.containing_oneof is not None:
            if msg.HasField(field.name):
                out[field.name] = _value(field, value)
        else:
            out[field.name] = _value(field, value)
    return out


def _fix_int64(node: Any, path: Tuple[str, ...], how: str) -> None:
    if not path or node is None:
        return
    step, rest = path[0], path[1:]
    if step == "*":
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
        for child in children:
            _fix_int64(child, rest, how)
        return
    if not isinstance(node, dict) or step not in node:
        return
    if rest:
        _fix_int64(node[step], rest, how)
    elif how == "array":
        node[step] = [int(v) for v in node[step]]
    else:
        node[step] = int(node[step])


def to_dict(config) -> Dict[str, Any]:
    value = _message(config)
    for path, how in _INT64_FIXES:
        _fix_int64(value, path, how)
    return value


def to_json(config) -> str:
    """The exact text Triton 2.51 gives the stub for ``config`` (already completed)."""
    return json.dumps(to_dict(config), separators=(",", ":"), ensure_ascii=False)


def model_config_json(model_dir: Union[str, Path], model_name: Optional[str] = None) -> str:
    """config.pbtxt of ``model_dir`` -> the completed JSON of the AutoCompleteRequest."""
    return to_json(complete(load(model_dir), model_dir, model_name))
