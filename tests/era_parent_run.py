"""Play a parent of one protocol era with the harness engine, run the core cases, print JSON.

``python era_parent_run.py <era> <repository>``. Run in a process of its own because the era is
chosen the way the stub chooses it: ``protocol.select(era)`` before anything imports the
module-level codecs (the harness's, here), after which this process speaks only that era. The
engine launches our stub, which is told the era through ``TRITONSTUB_PROTOCOL`` (the harness maps
no libtriton_python.so to fingerprint). Used by tests/test_newer_eras.py.
"""
from __future__ import annotations

import json
import sys
import time


def main(era: str, repository: str) -> dict:
    from tritonstub import protocol
    protocol.select(era)
    import numpy as np
    from tritonstub.harness import Engine, InferRequest

    out: dict = {"era": protocol.selected()}

    def one(model, inputs, **params):
        [resp] = engine.infer(InferRequest.make(model, inputs, parameters=params), timeout_s=60)
        if resp.error is not None:
            return {"error": [resp.error.code, resp.error.message]}
        return {"outputs": {t.name: np.asarray(t.array).tolist() for t in resp.outputs},
                "parameters": resp.parameters}

    t0 = time.monotonic()
    with Engine(repository, stub="ours", log_stream=None, log_verbose=1) as engine:
        out["load_s"] = round(time.monotonic() - t0, 2)
        x = np.array([1.0, 2.5, -3.0, 41.0], np.float32)
        out["plain"] = one("params", {"IN": x})
        out["good"] = one("params", {"IN": x}, params="good")
        out["bad"] = one("params", {"IN": x}, params="bad")
        out["stream_all"] = one("caller", {"IN": np.array([3], np.int32)})
        out["stream_cancel"] = one("caller", {"IN": np.array([40], np.int32)}, cancel=True)
        stub = engine.model("ready").instances[0]
        readiness = {}
        engine_ready = {}
        for mode in (1, 0, -1, -2, 2):
            one("ready", {"IN": np.array([mode], np.int32)})
            readiness[str(mode)] = list(stub.user_model_readiness())
            engine_ready[str(mode)] = engine.is_ready("ready")
        out["readiness"] = readiness
        out["engine_ready"] = engine_ready
        out["not_ready_lines"] = [line for line in engine.log_lines() if "is not ready" in line]
        out["log_errors"] = [line for line in engine.log_lines() if line.startswith("E")]
    return out


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(sys.argv[1], sys.argv[2])))
