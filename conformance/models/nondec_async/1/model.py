"""A non-decoupled model with ``async def execute``: the stub waits for the coroutine.

MODE "add": OUT = N + 1 after awaiting. "gather": N coroutines summed. "raise": an exception
from the coroutine.
"""
import asyncio

import numpy as np

import triton_python_backend_utils as pb_utils


def response(value, note=""):
    return pb_utils.InferenceResponse([
        pb_utils.Tensor("OUT", np.array([value], dtype=np.int32)),
        pb_utils.Tensor("NOTE", np.array([note.encode()], dtype=object)),
    ])


async def double(i):
    await asyncio.sleep(0.001 * i)
    return 2 * i


class TritonPythonModel:
    async def execute(self, requests):
        responses = []
        for request in requests:
            mode = pb_utils.get_input_tensor_by_name(request, "MODE").as_numpy()[0].decode()
            n = int(pb_utils.get_input_tensor_by_name(request, "N").as_numpy()[0])
            if mode == "add":
                await asyncio.sleep(0.01)
                responses.append(response(n + 1))
            elif mode == "gather":
                values = await asyncio.gather(*(double(i) for i in range(n)))
                responses.append(response(sum(values), note=type(asyncio.get_running_loop()).__name__))
            elif mode == "raise":
                await asyncio.sleep(0)
                raise RuntimeError("async execute failed")
        return responses
