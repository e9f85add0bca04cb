"""Polls request.is_cancelled() while the client waits (non-decoupled).

MODE "poll": logs "<model> polling" (so that a client can wait for the request to be running
before it cancels), then every 10 ms, up to N polls; when the request is cancelled it answers with a
CANCELLED error response (nobody receives it) and keeps a note. "report": the notes (JSON).
"""
import json
import time

import numpy as np

import triton_python_backend_utils as pb_utils


def response(value, note=""):
    return pb_utils.InferenceResponse([
        pb_utils.Tensor("OUT", np.array([value], dtype=np.int32)),
        pb_utils.Tensor("NOTE", np.array([note.encode()], dtype=object)),
    ])


class TritonPythonModel:
    def initialize(self, args):
        self.name = args["model_name"]
        self.notes = []

    def execute(self, requests):
        responses = []
        for request in requests:
            mode = pb_utils.get_input_tensor_by_name(request, "MODE").as_numpy()[0].decode()
            n = int(pb_utils.get_input_tensor_by_name(request, "N").as_numpy()[0])
            if mode == "poll":
                pb_utils.Logger.log_info("%s polling" % self.name)
                for _ in range(n):
                    if request.is_cancelled():
                        self.notes.append(["cancelled", request.is_cancelled(),
                                           request.get_response_sender().is_cancelled()])
                        error = pb_utils.TritonError("request is cancelled", pb_utils.TritonError.CANCELLED)
                        responses.append(pb_utils.InferenceResponse(error=error))
                        break
                    time.sleep(0.01)
                else:
                    self.notes.append(["not cancelled", request.is_cancelled()])
                    responses.append(response(n))
            elif mode == "report":
                notes, self.notes = self.notes, []
                responses.append(response(0, json.dumps(notes)))
        return responses
