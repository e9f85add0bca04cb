"""Model control from model.py: pb_utils.load_model / unload_model / is_model_ready.

It controls the models of its own stub: mc_target_<stub> and the ensemble mc_ens_<stub> (both
in the repository, not loaded at start) and loader_<stub>_files (made from files it sends).
CASE (JSON) names a case; RESULT is JSON: a list of [step, outcome] pairs.
"""
import json
import time

import numpy as np

import triton_python_backend_utils as pb_utils

IO = {"input": [{"name": "IN", "data_type": "TYPE_FP32", "dims": [-1]}],
      "output": [{"name": "OUT", "data_type": "TYPE_FP32", "dims": [-1]}]}
FILE_MODEL = b'''import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy() + 1000)]) for r in requests]
'''


def text_of(call):
    try:
        return "returned " + repr(call())
    except Exception as exc:  # noqa: BLE001
        return type(exc).__name__ + ": " + str(exc)


class TritonPythonModel:
    def initialize(self, args):
        self.me = args["model_name"]
        suffix = self.me.rsplit("_", 1)[1]
        self.target = "mc_target_" + suffix
        self.ensemble = "mc_ens_" + suffix
        self.files_model = self.me + "_files"

    def execute(self, requests):
        responses = []
        for request in requests:
            case = json.loads(pb_utils.get_input_tensor_by_name(request, "CASE").as_numpy()[0])
            steps = []
            getattr(self, "case_" + case["case"])(steps.append)
            responses.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("RESULT", np.array([json.dumps(steps).encode()], dtype=object))]))
        return responses

    def wait_ready(self, name, want, version=""):
        """is_model_ready until it says ``want`` (unloading is asynchronous), at most 15 s."""
        deadline = time.monotonic() + 15
        while True:
            ready = pb_utils.is_model_ready(name, version)
            if ready == want or time.monotonic() > deadline:
                return ready
            time.sleep(0.05)

    # ---- cases -------------------------------------------------------------------------------

    def case_load_unload(self, step):
        step(["ready before", pb_utils.is_model_ready(self.target)])
        step(["load", text_of(lambda: pb_utils.load_model(self.target))])
        step(["ready", pb_utils.is_model_ready(model_name=self.target)])
        step(["version 1 ready", pb_utils.is_model_ready(self.target, "1")])
        step(["load again", text_of(lambda: pb_utils.load_model(model_name=self.target))])
        step(["unload", text_of(lambda: pb_utils.unload_model(self.target))])
        step(["ready after unload", self.wait_ready(self.target, False)])

    def case_load_with_config(self, step):
        config = dict(IO, backend="python", max_batch_size=0,
                      parameters={"loaded_by": {"string_value": self.me}})
        step(["load", text_of(lambda: pb_utils.load_model(self.target, config=json.dumps(config)))])
        step(["ready", pb_utils.is_model_ready(self.target)])

    def case_unload_target(self, step):
        step(["unload", text_of(lambda: pb_utils.unload_model(model_name=self.target))])
        step(["ready after unload", self.wait_ready(self.target, False)])

    def case_load_with_files(self, step):
        config = dict(IO, backend="python", max_batch_size=0)
        files = {"file:1/model.py": FILE_MODEL}
        step(["load", text_of(lambda: pb_utils.load_model(self.files_model, json.dumps(config), files))])
        step(["ready", pb_utils.is_model_ready(self.files_model, "1")])

    def case_unload_files_model(self, step):
        step(["unload", text_of(lambda: pb_utils.unload_model(self.files_model))])
        step(["ready after unload", self.wait_ready(self.files_model, False)])

    def ensemble_config(self):
        return json.dumps(dict(IO, platform="ensemble", max_batch_size=0, ensemble_scheduling={"step": [{
            "model_name": self.target, "model_version": -1,
            "input_map": {"IN": "IN"}, "output_map": {"OUT": "OUT"}}]}))

    def case_ensemble(self, step):
        step(["load ensemble", text_of(lambda: pb_utils.load_model(self.ensemble, config=self.ensemble_config()))])
        step(["ensemble ready", pb_utils.is_model_ready(self.ensemble)])
        step(["composing model ready", pb_utils.is_model_ready(self.target)])
        step(["unload ensemble only", text_of(lambda: pb_utils.unload_model(self.ensemble))])
        step(["ensemble ready after", self.wait_ready(self.ensemble, False)])
        step(["composing model ready after", pb_utils.is_model_ready(self.target)])
        step(["load ensemble again", text_of(lambda: pb_utils.load_model(self.ensemble,
                                                                         config=self.ensemble_config()))])
        step(["unload with dependents", text_of(lambda: pb_utils.unload_model(self.ensemble,
                                                                               unload_dependents=True))])
        step(["ensemble ready after", self.wait_ready(self.ensemble, False)])
        step(["composing model ready after", self.wait_ready(self.target, False)])

    def case_stub_side_errors(self, step):
        step(["files not a dict", text_of(lambda: pb_utils.load_model(self.files_model, "{}", ["x"]))])
        step(["file content not bytes", text_of(lambda: pb_utils.load_model(
            self.files_model, "{}", {"file:1/model.py": "text"}))])
        step(["name not a string", text_of(lambda: pb_utils.load_model(42))])
        step(["unload_dependents not a bool", text_of(lambda: pb_utils.unload_model(self.target, "yes"))])

    def case_parent_errors(self, step):
        step(["load a missing model", text_of(lambda: pb_utils.load_model("no_such_model"))])
        step(["load with an invalid config", text_of(lambda: pb_utils.load_model("no_such_model",
                                                                                 config="{not json"))])
        step(["files without a config", text_of(lambda: pb_utils.load_model(
            "no_such_model", "", {"file:1/model.py": FILE_MODEL}))])
        step(["readiness of an unknown model", text_of(lambda: pb_utils.is_model_ready("no_such_model"))])
        step(["unload an unknown model", text_of(lambda: pb_utils.unload_model("no_such_model"))])
        step(["then a valid call", text_of(lambda: pb_utils.is_model_ready(self.me))])
