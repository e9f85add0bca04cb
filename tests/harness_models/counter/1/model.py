import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.family = pb_utils.MetricFamily(name="harness_requests_total",
                                            description="requests seen by counter",
                                            kind=pb_utils.MetricFamily.COUNTER)
        self.metric = self.family.Metric(labels={"model": "counter"})

    def execute(self, requests):
        out = []
        for request in requests:
            self.metric.increment(1)
            log = pb_utils.Logger
            log.log_info("counter info \"quoted\"")
            log.log_warn("counter warn")
            log.log_error("counter error")
            log.log_verbose("counter verbose")
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", x * self.metric.value())]))
        return out
