"""Protocol of python_backend r23.12 (Triton 2.41; wire-identical for r23.12 .. r24.02).

The r24.03 tables with the request's trace as r24.03 replaced it (infer_request.h): not a
handle to an InferenceTraceShm {context, pointer} but the server's ``TRITONSERVER_InferenceTrace*``
itself, in the same place (@80); there is no trace context (``InferenceTrace.get_context()``
came with r24.03).
"""
from __future__ import annotations

from .layout import StructLayout
from .r24_03 import *  # noqa: F401,F403 - every table of r24.03 not redefined below
from .r24_03 import ALL_STRUCTS as _PREVIOUS, InferRequestShm as _LATER

VERSION = "r23.12"

InferRequestShm = StructLayout("InferRequestShm", _LATER.size, [
    (f.name, f.type, f.offset) if f.name != "trace_shm_handle" else ("trace", "intptr", f.offset)
    for f in _LATER.fields.values()])
#: The trace travels as the server's raw pointer, without a context.
TRACE_IS_POINTER = True

ALL_STRUCTS = dict(_PREVIOUS, InferRequestShm=InferRequestShm)
