"""auto_complete_config raises: the model cannot load."""


class TritonPythonModel:
    @staticmethod
    def auto_complete_config(auto_complete_model_config):
        raise ValueError("auto_complete_config raised on purpose")

    def execute(self, requests):
        return []
