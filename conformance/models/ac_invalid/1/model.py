"""auto_complete_config adds an input without a data type; ModelConfig.add_input refuses it."""


class TritonPythonModel:
    @staticmethod
    def auto_complete_config(auto_complete_model_config):
        auto_complete_model_config.add_input({"name": "NO_TYPE", "dims": [1]})
        return auto_complete_model_config

    def execute(self, requests):
        return []
