"""Protocol of python_backend r24.10 (Triton 2.51.0; wire-identical for r24.10 .. r25.01).

Every struct that crosses the shared-memory boundary, named after its C++ declaration in
python_backend ``src/`` (ipc_message.h, message_queue.h, shm_manager.h, pb_tensor.h, pb_string.h,
pb_map.h, infer_request.h, infer_response.h, pb_error.h, pb_log.h, pb_metric_reporter.h,
metric*.h, model_loader.h, pb_utils.h). Offsets are payload offsets: a Construct'ed object's
handle points at its 16-byte AllocatedShmOwnership header and the payload starts at handle + 16
(``OWNERSHIP_HEADER``).

Layout rule to keep in mind: SendMessageBase ({mutex, cond, bool}) has dsize 89, and because its
members are not POD the Itanium ABI lets derived structs reuse its tail padding, so the first
derived field sits at 89 rounded up to that field's alignment (ResponseBatch.batch_size @92).
"""
from __future__ import annotations

import enum

from .layout import StructLayout

VERSION = "r24.10"

# shm_manager.h: struct alignas(16) AllocatedShmOwnership { uint32_t ref_count_; };
OWNERSHIP_HEADER = 16
AllocatedShmOwnership = StructLayout("AllocatedShmOwnership", 16, [
    ("ref_count", "u32", 0),
])

# Names of the two objects the parent constructs in the segment's named index.
SHM_MUTEX_NAME = "shm_mutex"
TOTAL_SIZE_NAME = "total size"

# Handles equal to 0 never name an object: the parent and the stub use 0 as the "dummy"
# message that releases the peer or stops a queue monitor.
DUMMY_MESSAGE = 0

# Heartbeat period of the stub's health thread (pb_stub.cc) and the parent's poll windows.
STUB_HEALTH_PERIOD_S = 0.3
QUEUE_POLL_S = 1.0


class PYTHONSTUB_CommandType(enum.IntEnum):
    ExecuteRequest = 0
    ExecuteResponse = 1
    InitializeRequest = 2
    InitializeResponse = 3
    CUDAPoolInitializeRequest = 4
    FinalizeRequest = 5
    FinalizeResponse = 6
    LoadGPUBuffers = 7
    InferExecRequest = 8
    InferStreamExecRequest = 9
    InferExecResponse = 10
    InferStreamExecResponse = 11
    ResponseSend = 12
    ResponseClose = 13
    AutoCompleteRequest = 14
    AutoCompleteResponse = 15
    LogRequest = 16
    BLSDecoupledInferPayloadCleanup = 17
    DecoupledResponseFactoryCleanup = 18
    MetricFamilyRequestNew = 19
    MetricFamilyRequestDelete = 20
    MetricRequestNew = 21
    MetricRequestDelete = 22
    MetricRequestValue = 23
    MetricRequestIncrement = 24
    MetricRequestSet = 25
    MetricRequestObserve = 26
    LoadModelRequest = 27
    UnloadModelRequest = 28
    ModelReadinessRequest = 29
    IsRequestCancelled = 30


class TRITONSERVER_DataType(enum.IntEnum):
    INVALID = 0
    BOOL = 1
    UINT8 = 2
    UINT16 = 3
    UINT32 = 4
    UINT64 = 5
    INT8 = 6
    INT16 = 7
    INT32 = 8
    INT64 = 9
    FP16 = 10
    FP32 = 11
    FP64 = 12
    BYTES = 13
    BF16 = 14


class TRITONSERVER_MemoryType(enum.IntEnum):
    CPU = 0
    CPU_PINNED = 1
    GPU = 2


class TRITONSERVER_Error_Code(enum.IntEnum):
    UNKNOWN = 0
    INTERNAL = 1
    NOT_FOUND = 2
    INVALID_ARG = 3
    UNAVAILABLE = 4
    UNSUPPORTED = 5
    ALREADY_EXISTS = 6
    CANCELLED = 7


class LogLevel(enum.IntEnum):
    INFO = 0
    WARNING = 1
    ERROR = 2
    VERBOSE = 3


class PreferredMemoryType(enum.IntEnum):   # PreferredMemory::MemoryType
    kGPU = 0
    kCPU = 1
    kDefault = 2


class CorrelationIdDataType(enum.IntEnum):
    UINT64 = 0
    STRING = 1


class MetricKind(enum.IntEnum):
    COUNTER = 0
    GAUGE = 1
    HISTOGRAM = 2


TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
TRITONSERVER_REQUEST_RELEASE_ALL = 1
TRITONSERVER_REQUEST_RELEASE_RESCHEDULE = 2
TRITONSERVER_REQUEST_FLAG_SEQUENCE_START = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_END = 2

# --------------------------------------------------------------------------------------------
# Control block and queues
# --------------------------------------------------------------------------------------------

IPCControlShm = StructLayout("IPCControlShm", 128, [
    ("stub_health", "bool", 0),
    ("parent_health", "bool", 1),          # never used by r24.10
    ("uses_env", "bool", 2),
    ("decoupled", "bool", 3),
    ("parent_health_mutex", "mutex", 8),   # never constructed by the parent (zero bytes)
    ("stub_health_mutex", "mutex", 48),
    ("stub_message_queue", "handle", 88),
    ("parent_message_queue", "handle", 96),
    ("stub_to_parent_mq", "handle", 104),
    ("parent_to_stub_mq", "handle", 112),
    ("memory_manager_message_queue", "handle", 120),
])

# The order in which the parent constructs the queues in Setup() (and so their handles).
QUEUE_FIELDS = ("stub_message_queue", "parent_message_queue", "stub_to_parent_mq",
                "parent_to_stub_mq", "memory_manager_message_queue")

MessageQueueShm = StructLayout("MessageQueueShm", 128, [
    ("sem_empty", "sem", 0),
    ("sem_full", "sem", 32),
    ("mutex", "mutex", 64),
    ("size", "u64", 104),
    ("buffer", "handle", 112),
    ("head", "i32", 120),
    ("tail", "i32", 124),
])
MESSAGE_QUEUE_ELEMENT = 8  # handle_t / uint64_t
DEFAULT_MESSAGE_QUEUE_SIZE = 1000

IPCMessageShm = StructLayout("IPCMessageShm", 48, [
    ("command", "enum", 0),
    ("args", "handle", 8),
    ("inline_response", "bool", 16),
    ("response_handle", "handle", 24),
    ("response_mutex", "handle", 32),
    ("response_cond", "handle", 40),
])

# --------------------------------------------------------------------------------------------
# Strings, maps, errors
# --------------------------------------------------------------------------------------------

StringShm = StructLayout("StringShm", 16, [
    ("data", "handle", 0),      # standalone form only; garbage in the embedded form
    ("length", "u64", 8),
])

DictShm = StructLayout("DictShm", 16, [
    ("length", "u32", 0),
    ("values", "handle", 8),     # -> Construct<PairShm>(length)
])

PairShm = StructLayout("PairShm", 16, [
    ("key", "handle", 0),
    ("value", "handle", 8),
])

#: (r23.07-r23.08: an error is a bare PbString, without a code)
ERRORS_CARRY_CODES = True
PbErrorShm = StructLayout("PbErrorShm", 16, [
    ("error_code", "enum", 0),
    ("message_shm_handle", "handle", 8),
])

# --------------------------------------------------------------------------------------------
# Tensors
# --------------------------------------------------------------------------------------------

MemoryShm = StructLayout("MemoryShm", 56, [
    ("gpu_pointer_offset", "u64", 0),
    ("use_cuda_shared_pool", "bool", 8),
    ("cuda_pool_offset", "u64", 16),
    ("memory_type", "enum", 24),
    ("memory_type_id", "i64", 32),
    ("byte_size", "u64", 40),
    ("memory_release_id", "u64", 48),
])

TensorShm = StructLayout("TensorShm", 24, [
    ("memory", "handle", 0),     # 0: MemoryShm embedded after the name
    ("dtype", "enum", 8),
    ("dims_count", "u64", 16),
])
# Then i64 dims[dims_count], StringShm + name bytes, and (memory == 0) MemoryShm + data.
TENSOR_DIM = 8

# --------------------------------------------------------------------------------------------
# Requests and responses
# --------------------------------------------------------------------------------------------

RequestBatch = StructLayout("RequestBatch", 16, [
    ("batch_size", "u32", 0),
    ("gpu_buffers_handle", "handle", 8),
])
# Then handle[batch_size] of InferRequestShm.

#: (r24.03 embedded model_name/request_id/parameters in the request's block instead)
INLINE_REQUEST_STRINGS = False
#: (before r24.03 the trace was the server's raw pointer, without a context)
TRACE_IS_POINTER = False
#: (r23.07 has no trace in the request at all)
HAS_TRACE = True

InferRequestShm = StructLayout("InferRequestShm", 120, [
    ("input_count", "u32", 0),
    ("requested_output_count", "u32", 4),
    ("model_version", "i64", 8),
    ("flags", "u32", 16),
    ("address", "intptr", 24),
    ("response_factory_address", "intptr", 32),
    ("is_decoupled", "bool", 40),
    ("timeout", "u64", 48),
    ("preferred_memory_type", "enum", 56),
    ("preferred_memory_device_id", "i64", 64),
    ("trace_shm_handle", "handle", 72),
    ("request_release_flags", "u32", 80),
    ("correlation_id_shm_handle", "handle", 88),
    ("model_name_shm_handle", "handle", 96),
    ("request_id_shm_handle", "handle", 104),
    ("parameters_shm_handle", "handle", 112),
])
# Then handle[requested_output_count] (StringShm names), handle[input_count] (TensorShm).

CorrelationIdShm = StructLayout("CorrelationIdShm", 24, [
    ("id_string_shm_handle", "handle", 0),
    ("id_uint", "u64", 8),
    ("id_type", "enum", 16),
])

InferenceTraceShm = StructLayout("InferenceTraceShm", 16, [
    ("trace_context_shm_handle", "handle", 0),
    ("triton_trace", "intptr", 8),
])

ResponseBatch = StructLayout("ResponseBatch", 120, [
    ("mu", "mutex", 0),
    ("cv", "cond", 40),
    ("waiting_on_stub", "bool", 88),
    ("batch_size", "u32", 92),
    ("error", "handle", 96),
    ("has_error", "bool", 104),
    ("cleanup", "bool", 105),
    ("is_error_set", "bool", 106),
    ("response_size", "u32", 108),
    ("is_response_factory_deleted", "bool", 112),
])
# Then handle[batch_size] of ResponseShm (0 = no response for that request).

# The execute path of this era ("era C"; r24.08's tables say what era B did instead): responses
# returned from execute travel in the ExecuteResponse block, ResponseSend and BLS requests go on
# stub_to_parent_mq, and the server deletes a response factory on FINAL.
RESPONSES_THROUGH_SENDER = False
SENDS_ON_PARENT_MQ = False
STUB_DELETES_FACTORY_ON_FINAL = False
#: (r23.10 and before: the parent deletes every response factory; the stub never sends a cleanup)
STUB_RELEASES_FACTORIES = True
#: (r23.10 and before: the parent's messages on parent_to_stub_mq carry no command)
PARENT_TO_STUB_COMMANDS = True
EXECUTE_RESPONSE_SEPARATE = False
NONE_RESPONSES_ALLOWED = True
EXECUTE_ERROR_PREFIXED = True
# The stub's ExecuteResponse block: [IPCMessageShm][ResponseBatch][handles].
EXECUTE_RESPONSE_BATCH_OFFSET = IPCMessageShm.size       # 48
EXECUTE_RESPONSE_HANDLES_OFFSET = IPCMessageShm.size + ResponseBatch.size   # 168

ResponseShm = StructLayout("ResponseShm", 40, [
    ("outputs_size", "u32", 0),
    ("error", "handle", 8),
    ("has_error", "bool", 16),
    ("is_error_set", "bool", 17),
    ("id", "intptr", 24),
    ("is_last_response", "bool", 32),
])
# Then handle[outputs_size] of TensorShm.

InitializeResponseShm = StructLayout("InitializeResponseShm", 16, [
    ("response_has_error", "bool", 0),
    ("response_is_error_set", "bool", 1),
    ("response_error", "handle", 8),
])

AutoCompleteResponseShm = StructLayout("AutoCompleteResponseShm", 32, [
    ("response_has_error", "bool", 0),
    ("response_is_error_set", "bool", 1),
    ("response_error", "handle", 8),
    ("response_has_model_config", "bool", 16),
    ("response_model_config", "handle", 24),
])

# --------------------------------------------------------------------------------------------
# SendMessageBase family (stub-initiated ping-pong, pattern B)
# --------------------------------------------------------------------------------------------

_SEND_MESSAGE_BASE = [("mu", "mutex", 0), ("cv", "cond", 40), ("waiting_on_stub", "bool", 88)]

SendMessageBase = StructLayout("SendMessageBase", 96, _SEND_MESSAGE_BASE)

LogSendMessage = StructLayout("LogSendMessage", 128, _SEND_MESSAGE_BASE + [
    ("filename", "handle", 96),
    ("line", "i32", 104),
    ("log_message", "handle", 112),
    ("level", "enum", 120),
])

CleanupMessage = StructLayout("CleanupMessage", 104, _SEND_MESSAGE_BASE + [
    ("id", "intptr", 96),
])
# pb_stub.cc Constructs sizeof(CleanupMessage) + 8 bytes for it; we allocate the same.
CLEANUP_MESSAGE_EXTRA = 8

IsCancelledMessage = StructLayout("IsCancelledMessage", 120, _SEND_MESSAGE_BASE + [
    ("response_factory_address", "intptr", 96),
    ("request_address", "intptr", 104),
    ("is_cancelled", "bool", 112),
])

CustomMetricsMessage = StructLayout("CustomMetricsMessage", 136, _SEND_MESSAGE_BASE + [
    ("message", "handle", 96),
    ("has_error", "bool", 104),
    ("is_error_set", "bool", 105),
    ("error", "handle", 112),
    ("value", "f64", 120),
    ("address", "intptr", 128),
])

ModelLoaderMessage = StructLayout("ModelLoaderMessage", 128, _SEND_MESSAGE_BASE + [
    ("message", "handle", 96),
    ("has_error", "bool", 104),
    ("is_error_set", "bool", 105),
    ("error", "handle", 112),
    ("is_model_ready", "bool", 120),
])

CUDAMemPoolMessage = StructLayout("CUDAMemPoolMessage", 176, _SEND_MESSAGE_BASE + [
    ("cuda_handle", "cuda_ipc", 89),
    ("device_id", "i32", 156),
    ("error", "handle", 160),
    ("has_error", "bool", 168),
    ("is_error_set", "bool", 169),
])

# ResponseSenderBase has no tail padding to reuse (its last field is 8-aligned).
ResponseSendMessage = StructLayout("ResponseSendMessage", 144, [
    ("mu", "mutex", 0),
    ("cv", "cond", 40),
    ("is_stub_turn", "bool", 88),
    ("has_error", "bool", 89),
    ("is_error_set", "bool", 90),
    ("error", "handle", 96),
    ("request_address", "intptr", 104),
    ("response_factory_address", "intptr", 112),
    ("response", "handle", 120),
    ("gpu_buffers_handle", "handle", 128),
    ("flags", "u32", 136),
])

GPUBuffersShm = StructLayout("GPUBuffersShm", 32, [
    ("success", "bool", 0),
    ("error", "handle", 8),
    ("buffers", "handle", 16),
    ("buffer_count", "u32", 24),
])

MetricFamilyShm = StructLayout("MetricFamilyShm", 32, [
    ("name_shm_handle", "handle", 0),
    ("description_shm_handle", "handle", 8),
    ("kind", "enum", 16),
    ("metric_family_address", "intptr", 24),
])

MetricShm = StructLayout("MetricShm", 40, [
    ("labels_shm_handle", "handle", 0),
    ("buckets_shm_handle", "handle", 8),
    ("operation_value", "f64", 16),
    ("metric_address", "intptr", 24),
    ("metric_family_address", "intptr", 32),
])

ModelLoaderRequestShm = StructLayout("ModelLoaderRequestShm", 40, [
    ("name_shm_handle", "handle", 0),
    ("version_shm_handle", "handle", 8),
    ("unload_dependents", "bool", 16),
    ("config_shm_handle", "handle", 24),
    ("files_shm_handle", "handle", 32),
])

ALL_STRUCTS = {name: obj for name, obj in globals().items() if isinstance(obj, StructLayout)}
