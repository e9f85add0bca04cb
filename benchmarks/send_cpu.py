"""CPU of our stub's side of one decoupled ``send``, without a parent: where the Python goes.

    python benchmarks/send_cpu.py               # CPU microseconds per send (thread time)
    python benchmarks/send_cpu.py --profile     # and a cProfile table of the same work
    python benchmarks/send_cpu.py --evict 16000000   # caches made cold between sends
    python benchmarks/send_cpu.py --execute-round    # a request's blocks instead of a send's
    python benchmarks/send_cpu.py --kept             # each send into the last one's blocks

Builds what ResponseSender::Send builds for a small response (one INT32 [1] output) in a
private region of this process, runs the stub's half of the handshake on it with the flag
already set (so nothing waits), reads the reply and releases the blocks: the allocator, the
codecs, the mutex/condition set-up and the foreign calls of a send, and nothing of the parent's
work or of the wake-ups. Thread CPU time, so the machine's load inflates it less than wall time
(it still does: the load average is printed).

``--evict N`` writes N bytes of other memory between two sends, outside the clock: a live
stub's send runs after the parent and gRPC have had the CPUs, with cold caches.
``--kept`` writes each send into the last one's blocks, as the stub does in a stream
(messaging.py, take_kept). ``--execute-round`` measures the allocator's part of one request at
concurrency 1 instead: the parent builds its request (2 blocks), we build our reply (4 blocks in
one run), the parent frees its request, then we free our reply (segment.free_run's pair shape).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

from tritonstub import protocol  # noqa: E402

protocol.select("r24.10")

from tritonstub.ipc import handshake  # noqa: E402
from tritonstub.ipc.region import Region  # noqa: E402
from tritonstub.protocol import control  # noqa: E402
from tritonstub.protocol.responses import ResponseData  # noqa: E402
from tritonstub.protocol.scalars import Owned  # noqa: E402

L = protocol.current()
S = L.ResponseSendMessage
TYPE_INT32 = 8          # TRITONSERVER_TYPE_INT32 (protocol/dtypes.py)


def one_send(region: Region, payload) -> None:
    """messaging.Messenger.response_send's work, the parent's answer taken as given."""
    owned = Owned()
    data = ResponseData(outputs=[("OUT", TYPE_INT32, (1,), payload)], id=0, is_last_response=False)
    with region.locked():
        _, h = control.write_response_send(region, 1 << 20, 2 << 20, data, 0, owned)
    _handshake(region, h)
    owned.release(region)


def _handshake(region: Region, h: int) -> None:
    """The stub's half of pattern D on the ResponseSendMessage ``h``, the answer given."""
    box = control.mailbox(S, region.payload(h))
    mu, cv = handshake.sync_objects(region, box.mutex, box.cond, True)
    mu.lock()
    region.buf[box.flag] = 1                    # the parent's answer
    control.read_reply_error(region, box.payload, S, "error")
    region.buf[box.flag] = 0
    mu.unlock()
    cv.notify_all()


_KEPT: list = []


def one_send_kept(region: Region, payload) -> None:
    """The same send as the stub makes it in a stream: written into the last send's blocks
    (messaging.Messenger.take_kept), which stay allocated."""
    data = ResponseData(outputs=[("OUT", TYPE_INT32, (1,), payload)], id=0, is_last_response=False)
    sizes, fill = control.response_send_plan(data, 1 << 20, 2 << 20, 0)
    if _KEPT and _KEPT[0][0] == sizes and region.only_ours(_KEPT[0][1]):
        handles = _KEPT.pop()[1]
    else:
        handles = region.construct_many(sizes)
    _handshake(region, fill(region.buf, handles)[1])
    _KEPT.append((sizes, handles))


def one_execute_round(region: Region, _payload) -> None:
    """The allocator's work of one request at concurrency 1 (see the module docstring)."""
    request = region.construct_many((300, 300))
    reply = region.construct_many((96, 200, 200, 40))
    region.release_many(request)
    region.release_many(reply)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sends", type=int, default=20000)
    parser.add_argument("--profile", action="store_true", help="also print a cProfile table")
    parser.add_argument("--evict", type=int, default=0, metavar="BYTES",
                        help="write this many bytes of other memory between two sends")
    parser.add_argument("--execute-round", action="store_true",
                        help="a request's blocks (parent's and ours) instead of a send's")
    parser.add_argument("--kept", action="store_true",
                        help="each send written into the last one's blocks, as a stream's are")
    args = parser.parse_args(argv)
    region = Region.create(f"tritonstub_send_cpu_{uuid.uuid4().hex[:8]}", 1 << 20)
    payload = memoryview(np.array([5], np.int32)).cast("B")
    one = one_execute_round if args.execute_round else one_send_kept if args.kept else one_send
    junk = np.zeros(max(1, args.evict // 8))
    clock = time.thread_time_ns
    try:
        for _ in range(2000):
            one(region, payload)
        free_before = region.free_memory()
        spent = 0
        for _ in range(args.sends):
            if args.evict:
                junk += 1.0
            t0 = clock()
            one(region, payload)
            spent += clock() - t0
        assert region.free_memory() == free_before, "a send leaked region memory"
        if args.kept:
            region.release_many(_KEPT.pop()[1])
        what = "request round" if args.execute_round else "send"
        print(f"load average {os.getloadavg()[0]:.2f}: {spent / args.sends / 1000:.1f} us CPU per "
              f"{what} (stub side, no parent), {args.sends} {what}s"
              + (f", {args.evict} bytes written between two" if args.evict else ""))
        if args.profile:
            import cProfile
            import pstats
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(args.sends // 4):
                one(region, payload)
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(20)
    finally:
        region.close(unlink=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
