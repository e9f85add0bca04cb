"""The short version of the fuzz test (tritonstub.testing.fuzz, issue 15): the parent's messages
to our stub corrupted one field at a time, every message type. The stub must answer with a clear
error or exit cleanly: no crash, no unchecked Python error, no hang, a clean allocator walk after
every round, and nothing left behind (process, /dev/shm region).

The long run: ``python -m tritonstub.testing.fuzz --mutations 100000`` (docs/reliability.md).
"""
from __future__ import annotations

import os

from tritonstub.testing.fuzz import BAD, Fuzzer

#: Kinds of message that every run corrupts (the lossy ones, a BLS stream's responses, are
#: corrupted rarely on purpose and may not come up in a short run).
KINDS = ("auto_complete", "initialize", "execute", "finalize", "release", "bls",
         "reply:LogSendMessage", "reply:CustomMetricsMessage", "reply:ModelLoaderMessage",
         "reply:IsCancelledMessage", "reply:ResponseSendMessage")


def _stub_pids(workdir: str):
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if workdir.encode() in f.read():
                    pids.append(int(pid))
        except OSError:
            pass
    return pids


def test_corrupt_parent_messages_get_clear_errors_and_leave_nothing(tmp_path):
    lines = []
    fuzzer = Fuzzer(1200, seed=15, rate=1.0, rounds_per_stub=1000, auto_complete_every=10,
                    workdir=str(tmp_path), log=lines.append)
    fuzzer.initialize_share = 1.0
    tally = fuzzer.run()
    bad = {v: tally.verdicts[v] for v in BAD if tally.verdicts[v]}
    assert not bad, (bad, [(f.verdict, f.mutations, f.detail[-1500:]) for f in tally.findings])
    assert tally.total >= 1200
    missing = [k for k in KINDS if not tally.mutations[k]]
    assert not missing, (missing, dict(tally.mutations))
    assert tally.verdicts["ok"] > 100, dict(tally.verdicts)
    assert _stub_pids(str(tmp_path)) == []
    assert len(fuzzer.regions) == tally.launches
    assert [n for n in fuzzer.regions if os.path.exists(f"/dev/shm/{n}")] == []
