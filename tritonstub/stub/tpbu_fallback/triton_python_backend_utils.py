"""tritonstub's ``triton_python_backend_utils``.

The stub imports the stock module from the python backend directory (argv[6]).
When that directory has no such file, this module is registered under the name
``triton_python_backend_utils`` instead.  It behaves like the stock r24.10 file:
same functions, same return values (including the odd ones, such as
``serialize_byte_tensor`` returning ``()`` for an empty array and None for a
non-bytes array), same ``ModelConfig`` validation and messages, same
constants.  The BYTES helpers are faster than the stock per-element loops but
produce and accept exactly the same bytes.

The stub then adds the names it injects (``Tensor``, ``InferenceRequest``,
``get_model_dir`` and so on), as it does with the stock file.
"""
import json
import struct

import numpy as np

TRITON_STRING_TO_NUMPY = {
    "TYPE_BOOL": bool,
    "TYPE_UINT8": np.uint8,
    "TYPE_UINT16": np.uint16,
    "TYPE_UINT32": np.uint32,
    "TYPE_UINT64": np.uint64,
    "TYPE_INT8": np.int8,
    "TYPE_INT16": np.int16,
    "TYPE_INT32": np.int32,
    "TYPE_INT64": np.int64,
    "TYPE_FP16": np.float16,
    "TYPE_FP32": np.float32,
    "TYPE_FP64": np.float64,
    "TYPE_STRING": np.object_,
}

_CODE_TO_NUMPY = (
    (1, np.bool_),
    (2, np.uint8),
    (3, np.uint16),
    (4, np.uint32),
    (5, np.uint64),
    (6, np.int8),
    (7, np.int16),
    (8, np.int32),
    (9, np.int64),
    (10, np.float16),
    (11, np.float32),
    (12, np.float64),
    (13, np.object_),
)

_U32 = np.dtype("<u4")
_HEAD = struct.Struct("<I")
_FEW = 32


def _length_prefixed(items):
    count = len(items)
    lengths = [len(item) for item in items]
    for length in lengths:
        if length > 0xFFFFFFFF:
            struct.pack("<I", length)
    if count < _FEW:
        heads = struct.pack("<%dI" % count, *lengths)
        pieces = [None] * (2 * count)
        pieces[0::2] = [heads[k : k + 4] for k in range(0, 4 * count, 4)]
        pieces[1::2] = items
        return b"".join(pieces)
    first = lengths[0]
    if lengths.count(first) == count:
        grid = np.empty((count, first + 4), dtype=np.uint8)
        grid[:, :4] = np.frombuffer(first.to_bytes(4, "little"), dtype=np.uint8)
        if first:
            grid[:, 4:] = np.frombuffer(b"".join(items), dtype=np.uint8).reshape(count, first)
        return grid.tobytes()
    pieces = [None] * (2 * count)
    pieces[0::2] = np.array(lengths, dtype=_U32).view("V4").tolist()
    pieces[1::2] = items
    return b"".join(pieces)


def serialize_byte_tensor(input_tensor):
    """Flatten a BYTES tensor (object or ``S`` array) into length-prefixed bytes.

    Every element, in C order, becomes a 4-byte little-endian length followed by
    its bytes.  In an object array, ``bytes`` elements are used as they are and
    anything else as ``str(element).encode("utf-8")``; an ``S`` array gives its
    elements without trailing NULs.  An empty array gives ``()``; an array of
    any other dtype gives None.
    """
    if input_tensor.size == 0:
        return ()
    is_object = input_tensor.dtype == np.object_
    if not is_object and input_tensor.dtype.type != np.bytes_:
        return None
    elements = np.ravel(input_tensor, order="C").tolist()
    if is_object:
        elements = [e if type(e) == bytes else str(e).encode("utf-8") for e in elements]
    return _length_prefixed(elements)


def _contiguous_bytes(buffer):
    if isinstance(buffer, bytes):
        return buffer
    if isinstance(buffer, np.ndarray):
        if buffer.ndim == 1 and buffer.dtype.itemsize == 1:
            return buffer.tobytes()
        return None
    if isinstance(buffer, (bytearray, memoryview)):
        view = memoryview(buffer)
        if view.ndim == 1 and view.itemsize == 1:
            return view.tobytes()
    return None


def _split(data):
    size = len(data)
    if size >= 4 * _FEW:
        first = int.from_bytes(data[:4], "little")
        width = first + 4
        if size % width == 0:
            rows = size // width
            table = np.frombuffer(data, dtype=np.uint8).reshape(rows, width)
            heads = np.ascontiguousarray(table[:, :4]).view(_U32).reshape(rows)
            if bool((heads == first).all()):
                if first == 0:
                    return [b""] * rows
                body = np.ascontiguousarray(table[:, 4:])
                return body.view("V%d" % first).reshape(rows).tolist()
    found = []
    append = found.append
    position = 0
    start = length = 0
    read_length = _HEAD.unpack_from
    while position < size:
        (length,) = read_length(data, position)
        start = position + 4
        position = start + length
        append(data[start:position])
    if position > size:
        struct.unpack_from("<{}s".format(length), data, start)
    return found


def _split_generic(buffer):
    found = []
    position = 0
    while position < len(buffer):
        length = struct.unpack_from("<I", buffer, position)[0]
        position += 4
        found.append(struct.unpack_from("<{}s".format(length), buffer, position)[0])
        position += length
    return found


def deserialize_bytes_tensor(encoded_tensor):
    """Split length-prefixed bytes back into a 1-D object array of ``bytes``."""
    data = _contiguous_bytes(encoded_tensor)
    elements = _split(data) if data is not None else _split_generic(encoded_tensor)
    return np.array(elements, dtype=np.object_)


def get_input_tensor_by_name(inference_request, name):
    """The input Tensor of ``inference_request`` called ``name``, or None."""
    for tensor in inference_request.inputs():
        if tensor.name() == name:
            return tensor
    return None


def get_output_tensor_by_name(inference_response, name):
    """The output Tensor of ``inference_response`` called ``name``, or None."""
    for tensor in inference_response.output_tensors():
        if tensor.name() == name:
            return tensor
    return None


def get_input_config_by_name(model_config, name):
    """The ``input`` entry of a model config dict whose name is ``name``, or None."""
    if "input" in model_config:
        for entry in model_config["input"]:
            if entry["name"] == name:
                return entry
    return None


def get_output_config_by_name(model_config, name):
    """The ``output`` entry of a model config dict whose name is ``name``, or None."""
    if "output" in model_config:
        for entry in model_config["output"]:
            if entry["name"] == name:
                return entry
    return None


def using_decoupled_model_transaction_policy(model_config):
    """``model_transaction_policy.decoupled`` of a model config dict (False when absent)."""
    if "model_transaction_policy" in model_config:
        return model_config["model_transaction_policy"]["decoupled"]
    return False


def triton_to_numpy_type(data_type):
    """numpy type of a ``TRITONSERVER_DataType`` code (1..13), None otherwise."""
    for code, np_type in _CODE_TO_NUMPY:
        if data_type == code:
            return np_type
    return None


def numpy_to_triton_type(data_type):
    """``TRITONSERVER_DataType`` code of a numpy type or dtype, None when there is none."""
    for code, np_type in _CODE_TO_NUMPY[:-1]:
        if data_type == np_type:
            return code
    if data_type == np.object_ or data_type == np.bytes_:
        return 13
    return None


def triton_string_to_numpy(triton_type_string):
    """numpy type of a config data type such as ``"TYPE_FP32"`` (KeyError when unknown)."""
    return TRITON_STRING_TO_NUMPY[triton_type_string]


class ModelConfig:
    """The model configuration handed to ``auto_complete_config``.

    Built from the config JSON; ``as_dict()`` gives the parsed dict, and the
    ``set_*``/``add_*`` methods change the fields auto-complete may change,
    raising ValueError when the change contradicts the configuration.
    """

    def __init__(self, model_config):
        self._model_config = json.loads(model_config)

    def as_dict(self):
        """The configuration dict itself (not a copy)."""
        return self._model_config

    def _model_name(self):
        return self._model_config["name"]

    def set_max_batch_size(self, max_batch_size):
        """Set ``max_batch_size``; refuses to go below a value already configured."""
        configured = self._model_config["max_batch_size"]
        if configured > max_batch_size:
            raise ValueError(
                "configuration specified max_batch_size "
                + str(configured)
                + ", but in auto-complete-config function for model '"
                + self._model_name()
                + "' specified max_batch_size "
                + str(max_batch_size)
            )
        self._model_config["max_batch_size"] = max_batch_size

    def set_dynamic_batching(self):
        """Choose dynamic batching, unless another scheduler is configured."""
        for other in ("sequence_batching", "ensemble_scheduling"):
            if other in self._model_config:
                raise ValueError(
                    "Configuration specified scheduling_choice as '"
                    + other
                    + "', but auto-complete-config function for model '"
                    + self._model_name()
                    + "' tries to set scheduling_choice as 'dynamic_batching'"
                )
        if "dynamic_batching" not in self._model_config:
            self._model_config["dynamic_batching"] = {}

    def _check_tensor(self, kind, tensor, allowed, allowed_text):
        for key in tensor:
            if key not in allowed:
                raise ValueError(
                    kind
                    + " '"
                    + tensor["name"]
                    + "' in auto-complete-config function for model '"
                    + self._model_name()
                    + "' contains property other than "
                    + allowed_text
                    + "."
                )
        if "name" not in tensor:
            raise ValueError(
                kind
                + " in auto-complete-config function for model '"
                + self._model_name()
                + "' is missing 'name' property."
            )
        for needed in ("data_type", "dims"):
            if needed not in tensor:
                raise ValueError(
                    kind
                    + " '"
                    + tensor["name"]
                    + "' in auto-complete-config function for model '"
                    + self._model_name()
                    + "' is missing '"
                    + needed
                    + "' property."
                )

    def _merge_tensor(self, kind, section, tensor, with_optional):
        for existing in self._model_config[section]:
            if tensor["name"] != existing["name"]:
                continue
            if existing["data_type"] != "TYPE_INVALID" and existing["data_type"] != tensor["data_type"]:
                raise ValueError(
                    "unable to load model '"
                    + self._model_name()
                    + "', configuration expects datatype "
                    + existing["data_type"]
                    + " for "
                    + kind
                    + " '"
                    + tensor["name"]
                    + "', model provides "
                    + tensor["data_type"]
                )
            if existing["dims"] and existing["dims"] != tensor["dims"]:
                raise ValueError(
                    "model '"
                    + self._model_name()
                    + "', tensor '"
                    + tensor["name"]
                    + "': the model expects dims "
                    + str(tensor["dims"])
                    + " but the model configuration specifies dims "
                    + str(existing["dims"])
                )
            if (
                with_optional
                and "optional" in existing
                and "optional" in tensor
                and existing["optional"] != tensor["optional"]
            ):
                raise ValueError(
                    "model '"
                    + self._model_name()
                    + "', tensor '"
                    + tensor["name"]
                    + "': the model expects optional "
                    + str(tensor["optional"])
                    + " but the model configuration specifies optional "
                    + str(existing["optional"])
                )
            existing["data_type"] = tensor["data_type"]
            existing["dims"] = tensor["dims"]
            if with_optional and "optional" in tensor:
                existing["optional"] = tensor["optional"]
            return
        self._model_config[section].append(tensor)

    def add_input(self, input):
        """Add an input (``name``, ``data_type``, ``dims``, optionally ``optional``).

        An input of the same name must agree with it (its data type unless
        TYPE_INVALID, its dims unless empty, its ``optional``); it is then
        updated in place.
        """
        self._check_tensor("input", input, ("name", "data_type", "dims", "optional"),
                           "'name', 'data_type', 'dims' and 'optional'")
        self._merge_tensor("input", "input", input, True)

    def add_output(self, output):
        """Add an output (``name``, ``data_type``, ``dims``); same agreement rules as inputs."""
        self._check_tensor("output", output, ("name", "data_type", "dims"),
                           "'name', 'data_type' and 'dims'")
        self._merge_tensor("output", "output", output, False)

    def set_model_transaction_policy(self, transaction_policy_dict):
        """Set ``model_transaction_policy`` (only ``decoupled``, which may not change once set)."""
        for key in transaction_policy_dict.keys():
            if key != "decoupled":
                raise ValueError(
                    "model transaction property in auto-complete-config function for model '"
                    + self._model_name()
                    + "' contains property other than 'decoupled'."
                )
        policy = self._model_config.setdefault("model_transaction_policy", {})
        if "decoupled" in transaction_policy_dict.keys():
            if "decoupled" in policy and policy["decoupled"] != transaction_policy_dict["decoupled"]:
                raise ValueError(
                    "trying to change decoupled property in auto-complete-config for model '"
                    + self._model_name()
                    + "', which is already set to '"
                    + str(policy["decoupled"])
                    + "'."
                )
            policy["decoupled"] = transaction_policy_dict["decoupled"]


TRITONSERVER_REQUEST_FLAG_SEQUENCE_START = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_END = 2
TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
TRITONSERVER_REQUEST_RELEASE_ALL = 1
TRITONSERVER_REQUEST_RELEASE_RESCHEDULE = 2
