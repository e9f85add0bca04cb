"""A non-decoupled model whose execute returns None instead of a list of responses."""


class TritonPythonModel:
    def execute(self, requests):
        return None
