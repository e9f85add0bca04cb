"""The model API under the oldest eras: what a python_backend release lacks is refused with a
text naming the release that has it (the C++ stub of that release has no such API at all), and
what it has works. No server: a runtime that speaks one era's features.
"""
from __future__ import annotations

import numpy as np
import pytest

from tritonstub.protocol import eras
from tritonstub.stub import c_python_backend_utils as pb
from tritonstub.stub.runtime import NoRuntime, set_runtime


class EraRuntime(NoRuntime):
    def __init__(self, era: str) -> None:
        super().__init__("m_0_0")
        self.features = eras.features(era)
        self.initialized = True


@pytest.fixture
def era_runtime():
    previous = []

    def use(era: str) -> EraRuntime:
        rt = EraRuntime(era)
        previous.append(set_runtime(rt))
        return rt
    yield use
    for rt in reversed(previous):
        set_runtime(rt)


def _request(**kwargs):
    return pb.InferenceRequest(model_name="peer", requested_output_names=["OUT"],
                               inputs=[pb.Tensor("IN", np.zeros(2, np.float32))], **kwargs)


def test_the_features_of_each_old_era():
    assert eras.features("r23.07") == frozenset()
    assert eras.features("r23.08") == {"request_trace"}
    assert eras.features("r23.10") == {"request_trace", "error_codes", "request_cancellation"}
    assert {"request_rescheduling", "bls_parameters"} <= eras.features("r23.12")
    assert eras.needs("set_release_flags()", "request_rescheduling") == (
        "set_release_flags() needs python_backend r23.11 or later (Triton 2.40+): this Triton's "
        "python backend speaks an older protocol")


def test_r23_10_refuses_rescheduling_and_bls_parameters(era_runtime):
    era_runtime("r23.10")
    request = _request()
    with pytest.raises(AttributeError, match=r"'set_release_flags' \(set_release_flags\(\) needs "
                                             r"python_backend r23\.11 or later \(Triton 2\.40\+\)"):
        request.set_release_flags(2)                   # TRITONSERVER_REQUEST_RELEASE_RESCHEDULE
    with pytest.raises(TypeError, match=r"InferenceRequest\(parameters=\.\.\.\) needs python_backend "
                                        r"r23\.11 or later"):
        _request(parameters={"k": 1})
    # what r23.10 has: cancellation (a request of the model's own answers locally), codes, trace
    assert request.is_cancelled() is False
    assert pb.TritonError("x", pb.TritonError.NOT_FOUND).code() == pb.TritonError.NOT_FOUND
    assert request.trace() is not None


def test_r23_07_refuses_cancellation_error_codes_and_trace(era_runtime):
    era_runtime("r23.07")
    request = _request()
    with pytest.raises(AttributeError, match=r"'is_cancelled' \(is_cancelled\(\) needs "
                                             r"python_backend r23\.10 or later \(Triton 2\.39\+\)"):
        request.is_cancelled()
    with pytest.raises(AttributeError, match="r23.10 or later"):
        request.get_response_sender().is_cancelled()
    with pytest.raises(TypeError, match=r"TritonError\(message, code\) needs python_backend r23\.09 "
                                        r"or later \(Triton 2\.38\+\).*carry only a message"):
        pb.TritonError("x", pb.TritonError.NOT_FOUND)
    with pytest.raises(TypeError, match="r23.09 or later"):
        pb.TritonError("x", code=pb.TritonError.INTERNAL)
    with pytest.raises(AttributeError, match=r"'trace' \(InferenceRequest\.trace\(\) needs "
                                             r"python_backend r23\.08 or later"):
        request.trace()
    with pytest.raises(TypeError, match=r"InferenceRequest\(trace=\.\.\.\) needs python_backend "
                                        r"r23\.08"):
        _request(trace=pb.InferenceTrace._create(5, ""))   # a trace a received request had
    # what every era has
    error = pb.TritonError("plain")
    assert (error.message(), error.code()) == ("plain", pb.TritonError.INTERNAL)
    assert pb.InferenceResponse(error=error).has_error()


def test_argv9_before_r23_10_is_the_platform(tmp_path, capfd):
    from tritonstub.stub.stub import StubArgs, runtime_modeldir
    lib = tmp_path / "python"
    handler = lib / "platform_handlers" / "tensorflow_savedmodel"
    handler.mkdir(parents=True)
    (handler / "model.py").write_text("")
    argv = ["stub", "/m/1/model.py", "prefix1", "1048576", "1048576", "1", str(lib), "336", "m_0_0"]
    # r23.07-r23.09: the config's platform, NONE for none; r23.10+: DEFAULT or a directory
    assert StubArgs.parse(argv + ["NONE"]).runtime_modeldir == "DEFAULT"
    assert StubArgs.parse(argv + ["DEFAULT"]).runtime_modeldir == "DEFAULT"
    assert StubArgs.parse(argv + ["/opt/backends/mine"]).runtime_modeldir == "/opt/backends/mine"
    assert runtime_modeldir("tensorflow_savedmodel", str(lib)) == str(handler)
    # a platform without a handler: the model file, with the C++ stub's warning
    assert runtime_modeldir("onnxruntime_onnx", str(lib)) == "DEFAULT"
    assert "Unable to find model(handler) '%s/platform_handlers/onnxruntime_onnx/model.py' for " \
           "platform field 'onnxruntime_onnx'" % lib in capfd.readouterr().err
