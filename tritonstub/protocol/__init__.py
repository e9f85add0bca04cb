"""The python backend's stub <-> parent protocol, sans I/O.

``eras``: which python_backend releases speak which wire ("eras"), how a parent's era is told
from its ``libtriton_python.so``, and which eras tritonstub speaks.
"""
