"""tritonstub: a pure-Python drop-in for Triton's triton_python_backend_stub.

Subpackages: ``ipc`` (the shared-memory protocol), ``stub`` (the executable), ``loader``
(model.py resolution), ``harness`` (the server's side, to run a model.py without Triton),
``testing`` (the reference Triton and fixtures).
"""
__version__ = "0.1.0"
