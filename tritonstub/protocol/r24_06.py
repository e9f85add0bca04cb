"""Protocol of python_backend r24.06 (Triton 2.47; wire-identical for r24.06 .. r24.07).

The r24.08 tables (era B execute path) without the histogram metrics r24.08 added
(metric.h, ipc_message.h):

- the command enum has no ``MetricRequestObserve``: LoadModelRequest 26, UnloadModelRequest
  27, ModelReadinessRequest 28, IsRequestCancelled 29 (r24.08+: 27/28/29/30);
- ``MetricShm`` has no ``buckets_shm_handle`` (labels@0 operation_value@8 metric@16 family@24,
  32 bytes; r24.08+ 40);
- the model API has no ``MetricFamily.HISTOGRAM``, ``Metric.observe`` or ``buckets=``.

The response factory cleanup differs in timing only: the r24.07 stub sends it when the sender
is destroyed, r24.08 right after a FINAL; either way once per factory (tritonstub: after FINAL).
"""
from __future__ import annotations

import enum

from .layout import StructLayout
from .r24_08 import *  # noqa: F401,F403 - every table of r24.08 not redefined below
from .r24_08 import ALL_STRUCTS as _PREVIOUS, PYTHONSTUB_CommandType as _LATER_COMMANDS

VERSION = "r24.06"

PYTHONSTUB_CommandType = enum.IntEnum(
    "PYTHONSTUB_CommandType",
    [(c.name, c.value if c.value < _LATER_COMMANDS.MetricRequestObserve else c.value - 1)
     for c in _LATER_COMMANDS if c.name != "MetricRequestObserve"])

MetricShm = StructLayout("MetricShm", 32, [
    ("labels_shm_handle", "handle", 0),
    ("operation_value", "f64", 8),
    ("metric_address", "intptr", 16),
    ("metric_family_address", "intptr", 24),
])


class MetricKind(enum.IntEnum):
    COUNTER = 0
    GAUGE = 1


ALL_STRUCTS = dict(_PREVIOUS, MetricShm=MetricShm)
