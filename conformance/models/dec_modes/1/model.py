"""A decoupled model whose MODE input picks how it uses the request's response sender.

Inputs MODE (BYTES [1]) and N (INT32 [1]). Every response carries OUT (INT32 [1]: the index of
the response) and NOTE (BYTES [1]). What a guarded call raises is kept as a note; mode "report"
answers with the notes (JSON) and clears them, so that errors raised after FINAL, when nothing
can reach the client any more, are compared too.
"""
import json
import threading
import time

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
        self.name = args["model_name"]
        self.notes = []

    def guarded(self, label, call):
        try:
            result = call()
            self.notes.append([label, "returned " + repr(result)])
        except Exception as exc:  # noqa: BLE001 - the text is what we compare
            self.notes.append([label, type(exc).__name__ + ": " + str(exc)])

    def execute(self, requests):
        returned = None
        for request in requests:
            mode = pb_utils.get_input_tensor_by_name(request, "MODE").as_numpy()[0].decode()
            n = int(pb_utils.get_input_tensor_by_name(request, "N").as_numpy()[0])
            result = getattr(self, "mode_" + mode)(request, request.get_response_sender(), n)
            if result is not None:
                returned = result
        return returned

    # ---- normal use ---------------------------------------------------------------------------

    def mode_repeat(self, request, sender, n):
        for i in range(n):
            sender.send(response(i))
        sender.send(flags=FINAL)

    def mode_final_with_last(self, request, sender, n):
        for i in range(n):
            sender.send(response(i), flags=FINAL if i == n - 1 else 0)

    def mode_final_only(self, request, sender, n):
        sender.send(flags=FINAL)

    def mode_same_sender(self, request, sender, n):
        same = request.get_response_sender() is sender
        sender.send(response(0, note="same sender object: %s" % same), flags=FINAL)

    def mode_thread(self, request, sender, n):
        """Responses from another thread, all after execute returned."""
        def later():
            time.sleep(0.2)
            for i in range(n):
                sender.send(response(i, note=threading.current_thread().name))
            sender.send(flags=FINAL)
        threading.Thread(target=later, name="sender-thread", daemon=True).start()

    def mode_is_cancelled(self, request, sender, n):
        note = "sender %s, request %s" % (sender.is_cancelled(), request.is_cancelled())
        sender.send(response(0, note=note), flags=FINAL)

    # ---- errors -------------------------------------------------------------------------------

    def mode_error_final(self, request, sender, n):
        for i in range(n):
            sender.send(response(i))
        error = pb_utils.TritonError("decoupled failure", pb_utils.TritonError.INVALID_ARG)
        sender.send(pb_utils.InferenceResponse(error=error), flags=FINAL)

    def mode_error_then_more(self, request, sender, n):
        sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError("not final yet")))
        sender.send(response(1))
        sender.send(flags=FINAL)

    def mode_after_final(self, request, sender, n):
        sender.send(response(0), flags=FINAL)
        self.guarded("response after FINAL", lambda: sender.send(response(1)))
        self.guarded("FINAL after FINAL", lambda: sender.send(flags=FINAL))

    def mode_is_cancelled_after_final(self, request, sender, n):
        """The C++ stub asks the parent about a response factory it already deleted."""
        sender.send(response(0), flags=FINAL)
        self.guarded("sender.is_cancelled() after FINAL", sender.is_cancelled)
        self.guarded("request.is_cancelled() after FINAL", request.is_cancelled)

    def mode_bad_sends(self, request, sender, n):
        self.guarded("flags=2", lambda: sender.send(response(0), flags=2))
        self.guarded("no response, flags 0", lambda: sender.send())
        self.guarded("not a response", lambda: sender.send("text"))
        self.guarded("negative flags", lambda: sender.send(response(0), flags=-1))
        sender.send(response(0), flags=FINAL)

    def mode_raise_after_final(self, request, sender, n):
        sender.send(response(0), flags=FINAL)
        sender.send(response(1))  # raises: the sender is closed

    def mode_raise_after_sends(self, request, sender, n):
        for i in range(n):
            sender.send(response(i))
        raise ValueError("failed after %d sends" % n)

    def mode_return_list(self, request, sender, n):
        return [response(0)]

    # ---- cancellation ------------------------------------------------------------------------

    def mode_cancel_poll(self, request, sender, n):
        """Send a response every 10 ms until the client cancels (at most n responses)."""
        for i in range(n):
            if sender.is_cancelled():
                self.notes.append(["cancelled", "sender %s, request %s" % (sender.is_cancelled(),
                                                                           request.is_cancelled())])
                self.guarded("response after cancel", lambda: sender.send(response(-1)))
                self.guarded("FINAL after cancel", lambda: sender.send(flags=FINAL))
                return
            sender.send(response(i))
            time.sleep(0.01)
        self.notes.append(["never cancelled", n])
        sender.send(flags=FINAL)

    # ---- notes -------------------------------------------------------------------------------

    def mode_report(self, request, sender, n):
        notes, self.notes = self.notes, []
        sender.send(response(0, note=json.dumps(notes)), flags=FINAL)
