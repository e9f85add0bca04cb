"""Protocol of python_backend r25.02 (Triton 2.55; wire-identical for r25.02 .. r25.03).

The r24.10 tables plus one change (infer_response.h): ``ResponseShm`` gains ``handle_t
parameters`` right after ``outputs_size``, which moves every later field by 8. A response
without an error always carries a PbString there (the JSON object of its parameters, "{}" when
there are none): the parent loads it unconditionally (``InferResponse::LoadFromSharedMemory``)
and ``InferResponse::Send`` turns its members into response parameters. The parent's BLS
responses carry one too. Error responses leave it unset and it is not read.
"""
from __future__ import annotations

from .layout import StructLayout
from .r24_10 import *  # noqa: F401,F403 - every table of r24.10 not redefined below
from .r24_10 import ALL_STRUCTS as _PREVIOUS

VERSION = "r25.02"

ResponseShm = StructLayout("ResponseShm", 48, [
    ("outputs_size", "u32", 0),
    ("parameters", "handle", 8),     # new in r25.02: PbString (JSON), non-error responses only
    ("error", "handle", 16),
    ("has_error", "bool", 24),
    ("is_error_set", "bool", 25),
    ("id", "intptr", 32),
    ("is_last_response", "bool", 40),
])

ALL_STRUCTS = dict(_PREVIOUS, ResponseShm=ResponseShm)
