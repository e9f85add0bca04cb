"""Protocol of python_backend r24.08 (Triton 2.49; wire-identical for r24.08 .. r24.09).

The r24.10 tables minus what r24.10 added, plus the execute path r24.10 replaced ("era B",
pb_stub.cc ``Stub::ProcessRequests``, response_sender.cc, python_be.cc
``MessageQueueMonitor``):

- every response, even of a non-decoupled model, goes through the response sender
  (ResponseSend), and the ExecuteResponse carries no response handles: an IPCMessageShm whose
  ``args`` is a ResponseBatch block of its own, read only for its error;
- ResponseSend and the BLS requests (InferExecRequest, InferStreamExecRequest) go on
  **parent_message_queue**, where the parent's queue monitor also takes the ExecuteResponse
  (r24.10: stub_to_parent_mq);
- after a FINAL the stub itself asks the parent to delete the response factory
  (DecoupledResponseFactoryCleanup); r24.10's server deletes it on FINAL;
- ``ResponseBatch`` has no ``is_response_factory_deleted`` (r24.10 appended it @112).

The command enum (31 commands, MetricRequestObserve included) and MetricShm (with buckets) are
r24.10's.
"""
from __future__ import annotations

from .layout import StructLayout
from .r24_10 import *  # noqa: F401,F403 - every table of r24.10 not redefined below
from .r24_10 import ALL_STRUCTS as _PREVIOUS, IPCMessageShm as _IPC

VERSION = "r24.08"

ResponseBatch = StructLayout("ResponseBatch", 112, [
    ("mu", "mutex", 0),
    ("cv", "cond", 40),
    ("waiting_on_stub", "bool", 88),
    ("batch_size", "u32", 92),
    ("error", "handle", 96),
    ("has_error", "bool", 104),
    ("cleanup", "bool", 105),
    ("is_error_set", "bool", 106),
    ("response_size", "u32", 108),
])
EXECUTE_RESPONSE_BATCH_OFFSET = _IPC.size
EXECUTE_RESPONSE_HANDLES_OFFSET = _IPC.size + ResponseBatch.size

#: Era B: responses returned from execute are sent through the response sender, and the
#: ExecuteResponse's ResponseBatch is a block of its own.
RESPONSES_THROUGH_SENDER = True
#: ResponseSend and BLS requests go on parent_message_queue.
SENDS_ON_PARENT_MQ = True
#: After a FINAL the stub sends DecoupledResponseFactoryCleanup itself.
STUB_DELETES_FACTORY_ON_FINAL = True

ALL_STRUCTS = dict(_PREVIOUS, ResponseBatch=ResponseBatch)
