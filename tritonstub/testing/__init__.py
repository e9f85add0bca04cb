"""Test support: the reference Triton (nvidia-pytriton), a real-tritonserver fixture, the demo.

- :mod:`tritonstub.testing.reference` finds and provisions the reference Triton 2.51.0.
- :mod:`tritonstub.testing.tritonserver` runs a real ``tritonserver`` as a bounded child process.
- :mod:`tritonstub.testing.pytest_plugin` turns both into pytest fixtures.
- :mod:`tritonstub.testing.demo` serves the bundled example through a chosen stub.
"""
