"""Protocol of python_backend r25.04 (Triton 2.57; wire-identical for r25.04 .. r26.02).

The r25.02 tables plus BLS request cancellation (pb_bls_cancel.{h,cc}, pb_utils.h): command
``CancelBLSInferRequest`` (31, appended to the enum) carries a ``CancelBLSRequestMessage``
{SendMessageBase; void* infer_payload_id; bool is_cancelled} on stub_to_parent_mq, a
SendMessageBase handshake like IsRequestCancelled. Also: ``ResponseShm.id`` is now written for
error responses too (a byte-level difference only: readers ignored it before).

r25.07 (parent-side bounds checks on the queue head and on tensor data) and r25.08 (the launch:
execv, no no-argument probe, a 10 s limit on the first message) change no table.
"""
from __future__ import annotations

import enum

from .layout import StructLayout
from .r25_02 import *  # noqa: F401,F403 - every table of r25.02 not redefined below
from .r25_02 import ALL_STRUCTS as _PREVIOUS, PYTHONSTUB_CommandType as _PREVIOUS_COMMANDS
from .r24_10 import _SEND_MESSAGE_BASE

VERSION = "r25.04"

PYTHONSTUB_CommandType = enum.IntEnum(
    "PYTHONSTUB_CommandType",
    [(c.name, c.value) for c in _PREVIOUS_COMMANDS] + [("CancelBLSInferRequest", 31)])

CancelBLSRequestMessage = StructLayout("CancelBLSRequestMessage", 112, _SEND_MESSAGE_BASE + [
    ("infer_payload_id", "intptr", 96),
    ("is_cancelled", "bool", 104),
])

ALL_STRUCTS = dict(_PREVIOUS, CancelBLSRequestMessage=CancelBLSRequestMessage)
