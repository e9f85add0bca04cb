"""Every dtype in and out: each input that is present comes back transformed, and INFO describes
what model.py saw (numpy dtype, shape, flags, element types, Tensor methods)."""
import json

import numpy as np

import triton_python_backend_utils as pb_utils

NUMERIC = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
           "FP16", "FP32", "FP64"]


def describe(tensor):
    info = {"name": tensor.name(), "shape": list(tensor.shape()), "is_cpu": tensor.is_cpu()}
    try:
        array = tensor.as_numpy()
    except Exception as exc:  # BF16 has no numpy dtype
        info["as_numpy_error"] = f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"
        return info
    info.update(dtype=array.dtype.str, array_shape=list(array.shape), writeable=array.flags.writeable,
                c_contiguous=array.flags.c_contiguous, same_object=tensor.as_numpy() is array)
    if array.dtype == np.object_:
        info["element_types"] = sorted({type(x).__name__ for x in array.reshape(-1)})
    return info


def transform(kind, array):
    if kind == "BOOL":
        return np.logical_not(array)
    if kind.startswith(("UINT", "INT")):
        return np.flip(array)  # a view with negative strides
    return (array * 2).T  # a Fortran-ordered view


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            outputs, info = [], {}
            for kind in NUMERIC:
                tensor = pb_utils.get_input_tensor_by_name(request, f"IN_{kind}")
                if tensor is None:
                    continue
                info[kind] = describe(tensor)
                array = tensor.as_numpy()
                outputs.append(pb_utils.Tensor(f"OUT_{kind}", transform(kind, array)))
                if kind == "FP32":
                    # Declared FP32 in the config; sent as INT32 (the stub does not check).
                    outputs.append(pb_utils.Tensor("OUT_FP32_AS_INT32", array.astype(np.int32)))
            tensor = pb_utils.get_input_tensor_by_name(request, "IN_BYTES")
            if tensor is not None:
                info["BYTES"] = describe(tensor)
                array = tensor.as_numpy()
                flat = array.reshape(-1)
                wrapped = np.array([b"<" + x + b">" for x in flat] or [], dtype=object).reshape(array.shape)
                as_str = np.array([x.decode("utf-8", "replace") for x in flat] or [], dtype=object)
                as_s = np.array(list(flat), dtype=np.bytes_) if flat.size else np.zeros(0, dtype="S1")
                outputs += [pb_utils.Tensor("OUT_BYTES", wrapped),
                            pb_utils.Tensor("OUT_BYTES_FROM_STR", as_str.reshape(array.shape)),
                            pb_utils.Tensor("OUT_BYTES_FROM_S", as_s.reshape(array.shape))]
            tensor = pb_utils.get_input_tensor_by_name(request, "IN_BF16")
            if tensor is not None:
                info["BF16"] = describe(tensor)
                outputs.append(pb_utils.Tensor.from_dlpack("OUT_BF16", tensor))
            info_json = json.dumps(info, sort_keys=True).encode()
            outputs.append(pb_utils.Tensor("INFO", np.array([info_json], dtype=object)))
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses
