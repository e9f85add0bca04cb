"""Protocol of python_backend r24.04 (Triton 2.45; wire-identical for r24.04 .. r24.05).

The r24.06 tables (command enum without MetricRequestObserve, MetricShm without buckets) with
the execute path r24.06 replaced ("era A", pb_stub.cc ``Stub::ProcessRequests`` /
``ProcessRequestsDecoupled``):

- a non-decoupled model's responses travel in the ExecuteResponse: an IPCMessageShm whose
  ``args`` is a block of its own, a ResponseBatch followed by one response handle per request;
  there is no response sender in default mode, so every request not rescheduled needs an
  InferenceResponse (None is an error);
- a decoupled model answers through its response sender; its ExecuteResponse is a ResponseBatch
  block of its own carrying only the error;
- a failed batch's ResponseBatch error is the bare error text (the "Failed to process the
  request(s) for model ..." line is only logged, for decoupled models);
- ResponseSend and BLS requests go on parent_message_queue, as in r24.06 - r24.09, and the stub
  sends the response factory cleanup.
"""
from __future__ import annotations

from .r24_06 import *  # noqa: F401,F403 - every table of r24.06 not redefined below

VERSION = "r24.04"

RESPONSES_THROUGH_SENDER = False
#: The ExecuteResponse's ResponseBatch (and response handles) is a block of its own.
EXECUTE_RESPONSE_SEPARATE = True
#: A non-decoupled execute may return None for a request (and answer through its sender).
NONE_RESPONSES_ALLOWED = False
#: The failed batch's error carries the "Failed to process the request(s) ..." prefix.
EXECUTE_ERROR_PREFIXED = False
