"""Stub-initiated handshakes on stub_to_parent_mq (r24.10.md §4.2), and the two stub threads.

Pattern B (SendMessageBase ping-pong; logs, metrics, model control, cancellation): we Construct
the message with its own process-shared mutex and condition, lock the mutex, push an
IPCMessageShm pointing at it, and wait until the parent sets ``waiting_on_stub``. We then read
*everything* we need (the C++ stub reads the error string after releasing the parent, a
use-after-free race we do not copy), clear the flag and notify so the parent can return.

Pattern D (ResponseSend): the same with ``is_stub_turn`` on a 32-aligned ResponseSendMessage.

Pattern C‴ (cleanup ids): the IPCMessageShm carries an inline mutex/condition (Construct'ed
32-aligned) and we wait for ``CleanupMessage.waiting_on_stub``; there is no second round.

Every wait here is bounded: one-second slices, and we give up when the parent is gone.

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
from typing import Callable, Dict, Optional, Tuple

from ..errors import IPCTimeout
from ..protocol.layout import StructLayout
from .. import protocol
from ..ipc import libc
from ..ipc.sync import Condition, Mutex
from . import codec
from .codec import Owned

L = protocol.current()

C = L.PYTHONSTUB_CommandType
_H = L.OWNERSHIP_HEADER
WAIT_SLICE_S = 1.0


class ParentGone(Exception):
    """The parent process died while we waited for it."""


_MESSENGERS: "weakref.WeakSet" = weakref.WeakSet()
_WORKERS: "weakref.WeakSet" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # The worker and monitor threads do not exist in a forked child: route logs to stderr there
    # (the C++ stub's child would queue them to a thread that is gone), and drop a send lock
    # another thread may have held at fork time.
    for m in list(_MESSENGERS):
        m.send_lock = threading.Lock()
    for w in list(_WORKERS):
        w.running = False


os.register_at_fork(after_in_child=_after_fork_in_child)


class Messenger:
    """Builds and runs the stub-initiated handshakes for one Stub."""

    def __init__(self, stub):
        self.stub = stub
        self.region = stub.region
        self.mq = stub.queues["stub_to_parent_mq"]
        # C++ serialises utils messages with stub_to_parent_message_mu_; the parent's monitor
        # handles pattern-B messages one at a time anyway.
        self.send_lock = threading.Lock()
        _MESSENGERS.add(self)

    # ------------------------------------------------------------------ basics
    def _ipc_message(self, command: int, args: int, owned: Owned, inline: bool = False):
        """IPCMessage::Create. C++ Constructs the inline mutex/condition (and the messages that
        embed one) with ``aligned=true`` (32 bytes); pthread objects need 8 and every block
        payload is 16-aligned, so we allocate them plainly, in one round: an aligned allocation
        costs Boost's allocator two or three tree updates more, on every message."""
        region = self.region
        mu = cv = 0
        if inline:
            h, mu, cv = region.construct_many((L.IPCMessageShm.size, libc.MUTEX_SIZE,
                                               libc.COND_SIZE))
            owned.extend((h, mu, cv))
            Mutex(region.addr(mu + _H)).initialize()
            Condition(region.addr(cv + _H)).initialize()
        else:
            h = region.construct(L.IPCMessageShm.size)
            owned.append(h)
        L.IPCMessageShm.pack(region.buf, h + _H, command=int(command), args=args,
                             inline_response=inline, response_handle=0,
                             response_mutex=mu, response_cond=cv)
        return h, mu, cv

    def push(self, handle: int) -> None:
        """SendIPCUtilsMessage: 1 s timed pushes until one succeeds."""
        while not self.mq.push(handle, WAIT_SLICE_S):
            if not self.stub.parent_alive():
                raise ParentGone()

    def _wait_flag(self, mutex: Mutex, cond: Condition, flag_off: int, want: int) -> None:
        """Wait (mutex held) until buf[flag_off] == want, bounded by the parent's liveness."""
        while self.region.buf[flag_off] != want:
            if not cond.wait(mutex, WAIT_SLICE_S) and self.region.buf[flag_off] != want:
                if not self.stub.parent_alive():
                    raise ParentGone()

    # ------------------------------------------------------------------ pattern B
    def ping_pong(self, command: int, layout: StructLayout, fields: Dict[str, object],
                  owned: Optional[Owned] = None,
                  read: Optional[Callable[[int], object]] = None) -> Tuple[dict, Optional[str], object]:
        """Run a SendMessageBase handshake. Returns (reply fields, error text or None, read())."""
        region = self.region
        owned = owned if owned is not None else Owned()
        try:
            h = region.construct(layout.size)
            owned.append(h)
            p = h + _H
            layout.pack(region.buf, p, **fields)     # every other byte zero, then mu/cv
            mu = Mutex(region.addr(p + layout.mu)).initialize()
            cv = Condition(region.addr(p + layout.cv)).initialize()
            msg, _, _ = self._ipc_message(command, h, owned)
            flag = p + layout.waiting_on_stub
            with self.send_lock:
                mu.lock()
                try:
                    self.push(msg)
                    self._wait_flag(mu, cv, flag, 1)
                    reply = layout.read(region.buf, p)
                    err = None
                    if reply.get("has_error"):
                        err = ""
                        if reply.get("is_error_set") and reply.get("error"):
                            err = codec.read_string(region, reply["error"])
                    extra = read(p) if read is not None else None
                finally:
                    region.buf[flag] = 0
                    cv.notify_all()
                    mu.unlock()
            return reply, err, extra
        finally:
            owned.release(region)

    # ------------------------------------------------------------------ pattern D
    def response_send(self, request_address: int, factory_address: int,
                      response: Optional[codec.ResponseData], flags: int) -> Optional[str]:
        """ResponseSender::Send's handshake. Returns the parent's error text, or None."""
        region = self.region
        S = L.ResponseSendMessage
        owned = Owned()
        try:
            with region.locked():                    # one hold of shm_mutex for every block
                h = region.construct(S.size)         # (C++: aligned; see _ipc_message)
                owned.append(h)
                rh = codec.save_response(region, response, owned) if response is not None else 0
                msg, _, _ = self._ipc_message(C.ResponseSend, h, owned)
            p = h + _H
            S.pack(region.buf, p, request_address=request_address,
                   response_factory_address=factory_address, response=rh, flags=int(flags))
            mu = Mutex(region.addr(p + S.mu)).initialize()
            cv = Condition(region.addr(p + S.cv)).initialize()
            flag = p + S.is_stub_turn
            mu.lock()
            try:
                self.push(msg)
                self._wait_flag(mu, cv, flag, 1)
                reply = S.read(region.buf, p)
                err = None
                if reply["has_error"]:
                    err = "An error occurred while sending a response."
                    if reply["is_error_set"] and reply["error"]:
                        err = codec.read_string(region, reply["error"])
            finally:
                region.buf[flag] = 0
                cv.notify_all()
                mu.unlock()
            return err
        finally:
            owned.release(region)

    # ------------------------------------------------------------------ pattern C‴
    def cleanup(self, command: int, ident: int) -> None:
        """SendCleanupId: BLS payload or response factory cleanup, inline mutex/condition."""
        if not ident:
            return
        region = self.region
        owned = Owned()
        try:
            h = region.construct(L.CleanupMessage.size + 8)
            owned.append(h)
            p = h + _H
            region.write(p, bytes(L.CleanupMessage.size))
            L.CleanupMessage.write(region.buf, p, id=ident, waiting_on_stub=False)
            msg, mu_h, cv_h = self._ipc_message(command, h, owned, inline=True)
            mu, cv = Mutex(region.addr(mu_h + _H)), Condition(region.addr(cv_h + _H))
            with self.send_lock:
                mu.lock()
                try:
                    self.push(msg)
                    self._wait_flag(mu, cv, p + L.CleanupMessage.waiting_on_stub, 1)
                finally:
                    mu.unlock()
        finally:
            owned.release(region)

    # ------------------------------------------------------------------ log
    def send_log(self, filename: str, line: int, level: int, message: str) -> None:
        owned = Owned()
        fh = codec.create_string(self.region, filename, owned)
        mh = codec.create_string(self.region, message, owned)
        self.ping_pong(C.LogRequest, L.LogSendMessage,
                       {"filename": fh, "line": int(line), "log_message": mh, "level": int(level)},
                       owned)


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
            except ParentGone:
                return
            except Exception as e:  # noqa: BLE001 - keep serving, as the C++ worker does
                from .log import stub_log
                stub_log("E", f"Error when sending message via stub_to_parent message buffer: {e}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.running:
            self.running = False
            self.q.put(self._STOP)
            if self.done is not None and self.done.acquire(timeout=timeout):
                self.done.release()


class Monitor:
    """The parent->stub monitor thread (ParentToStubMQMonitor)."""

    def __init__(self, stub, handlers: Dict[int, Callable[[int, dict], None]]):
        self.stub = stub
        self.mq = stub.queues["parent_to_stub_mq"]
        self.handlers = handlers
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
                p = region.payload(h)
                region.ensure_mapped(p, L.IPCMessageShm.size)
                msg = L.IPCMessageShm.read(region.buf, p)
                fn = self.handlers.get(msg["command"])
                if fn is not None:
                    fn(h, msg)
            except Exception as e:  # noqa: BLE001
                from .log import stub_log
                stub_log("E", f"Error while handling a message from the parent: {e}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.running:
            self.running = False
            try:
                self.mq.push(L.DUMMY_MESSAGE, 1.0)
            except IPCTimeout:
                pass
            if self.done is not None and self.done.acquire(timeout=timeout):
                self.done.release()
