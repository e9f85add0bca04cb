"""Not valid Python: the model cannot load."""


class TritonPythonModel:
    def execute(self, requests)
        return []
