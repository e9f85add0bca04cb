"""Protocol of python_backend r26.03 (Triton 2.67; wire-identical up to r26.07 and main).

The r25.04 tables plus the user model's readiness function (pb_utils.h, python_be.cc
``RunUserModelReadinessCheck``, pb_stub.cc ``ProcessUserModelReadinessRequest``):

- ``IPCControlShm.stub_has_user_model_readiness_fn`` @4, a byte that was padding before. The
  parent zeroes it; the stub sets it after ``initialize`` when the model has ``is_ready``.
- command ``UserModelReadinessRequest`` (32, appended), pushed by the parent on
  **parent_to_stub_mq** (only when the flag is set and the core asks for the instance's
  readiness) with an inline response mutex/condition and a ``UserModelReadinessMessage``
  {SendMessageBase; bool is_ready@89, function_exists@90, has_error@91, is_error_set@92;
  handle_t error@96} (104 bytes). The stub fills it, sets ``waiting_on_stub``, notifies on the
  inline condition and waits up to 5 s for the parent to clear the flag.
"""
from __future__ import annotations

import enum

from .layout import StructLayout
from .r25_04 import *  # noqa: F401,F403 - every table of r25.04 not redefined below
from .r25_04 import ALL_STRUCTS as _PREVIOUS, PYTHONSTUB_CommandType as _PREVIOUS_COMMANDS
from .r24_10 import _SEND_MESSAGE_BASE, IPCControlShm as _PREVIOUS_CONTROL

VERSION = "r26.03"

PYTHONSTUB_CommandType = enum.IntEnum(
    "PYTHONSTUB_CommandType",
    [(c.name, c.value) for c in _PREVIOUS_COMMANDS] + [("UserModelReadinessRequest", 32)])

IPCControlShm = StructLayout("IPCControlShm", _PREVIOUS_CONTROL.size, [
    (f.name, f.type, f.offset) for f in _PREVIOUS_CONTROL.fields.values()
] + [("stub_has_user_model_readiness_fn", "bool", 4)])

UserModelReadinessMessage = StructLayout("UserModelReadinessMessage", 104, _SEND_MESSAGE_BASE + [
    ("is_ready", "bool", 89),
    ("function_exists", "bool", 90),
    ("has_error", "bool", 91),
    ("is_error_set", "bool", 92),
    ("error", "handle", 96),
])
#: pb_utils.h kUserModelReadinessTimeoutMs: how long each side waits for the other.
USER_MODEL_READINESS_TIMEOUT_S = 5.0

ALL_STRUCTS = dict(_PREVIOUS, IPCControlShm=IPCControlShm,
                   UserModelReadinessMessage=UserModelReadinessMessage)
