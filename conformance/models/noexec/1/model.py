"""A model that loads (initialize is fine) but has no execute method."""


class TritonPythonModel:
    def initialize(self, args):
        self.name = args["model_name"]
