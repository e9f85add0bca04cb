"""Our fallback triton_python_backend_utils against the stock file shipped with nvidia-pytriton.

Every function is run on the same inputs in both modules; results and raised exceptions
(type and text) must be the same. The stock module is loaded by path from the reference Triton the
``triton_reference`` fixture finds (or from TRITONSTUB_STOCK_TPBU); without it those comparisons
skip, or fail under TRITONSTUB_REQUIRE_REFERENCE=1.
"""
import copy
import importlib.util
import json
import os
import struct

import numpy as np
import pytest

from tritonstub.stub import c_python_backend_utils as pb
from tritonstub.stub.tpbu_fallback import triton_python_backend_utils as fallback


def _stock_path(triton_reference) -> str:
    """TRITONSTUB_STOCK_TPBU, else the file next to the reference Triton's python backend."""
    env = os.environ.get("TRITONSTUB_STOCK_TPBU")
    if env:
        if not os.path.isfile(env):
            pytest.fail(f"TRITONSTUB_STOCK_TPBU={env} is not a file", pytrace=False)
        return env
    if not triton_reference.tpbu.is_file():
        pytest.fail(f"the reference Triton has no {triton_reference.tpbu}", pytrace=False)
    return str(triton_reference.tpbu)


@pytest.fixture(scope="module")
def stock(triton_reference):
    """The stock module, loaded by path. Without the reference Triton, triton_reference skips (or
    fails, with TRITONSTUB_REQUIRE_REFERENCE=1) the comparisons."""
    path = _stock_path(triton_reference)
    spec = importlib.util.spec_from_file_location("stock_triton_python_backend_utils", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def outcome(fn, *args):
    try:
        result = fn(*args)
    except Exception as exc:  # noqa: BLE001
        return ("raised", type(exc).__name__, str(exc))
    return ("returned", normal(result))


def normal(value):
    if isinstance(value, np.ndarray):
        return ("ndarray", value.dtype.str, value.shape, [(type(x).__name__, x) for x in value.ravel().tolist()])
    if isinstance(value, (bytes, tuple, type(None), bool, int, str, list, dict)):
        return (type(value).__name__, value)
    if isinstance(value, type):
        return ("type", value)
    return ("other", repr(value))


def same(stock_fn, our_fn, *args):
    theirs = outcome(stock_fn, *copy.deepcopy(args))
    ours = outcome(our_fn, *copy.deepcopy(args))
    assert ours == theirs, args


# ================================================================================================
# BYTES helpers
# ================================================================================================


def _arrays():
    rng = np.random.default_rng(1)
    varied = np.empty(500, dtype=object)
    varied[:] = [bytes(rng.integers(0, 256, int(n), dtype=np.uint8)) for n in rng.integers(0, 30, 500)]
    uniform = np.empty(300, dtype=object)
    uniform[:] = [bytes(rng.integers(0, 256, 9, dtype=np.uint8)) for _ in range(300)]
    mixed = np.array([b"raw", "text", 12, 3.5, None, np.float32(1.25), "ünï", b"", np.bytes_(b"np")],
                     dtype=object)
    return {
        "object-bytes": np.array([b"a", b"bc", b""], dtype=object),
        "object-2d": np.array([[b"a", b"b"], [b"c", b"d"]], dtype=object),
        "object-fortran": np.asfortranarray(np.array([[b"a", b"bb"], [b"ccc", b"d"]], dtype=object)),
        "object-view": np.array([b"0", b"1", b"2", b"3", b"4"], dtype=object)[::2],
        "object-mixed": mixed,
        "object-0d": np.array(b"scalar", dtype=object),
        "s-array": np.array([b"a\x00b", b"cd\x00", b""], dtype="S3"),
        "s-2d": np.array([[b"x", b"yy"]], dtype="S2"),
        "empty-object": np.zeros((0, 2), dtype=object),
        "empty-float": np.zeros(0, dtype=np.float32),
        "float": np.ones(3, dtype=np.float32),
        "unicode": np.array(["a", "b"]),
        "varied": varied,
        "uniform": uniform,
        "uniform-empty": np.array([b""] * 100, dtype=object),
    }


@pytest.mark.parametrize("name", sorted(_arrays()))
def test_serialize_byte_tensor(stock, name):
    arr = _arrays()[name]
    same(stock.serialize_byte_tensor, fallback.serialize_byte_tensor, arr)


@pytest.mark.parametrize("name", sorted(_arrays()))
def test_surface_serializer_matches_stock(stock, name):
    arr = _arrays()[name]
    expected = stock.serialize_byte_tensor(arr)
    if expected is None:
        return
    assert pb.serialize_bytes(arr) == (expected if expected != () else b"")


def _encoded():
    out = {}
    for name, arr in _arrays().items():
        data = fallback.serialize_byte_tensor(arr)
        if isinstance(data, bytes):
            out[name] = data
    out["empty"] = b""
    out["truncated-head"] = struct.pack("<I", 1) + b"a" + b"\x02\x00"
    out["truncated-body"] = struct.pack("<I", 5) + b"ab"
    out["truncated-late"] = b"".join(struct.pack("<I", 2) + b"xy" for _ in range(50)) + struct.pack("<I", 9)
    return out


@pytest.mark.parametrize("name", sorted(_encoded()))
@pytest.mark.parametrize("kind", ["bytes", "uint8", "bytearray", "memoryview"])
def test_deserialize_bytes_tensor(stock, name, kind):
    data = _encoded()[name]
    wrap = {
        "bytes": lambda d: d,
        "uint8": lambda d: np.frombuffer(d, dtype=np.uint8),
        "bytearray": bytearray,
        "memoryview": memoryview,
    }[kind]
    theirs = outcome(stock.deserialize_bytes_tensor, wrap(data))
    ours = outcome(fallback.deserialize_bytes_tensor, wrap(data))
    assert ours == theirs
    if theirs[0] == "returned":
        assert pb.deserialize_bytes(data).tolist() == stock.deserialize_bytes_tensor(data).tolist()


def test_round_trip_through_both(stock):
    for arr in _arrays().values():
        data = stock.serialize_byte_tensor(arr)
        if isinstance(data, bytes):
            assert fallback.deserialize_bytes_tensor(data).tolist() == stock.deserialize_bytes_tensor(data).tolist()


# ================================================================================================
# Lookups and type maps
# ================================================================================================


class _Named:
    def __init__(self, name):
        self._n = name

    def name(self):
        return self._n


class _Request:
    def __init__(self, names):
        self._t = [_Named(n) for n in names]

    def inputs(self):
        return self._t

    def output_tensors(self):
        return self._t


def test_tensor_lookups(stock):
    holder = _Request(["a", "b", "a"])
    for name in ("a", "b", "c"):
        s = stock.get_input_tensor_by_name(holder, name)
        o = fallback.get_input_tensor_by_name(holder, name)
        assert s is o
        assert stock.get_output_tensor_by_name(holder, name) is fallback.get_output_tensor_by_name(holder, name)
    t = pb.Tensor("IN", np.zeros(1))
    req = pb.InferenceRequest(model_name="m", inputs=[t], requested_output_names=[])
    assert fallback.get_input_tensor_by_name(req, "IN") is t is stock.get_input_tensor_by_name(req, "IN")
    resp = pb.InferenceResponse([t])
    assert fallback.get_output_tensor_by_name(resp, "IN") is t
    assert fallback.get_output_tensor_by_name(resp, "X") is None


CONFIGS = [
    {},
    {"input": [{"name": "A", "data_type": "TYPE_FP32"}, {"name": "B"}], "output": [{"name": "O"}]},
    {"input": [{"noname": 1}]},
    {"input": []},
    {"model_transaction_policy": {"decoupled": True}},
    {"model_transaction_policy": {}},
    {"model_transaction_policy": {"decoupled": False}},
]


@pytest.mark.parametrize("config", CONFIGS, ids=[str(i) for i in range(len(CONFIGS))])
def test_config_lookups(stock, config):
    for name in ("A", "B", "O", "Z"):
        same(stock.get_input_config_by_name, fallback.get_input_config_by_name, config, name)
        same(stock.get_output_config_by_name, fallback.get_output_config_by_name, config, name)
    same(stock.using_decoupled_model_transaction_policy, fallback.using_decoupled_model_transaction_policy, config)


def test_type_maps(stock):
    codes = list(range(-1, 17)) + [1.0, 13.0, "1", None, pb.TritonError.INTERNAL]
    codes += [pb.Tensor("x", np.zeros(1, dt)).triton_dtype() for dt in (np.float32, np.int8, np.bool_)]
    for code in codes:
        same(stock.triton_to_numpy_type, fallback.triton_to_numpy_type, code)
    types = [np.bool_, bool, np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32, np.int64,
             np.float16, np.float32, np.float64, np.object_, np.bytes_, object, bytes, str, int, float,
             np.str_, np.complex64]
    types += [np.dtype(t) for t in ("?", "u1", "u2", "u4", "u8", "i1", "i2", "i4", "i8", "f2", "f4", "f8", "O",
                                     "S", "S4", "U3", ">i4", "V4")]
    types += ["float32", "int64", "S", None, 3]
    for data_type in types:
        same(stock.numpy_to_triton_type, fallback.numpy_to_triton_type, data_type)


def test_string_map(stock):
    assert fallback.TRITON_STRING_TO_NUMPY == stock.TRITON_STRING_TO_NUMPY
    for key in list(stock.TRITON_STRING_TO_NUMPY) + ["TYPE_BF16", "TYPE_INVALID", "FP32"]:
        same(stock.triton_string_to_numpy, fallback.triton_string_to_numpy, key)


def test_constants_and_names(stock):
    for name in ("TRITONSERVER_REQUEST_FLAG_SEQUENCE_START", "TRITONSERVER_REQUEST_FLAG_SEQUENCE_END",
                 "TRITONSERVER_RESPONSE_COMPLETE_FINAL", "TRITONSERVER_REQUEST_RELEASE_ALL",
                 "TRITONSERVER_REQUEST_RELEASE_RESCHEDULE"):
        assert getattr(fallback, name) == getattr(stock, name)
    public = {n for n in dir(stock) if not n.startswith("_")}
    missing = public - set(dir(fallback))
    assert not missing


def test_constants_without_stock():
    assert fallback.TRITONSERVER_REQUEST_FLAG_SEQUENCE_START == 1
    assert fallback.TRITONSERVER_REQUEST_FLAG_SEQUENCE_END == 2
    assert fallback.TRITONSERVER_RESPONSE_COMPLETE_FINAL == 1
    assert fallback.TRITONSERVER_REQUEST_RELEASE_ALL == 1
    assert fallback.TRITONSERVER_REQUEST_RELEASE_RESCHEDULE == 2
    assert fallback.serialize_byte_tensor(np.zeros(0, dtype=object)) == ()
    assert fallback.serialize_byte_tensor(np.ones(2)) is None
    assert fallback.deserialize_bytes_tensor(b"\x01\x00\x00\x00a").tolist() == [b"a"]


# ================================================================================================
# ModelConfig
# ================================================================================================

BASE = {
    "name": "mdl",
    "max_batch_size": 4,
    "input": [
        {"name": "IN0", "data_type": "TYPE_FP32", "dims": [3]},
        {"name": "IN1", "data_type": "TYPE_INVALID", "dims": []},
        {"name": "IN2", "data_type": "TYPE_INT32", "dims": [1], "optional": False},
    ],
    "output": [
        {"name": "OUT0", "data_type": "TYPE_FP32", "dims": [3]},
        {"name": "OUT1", "data_type": "TYPE_INVALID", "dims": []},
    ],
}


def variant(**changes):
    cfg = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    return json.dumps(cfg)


SCRIPTS = {
    "as_dict": [("as_dict",)],
    "mbs-ok": [("set_max_batch_size", 8)],
    "mbs-equal": [("set_max_batch_size", 4)],
    "mbs-lower": [("set_max_batch_size", 2)],
    "dyn": [("set_dynamic_batching",), ("set_dynamic_batching",)],
    "add-new-input": [("add_input", {"name": "NEW", "data_type": "TYPE_FP16", "dims": [2, 2]})],
    "add-new-input-optional": [("add_input", {"name": "NEW", "data_type": "TYPE_FP16", "dims": [1], "optional": True})],
    "input-bad-prop": [("add_input", {"name": "X", "data_type": "TYPE_FP32", "dims": [1], "format": 1})],
    "input-bad-prop-noname": [("add_input", {"data_type": "TYPE_FP32", "bad": 1})],
    "input-no-name": [("add_input", {"data_type": "TYPE_FP32", "dims": [1]})],
    "input-no-type": [("add_input", {"name": "X", "dims": [1]})],
    "input-no-dims": [("add_input", {"name": "X", "data_type": "TYPE_FP32"})],
    "input-type-mismatch": [("add_input", {"name": "IN0", "data_type": "TYPE_INT8", "dims": [3]})],
    "input-dims-mismatch": [("add_input", {"name": "IN0", "data_type": "TYPE_FP32", "dims": [4]})],
    "input-fill-invalid": [("add_input", {"name": "IN1", "data_type": "TYPE_BOOL", "dims": [5]})],
    "input-same": [("add_input", {"name": "IN0", "data_type": "TYPE_FP32", "dims": [3]})],
    "input-optional-mismatch": [("add_input", {"name": "IN2", "data_type": "TYPE_INT32", "dims": [1], "optional": True})],
    "input-optional-set": [("add_input", {"name": "IN0", "data_type": "TYPE_FP32", "dims": [3], "optional": True})],
    "add-new-output": [("add_output", {"name": "NEWO", "data_type": "TYPE_STRING", "dims": [-1]})],
    "output-optional-refused": [("add_output", {"name": "O", "data_type": "TYPE_FP32", "dims": [1], "optional": True})],
    "output-no-name": [("add_output", {"data_type": "TYPE_FP32", "dims": [1]})],
    "output-no-type": [("add_output", {"name": "O", "dims": [1]})],
    "output-no-dims": [("add_output", {"name": "O", "data_type": "TYPE_FP32"})],
    "output-type-mismatch": [("add_output", {"name": "OUT0", "data_type": "TYPE_INT8", "dims": [3]})],
    "output-dims-mismatch": [("add_output", {"name": "OUT0", "data_type": "TYPE_FP32", "dims": [1, 3]})],
    "output-fill-invalid": [("add_output", {"name": "OUT1", "data_type": "TYPE_BOOL", "dims": [5]})],
    "policy-set": [("set_model_transaction_policy", {"decoupled": True})],
    "policy-same-twice": [("set_model_transaction_policy", {"decoupled": True}),
                          ("set_model_transaction_policy", {"decoupled": True})],
    "policy-change": [("set_model_transaction_policy", {"decoupled": True}),
                      ("set_model_transaction_policy", {"decoupled": False})],
    "policy-bad-key": [("set_model_transaction_policy", {"decoupled": True, "other": 1})],
    "policy-empty": [("set_model_transaction_policy", {})],
}

CONFIG_JSONS = {
    "base": variant(),
    "no-mbs": variant(max_batch_size=None),
    "sequence": variant(sequence_batching={}),
    "ensemble": variant(ensemble_scheduling={"step": []}),
    "dynamic": variant(dynamic_batching={"max_queue_delay_microseconds": 5}),
    "no-inputs": variant(input=None, output=None),
    "no-name": variant(name=None),
    "decoupled-false": variant(model_transaction_policy={"decoupled": False}),
}


def run_script(cls, config_json, script):
    steps = []
    try:
        cfg = cls(config_json)
    except Exception as exc:  # noqa: BLE001
        return [("ctor", type(exc).__name__, str(exc))]
    for step in script:
        method, args = step[0], copy.deepcopy(step[1:])
        try:
            result = getattr(cfg, method)(*args)
            steps.append(("ok", result if method != "as_dict" else "dict"))
        except Exception as exc:  # noqa: BLE001
            steps.append(("raised", type(exc).__name__, str(exc)))
    steps.append(("final", json.dumps(cfg._model_config, sort_keys=True)))
    steps.append(("as_dict-identity", cfg.as_dict() is cfg._model_config))
    return steps


@pytest.mark.parametrize("config_name", sorted(CONFIG_JSONS))
@pytest.mark.parametrize("script_name", sorted(SCRIPTS))
def test_model_config(stock, config_name, script_name):
    config_json = CONFIG_JSONS[config_name]
    script = SCRIPTS[script_name]
    assert run_script(fallback.ModelConfig, config_json, script) == run_script(stock.ModelConfig, config_json, script)


def test_model_config_bad_json(stock):
    for text in ("{", "[]", "null"):
        assert run_script(fallback.ModelConfig, text, [("as_dict",)]) == run_script(stock.ModelConfig, text, [("as_dict",)])


def test_model_config_messages_without_stock():
    cfg = fallback.ModelConfig(variant())
    with pytest.raises(ValueError) as info:
        cfg.set_max_batch_size(1)
    assert str(info.value) == (
        "configuration specified max_batch_size 4, but in auto-complete-config function for model 'mdl' "
        "specified max_batch_size 1"
    )
    with pytest.raises(ValueError) as info:
        cfg.add_input({"name": "IN0", "data_type": "TYPE_FP32", "dims": [9]})
    assert str(info.value) == (
        "model 'mdl', tensor 'IN0': the model expects dims [9] but the model configuration specifies dims [3]"
    )
