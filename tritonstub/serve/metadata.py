"""What `tritonstub serve` says about itself (ServerMetadata, ``GET /v2``).

The name and version are Triton's (clients and tools branch on them); the extensions are those
of Triton 2.51's list (core ``server.cc``) that this server implements: no classification, no
system/CUDA shared memory, no trace or logging settings.
"""
SERVER_NAME = "triton"
SERVER_VERSION = "2.51.0"
SERVER_EXTENSIONS = [
    "sequence", "model_repository", "model_repository(unload_dependents)", "schedule_policy",
    "model_configuration", "binary_tensor_data", "parameters", "statistics",
]
