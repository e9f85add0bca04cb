"""execute raises BaseExceptions that end a normal Python program; the stub must survive them.
The parameter "mode" picks which."""
import json
import sys

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        mode = json.loads(requests[0].parameters()).get("mode", "ok")
        if mode == "system_exit":
            raise SystemExit(3)
        if mode == "sys_exit":
            sys.exit("exiting from execute")
        if mode == "keyboard_interrupt":
            raise KeyboardInterrupt
        values = pb_utils.get_input_tensor_by_name(requests[0], "IN").as_numpy()
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", values)]) for _ in requests]
