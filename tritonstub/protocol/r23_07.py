"""Protocol of python_backend r23.07 (Triton 2.36).

The r23.10 tables with what r23.08, r23.09 and r23.10 added taken back (infer_request.h,
pb_error.h, ipc_message.h, pb_stub.cc ``main``):

- argv[9] is the model's ``platform`` (``NONE`` when the config names none), not the runtime
  model directory (r23.10's ``DEFAULT`` or a path); the loader reads ``NONE`` as ``DEFAULT``;
- ``InferRequestShm`` has no ``trace`` (r23.08 appended it @72): 72 bytes;
- an error is a bare PbString: ``ResponseShm.error`` names a StringShm, not a PbErrorShm
  {code, message} (r23.09), and the parent answers every error as INTERNAL;
- the command enum has no ``IsRequestCancelled`` (r23.10 appended it as 26): there is no
  request cancellation;
- the model API has no ``InferenceRequest.trace()`` / ``trace=`` (r23.08), no
  ``TritonError(message, code)`` (r23.09) and no ``is_cancelled()`` (r23.10).
"""
from __future__ import annotations

import enum

from .layout import StructLayout
from .r23_10 import *  # noqa: F401,F403 - every table of r23.10 not redefined below
from .r23_10 import ALL_STRUCTS as _PREVIOUS, InferRequestShm as _LATER, \
    PYTHONSTUB_CommandType as _LATER_COMMANDS

VERSION = "r23.07"

PYTHONSTUB_CommandType = enum.IntEnum(
    "PYTHONSTUB_CommandType",
    [(c.name, c.value) for c in _LATER_COMMANDS if c.name != "IsRequestCancelled"]
    + [("BLSDecoupledInferPayloadCleanup", _LATER_COMMANDS.CleanupRequest.value)])

InferRequestShm = StructLayout("InferRequestShm", 72, [
    (f.name, f.type, f.offset) for f in _LATER.fields.values() if f.name != "trace"])
#: (no trace at all: the model's requests carry none, BLS requests spawn none)
HAS_TRACE = False

#: An error is a PbString; there is no error code on the wire.
ERRORS_CARRY_CODES = False

del PbErrorShm, IsCancelledMessage  # noqa: F821 - r23.09 and r23.10 added them
ALL_STRUCTS = {k: v for k, v in _PREVIOUS.items() if k not in ("PbErrorShm", "IsCancelledMessage")}
ALL_STRUCTS["InferRequestShm"] = InferRequestShm
