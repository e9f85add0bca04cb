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


def _every_layout():
    from tritonstub import protocol
    for era in sorted(protocol.TABLES):
        module = protocol.tables(era)
        for name in sorted(vars(module)):
            layout = getattr(module, name)
            if isinstance(layout, StructLayout):
                yield era, layout


def test_pack_and_packer_write_the_whole_struct_for_any_fields_in_any_order():
    """``pack``/``packer`` (itemgetter over the given values and the defaults) against the
    plain definition: the named fields, every other scalar 0/False, pad and opaque bytes 0."""
    import random
    import struct as st
    rnd = random.Random(1410)
    values_of = {"bool": lambda: rnd.random() < 0.5, "f64": lambda: rnd.random() * 1e6}
    ranges = {"u8": 8, "u16": 16, "u32": 32, "u64": 64, "intptr": 64}
    checked = 0
    for era, layout in _every_layout():
        for _ in range(6):
            names = [n for n in layout.names if rnd.random() < 0.5]
            rnd.shuffle(names)
            given = {}
            for n in names:
                t = layout.fields[n].type
                if t in values_of:
                    given[n] = values_of[t]()
                elif t in ranges:
                    given[n] = rnd.randrange(1 << ranges[t])
                else:
                    bits = layout.fields[n].size * 8
                    given[n] = rnd.randrange(-(1 << (bits - 1)), 1 << (bits - 1))
            want = bytearray(b"\xaa" * (layout.size + 16))
            plain = [given.get(n, False if layout.fields[n].type == "bool" else 0)
                     for n in layout.names]
            st.Struct(layout.struct.format).pack_into(want, 8, *plain)
            got = bytearray(b"\xaa" * (layout.size + 16))
            layout.pack(got, 8, **given)
            assert got == want, (era, layout.name, given)
            got = bytearray(b"\xaa" * (layout.size + 16))
            layout.packer(*given)(got, 8, *given.values())
            assert got == want, (era, layout.name, given)
            assert layout.read(got, 8) == dict(zip(layout.names, plain))
            checked += 1
    assert checked > 300


def test_a_packer_refuses_unknown_fields_a_field_twice_and_a_wrong_count():
    layout = L.ResponseSendMessage
    with pytest.raises(KeyError, match="no field"):
        layout.pack(bytearray(200), 0, flag=1)
    with pytest.raises(KeyError, match="twice"):
        layout.packer("flags", "flags")
    f = layout.packer("flags", "response")
    assert layout.packer("flags", "response") is f            # worked out once
    with pytest.raises(TypeError, match="2 values expected"):
        f(bytearray(200), 0, 1)
    buf = bytearray(200)
    f(buf, 0, 3, 99)
    assert layout.read(buf, 0)["flags"] == 3 and layout.read(buf, 0)["response"] == 99


def test_every_field_offset_reads_as_an_attribute_unless_the_name_is_taken():
    for era, layout in _every_layout():
        for name, f in layout.fields.items():
            if name in ("name", "size", "fields", "struct", "names") or \
                    hasattr(StructLayout, name):
                continue
            assert getattr(layout, name) == f.offset, (era, layout.name, name)
    assert L.MessageQueueShm.size == 128                 # the struct's size, not the field's
    with pytest.raises(AttributeError, match="has no field"):
        L.IPCControlShm.no_such_field
