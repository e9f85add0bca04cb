"""Protocol of python_backend r23.10 (Triton 2.39).

The r23.12 tables (era A execute path, the request's trace as a raw pointer, the strings embedded
in the request's block) with what r23.11 and r23.12 changed taken back (ipc_message.h,
infer_request.h, pb_memory.h, python_be.cc):

- the command enum has no ``CUDAPoolInitializeRequest`` (r23.11 put it at 4) and no
  ``InferStreamExecResponse`` (11), and one ``CleanupRequest`` (15) where r23.12 has
  BLSDecoupledInferPayloadCleanup and a response factory cleanup: every value from 4 on
  differs, AutoCompleteRequest is 12;
- ``InferRequestShm`` has an ``int32_t timeout`` @52 and no ``request_release_flags`` (80
  bytes; r23.12: u64 @56, flags @88, 96 bytes). The parent passes 0 as the timeout of a
  model's request; only BLS requests set it. No release flags: no rescheduling;
- ``MemoryShm`` is the one before the CUDA memory pool: no ``use_cuda_shared_pool`` /
  ``cuda_pool_offset``, an ``is_cuda_handle_set`` flag after the byte size (48 bytes; r23.11+ 56);
- the parent deletes a decoupled request's response factory itself: on a FINAL
  (ResponseSendDecoupled) and, when execute fails, for every request not yet closed. The stub
  never sends a factory cleanup (its CleanupRequest names BLS payloads only; the parent would
  ``erase`` a factory address from its payload map and leak nothing, but C++ never sends one);
- the parent's messages on parent_to_stub_mq are all BLS stream responses: it sets no command
  on them (the C++ stub reads every one as a response; r23.11 added the command field's use);
- the model API has no BLS ``parameters=`` and no ``set_release_flags`` (both r23.11).
"""
from __future__ import annotations

import enum

from .layout import StructLayout
from .r23_12 import *  # noqa: F401,F403 - every table of r23.12 not redefined below
from .r23_12 import ALL_STRUCTS as _PREVIOUS

VERSION = "r23.10"


class PYTHONSTUB_CommandType(enum.IntEnum):
    ExecuteRequest = 0
    ExecuteResponse = 1
    InitializeRequest = 2
    InitializeResponse = 3
    FinalizeRequest = 4
    FinalizeResponse = 5
    LoadGPUBuffers = 6
    InferExecRequest = 7
    InferStreamExecRequest = 8
    InferExecResponse = 9
    ResponseSend = 10
    ResponseClose = 11
    AutoCompleteRequest = 12
    AutoCompleteResponse = 13
    LogRequest = 14
    CleanupRequest = 15
    # The one cleanup command, under the name the codecs use for a BLS payload's cleanup.
    BLSDecoupledInferPayloadCleanup = 15
    MetricFamilyRequestNew = 16
    MetricFamilyRequestDelete = 17
    MetricRequestNew = 18
    MetricRequestDelete = 19
    MetricRequestValue = 20
    MetricRequestIncrement = 21
    MetricRequestSet = 22
    LoadModelRequest = 23
    UnloadModelRequest = 24
    ModelReadinessRequest = 25
    IsRequestCancelled = 26


InferRequestShm = StructLayout("InferRequestShm", 80, [
    ("correlation_id", "u64", 0),
    ("input_count", "u32", 8),
    ("requested_output_count", "u32", 12),
    ("model_version", "i64", 16),
    ("flags", "u32", 24),
    ("address", "intptr", 32),
    ("response_factory_address", "intptr", 40),
    ("is_decoupled", "bool", 48),
    ("timeout", "i32", 52),
    ("preferred_memory_type", "enum", 56),
    ("preferred_memory_device_id", "i64", 64),
    ("trace", "intptr", 72),
])

MemoryShm = StructLayout("MemoryShm", 48, [
    ("gpu_pointer_offset", "u64", 0),
    ("memory_type", "enum", 8),
    ("memory_type_id", "i64", 16),
    ("byte_size", "u64", 24),
    ("is_cuda_handle_set", "bool", 32),
    ("memory_release_id", "u64", 40),
])

#: The parent deletes response factories (on FINAL, and after a failed decoupled execute).
STUB_DELETES_FACTORY_ON_FINAL = False
STUB_RELEASES_FACTORIES = False
#: Messages on parent_to_stub_mq carry no command: each is a BLS stream response.
PARENT_TO_STUB_COMMANDS = False

ALL_STRUCTS = dict(_PREVIOUS, InferRequestShm=InferRequestShm, MemoryShm=MemoryShm)
