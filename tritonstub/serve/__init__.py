"""`tritonstub serve`: Triton's KServe v2 gRPC and HTTP endpoints over the harness engine, so
unmodified ``tritonclient`` clients (and curl) talk to a model.py with no tritonserver.

- :mod:`.convert`: the wire formats (protobuf, JSON, tensor bytes) <-> the harness types;
- :mod:`.grpc_server`: ``inference.GRPCInferenceService`` (grpcio);
- :mod:`.http_server`: the REST routes (standard library ``http.server``);
- :mod:`.server`: both over one engine, and the CLI's run loop. docs/serve.md.
"""
from .server import Server, serve

__all__ = ["Server", "serve"]
