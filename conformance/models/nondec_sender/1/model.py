"""A non-decoupled model that answers through the response sender (r24.06+ semantics).

MODE picks the pattern; N is echoed in OUT. Errors raised by guarded sends are kept as notes
("report" returns them as NOTE and clears them).
"""
import json

import numpy as np

import triton_python_backend_utils as pb_utils

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


def response(value, note=""):
    return pb_utils.InferenceResponse([
        pb_utils.Tensor("OUT", np.array([value], dtype=np.int32)),
        pb_utils.Tensor("NOTE", np.array([note.encode()], dtype=object)),
    ])


class TritonPythonModel:
    def initialize(self, args):
        self.notes = []

    def guarded(self, label, call):
        try:
            result = call()
            self.notes.append([label, "returned " + repr(result)])
        except Exception as exc:  # noqa: BLE001
            self.notes.append([label, type(exc).__name__ + ": " + str(exc)])

    def execute(self, requests):
        returned = []
        for request in requests:
            mode = pb_utils.get_input_tensor_by_name(request, "MODE").as_numpy()[0].decode()
            n = int(pb_utils.get_input_tensor_by_name(request, "N").as_numpy()[0])
            sender = request.get_response_sender()
            if mode == "send_final":
                sender.send(response(n), flags=FINAL)
                returned.append(None)
            elif mode == "send_then_final":
                sender.send(response(n))
                sender.send(flags=FINAL)
                returned.append(None)
            elif mode == "final_first":
                self.guarded("FINAL before a response", lambda: sender.send(flags=FINAL))
                sender.send(response(n), flags=FINAL)
                returned.append(None)
            elif mode == "send_twice":
                sender.send(response(n))
                self.guarded("second response", lambda: sender.send(response(n + 1)))
                sender.send(flags=FINAL)
                returned.append(None)
            elif mode == "send_and_return":
                sender.send(response(n), flags=FINAL)
                returned.append(response(n + 1))
            elif mode == "send_final_then_raise":
                sender.send(response(n), flags=FINAL)
                raise ValueError("raised after the response was sent")
            elif mode == "return":
                returned.append(response(n))
            elif mode == "report":
                notes, self.notes = self.notes, []
                returned.append(response(0, note=json.dumps(notes)))
        if all(r is None for r in returned):
            return None
        return returned
