"""The r24.10 layout tables against the offsets seen in the shipped binaries (r24.10.md §3.3)."""
import pytest

from tritonstub.protocol.layout import StructLayout
from tritonstub.protocol import r24_10 as L


@pytest.mark.parametrize("struct,field,offset", [
    ("IPCControlShm", "stub_health_mutex", 48),
    ("IPCControlShm", "memory_manager_message_queue", 120),
    ("MessageQueueShm", "mutex", 64),
    ("MessageQueueShm", "tail", 124),
    ("ResponseBatch", "batch_size", 92),           # tail padding of SendMessageBase reused
    ("ResponseBatch", "is_response_factory_deleted", 112),
    ("LogSendMessage", "filename", 96),
    ("LogSendMessage", "level", 120),
    ("CUDAMemPoolMessage", "cuda_handle", 89),
    ("ResponseSendMessage", "flags", 136),
    ("InferRequestShm", "parameters_shm_handle", 112),
    ("MemoryShm", "memory_release_id", 48),
    ("MetricShm", "metric_family_address", 32),
])
def test_field_offsets(struct, field, offset):
    assert getattr(getattr(L, struct), field) == offset


@pytest.mark.parametrize("struct,size", [
    ("IPCControlShm", 128), ("MessageQueueShm", 128), ("IPCMessageShm", 48),
    ("ResponseBatch", 120), ("ResponseShm", 40), ("InferRequestShm", 120),
    ("TensorShm", 24), ("MemoryShm", 56), ("ResponseSendMessage", 144),
    ("CustomMetricsMessage", 136), ("ModelLoaderMessage", 128), ("CleanupMessage", 104),
    ("IsCancelledMessage", 120), ("CUDAMemPoolMessage", 176),
])
def test_struct_sizes(struct, size):
    assert getattr(L, struct).size == size


def test_execute_response_block_offsets():
    assert L.EXECUTE_RESPONSE_BATCH_OFFSET == 48
    assert L.EXECUTE_RESPONSE_HANDLES_OFFSET == 168


def test_command_numbers():
    assert L.PYTHONSTUB_CommandType.ExecuteRequest == 0
    assert L.PYTHONSTUB_CommandType.AutoCompleteRequest == 14
    assert L.PYTHONSTUB_CommandType.IsRequestCancelled == 30
    assert len(L.PYTHONSTUB_CommandType) == 31


def test_table_rejects_overlap_misalignment_and_overflow():
    with pytest.raises(ValueError, match="overlaps"):
        StructLayout("Bad", 16, [("a", "u64", 0), ("b", "u32", 4)])
    with pytest.raises(ValueError, match="aligned"):
        StructLayout("Bad", 16, [("a", "u64", 4)])
    with pytest.raises(ValueError, match="past size"):
        StructLayout("Bad", 8, [("a", "u64", 8)])


def test_get_set_roundtrip():
    buf = bytearray(256)
    L.ResponseBatch.write(buf, 16, batch_size=7, has_error=True, error=-3)
    assert L.ResponseBatch.get(buf, 16, "batch_size") == 7
    assert buf[16 + 92] == 7
    assert L.ResponseBatch.read(buf, 16)["error"] == -3
    assert "batch_size" in L.ResponseBatch.table()
