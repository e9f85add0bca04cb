"""Every way execute can fail, picked per request by the parameter "mode".

Modes that fail the whole execute call raise or return something malformed; "error_response*"
modes return an InferenceResponse carrying a TritonError for that request.
"""
import json
import struct

import numpy as np

import triton_python_backend_utils as pb_utils

from error_helpers import raise_from_helper


class ModelSpecificError(RuntimeError):
    pass


class UnprintableError(Exception):
    def __str__(self):
        raise RuntimeError("str() of this exception fails")


def level_two():
    raise ValueError("raised two frames down")


def level_one():
    level_two()


def output(request):
    values = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
    return pb_utils.InferenceResponse([pb_utils.Tensor("OUT", values)])


class TritonPythonModel:
    def initialize(self, args):
        self.codes = {name: getattr(pb_utils.TritonError, name) for name in
                      ("UNKNOWN", "INTERNAL", "NOT_FOUND", "INVALID_ARG", "UNAVAILABLE", "UNSUPPORTED",
                       "ALREADY_EXISTS", "CANCELLED")}

    def execute(self, requests):
        params = json.loads(requests[0].parameters())
        mode = params.get("mode", "ok")
        if mode == "ok":
            return [output(r) for r in requests]
        if mode == "raise":
            raise ValueError("boom from exec_errors")
        if mode == "nested":
            level_one()
        if mode == "helper_module":
            raise_from_helper()
        if mode == "tme":
            raise pb_utils.TritonModelException("tme raised")
        if mode == "custom_class":
            raise ModelSpecificError("a model-defined exception class")
        if mode == "empty_message":
            raise RuntimeError()
        if mode == "unicode_message":
            raise ValueError("naïve ✓ \"quoted\" 'single'\nsecond line\ttab")
        if mode == "chained":
            try:
                {}["missing"]
            except KeyError as exc:
                raise RuntimeError("wrapped the KeyError") from exc
        if mode == "during_handling":
            try:
                1 / 0
            except ZeroDivisionError:
                raise LookupError("raised while handling another")
        if mode == "stdlib_frames":
            json.loads("{not json")
        if mode == "c_type_name":
            struct.unpack("<i", b"")
        if mode == "unprintable":
            raise UnprintableError("hidden")
        if mode == "non_str_argument":
            raise ValueError(42, "two args")
        if mode == "comprehension":
            [1 / (len(requests) - 1) for _ in requests]
        if mode == "wrong_type":
            return "not a list"
        if mode == "tuple":
            return tuple(output(r) for r in requests)
        if mode == "wrong_length":
            return []
        if mode == "too_many":
            return [output(r) for r in requests] * 2
        if mode == "element_type":
            return [1 for _ in requests]
        if mode == "error_response":
            code = self.codes[params.get("code", "INTERNAL")]
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(params.get("message", "per-request error"), code))
                    for _ in requests]
        if mode == "error_response_default_code":
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError("error with the default code"))
                    for _ in requests]
        if mode == "error_response_with_outputs":
            values = np.ones(2, dtype=np.float32)
            return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", values)],
                                               error=pb_utils.TritonError("error and outputs"))
                    for _ in requests]
        if mode == "empty_tensor_name":
            pb_utils.Tensor("", np.ones(2, dtype=np.float32))
        if mode == "unicode_array":
            pb_utils.Tensor("OUT", np.array(["text"]))
        if mode == "list_not_array":
            pb_utils.Tensor("OUT", [1.0, 2.0])
        if mode == "none_tensor":
            pb_utils.InferenceResponse([None])
        if mode == "triton_error_none":
            pb_utils.TritonError(None)
        if mode == "error_api":
            error = pb_utils.TritonError("inspect me", pb_utils.TritonError.NOT_FOUND)
            described = json.dumps({"message": error.message(), "code": int(error.code()),
                                    "code_repr": repr(error.code()),
                                    "class": f"{type(error).__module__}.{type(error).__qualname__}"})
            raise ValueError(described)
        if mode == "missing_input":
            pb_utils.get_input_tensor_by_name(requests[0], "NOPE").as_numpy()
        if mode == "numpy_error":
            np.frombuffer(b"abc", dtype=np.float32)  # raised in C: no numpy frames
        raise NotImplementedError(f"unknown mode {mode!r}")
