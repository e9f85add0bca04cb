"""Logs at every level from initialize and execute; every message carries the instance name so a
test can tell the two stubs' lines apart in the one server log."""
import sys

import numpy as np

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.tag = f"DIFFLOG[{args['model_instance_name']}]"
        logger = pb_utils.Logger
        logger.log_info(f"{self.tag} initialize info")
        logger.log_warn(f"{self.tag} initialize warn")
        logger.log_error(f"{self.tag} initialize error")
        logger.log_verbose(f"{self.tag} initialize verbose")

    def execute(self, requests):
        logger = pb_utils.Logger
        responses = []
        for request in requests:
            text = request.inputs()[0].as_numpy()[0].decode()
            if text == "print_unicode":
                try:
                    print(f"{self.tag} ünïcödé ✓", flush=True)
                    result = b"printed"
                except Exception as exc:
                    result = f"{type(exc).__name__}: {exc}".encode()
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([result], dtype=object))]))
                continue
            if text == "print_unflushed":
                print(f"{self.tag} unflushed print")
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([b"printed"], dtype=object))]))
                continue
            if text == "print":
                # Separate from the Logger calls: both end up in the server's stdout, and a print
                # can land in the middle of a log line the server is writing.
                print(f"{self.tag} print to stdout", flush=True)
                print(f"{self.tag} print to stderr", file=sys.stderr, flush=True)
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([b"printed"], dtype=object))]))
                continue
            logger.log_info(f"{self.tag} execute info {text}")
            logger.log_warn(f"{self.tag} execute warn {text}")
            logger.log_error(f"{self.tag} execute error {text}")
            logger.log_verbose(f"{self.tag} execute verbose {text}")
            logger.log(f"{self.tag} log() default level")
            logger.log(f"{self.tag} log() level ERROR", logger.ERROR)
            logger.log(f"{self.tag} log() level WARNING", pb_utils.Logger.WARNING)
            logger.log(f"{self.tag} log() level VERBOSE", logger.VERBOSE)
            logger.log_info(f"{self.tag} quotes \" and 'single', backslash \\, tab\t, newline\nsecond line, ünïcödé ✓")
            logger.log_info(f"{self.tag}")
            levels = {name: int(getattr(logger, name)) for name in ("INFO", "WARNING", "ERROR", "VERBOSE")}
            payload = f"{text} {sorted(levels.items())}".encode()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([payload], dtype=object))]))
        return responses
