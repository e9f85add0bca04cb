"""The stub's side of the stub-initiated handshakes, and the two stub threads.

The shapes (lock, push, wait on a flag or a notify, release, all bounded by the parent's
liveness) are ``ipc.handshake``'s; the messages are ``protocol.control``'s. Here they are put
together for the stub's role:

Pattern B (SendMessageBase ping-pong; logs, metrics, model control, cancellation): the message
carries its own mutex and condition; we wait for ``waiting_on_stub``, read *everything* we need
(the C++ stub reads the error string after releasing the parent, a use-after-free race we do
not copy), then release the parent. Pattern D (ResponseSend): the same with ``is_stub_turn``.
Pattern C‴ (cleanup ids): the IPCMessageShm carries an inline mutex/condition and we wait for
``CleanupMessage.waiting_on_stub``; there is no second round.

Two threads mirror the C++ stub's: the stub->parent *worker* sends queued log and cleanup
messages in order (so ``Logger.log`` never blocks model code on the parent), and the
parent->stub *monitor* serves parent-initiated messages (BLS stream responses, the CUDA pool
request that a CPU-only stub must still answer).
"""
from __future__ import annotations

import _thread
import os
import queue
import threading
import weakref
from typing import Callable, Dict, List, Optional, Tuple

from ..errors import IPCTimeout
from .. import protocol
from ..protocol import control
from ..protocol.layout import StructLayout
from ..protocol.responses import ResponseData
from ..protocol.scalars import Owned
from ..ipc import handshake, libc
from ..ipc.handshake import WAIT_SLICE_S, PeerGone

L = protocol.current()

C = L.PYTHONSTUB_CommandType


_MESSENGERS: "weakref.WeakSet" = weakref.WeakSet()
_WORKERS: "weakref.WeakSet" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # The worker and monitor threads do not exist in a forked child: route logs to stderr there
    # (the C++ stub's child would queue them to a thread that is gone), and drop a send lock
    # another thread may have held at fork time.
    for m in list(_MESSENGERS):
        m.send_lock = threading.Lock()
        m._kept = []                # the parent process's blocks: it releases them
        m._kept_lock = threading.Lock()
    for w in list(_WORKERS):
        w.running = False


os.register_at_fork(after_in_child=_after_fork_in_child)


class Messenger:
    """Builds and runs the stub-initiated handshakes for one Stub."""

    def __init__(self, stub):
        self.stub = stub
        self.region = stub.region
        self.mq = stub.queues["stub_to_parent_mq"]
        # ResponseSend and BLS requests: stub_to_parent_mq from r24.10 on, parent_message_queue
        # before (the parent's queue monitor takes them with the ExecuteResponse).
        self.send_mq = stub.queues["parent_message_queue"] if L.SENDS_ON_PARENT_MQ else self.mq
        # C++ serialises utils messages with stub_to_parent_message_mu_; the parent's monitor
        # handles pattern-B messages one at a time anyway.
        self.send_lock = threading.Lock()
        # [(sizes, handles)] of the last sends' and BLS calls' blocks, oldest first, kept for
        # the next ones (take_kept)
        self._kept: List[Tuple[list, list]] = []
        self._kept_lock = threading.Lock()
        _MESSENGERS.add(self)

    # ------------------------------------------------------------------ basics
    def ipc_message(self, command: int, args: int, owned: Owned, inline: bool = False):
        """IPCMessage::Create; with ``inline``, its own mutex and condition, initialised."""
        region = self.region
        h, mu, cv = control.write_ipc_message(region, command, args, owned, inline,
                                              (libc.MUTEX_SIZE, libc.COND_SIZE))
        if inline:
            handshake.sync_objects(region, region.payload(mu), region.payload(cv), True)
        return h, mu, cv

    def push(self, handle: int) -> None:
        """SendIPCUtilsMessage: 1 s timed pushes until one succeeds."""
        handshake.push(self.mq, handle, self.stub.parent_alive)

    def push_request(self, handle: int) -> None:
        """A BLS request: SendIPCUtilsMessage from r24.10 on, SendIPCMessage before."""
        handshake.push(self.send_mq, handle, self.stub.parent_alive)

    # ------------------------------------------------------------------ pattern B
    def ping_pong(self, command: int, layout: StructLayout, message: int, owned: Owned,
                  read: Optional[Callable[[int], object]] = None) -> Tuple[dict, Optional[str], object]:
        """Run a SendMessageBase handshake over ``message`` (a Construct'ed ``layout``, its
        mutex and condition still blank). Returns (reply fields, error text or None, read())."""
        region = self.region
        try:
            box = control.mailbox(layout, region.payload(message))
            mu, cv = handshake.sync_objects(region, box.mutex, box.cond, True)
            msg, _, _ = self.ipc_message(command, message, owned)

            def read_reply():
                # Everything is read before the parent is released (C++ reads the error text
                # after, when the parent may have freed it).
                reply = control.read_send_message(region, box.payload, layout)
                return (reply, control.reply_error(region, reply),
                        read(box.payload) if read is not None else None)
            board = self.stub.board
            token = board.begin_handshake(box.mutex, box.cond, box.flag)
            try:
                with self.send_lock:
                    return handshake.start_flag(region, self.mq, msg, mu, cv, box.flag,
                                                self.stub.parent_alive, read_reply)
            finally:
                board.end_handshake(token)
        finally:
            owned.release(region)

    # ------------------------------------------------------------------ pattern D
    def response_send(self, request_address: int, factory_address: int,
                      response: Optional[ResponseData], flags: int) -> Optional[str]:
        """ResponseSender::Send's handshake. Returns the parent's error text, or None.

        The blocks of a send that is not FINAL are kept (see :meth:`take_kept`)."""
        region = self.region
        S = L.ResponseSendMessage
        final = flags == L.TRITONSERVER_RESPONSE_COMPLETE_FINAL
        if final and not L.STUB_DELETES_FACTORY_ON_FINAL:
            self.stub.board.discard(factory_address)    # the parent deletes it on FINAL
            # (before r24.10 it does not: our cleanup message, sent next, takes it off then)
        owned = Owned()
        keep = None
        try:
            if response is not None and response.error is None:
                sizes, fill = control.response_send_plan(response, request_address,
                                                         factory_address, flags)
                owned.extend(self.blocks(sizes))
                msg, h = fill(region.buf, owned)
                if not final:
                    keep = sizes
            else:
                with region.locked():                # one hold of shm_mutex for every block
                    msg, h = control.write_response_send(region, request_address,
                                                         factory_address, response, flags, owned)
            box = control.mailbox(S, region.payload(h))
            mu, cv = handshake.sync_objects(region, box.mutex, box.cond, True)
            # Listed for the heartbeat helper: if we die before the last step, it takes the
            # parent's answer for us (salvage.py), so no parent thread waits for ever.
            board = self.stub.board
            token = board.begin_handshake(box.mutex, box.cond, box.flag)
            try:
                error = handshake.start_flag(
                    region, self.send_mq, msg, mu, cv, box.flag, self.stub.parent_alive,
                    lambda: control.read_reply_error(region, box.payload, S,
                                                     "An error occurred while sending a response."))
            finally:
                board.end_handshake(token)
            if keep is not None:
                self.keep(keep, owned)
            return error
        finally:
            owned.release(region)
            if final:
                self.release_kept()

    # A stream sends one small response after another, all of one shape, and a BLS model
    # calls the same model with the same shapes again and again: the C++ stub Constructs the
    # blocks, the parent answers, the stub frees them, and the next call Constructs the same
    # sizes again (at the same offsets, in the steady state). We keep the blocks of the last
    # few sends (not FINAL) and BLS calls and write the next one of the same sizes into them,
    # once the parent holds no reference to any of them (ref count 1: it drops its references
    # when it is done with the message, so nothing of it is in use). Kept blocks are written
    # without shm_mutex, as any block we Construct'ed: no one else writes them (the parent's
    # last write, its release, is what makes the ref count 1). They are given back when the
    # model's execute returns, at a FINAL send (either ends a request: the free-memory figure
    # is then what the C++ stub leaves, for Triton's leak probes), before
    # ``pb_utils.shared_memory.free_memory()`` reads it, after an idle second of the stub's
    # main loop, at finalize, and when more than KEEP_RUNS are kept. In between, the region
    # holds those blocks more than under the C++ stub; the parent reads no figure there. Only
    # small runs are kept (KEEP_BYTES): a large tensor's copy costs far more than its Construct,
    # and holding it could make the region grow.
    KEEP_RUNS = 4
    KEEP_BYTES = 64 << 10

    def take_kept(self, sizes) -> Optional[list]:
        """The kept blocks of ``sizes`` (a list), ours alone, or None."""
        with self._kept_lock:
            kept = self._kept
            for i in range(len(kept) - 1, -1, -1):
                if kept[i][0] == sizes:
                    handles = kept.pop(i)[1]
                    break
            else:
                return None
        if self.region.only_ours(handles):
            return handles
        self.region.release_many(handles)     # the parent still holds one: ours go
        return None

    def keep(self, sizes, owned: Owned) -> None:
        """Keep the blocks in ``owned`` (Construct'ed for ``sizes``, in order) for
        :meth:`take_kept`, instead of releasing them (a run over KEEP_BYTES is released)."""
        if sum(sizes) > self.KEEP_BYTES:
            owned.release(self.region)
            return
        with self._kept_lock:
            self._kept.append((sizes, list(owned)))
            owned.clear()
            over = len(self._kept) > self.KEEP_RUNS
        if over:
            self.release_kept(self.KEEP_RUNS)

    def blocks(self, sizes) -> list:
        """Blocks for ``sizes``: kept ones when they fit, else Construct'ed in one run."""
        handles = self.take_kept(sizes)
        return handles if handles is not None else self.region.construct_many(sizes)

    def release_kept(self, leave: int = 0) -> None:
        """Give the kept blocks back, all or all but the newest ``leave`` runs."""
        while self._kept:
            with self._kept_lock:
                if len(self._kept) <= leave:
                    return
                handles = self._kept.pop(0)[1]
            self.region.release_many(handles)

    # ------------------------------------------------------------------ pattern C‴
    def cleanup(self, command: int, ident: int) -> None:
        """SendCleanupId: BLS payload or response factory cleanup, inline mutex/condition."""
        if not ident:
            return
        if L.STUB_RELEASES_FACTORIES and command == C.DecoupledResponseFactoryCleanup:
            self.stub.board.discard(ident)
        region = self.region
        owned = Owned()
        try:
            h = control.write_cleanup_message(region, ident, owned)
            msg, mu_h, cv_h = self.ipc_message(command, h, owned, inline=True)
            mu, cv = handshake.sync_objects(region, region.payload(mu_h), region.payload(cv_h))
            flag = control.mailbox(L.CleanupMessage, region.payload(h)).flag
            with self.send_lock:
                handshake.start_flag(region, self.mq, msg, mu, cv, flag, self.stub.parent_alive,
                                     rounds=1)
        finally:
            owned.release(region)

    # ------------------------------------------------------------------ log
    def send_log(self, filename: str, line: int, level: int, message: str) -> None:
        owned = Owned()
        h = control.write_log_message(self.region, filename, line, level, message, owned)
        self.ping_pong(C.LogRequest, L.LogSendMessage, h, owned)


def start_hidden_thread(target) -> "threading.Lock":
    """Run ``target`` in a thread that model code does not see in ``threading.enumerate()``.

    The C++ stub's helper threads are native threads, invisible to Python (a model sees only
    MainThread). We start ours with the low-level ``_thread`` module for the same picture. The
    returned lock is released when ``target`` returns (join = acquire it with a timeout).
    """
    done = _thread.allocate_lock()
    done.acquire()

    def run():
        try:
            target()
        finally:
            done.release()
    _thread.start_new_thread(run, ())
    return done


class Worker:
    """The stub->parent worker thread (ServiceStubToParentRequests)."""

    _STOP = object()

    def __init__(self, messenger: Messenger):
        self.messenger = messenger
        self.q: "queue.Queue" = queue.Queue()
        self.done: Optional["threading.Lock"] = None
        self.running = False
        _WORKERS.add(self)

    def start(self) -> None:
        self.running = True
        self.done = start_hidden_thread(self._run)

    def submit(self, fn: Callable[[], None]) -> None:
        self.q.put(fn)

    def _run(self) -> None:
        while True:
            fn = self.q.get()
            if fn is self._STOP:
                return
            try:
                fn()
            except PeerGone:
                return
            except Exception as e:  # noqa: BLE001 - keep serving, as the C++ worker does
                from .log import ERROR, stub_log
                stub_log(ERROR, f"Error when sending message via stub_to_parent message buffer: {e}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.running:
            self.running = False
            self.q.put(self._STOP)
            if self.done is not None and self.done.acquire(timeout=timeout):
                self.done.release()


class Monitor:
    """The parent->stub monitor thread (ParentToStubMQMonitor)."""

    def __init__(self, stub, handlers: Dict[int, Callable[[int, control.IPCMessage], None]],
                 default: Optional[Callable[[int, control.IPCMessage], None]] = None):
        self.stub = stub
        self.mq = stub.queues["parent_to_stub_mq"]
        self.handlers = handlers
        self.default = default       # for a command not in handlers (None: ignore it)
        self.done: Optional["threading.Lock"] = None
        self.running = False

    def start(self) -> None:
        self.running = True
        self.done = start_hidden_thread(self._run)

    def _run(self) -> None:
        region = self.stub.region
        while self.running:
            h = self.mq.pop(WAIT_SLICE_S)
            if h is None:
                if not self.stub.parent_alive():
                    return
                continue
            if h == L.DUMMY_MESSAGE:
                return
            try:
                msg = control.read_ipc_message(region, h)
                fn = self.handlers.get(msg.command, self.default)
                if fn is not None:
                    fn(h, msg)
            except Exception as e:  # noqa: BLE001
                from .log import ERROR, stub_log
                stub_log(ERROR, f"Error while handling a message from the parent: {e}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.running:
            self.running = False
            try:
                self.mq.push(L.DUMMY_MESSAGE, 1.0)
            except IPCTimeout:
                pass
            if self.done is not None and self.done.acquire(timeout=timeout):
                self.done.release()
