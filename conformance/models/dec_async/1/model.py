"""A decoupled model with ``async def execute``: the stub runs it in the background.

MODE "sleep_send": await, then N responses and FINAL from the coroutine. "gather": N coroutines
that each send one response, gathered, then FINAL. "raise": one response, then an exception
(the C++ stub only logs it; FINAL never comes). "report": the notes.
"""
import asyncio
import json
import threading

import numpy as np

import triton_python_backend_utils as pb_utils

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


def response(index, note=""):
    return pb_utils.InferenceResponse([
        pb_utils.Tensor("OUT", np.array([index], dtype=np.int32)),
        pb_utils.Tensor("NOTE", np.array([note.encode()], dtype=object)),
    ])


class TritonPythonModel:
    def initialize(self, args):
        self.notes = []

    async def execute(self, requests):
        for request in requests:
            mode = pb_utils.get_input_tensor_by_name(request, "MODE").as_numpy()[0].decode()
            n = int(pb_utils.get_input_tensor_by_name(request, "N").as_numpy()[0])
            sender = request.get_response_sender()
            if mode == "sleep_send":
                await asyncio.sleep(0.05)
                loop_thread = threading.current_thread() is not threading.main_thread()
                for i in range(n):
                    sender.send(response(i, note="off the main thread: %s" % loop_thread))
                sender.send(flags=FINAL)
            elif mode == "gather":
                async def one(i):
                    await asyncio.sleep(0.01 * (n - i))
                    sender.send(response(i))
                await asyncio.gather(*(one(i) for i in range(n)))
                sender.send(flags=FINAL)
            elif mode == "raise":
                sender.send(response(0))
                raise ValueError("async decoupled failure")
            elif mode == "report":
                notes, self.notes = self.notes, []
                sender.send(response(0, note=json.dumps(notes)), flags=FINAL)
        return None
