"""The handshake shapes of ipc/handshake.py, both roles in one process over a bytearray heap.

A thread plays the parent: it pops the stub_to_parent queue, reads the message with the
protocol's parent-side reader, answers it with ``answer_flag``; the test thread plays the stub
with ``start_flag``. The pthread objects are process-shared ones placed in the bytearray, as
they would be in the region.
"""
from __future__ import annotations

import threading

import pytest

from tritonstub import protocol
from tritonstub.ipc import handshake
from tritonstub.ipc.heap import Heap
from tritonstub.ipc.libc import COND_SIZE, MUTEX_SIZE
from tritonstub.ipc.message_queue import MessageQueue
from tritonstub.protocol import control, scalars
from tritonstub.protocol.scalars import Owned

L = protocol.current()
C = L.PYTHONSTUB_CommandType


@pytest.fixture
def heap():
    return Heap.create(bytearray(1 << 20))


LAYOUTS = {C.LogRequest: L.LogSendMessage, C.IsRequestCancelled: L.IsCancelledMessage,
           C.MetricFamilyRequestNew: L.CustomMetricsMessage}


def _parent(heap, mq, seen):
    """Serve pattern-B messages until the 0 handle, as the parent's monitor does."""
    while True:
        h = mq.pop(5.0)
        if not h:
            return
        msg = control.read_ipc_message(heap, h)
        layout = LAYOUTS[msg.command]
        # Like the parent, hold a reference while answering: the stub releases its own as
        # soon as it has read the reply, and the mutex we still unlock lives in the message.
        p = heap.load(msg.args)
        box = control.mailbox(layout, p)
        mu, cv = handshake.sync_objects(heap, box.mutex, box.cond)
        owned = Owned()
        fields = {}
        if msg.command == C.LogRequest:
            seen.append(control.read_log_message(heap, msg.args))
        elif msg.command == C.IsRequestCancelled:
            fields = {"is_cancelled": True}
        else:
            seen.append(control.read_metric_family(
                heap, control.read_send_message(heap, p, layout)["message"]))
            fields = {"has_error": True, "is_error_set": True, "address": 0x77,
                      "error": scalars.write_string(heap, "family refused", owned)}
        handshake.answer_flag(heap, mu, cv, box.flag, lambda: True,
                              lambda: control.write_reply(heap, p, layout, **fields))
        heap.release(msg.args)
        owned.release(heap)


def test_pattern_b_both_roles(heap):
    mq = MessageQueue.create(heap, 8)
    seen = []
    parent = threading.Thread(target=_parent, args=(heap, mq, seen))
    parent.start()
    replies = {}
    try:
        for command, make in (
                (C.LogRequest,
                 lambda o: control.write_log_message(heap, "model.py", 3, 1, "hi", o)),
                (C.IsRequestCancelled, lambda o: control.write_is_cancelled(heap, 1, 2, o)),
                (C.MetricFamilyRequestNew, lambda o: control.write_custom_metrics_message(
                    heap, control.write_metric_family(heap, "n", "d", 1, 0, o), 0.0, o))):
            layout = LAYOUTS[command]
            owned = Owned()
            message = make(owned)
            box = control.mailbox(layout, heap.payload(message))
            mu, cv = handshake.sync_objects(heap, box.mutex, box.cond, initialize=True)
            ipc, _, _ = control.write_ipc_message(heap, command, message, owned)

            def read():
                # Everything, the error text included, before the parent is released: it
                # frees the text as soon as it returns.
                reply = control.read_send_message(heap, box.payload, layout)
                reply["error_text"] = control.reply_error(heap, reply)
                return reply
            replies[command] = handshake.start_flag(heap, mq, ipc, mu, cv, box.flag,
                                                    parent.is_alive, read)
            assert heap.buf[box.flag] == 0                       # released for the parent
            owned.release(heap)
    finally:
        mq.push(0, 5.0)
        parent.join(10)
    assert seen == [("model.py", 3, 1, "hi"), ("n", "d", 1, 0)]
    assert replies[C.IsRequestCancelled]["is_cancelled"] is True
    assert replies[C.MetricFamilyRequestNew]["address"] == 0x77
    assert replies[C.MetricFamilyRequestNew]["error_text"] == "family refused"


def test_a_dead_peer_ends_every_wait(heap):
    mq = MessageQueue.create(heap, 1)
    owned = Owned()
    msg, mu_h, cv_h = control.write_ipc_message(heap, C.InferExecRequest, 0, owned, inline=True,
                                                sync_sizes=(MUTEX_SIZE, COND_SIZE))
    mu, cv = handshake.sync_objects(heap, heap.payload(mu_h), heap.payload(cv_h), True)
    calls = []

    def dead():
        calls.append(1)
        return False
    mu.lock()
    try:
        with pytest.raises(handshake.PeerGone):
            handshake.wait_notify(mu, cv, dead)
    finally:
        mu.unlock()
    assert mq.push(msg, 1.0)                                    # the queue is now full
    with pytest.raises(handshake.PeerGone):
        handshake.push(mq, msg, dead)
    assert len(calls) == 2
    owned.release(heap)
