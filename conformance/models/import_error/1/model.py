"""Imports a module that does not exist: the model cannot load."""
import json

import tritonstub_difftest_no_such_module  # noqa: F401


class TritonPythonModel:
    def execute(self, requests):
        return json.loads("[]")
