"""The blocks of a decoupled send or a BLS call are kept for the next one of the same sizes
(stub/messaging.py, take_kept).

A Messenger runs its real handshakes against a parent played by a thread of this process, on a
private region. For a send the parent pops the message, takes its references (the message and
the ResponseSendMessage, as ResponseSendDecoupled's Loads do), reads the response, answers, and
drops its references once the stub has read the answer, or later when a test says so. For a
BLS call (pattern C) it reads the request, takes references on its blocks, answers with the
input plus one, waits for the stub's notify and drops its references.

What must hold: a stream of sends of one shape writes each send into the last one's blocks and
the parent reads every response right; so do BLS calls; blocks the parent still holds are
never written (the call takes new ones); a FINAL send, a send of other sizes, the end of an
execute, ``free_memory()``, an idle second and the stub's finalize give kept blocks back, after
which free memory is at its idle value and the allocator is consistent; an error response and
a send that fails are not kept, nor is a run over KEEP_BYTES; at most KEEP_RUNS runs are kept.
"""
from __future__ import annotations

import queue
import threading
import uuid

import numpy as np
import pytest

from tritonstub import protocol
from tritonstub.ipc import handshake
from tritonstub.ipc.message_queue import MessageQueue
from tritonstub.ipc.region import Region
from tritonstub.protocol import control
from tritonstub.protocol.requests import read_request, read_request_batch, request_batch_size
from tritonstub.protocol.responses import (ResponseData, read_response, write_response,
                                           write_response_batch)
from tritonstub.protocol.scalars import Owned
from tritonstub.stub.messaging import Messenger

L = protocol.current()
S = L.ResponseSendMessage
FINAL = L.TRITONSERVER_RESPONSE_COMPLETE_FINAL
INT32 = 8


class _Board:
    def begin_bls(self):
        pass

    def end_bls(self):
        pass

    def begin_handshake(self, *_):
        return -1

    def end_handshake(self, _token):
        pass

    def discard(self, _factory):
        pass


class _Stub:
    """What a Messenger reads from its stub."""

    def __init__(self, region):
        self.region = region
        mq = MessageQueue.create(region, 16)
        self.queues = {"stub_to_parent_mq": mq, "parent_message_queue": mq}
        self.board = _Board()

    def parent_alive(self) -> bool:
        return True


class _Parent(threading.Thread):
    """ResponseSendDecoupled: pop, Load the message and the ResponseSendMessage, read the
    response, answer, wait for the stub, release (at once, or when ``hold`` is cleared)."""

    def __init__(self, region, mq):
        super().__init__(daemon=True)
        self.region, self.mq = region, mq
        self.seen = queue.Queue()          # (message handle, send handle, response, flags)
        self.hold = threading.Event()      # set: keep the references until it is cleared
        self.held = []
        self.error = None                  # the answer's error text, if any

    def run(self):
        region = self.region
        while True:
            h = self.mq.pop(10.0)
            if h is None or h == L.DUMMY_MESSAGE:
                return
            msg = control.read_ipc_message(region, h)
            if msg.command == L.PYTHONSTUB_CommandType.InferExecRequest:
                self._bls(h, msg)
                continue
            region.load(h)
            region.load(msg.args)
            box = control.mailbox(S, region.payload(msg.args))
            fields = control.read_send_message(region, box.payload, S)
            response = read_response(region, fields["response"]) if fields["response"] else None
            mu, cv = handshake.sync_objects(region, box.mutex, box.cond)
            handshake.answer_flag(region, mu, cv, box.flag, lambda: True)
            self.seen.put((h, msg.args, response, fields["flags"]))
            if self.hold.is_set():
                self.held += [msg.args, h]
            else:
                region.release(msg.args)
                region.release(h)

    def _bls(self, h, msg):
        """ExecuteBLSRequest: its references on the request's blocks, the answer, the wait."""
        region = self.region
        rh = read_request_batch(region, msg.args)[0]
        request = read_request(region, rh)
        refs = [h, msg.args, rh]
        for r in refs:
            region.load(r)
        x = request.inputs[0]
        y = np.frombuffer(bytes(x.data), np.float32) + 1
        owned = Owned()
        response = ResponseData(outputs=[("Y", 11, (len(y),), y.tobytes())])
        batch = write_response_batch(region, write_response(region, response, owned), owned)
        reply, _, _ = control.write_ipc_message(region, L.PYTHONSTUB_CommandType.InferExecResponse,
                                                batch, owned)
        mu, cv = handshake.sync_objects(region, region.payload(msg.response_mutex),
                                        region.payload(msg.response_cond))
        mu.lock()
        try:
            control.set_response_handle(region, h, reply)
            cv.notify_all()
            handshake.wait_notify(mu, cv, lambda: True)
        finally:
            mu.unlock()
        owned.release(region)
        self.seen.put((h, msg.args, request, None))
        if self.hold.is_set():
            self.held += refs
        else:
            region.release_many(refs)

    def release_held(self):
        for h in self.held:
            self.region.release(h)
        self.held = []

    def stop(self):
        self.mq.push(L.DUMMY_MESSAGE, 1.0)
        self.join(10)


@pytest.fixture
def link():
    region = Region.create(f"tritonstub_test_send_{uuid.uuid4().hex[:8]}", 1 << 20)
    try:
        stub = _Stub(region)
        messenger = Messenger(stub)
        parent = _Parent(region, stub.queues["stub_to_parent_mq"])
        parent.start()
        yield region, messenger, parent
        parent.stop()
        assert not parent.is_alive()
    finally:
        region.close(unlink=True)


def _response(value, n=1, dtype=np.int32):
    data = np.arange(value, value + n, dtype=dtype)
    return ResponseData(outputs=[("OUT", INT32, (n,), memoryview(data).cast("B"))], id=0,
                        is_last_response=False)


def _send(messenger, parent, response, flags=0):
    error = messenger.response_send(0x1000, 0x2000, response, flags)
    return error, parent.seen.get(timeout=10)


def _value(response):
    return np.frombuffer(bytes(response.outputs[0][3]), np.int32).tolist()


def test_a_stream_of_one_shape_writes_each_send_into_the_last_ones_blocks(link):
    region, messenger, parent = link
    idle = region.free_memory()
    _, first = _send(messenger, parent, _response(0))
    kept = region.free_memory()
    assert kept < idle                       # the first send's blocks are kept
    for i in range(1, 6):
        error, seen = _send(messenger, parent, _response(i))
        assert error is None
        assert seen[:2] == first[:2]         # the same message and ResponseSendMessage
        assert _value(seen[2]) == [i]        # ... holding this send's response
        assert seen[3] == 0
        assert region.free_memory() == kept  # nothing Construct'ed or freed
    error, last = _send(messenger, parent, None, FINAL)
    assert error is None and last[2] is None and last[3] == FINAL
    assert region.free_memory() == idle      # FINAL gives everything back
    region.segment.check()


def test_blocks_the_parent_still_holds_are_not_written_again(link):
    region, messenger, parent = link
    idle = region.free_memory()
    parent.hold.set()
    _, first = _send(messenger, parent, _response(7))
    parent.hold.clear()
    before = region.read(first[1] + 16, S.size), region.read(first[0] + 16, 48)
    _, second = _send(messenger, parent, _response(8))
    assert second[1] != first[1] and second[0] != first[0]   # new blocks
    # the held ones untouched, the parent's reference left
    assert (region.read(first[1] + 16, S.size), region.read(first[0] + 16, 48)) == before
    assert region.ref_count(first[1]) == region.ref_count(first[0]) == 1
    assert _value(second[2]) == [8]
    parent.release_held()                  # the parent frees them (our reference is gone)
    _send(messenger, parent, None, FINAL)
    assert region.free_memory() == idle
    region.segment.check()


def test_a_send_of_other_sizes_gives_the_kept_blocks_back(link):
    region, messenger, parent = link
    idle = region.free_memory()
    _send(messenger, parent, _response(1, n=1))
    one_small = idle - region.free_memory()
    _send(messenger, parent, _response(1, n=64))
    one_big = idle - region.free_memory()
    assert one_big > one_small             # only the big send's blocks are held now
    _, seen = _send(messenger, parent, _response(3, n=64))
    assert _value(seen[2]) == list(range(3, 67))
    assert idle - region.free_memory() == one_big
    messenger.release_kept()
    assert region.free_memory() == idle
    region.segment.check()


def test_a_large_send_is_not_kept(link):
    region, messenger, parent = link
    idle = region.free_memory()
    n = messenger.KEEP_BYTES // 4 + 1            # int32 values: one output over the cap
    _, seen = _send(messenger, parent, _response(2, n=n))
    assert _value(seen[2])[:3] == [2, 3, 4] and len(_value(seen[2])) == n
    assert messenger._kept == [] and region.free_memory() == idle
    _send(messenger, parent, _response(2, n=n // 2))   # under the cap: kept
    assert len(messenger._kept) == 1
    messenger.release_kept()
    assert region.free_memory() == idle


def test_a_final_send_with_a_response_and_an_error_response_are_not_kept(link):
    region, messenger, parent = link
    idle = region.free_memory()
    _, seen = _send(messenger, parent, _response(4), FINAL)
    assert _value(seen[2]) == [4] and region.free_memory() == idle
    error_response = ResponseData(error=(int(L.TRITONSERVER_Error_Code.INTERNAL), "bad"))
    _, seen = _send(messenger, parent, error_response)
    assert seen[2].error[1] == "bad" and region.free_memory() == idle
    region.segment.check()


def test_the_stubs_release_points_give_the_kept_blocks_back(link, monkeypatch):
    from tritonstub.stub.shm_runtime import ShmRuntime
    region, messenger, parent = link
    idle = region.free_memory()

    class _Runtime(ShmRuntime):
        def __init__(self):                # only what free_memory, release_kept, stop_workers use
            self.messenger = messenger
            self.stub = type("S", (), {"region": region})()
            self.worker = type("W", (), {"stop": lambda self: None})()
            self.monitor = None
    runtime = _Runtime()
    for release in (runtime.free_memory, runtime.release_kept, runtime.stop_workers):
        _send(messenger, parent, _response(5))
        assert region.free_memory() < idle
        value = release()
        assert region.free_memory() == idle
        if release is runtime.free_memory:
            assert value == idle              # what a model reads is the C++ stub's figure
    region.segment.check()


def test_a_send_that_fails_is_not_kept(link, monkeypatch):
    region, messenger, parent = link
    idle = region.free_memory()

    def gone(*_a, **_k):
        raise handshake.PeerGone()
    monkeypatch.setattr(handshake, "start_flag", gone)
    with pytest.raises(handshake.PeerGone):
        messenger.response_send(0x1000, 0x2000, _response(1), 0)
    assert region.free_memory() == idle
    region.segment.check()


class _Runtime:
    """What stub/bls.py reads from its runtime."""

    def __init__(self, messenger):
        self.messenger = messenger
        self.stub = messenger.stub


def _bls(messenger, parent, values):
    from tritonstub.stub import bls
    from tritonstub.stub import c_python_backend_utils as pb
    x = pb.Tensor("X", np.asarray(values, np.float32))
    request = pb.InferenceRequest(model_name="leaf", inputs=[x], requested_output_names=["Y"])
    response = bls.execute(_Runtime(messenger), request, False)
    assert not response.has_error(), response.error().message()
    seen = parent.seen.get(timeout=10)
    return response.output_tensors()[0].as_numpy().tolist(), seen


def test_bls_calls_of_one_shape_reuse_the_last_calls_blocks(link):
    region, messenger, parent = link
    idle = region.free_memory()
    y, first = _bls(messenger, parent, [1, 2])
    assert y == [2, 3]
    kept = region.free_memory()
    assert kept < idle
    for i in range(5):
        y, seen = _bls(messenger, parent, [10 * i, 10 * i + 1])
        assert y == [10 * i + 1, 10 * i + 2]
        assert seen[:2] == first[:2]          # the same message and RequestBatch
        assert region.free_memory() == kept
    y, _ = _bls(messenger, parent, [1, 2, 3])  # another shape: the kept blocks go back
    assert y == [2, 3, 4]
    messenger.release_kept()                   # what the end of the execute does
    assert region.free_memory() == idle
    region.segment.check()


def test_a_bls_request_the_parent_still_holds_is_not_written_again(link):
    region, messenger, parent = link
    idle = region.free_memory()
    parent.hold.set()
    _, first = _bls(messenger, parent, [5, 6])
    parent.hold.clear()
    size = request_batch_size(1)
    before = region.read(first[1] + 16, size)
    y, second = _bls(messenger, parent, [7, 8])
    assert y == [8, 9] and second[1] != first[1]
    assert region.read(first[1] + 16, size) == before
    assert region.ref_count(first[1]) == 1     # the parent's reference; ours is gone
    parent.release_held()
    messenger.release_kept()
    assert region.free_memory() == idle
    region.segment.check()


def test_sends_and_bls_calls_keep_up_to_keep_runs_runs(link):
    region, messenger, parent = link
    idle = region.free_memory()
    for n in range(1, messenger.KEEP_RUNS + 3):
        _send(messenger, parent, _response(0, n=n))
        assert len(messenger._kept) == min(n, messenger.KEEP_RUNS)
    _bls(messenger, parent, [1.0])
    assert len(messenger._kept) == messenger.KEEP_RUNS
    _send(messenger, parent, _response(0, n=messenger.KEEP_RUNS + 2))   # the newest still kept
    assert len(messenger._kept) == messenger.KEEP_RUNS
    _send(messenger, parent, None, FINAL)
    assert messenger._kept == [] and region.free_memory() == idle
    region.segment.check()


def test_the_end_of_an_execute_gives_the_kept_blocks_back(link):
    from tritonstub.stub import execute
    region, messenger, parent = link
    idle = region.free_memory()
    _bls(messenger, parent, [1.0])
    assert region.free_memory() < idle

    class _Stub:
        runtime = type("R", (), {"release_kept": lambda self: messenger.release_kept()})()
    execute._release_kept(_Stub())
    assert region.free_memory() == idle
