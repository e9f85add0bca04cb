"""Older Tritons, live: every pip-shipped Triton from 2.36 to 2.49 serves a python model through its
own C++ stub; our stub serves it too where it speaks that protocol era (r24.08 = Triton 2.49:
plain responses, responses sent from execute, an error, BLS, each with the C++ stub's answer),
and elsewhere refuses with its clear error instead of answering in the wrong layout; the server
stays up and exits cleanly. One server per Triton, for both stubs.

The servers come from tritonstub.testing.older (one nvidia-pytriton wheel each, unpacked by the
set-up). Before the eras were detected, our stub crashed these servers (2.36, 2.45, 2.49 tried).
"""
from __future__ import annotations


import numpy as np
import pytest

from tritonstub.protocol import eras
from tritonstub.testing import older
from tritonstub.testing.pytest_plugin import reference_required
from tritonstub.testing.reference import ReferenceUnavailable
from tritonstub.testing.tritonserver import ModelSpec, make_model_repository

MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.name = args["model_name"]

    def execute(self, requests):
        out = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            if x[0] < 0:                     # an error response
                out.append(pb_utils.InferenceResponse(error=pb_utils.TritonError("negative")))
            elif x[0] > 100:                 # sent from execute, None returned
                request.get_response_sender().send(
                    pb_utils.InferenceResponse([pb_utils.Tensor("OUT", (x * 3).astype(np.float32))]),
                    flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                out.append(None)
            elif x[0] == 7 and not self.name.endswith("_peer"):   # BLS to this stub's peer
                other = "cpp_peer" if self.name.startswith("cpp") else "ours_peer"
                r = pb_utils.InferenceRequest(
                    model_name=other, requested_output_names=["OUT"],
                    inputs=[pb_utils.Tensor("IN", x)]).exec()
                if r.has_error():
                    out.append(pb_utils.InferenceResponse(error=r.error()))
                else:
                    y = pb_utils.get_output_tensor_by_name(r, "OUT").as_numpy()
                    out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", y + 1)]))
            else:
                out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", (x * 2).astype(np.float32))]))
        return out
"""

CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "IN" data_type: TYPE_FP32 dims: [ 3 ] }} ]
output [ {{ name: "OUT" data_type: TYPE_FP32 dims: [ 3 ] }} ]
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
"""


@pytest.fixture
def older_triton(request, triton_reference):
    version = request.param
    try:
        return older.require(version)
    except ReferenceUnavailable as exc:
        if reference_required():
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))


def settle(server, names, timeout: float = 60.0) -> dict:
    return server.wait_models_settled(names, timeout)


def _infer(server, name: str, values):
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException
    t = httpclient.InferInput("IN", [3], "FP32")
    t.set_data_from_numpy(np.array(values, dtype=np.float32))
    try:
        return server.http_client().infer(name, [t]).as_numpy("OUT").tolist()
    except InferenceServerException as e:
        return f"error: {e.message()}"


CASES = {"plain": [1.0, -2.0, 0.5], "error": [-1.0, 0.0, 0.0], "sent": [101.0, 0.0, 1.0],
         "bls": [7.0, 1.0, 2.0]}


@pytest.mark.parametrize("older_triton", list(older.RELEASES), indirect=True)
def test_older_triton_serves_cpp_and_ours_or_refuses_ours_cleanly(older_triton, triton_server,
                                                                  tmp_path):
    ref = older_triton
    era = eras.era_of_release(eras.release_of_triton(ref.site_packages.name))
    spoken = eras.supported(era)
    models = {f"{stub}{suffix}": ModelSpec(MODEL, config=CONFIG.format(name=f"{stub}{suffix}"),
                                           stub=stub)
              for stub in ("cpp", "ours") for suffix in ("", "_peer")}
    repo = make_model_repository(tmp_path / "repo", models, reference=ref)
    server = triton_server(repo, reference=ref, wait_for="live", extra_args=["--exit-on-error=false"])
    assert server.metadata()["version"] == ref.site_packages.name
    index = settle(server, list(models))

    assert index["cpp"]["state"] == "READY", index["cpp"]
    # a non-decoupled model may answer through its response sender from r24.06 on
    cases = {k: v for k, v in CASES.items() if k != "sent" or era.name >= "r24.06"}
    cpp = {case: _infer(server, "cpp", values) for case, values in cases.items()}
    assert cpp["plain"] == [2.0, -4.0, 1.0]
    assert cpp.get("sent", [303.0, 0.0, 3.0]) == [303.0, 0.0, 3.0]
    assert cpp["bls"] == [15.0, 3.0, 5.0]
    assert cpp["error"].startswith("error: ") and "negative" in cpp["error"]

    if spoken:
        assert index["ours"]["state"] == "READY", index["ours"]
        ours = {case: _infer(server, "ours", values) for case, values in cases.items()}
        assert ours == cpp
    else:
        assert index["ours"]["state"] == "UNAVAILABLE"
        reason = index["ours"]["reason"]
        assert (f"the parent speaks the protocol of {era.describe()}, which this tritonstub does "
                f"not speak (decided from the fingerprint of {ref.libtriton_python}: ") in reason, \
            reason
        assert "TRITONSTUB_PROTOCOL" in reason

    assert server.http("GET", "/v2/health/live")[0] == 200
    assert server.stop(timeout=30) == 0
    assert not server.killed
