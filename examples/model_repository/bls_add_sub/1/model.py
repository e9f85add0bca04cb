"""tritonstub example: a BLS model. Each request is forwarded to add_sub; its outputs come back
as SUM and DIFF. An error from add_sub is returned as this request's error."""
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            inputs = [pb_utils.get_input_tensor_by_name(request, name) for name in ("INPUT0", "INPUT1")]
            reply = pb_utils.InferenceRequest(
                model_name="add_sub", inputs=inputs,
                requested_output_names=["OUTPUT0", "OUTPUT1"]).exec()
            if reply.has_error():
                responses.append(pb_utils.InferenceResponse(error=reply.error()))
                continue
            total = pb_utils.get_output_tensor_by_name(reply, "OUTPUT0").as_numpy()
            diff = pb_utils.get_output_tensor_by_name(reply, "OUTPUT1").as_numpy()
            responses.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("DIFF", diff), pb_utils.Tensor("SUM", total)]))
        return responses
