class TritonPythonModel:
    def initialize(self, args):
        raise RuntimeError("badinit refuses to start")

    def execute(self, requests):
        return []
