"""initialize raises two frames down: the instance (and so the model) fails to load."""


def check_args(args):
    raise RuntimeError(f"init failed on purpose for {args['model_name']}")


class TritonPythonModel:
    def initialize(self, args):
        check_args(args)

    def execute(self, requests):
        return []
