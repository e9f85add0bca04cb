"""finalize logs and then raises; the stub reports the exception and still shuts down."""
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.tag = f"DIFFLOG[{args['model_instance_name']}]"

    def execute(self, requests):
        values = pb_utils.get_input_tensor_by_name(requests[0], "IN").as_numpy()
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", values)]) for _ in requests]

    def finalize(self):
        pb_utils.Logger.log_info(f"{self.tag} finalize called")
        raise RuntimeError(f"{self.tag} finalize failed on purpose")
