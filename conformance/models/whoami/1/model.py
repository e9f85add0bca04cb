"""WHO = JSON of this process's executable, command line and Python version."""
import json
import os
import sys

import numpy as np

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        with open("/proc/self/cmdline", "rb") as f:
            cmdline = [arg.decode(errors="replace") for arg in f.read().split(b"\0") if arg]
        who = {"exe": os.readlink("/proc/self/exe"), "cmdline": cmdline, "version": sys.version,
               "pid": os.getpid(), "ppid": os.getppid()}
        payload = np.array([json.dumps(who).encode()], dtype=object)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("WHO", payload)]) for _ in requests]
