"""Protocol of python_backend r24.03 (Triton 2.44).

The r24.04 tables (era A execute path) with the InferRequestShm r24.04 replaced
(infer_request.h/.cc): the correlation id is a ``uint64_t`` @0 (no string ids), and the model
name, request id and parameters are not handles but *embedded* strings (a StringShm followed by
its bytes) one after the other behind the requested-output-name and input handle arrays, all in
the request's own block:

    [InferRequestShm 96][handle x requested_output_count][handle x input_count]
    [StringShm + model_name][StringShm + request_id][StringShm + parameters]
"""
from __future__ import annotations

from .layout import StructLayout
from .r24_04 import *  # noqa: F401,F403 - every table of r24.04 not redefined below
from .r24_04 import ALL_STRUCTS as _PREVIOUS

VERSION = "r24.03"

InferRequestShm = StructLayout("InferRequestShm", 96, [
    ("correlation_id", "u64", 0),
    ("input_count", "u32", 8),
    ("requested_output_count", "u32", 12),
    ("model_version", "i64", 16),
    ("flags", "u32", 24),
    ("address", "intptr", 32),
    ("response_factory_address", "intptr", 40),
    ("is_decoupled", "bool", 48),
    ("timeout", "u64", 56),
    ("preferred_memory_type", "enum", 64),
    ("preferred_memory_device_id", "i64", 72),
    ("trace_shm_handle", "handle", 80),
    ("request_release_flags", "u32", 88),
])
#: model_name, request_id and parameters are embedded strings behind the handle arrays.
INLINE_REQUEST_STRINGS = True

ALL_STRUCTS = dict(_PREVIOUS, InferRequestShm=InferRequestShm)
