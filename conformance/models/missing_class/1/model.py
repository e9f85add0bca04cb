"""No TritonPythonModel class: the model cannot load."""


class SomeOtherName:
    def execute(self, requests):
        return []
