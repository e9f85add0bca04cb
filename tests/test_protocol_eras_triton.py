"""Protocol eras under the real Triton 2.51: the stub refuses an era it does not speak before
answering anything in the wrong layout, and the server stays up; the override works.

Every era newer than r24.10 is now spoken, and a parent can only be made to look newer (bytes
appended to a copy of the real r24.10 library: the dynamic loader ignores them, the fingerprint
sees a r25.02 library), so the refusal is driven here by the override naming an era we do not
speak. Every older Triton with a pip build is spoken too (test_older_tritons.py); the eras the
fingerprint refuses (r23.08, r23.09, r23.11: Triton 2.37, 2.38, 2.40, no pip build) are checked
on libraries made of their markers (test_protocol_eras.py).
The library that looks like r25.02 shows the override winning over the fingerprint: forced to
r24.10, our stub serves the real r24.10 parent. The C++ stub, which never looks, serves the same
model from the same backend.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tritonstub.testing.tritonserver import ModelSpec

MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", (x + 1).astype(np.float32))]))
        return out
"""

CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "IN" data_type: TYPE_FP32 dims: [ 2 ] }} ]
output [ {{ name: "OUT" data_type: TYPE_FP32 dims: [ 2 ] }} ]
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
{parameters}
"""

NEWER = "python_backend r25.02-r25.03 (Triton 2.55-2.56)"
OURS = "python_backend r24.10-r25.01 (Triton 2.51-2.54)"
#: An era this tritonstub does not speak (the refusal answers the auto-complete of this r24.10
#: parent with the number its first command had, whatever era the override claims).
UNSPOKEN = "r23.09"
UNSPOKEN_TEXT = "python_backend r23.09 (Triton 2.38)"


def spec(name: str, stub: str, **parameters: str) -> ModelSpec:
    params = "\n".join(f'parameters: {{ key: "{k}" value: {{ string_value: "{v}" }} }}'
                       for k, v in parameters.items())
    return ModelSpec(MODEL, config=CONFIG.format(name=name, parameters=params), stub=stub)


@pytest.fixture
def newer_backends(tmp_path, triton_reference) -> Path:
    target = tmp_path / "backends"
    shutil.copytree(triton_reference.backends_dir, target, ignore=shutil.ignore_patterns("__pycache__"))
    with open(target / "python" / "libtriton_python.so", "ab") as f:
        f.write(b"\0TRITONBACKEND_ResponseSetStringParameter\0")
    return target


def settle(server, names, timeout: float = 60.0) -> dict:
    return server.wait_models_settled(names, timeout)


def infer(server, name: str) -> np.ndarray:
    import tritonclient.http as httpclient
    t = httpclient.InferInput("IN", [2], "FP32")
    t.set_data_from_numpy(np.array([1.0, 2.0], dtype=np.float32))
    return server.http_client().infer(name, [t]).as_numpy("OUT")


def loader_lines(server, model: str) -> list:
    return [line for line in server.log_text().splitlines()
            if "tritonstub.loader:0]" in line and f"model '{model}'" in line]


@pytest.mark.parametrize("first", ["auto_complete", "initialize"])
def test_an_era_we_do_not_speak_is_refused_and_the_server_stays_up(first, triton_server):
    from tritonstub.protocol import eras
    assert UNSPOKEN not in eras.SUPPORTED
    repo = triton_server.repository({
        "refused": spec("refused", "ours", TRITONSTUB_PROTOCOL=UNSPOKEN),
        "served": spec("served", "cpp")})
    extra = ["--exit-on-error=false"]
    if first == "initialize":
        extra.append("--disable-auto-complete-config")   # InitializeRequest comes first
    server = triton_server(repo, wait_for="live", extra_args=extra)
    index = settle(server, ["refused", "served"])
    assert index["refused"]["state"] == "UNAVAILABLE"
    reason = index["refused"]["reason"]
    assert (f"the parent speaks the protocol of {UNSPOKEN_TEXT}, which this tritonstub does not "
            f"speak (decided from TRITONSTUB_PROTOCOL={UNSPOKEN} (config.pbtxt parameter)") \
        in reason
    assert "says r24.10" in reason and "the override wins" in reason
    assert f"tritonstub speaks {eras.supported_text()}." in reason
    site = ("Failed to initialize Python stub for auto-complete: " if first == "auto_complete"
            else "Failed to initialize Python stub: ")
    assert site + "the parent speaks the protocol of " + UNSPOKEN_TEXT in server.log_text()
    # Nothing was answered in the wrong layout: the server is up and serves the other model.
    assert index["served"]["state"] == "READY"
    np.testing.assert_array_equal(infer(server, "served"), [2.0, 3.0])
    assert server.http("GET", "/v2/health/live")[0] == 200


def test_the_override_parameter_serves_the_model(triton_server, newer_backends):
    repo = triton_server.repository({"forced": spec("forced", "ours", TRITONSTUB_PROTOCOL="r24.10")})
    server = triton_server(repo, backend_directory=newer_backends, models=["forced"])
    np.testing.assert_array_equal(infer(server, "forced"), [2.0, 3.0])
    lines = loader_lines(server, "forced_0_0")
    assert any(line.startswith("I") and f"protocol {OURS}, from TRITONSTUB_PROTOCOL=r24.10 "
               "(config.pbtxt parameter): the fingerprint of" in line for line in lines), lines
    assert any(line.startswith("W") and f"says {NEWER}" in line and "the override wins" in line
               for line in lines), lines


def test_the_environment_override_refuses_an_era_we_do_not_speak(triton_server):
    repo = triton_server.repository({"m": spec("m", "ours")})
    server = triton_server(repo, wait_for="live", extra_args=["--exit-on-error=false"],
                           env={"TRITONSTUB_PROTOCOL": UNSPOKEN})
    reason = settle(server, ["m"])["m"]["reason"]
    assert (f"the parent speaks the protocol of {UNSPOKEN_TEXT}, which this tritonstub does not "
            f"speak (decided from TRITONSTUB_PROTOCOL={UNSPOKEN} (environment)") in reason
    assert "says r24.10" in reason and "the override wins" in reason


def test_the_reference_parent_is_recognised_and_logged(triton_server, triton_reference):
    repo = triton_server.repository({"m": spec("m", "ours")})
    server = triton_server(repo, models=["m"], env={"TRITON_SERVER_VERSION": "2.51.0"})
    np.testing.assert_array_equal(infer(server, "m"), [2.0, 3.0])
    lib = triton_reference.python_backend_dir / "libtriton_python.so"
    lines = loader_lines(server, "m_0_0")
    assert any(line.startswith("I") and f"protocol {OURS}, from the fingerprint of {lib}: has "
               "TRITONSERVER_MetricObserve (since r24.08), lacks TRITONBACKEND_ResponseSetStringParameter" in line
               and "TRITON_SERVER_VERSION=2.51.0 agrees" in line for line in lines), lines
