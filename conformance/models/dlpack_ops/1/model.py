"""DLPack: Tensor.to_dlpack / from_dlpack / __dlpack__ / __dlpack_device__, BF16 through DLPack.

CASE picks what to do with the inputs (IN: FP32, B: BF16, S: BYTES); RESULT is JSON (what the
calls returned or raised), OUT / OUT16 carry tensors built through DLPack.
"""
import json

import numpy as np

import triton_python_backend_utils as pb_utils


def text_of(call):
    try:
        result = call()
        if isinstance(result, pb_utils.Tensor):
            return "a Tensor %s %s" % (result.name(), result.shape())
        if type(result).__name__ == "PyCapsule":
            return "a capsule"
        return "returned " + repr(result)
    except Exception as exc:  # noqa: BLE001
        return type(exc).__name__ + ": " + str(exc)


class CudaLooking:
    """Says it lives on a CUDA device (kDLCUDA = 2) but hands out a CPU capsule."""

    def __init__(self, tensor):
        self.tensor = tensor

    def __dlpack_device__(self):
        return (2, 0)

    def __dlpack__(self, stream=None):
        return self.tensor.to_dlpack()


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            case = pb_utils.get_input_tensor_by_name(request, "CASE").as_numpy()[0].decode()
            outputs = []
            result = getattr(self, "case_" + case)(request, outputs)
            responses.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("RESULT", np.array([json.dumps(result).encode()], dtype=object))] + outputs))
        return responses

    def case_capsule_round_trip(self, request, outputs):
        x = pb_utils.get_input_tensor_by_name(request, "IN")
        capsule = x.to_dlpack()
        y = pb_utils.Tensor.from_dlpack("OUT", capsule)
        outputs.append(y)
        return {"from_dlpack": "a Tensor %s %s" % (y.name(), y.shape()), "is_cpu": y.is_cpu(),
                "as_numpy equal": bool(np.array_equal(y.as_numpy(), x.as_numpy()))}

    def case_capsule_twice(self, request, outputs):
        """A capsule is consumed once: the second from_dlpack of it must not take it again."""
        x = pb_utils.get_input_tensor_by_name(request, "IN")
        capsule = x.to_dlpack()
        outputs.append(pb_utils.Tensor.from_dlpack("OUT", capsule))
        return {"capsule used twice": text_of(lambda: pb_utils.Tensor.from_dlpack("OUT", capsule))}

    def case_dunder(self, request, outputs):
        x = pb_utils.get_input_tensor_by_name(request, "IN")
        device = x.__dlpack_device__()
        y = pb_utils.Tensor.from_dlpack("OUT", x)  # an object with __dlpack__ / __dlpack_device__
        outputs.append(y)
        return {"device": [int(v) for v in device], "__dlpack__()": text_of(x.__dlpack__),
                "__dlpack__(stream=None)": text_of(lambda: x.__dlpack__(stream=None))}

    def case_numpy_consumer(self, request, outputs):
        """numpy imports our tensor through __dlpack__ (numpy is the DLPack consumer)."""
        x = pb_utils.get_input_tensor_by_name(request, "IN")
        array = np.from_dlpack(x)
        outputs.append(pb_utils.Tensor("OUT", array * 2))
        return {"dtype": str(array.dtype), "shape": list(array.shape)}

    def case_bf16(self, request, outputs):
        b = pb_utils.get_input_tensor_by_name(request, "B")
        y = pb_utils.Tensor.from_dlpack("OUT16", b.to_dlpack())
        outputs.append(y)
        return {"as_numpy": text_of(b.as_numpy), "shape": b.shape(), "out": "a Tensor %s %s" % (y.name(), y.shape()),
                "out as_numpy": text_of(y.as_numpy)}

    def case_errors(self, request, outputs):
        x = pb_utils.get_input_tensor_by_name(request, "IN")
        s = pb_utils.get_input_tensor_by_name(request, "S")
        return {
            "no __dlpack__": text_of(lambda: pb_utils.Tensor.from_dlpack("OUT", [1.0, 2.0])),
            "empty name": text_of(lambda: pb_utils.Tensor.from_dlpack("", x.to_dlpack())),
            "BYTES to_dlpack": text_of(s.to_dlpack),
            "from_dlpack with one argument": text_of(lambda: pb_utils.Tensor.from_dlpack(x.to_dlpack())),
        }

    def case_cuda_device(self, request, outputs):
        x = pb_utils.get_input_tensor_by_name(request, "IN")
        return {"from_dlpack of a CUDA-device object": text_of(
            lambda: pb_utils.Tensor.from_dlpack("OUT", CudaLooking(x)))}

    def case_numpy_producer(self, request, outputs):
        """Tensor.from_dlpack of numpy arrays (the C++ stub crashes here: see test_deliberate)."""
        x = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
        grid = np.arange(6, dtype=np.int16).reshape(2, 3)
        outputs.append(pb_utils.Tensor.from_dlpack("OUT", x * 2))
        return {"2-D int16": text_of(lambda: pb_utils.Tensor.from_dlpack("G", grid)),
                "2-D values": pb_utils.Tensor.from_dlpack("G", grid).as_numpy().tolist(),
                "transposed (not contiguous)": text_of(lambda: pb_utils.Tensor.from_dlpack("T", grid.T)),
                "a numpy capsule": text_of(lambda: pb_utils.Tensor.from_dlpack("C", grid.__dlpack__()))}
