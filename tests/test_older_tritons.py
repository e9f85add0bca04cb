"""Older Tritons, live: every pip-shipped Triton from 2.36 to 2.49 serves a python model through its
own C++ stub, and our stub, which does not speak those protocol eras yet, refuses with its clear
error instead of answering in the wrong layout; the server stays up and exits cleanly.

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
    def execute(self, requests):
        out = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
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


@pytest.mark.parametrize("older_triton", list(older.RELEASES), indirect=True)
def test_older_triton_serves_cpp_and_refuses_ours_cleanly(older_triton, triton_server, tmp_path):
    import tritonclient.http as httpclient
    ref = older_triton
    repo = make_model_repository(tmp_path / "repo", {
        "cpp": ModelSpec(MODEL, config=CONFIG.format(name="cpp"), stub="cpp"),
        "ours": ModelSpec(MODEL, config=CONFIG.format(name="ours"), stub="ours"),
    }, reference=ref)
    server = triton_server(repo, reference=ref, wait_for="live", extra_args=["--exit-on-error=false"])
    assert server.metadata()["version"] == ref.site_packages.name
    index = settle(server, ["cpp", "ours"])

    assert index["cpp"]["state"] == "READY", index["cpp"]
    t = httpclient.InferInput("IN", [3], "FP32")
    t.set_data_from_numpy(np.array([1.0, -2.0, 0.5], dtype=np.float32))
    out = server.http_client().infer("cpp", [t]).as_numpy("OUT")
    np.testing.assert_array_equal(out, [2.0, -4.0, 1.0])

    era = eras.era_of_release(eras.release_of_triton(ref.site_packages.name))
    assert index["ours"]["state"] == "UNAVAILABLE"
    reason = index["ours"]["reason"]
    assert (f"the parent speaks the protocol of {era.describe()}, which this tritonstub does not "
            f"speak (decided from the fingerprint of {ref.libtriton_python}: ") in reason, reason
    assert "TRITONSTUB_PROTOCOL" in reason

    assert server.http("GET", "/v2/health/live")[0] == 200
    assert server.stop(timeout=30) == 0
    assert not server.killed
