"""Runs the BLS calls that its CASE input (JSON) describes and answers with what came back.

RESULT is JSON: each BLS response as {"error": [message, code] or null, "outputs": [[name,
numpy dtype, shape, values], ...]}. Model names in a case get this model's stub suffix
("bls_callee" -> "bls_callee_cpp" from "bls_caller_cpp"), unless given as "raw_model".
"""
import asyncio
import json

import numpy as np

import triton_python_backend_utils as pb_utils


def describe(response):
    error = response.error() if response.has_error() else None
    outputs = []
    for tensor in sorted(response.output_tensors(), key=lambda t: t.name()):
        array = tensor.as_numpy()
        if array.dtype == np.object_:
            values = [bytes(v).decode("latin-1") for v in array.reshape(-1)]
        else:
            values = array.reshape(-1).tolist()
        outputs.append([tensor.name(), array.dtype.str, list(array.shape), values])
    return {"error": None if error is None else [error.message(), int(error.code())], "outputs": outputs}


def text_of(call):
    try:
        return "returned " + repr(call())
    except Exception as exc:  # noqa: BLE001
        return type(exc).__name__ + ": " + str(exc)


class TritonPythonModel:
    def initialize(self, args):
        self.suffix = args["model_name"].rsplit("_", 1)[1]
        request = pb_utils.InferenceRequest(model_name="bls_callee_" + self.suffix, inputs=[],
                                            requested_output_names=["OUT"])
        self.init_bls = text_of(lambda: describe(request.exec()))

    def model(self, case):
        return case.get("raw_model") or case.get("model", "bls_callee") + "_" + self.suffix

    def request(self, case, offset=0.0):
        inputs = []
        for name, spec in sorted(case.get("inputs", {}).items()):
            if spec["dtype"] == "bytes":
                array = np.array([v.encode() for v in spec["data"]], dtype=object)
            else:
                array = np.array(spec["data"], dtype=spec["dtype"]) + offset
            inputs.append(pb_utils.Tensor(name, array.reshape(spec.get("shape", [-1]))))
        kwargs = {k: case[k] for k in ("request_id", "correlation_id", "flags", "timeout", "model_version",
                                       "parameters") if k in case}
        if case.get("preferred_memory") == "gpu":
            kwargs["preferred_memory"] = pb_utils.PreferredMemory(pb_utils.TRITONSERVER_MEMORY_GPU, 0)
        elif case.get("preferred_memory") == "cpu":
            kwargs["preferred_memory"] = pb_utils.PreferredMemory(pb_utils.TRITONSERVER_MEMORY_CPU, 0)
        return pb_utils.InferenceRequest(model_name=self.model(case), inputs=inputs,
                                         requested_output_names=case.get("outputs", ["OUT", "OUT2", "SOUT", "INFO"]),
                                         **kwargs)

    async def execute(self, requests):
        responses = []
        for request in requests:
            case = json.loads(pb_utils.get_input_tensor_by_name(request, "CASE").as_numpy()[0])
            extra = []
            result = getattr(self, "case_" + case["case"])(case, extra)
            if asyncio.iscoroutine(result):
                result = await result
            responses.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("RESULT", np.array([json.dumps(result).encode()], dtype=object))] + extra))
        return responses

    # ---- cases -------------------------------------------------------------------------------

    def case_exec(self, case, extra):
        return describe(self.request(case).exec())

    async def case_async_exec(self, case, extra):
        return describe(await self.request(case).async_exec())

    async def case_gather(self, case, extra):
        calls = [self.request(case, offset=100.0 * i).async_exec() for i in range(case["count"])]
        return [describe(r) for r in await asyncio.gather(*calls)]

    async def case_staggered(self, case, extra):
        """The first request of case["requests"] starts 50 ms before the others."""
        specs = case["requests"]
        first = asyncio.ensure_future(self.request(specs[0]).async_exec())
        await asyncio.sleep(0.05)
        rest = [self.request(spec).async_exec() for spec in specs[1:]]
        return [describe(r) for r in await asyncio.gather(first, *rest)]

    def case_sequential(self, case, extra):
        return [describe(self.request(case, offset=100.0 * i).exec()) for i in range(case["count"])]

    async def case_stream(self, case, extra):
        request = pb_utils.InferenceRequest(
            model_name=self.model(case),
            inputs=[pb_utils.Tensor("MODE", np.array([case["mode"].encode()], dtype=object)),
                    pb_utils.Tensor("N", np.array([case["n"]], dtype=np.int32))],
            requested_output_names=case.get("outputs", ["OUT"]))
        if case.get("async"):
            iterator = await request.async_exec(decoupled=True)
        else:
            iterator = request.exec(decoupled=True)
        first = [describe(r) for r in iterator]
        again = [describe(r) for r in iterator] if case.get("again") else None
        return {"responses": first, "again": again, "type": type(iterator).__name__}

    def case_stream_partial(self, case, extra):
        """Take k responses of a stream, drop the iterator, then make a normal call."""
        request = pb_utils.InferenceRequest(
            model_name=self.model(case),
            inputs=[pb_utils.Tensor("MODE", np.array([b"repeat"], dtype=object)),
                    pb_utils.Tensor("N", np.array([case["n"]], dtype=np.int32))],
            requested_output_names=["OUT"])
        iterator = request.exec(decoupled=True)
        taken = [describe(next(iterator)) for _ in range(case["k"])]
        del iterator
        after = describe(self.request({"inputs": {"IN": {"dtype": "float32", "data": [1.0]}},
                                       "outputs": ["OUT"]}).exec())
        return {"taken": taken, "after": after}

    def case_forward(self, case, extra):
        """The callee's output tensors are this model's outputs."""
        response = self.request(case).exec()
        extra.append(pb_utils.get_output_tensor_by_name(response, "OUT"))
        extra.append(pb_utils.get_output_tensor_by_name(response, "SOUT"))
        return describe(response)

    def case_bls_request_is_cancelled(self, case, extra):
        """is_cancelled() of a request built here (no parent request behind it)."""
        request = self.request({"inputs": {"IN": {"dtype": "float32", "data": [1.0]}}, "outputs": ["OUT"]})
        return {"request": text_of(request.is_cancelled),
                "sender": text_of(request.get_response_sender().is_cancelled)}

    def case_init_bls(self, case, extra):
        return self.init_bls

    def case_construct_errors(self, case, extra):
        tensor = pb_utils.Tensor("IN", np.array([1.0], np.float32))
        name = "bls_callee_" + self.suffix
        attempts = {
            "float parameter": lambda: pb_utils.InferenceRequest(
                model_name=name, inputs=[tensor], requested_output_names=["OUT"], parameters={"f": 1.5}),
            "parameters not a dict": lambda: pb_utils.InferenceRequest(
                model_name=name, inputs=[tensor], requested_output_names=["OUT"], parameters="x=1"),
            "int parameter key": lambda: pb_utils.InferenceRequest(
                model_name=name, inputs=[tensor], requested_output_names=["OUT"], parameters={1: "a"}),
            "float correlation id": lambda: pb_utils.InferenceRequest(
                model_name=name, inputs=[tensor], requested_output_names=["OUT"], correlation_id=1.5),
            "empty output name": lambda: pb_utils.InferenceRequest(
                model_name=name, inputs=[tensor], requested_output_names=[""]),
            "no model name": lambda: pb_utils.InferenceRequest(inputs=[tensor], requested_output_names=["OUT"]),
            "sender of a BLS request": lambda: pb_utils.InferenceRequest(
                model_name=name, inputs=[tensor], requested_output_names=["OUT"]).get_response_sender().send(
                    flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL),
            "exec(decoupled='yes')": lambda: pb_utils.InferenceRequest(
                model_name=name, inputs=[tensor], requested_output_names=["OUT"]).exec(decoupled="yes"),
        }
        return {label: text_of(call) for label, call in attempts.items()}
