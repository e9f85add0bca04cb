"""auto_complete_config returns something that is not a ModelConfig."""


class TritonPythonModel:
    @staticmethod
    def auto_complete_config(auto_complete_model_config):
        return {"max_batch_size": 4}

    def execute(self, requests):
        return []
