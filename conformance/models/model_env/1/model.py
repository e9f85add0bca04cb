"""ENV = JSON of everything model.py can observe about how the stub loaded and runs it."""
import json
import os
import signal
import sys
import threading

import numpy as np

import c_python_backend_utils
import helper_in_model_dir
import helper_in_version_dir
import triton_python_backend_utils as pb_utils

from .relative_helper import where

AT_IMPORT = {
    "__name__": __name__,
    "__file__": __file__,
    "__package__": __package__,
    "spec_name": __spec__.name,
    "spec_origin": __spec__.origin,
    "loader": type(__loader__).__name__,
    "sys.argv": list(sys.argv),
    "thread": threading.current_thread().name,
    "pb_utils_has_Tensor": hasattr(pb_utils, "Tensor"),
}


def importable(name):
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def public_names(module):
    return sorted(name for name in dir(module) if not name.startswith("_"))


def signal_name(handler):
    if handler is None or isinstance(handler, int):
        return repr(handler)
    return getattr(handler, "name", repr(handler))


class TritonPythonModel:
    def initialize(self, args):
        self.args = dict(args)
        self.at_initialize = {
            "thread": threading.current_thread().name,
            "arg_types": {key: type(value).__name__ for key, value in args.items()},
            "args_type": type(args).__name__,
        }

    def execute(self, requests):
        main = sys.modules["__main__"]
        env = {
            "at_import": AT_IMPORT,
            "at_initialize": self.at_initialize,
            "args": {key: value for key, value in self.args.items() if key != "model_config"},
            "model_config_raw": self.args["model_config"],
            "model_config": json.loads(self.args["model_config"]),
            "get_model_dir": pb_utils.get_model_dir(),
            "sys.argv": list(sys.argv),
            "sys.path[0]": sys.path[0],
            "sys.path[-3:]": sys.path[-3:],
            "cwd": os.getcwd(),
            "execute_thread": threading.current_thread().name,
            "threads": sorted(t.name for t in threading.enumerate()),
            "helpers": [helper_in_version_dir.WHERE, helper_in_model_dir.WHERE, where()],
            "helper_modules": [helper_in_version_dir.__name__, helper_in_model_dir.__name__],
            "pb_utils_file": pb_utils.__file__,
            "pb_utils_names": public_names(pb_utils),
            "c_python_backend_utils_names": public_names(c_python_backend_utils),
            "class_module": type(self).__module__,
            "package_in_sys_modules": __package__ in sys.modules,
            "signals": {name: signal_name(signal.getsignal(getattr(signal, name)))
                        for name in ("SIGINT", "SIGTERM", "SIGPIPE", "SIGCHLD")},
            "main_has_file": hasattr(main, "__file__"),
            "main_spec": repr(getattr(main, "__spec__", None)),
            "stdin_isatty": sys.stdin is not None and sys.stdin.isatty(),
            "numpy_input_dtype": str(requests[0].inputs()[0].as_numpy().dtype),
            "environ_keys": sorted(os.environ),
            "interpreter": {
                "stdout": [getattr(sys.stdout, "encoding", None), getattr(sys.stdout, "errors", None),
                           getattr(sys.stdout, "line_buffering", None)],
                "stderr": [getattr(sys.stderr, "encoding", None), getattr(sys.stderr, "errors", None),
                           getattr(sys.stderr, "line_buffering", None)],
                "stdin": repr(getattr(sys.stdin, "name", None)),
                "filesystem_encoding": sys.getfilesystemencoding(),
                "utf8_mode": sys.flags.utf8_mode,
                "dont_write_bytecode": sys.flags.dont_write_bytecode,
                "recursion_limit": sys.getrecursionlimit(),
                "switch_interval": sys.getswitchinterval(),
                "default_excepthook": sys.excepthook is sys.__excepthook__,
                "default_displayhook": sys.displayhook is sys.__displayhook__,
                "pythonpath_probe_importable": importable("difftest_pythonpath_probe"),
            },
        }
        payload = json.dumps(env, sort_keys=True).encode()
        return [pb_utils.InferenceResponse([pb_utils.Tensor("ENV", np.array([payload], dtype=object))])
                for _ in requests]
