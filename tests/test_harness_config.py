"""tritonstub.harness.config: config.pbtxt -> the model-config JSON Triton 2.51 gives the stub.

The real-Triton test writes a repository of differently configured python models, lets each model
record the ``model_config`` text it receives in ``initialize``, and requires the harness to
produce the very same text from the same config.pbtxt.
"""
from __future__ import annotations

import json
import os

import pytest

from tritonstub.errors import ConfigError
from tritonstub.harness import config
from tritonstub.testing.tritonserver import ModelSpec

RECORDER = """
import json
import os
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        with open(os.path.join(os.environ["CONFIG_RECORD_DIR"], args["model_name"]), "w") as f:
            f.write(args["model_config"])
        self.outputs = [o["name"] for o in json.loads(args["model_config"])["output"]]

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(name, np.zeros(1, np.float32))
                                            for name in self.outputs]) for _ in requests]
"""

IO = ('input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
      'output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] } ]\n')

CONFIGS = {
    "no_config": None,
    "bare": 'backend: "python"\n',
    "batched": 'backend: "python"\nmax_batch_size: 8\ninput [ { name: "A" data_type: TYPE_INT8 dims: [ 2, 3 ] '
               'reshape: { shape: [ 6 ] } optional: true }, { name: "B" data_type: TYPE_STRING '
               'dims: [ 1, 2, 3 ] format: FORMAT_NHWC } ]\noutput [ { name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] '
               'label_filename: "labels.txt" } ]\n',
    "groups": 'backend: "python"\ninstance_group [ { count: 2 kind: KIND_CPU }, { name: "named" }, '
              '{ kind: KIND_AUTO count: 0 } ]\n' + IO,
    "dynamic": 'backend: "python"\nmax_batch_size: 4\ndynamic_batching { max_queue_delay_microseconds: 250 '
               'priority_levels: 2 default_priority_level: 1 default_queue_policy { timeout_action: DELAY '
               'default_timeout_microseconds: 1000 } priority_queue_policy { key: 1 value: { '
               'max_queue_size: 3 default_timeout_microseconds: 2000 } } }\n' + IO,
    "dynamic_default": 'backend: "python"\nmax_batch_size: 16\ndynamic_batching { }\n' + IO,
    "sequence": 'backend: "python"\nmax_batch_size: 2\nsequence_batching { oldest { max_candidate_sequences: 4 '
                'max_queue_delay_microseconds: 10 } control_input [ { name: "START" control [ { kind: '
                'CONTROL_SEQUENCE_START fp32_false_true: [ 0, 1.5 ] } ] } ] }\n' + IO,
    "decoupled": 'name: "decoupled"\nbackend: "python"\nmodel_transaction_policy { decoupled: true }\n'
                 'parameters: { key: "K" value: { string_value: "v\\u00e9" } }\nversion_policy: { '
                 'specific { versions: [ 1 ] } }\n' + IO,
    "warmup": 'backend: "python"\nmodel_warmup [ { name: "w" batch_size: 1 inputs { key: "IN" value: { '
              'data_type: TYPE_FP32 dims: [ 1 ] zero_data: true } } } ]\noptimization { priority: PRIORITY_MAX '
              'input_pinned_memory { enable: false } }\nresponse_cache { enable: true }\n' + IO,
}


def test_triton_gives_the_stub_what_the_harness_builds(triton_server, tmp_path):
    record = tmp_path / "record"
    record.mkdir()
    specs = {}
    for name, text in CONFIGS.items():
        spec = ModelSpec(RECORDER, config=text, stub="ours", files={"labels.txt": "zero\n"})
        specs[name] = spec
    repo = triton_server.repository(specs)
    (repo / "no_config" / "config.pbtxt").unlink()
    server = triton_server(repo, models=list(CONFIGS), env={"CONFIG_RECORD_DIR": str(record)})
    assert sorted(os.listdir(record)) == sorted(CONFIGS)
    for name in CONFIGS:
        real = (record / name).read_text()
        assert config.model_config_json(repo / name) == real, name
    assert server.running


def test_a_malformed_config_names_file_line_and_column(tmp_path):
    path = tmp_path / "config.pbtxt"
    path.write_text('backend: "python"\nmax_batch_size: 4\ninput [ { name: "IN" data_typ: TYPE_FP32 } ]\n')
    with pytest.raises(ConfigError) as e:
        config.load(tmp_path)
    assert str(e.value).startswith(f"{path}:3:")
    assert "data_typ" in str(e.value)


def test_completion_defaults(tmp_path):
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "1" / "model.py").write_text("")
    value = json.loads(config.model_config_json(tmp_path / "m"))
    assert value["name"] == "m" and value["backend"] == "python"
    assert value["default_model_filename"] == "model.py"
    assert value["version_policy"] == {"latest": {"num_versions": 1}}
    assert value["instance_group"] == [{"name": "m", "kind": "KIND_CPU", "count": 1, "gpus": [],
                                        "secondary_devices": [], "profile": [], "passive": False,
                                        "host_policy": ""}]
    assert "dynamic_batching" not in value and "model_transaction_policy" not in value


def test_only_the_fields_triton_fixes_become_numbers():
    dyn = config.to_dict(config.parse('dynamic_batching { max_queue_delay_microseconds: 7 }'))
    assert dyn["dynamic_batching"]["max_queue_delay_microseconds"] == 7
    cfg = config.parse('backend: "python"\nmax_batch_size: 2\n'
                       'input [ { name: "IN" data_type: TYPE_FP32 dims: [ 3 ] } ]\n'
                       'sequence_batching { state [ { input_name: "a" output_name: "b" data_type: TYPE_FP32 '
                       'dims: [ 2 ] initial_state [ { data_type: TYPE_FP32 dims: [ 2 ] zero_data: true '
                       'name: "s" } ] } ] }\n')
    value = config.to_dict(cfg)
    assert value["input"][0]["dims"] == [3]
    assert value["sequence_batching"]["state"][0]["dims"] == [2]
    # Triton looks for initial_state in the wrong object, so its dims stay protobuf strings.
    assert value["sequence_batching"]["state"][0]["initial_state"][0]["dims"] == ["2"]
