"""Read-only decoding of a python-backend region, for `tritonstub shm inspect`.

The region is read as a snapshot (the file is never mapped writable and no lock is taken, so a
live server is not disturbed). A snapshot of a busy region can be torn; the decoder then retries
a few times and reports the consistency error it still sees. From the snapshot we report the
Boost segment (size, free memory, every block with the ref count of Construct'ed objects, the
named objects) and, when the IPC control block is found, the five queues and their fill levels.

The control block's handle is argv[7] of the stub; when it is not given we look for it: the
first allocated object whose five queue fields all name valid MessageQueueShm objects.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

from .. import protocol
from ..protocol.layout import scalar
from .region import SHM_DIR, region_path
from .segment import ManagedSegment
from ..errors import NotASegment, RegionNotFound, SegmentCorrupted, ShmError

L = protocol.current()

_U32 = L.AllocatedShmOwnership.fields["ref_count"].codec
_U64 = scalar("u64")


def _snapshot(name: str) -> bytearray:
    path = name if name.startswith("/") and os.path.exists(name) else region_path(name)
    try:
        with open(path, "rb") as f:
            return bytearray(f.read())
    except FileNotFoundError:
        raise RegionNotFound(f"no shared-memory region named '{name}' (looked for {path}); "
                             "`tritonstub shm list` shows the regions that exist", region=name)


def _queue_info(buf: bytearray, seg: ManagedSegment, handle: int) -> Optional[Dict[str, Any]]:
    """Decode a MessageQueueShm at handle, or None if it does not look like one."""
    Q = L.MessageQueueShm
    p = handle + L.OWNERSHIP_HEADER
    if handle <= 0 or p + Q.size > len(buf):
        return None
    size = Q.get(buf, p, "size")
    ring = Q.get(buf, p, "buffer")
    head = Q.get(buf, p, "head")
    tail = Q.get(buf, p, "tail")
    if not (0 < size < (1 << 24)) or ring <= 0 or ring + 16 + 8 * size > len(buf):
        return None
    if not (0 <= head < size and 0 <= tail < size):
        return None
    full = _U64.unpack_from(buf, p + Q.sem_full)[0] & 0xFFFFFFFF
    empty = _U64.unpack_from(buf, p + Q.sem_empty)[0] & 0xFFFFFFFF
    return {"handle": handle, "capacity": size, "buffer": ring, "head": head, "tail": tail,
            "fill": full, "free_slots": empty,
            "ref_count": _U32.unpack_from(buf, handle)[0],
            "buffer_ref_count": _U32.unpack_from(buf, ring)[0]}


def _find_control(buf: bytearray, seg: ManagedSegment, named: set) -> Optional[int]:
    C = L.IPCControlShm
    for blk in seg.blocks():
        if not blk.allocated:
            continue
        h = blk.offset + 16
        if h in named or h + L.OWNERSHIP_HEADER + C.size > len(buf):
            continue
        p = h + L.OWNERSHIP_HEADER
        if all(_queue_info(buf, seg, C.get(buf, p, f)) for f in L.QUEUE_FIELDS):
            return h
    return None


def inspect_region(name: str, control_handle: Optional[int] = None,
                   retries: int = 3) -> Dict[str, Any]:
    """Decode a region into a JSON-able dict. Raises ShmError subclasses on bad input."""
    last: Optional[Exception] = None
    for _ in range(max(1, retries)):
        buf = _snapshot(name)
        try:
            return _decode(name, buf, control_handle)
        except SegmentCorrupted as e:   # a torn snapshot of a busy region; try again
            last = e
    assert last is not None
    raise last


def _decode(name: str, buf: bytearray, control_handle: Optional[int]) -> Dict[str, Any]:
    region = os.path.basename(name)
    seg = ManagedSegment(buf, region=region)
    report = seg.check()
    named = {}
    for nm, off, nbytes in seg.named_objects():
        named[nm] = {"value_offset": off, "value_bytes": nbytes}
    named_blocks = set()
    for blk in seg.blocks():
        if blk.allocated and any(blk.offset < v["value_offset"] < blk.offset + blk.units * 16
                                 for v in named.values()):
            named_blocks.add(blk.offset + 16)
    total_size = None
    if L.TOTAL_SIZE_NAME in named:
        total_size = _U64.unpack_from(buf, named[L.TOTAL_SIZE_NAME]["value_offset"])[0]
    blocks: List[Dict[str, Any]] = []
    for blk in seg.blocks():
        entry: Dict[str, Any] = {"offset": blk.offset, "units": blk.units,
                                 "bytes": blk.units * 16, "allocated": blk.allocated}
        if blk.allocated:
            h = blk.offset + 16
            entry["handle"] = h
            if h in named_blocks:
                entry["named"] = True
            else:
                entry["ref_count"] = _U32.unpack_from(buf, h)[0]
        blocks.append(entry)
    out: Dict[str, Any] = {
        "region": region,
        "file_size": len(buf),
        "segment_size": seg.size,
        "total_size": total_size,
        "allocated_bytes": seg.allocated,
        "free_memory": seg.free_memory(),
        "free_blocks": sum(1 for b in blocks if not b["allocated"]),
        "allocated_blocks": sum(1 for b in blocks if b["allocated"]),
        "named_objects": named,
        "consistent": True,
        "blocks": blocks,
    }
    if report is not None and hasattr(report, "__dict__"):
        out["check"] = {k: v for k, v in vars(report).items()
                        if isinstance(v, (int, float, str, bool))}
    if control_handle is None:
        control_handle = _find_control(buf, seg, named_blocks)
    if control_handle is not None:
        C = L.IPCControlShm
        p = control_handle + L.OWNERSHIP_HEADER
        if p + C.size > len(buf):
            raise ShmError(f"IPC control handle {control_handle} lies outside the region",
                           region=region, offset=control_handle)
        ctrl = {"handle": control_handle,
                "stub_health": C.get(buf, p, "stub_health"),
                "uses_env": C.get(buf, p, "uses_env"),
                "decoupled": C.get(buf, p, "decoupled"),
                "queues": {}}
        for f in L.QUEUE_FIELDS:
            q = _queue_info(buf, seg, C.get(buf, p, f))
            ctrl["queues"][f] = q if q is not None else {"handle": C.get(buf, p, f),
                                                         "error": "not a message queue"}
        out["ipc_control"] = ctrl
    return out


def format_text(info: Dict[str, Any], show_blocks: bool = True) -> str:
    lines = [
        f"region          {info['region']}",
        f"size            {info['segment_size']} bytes (file {info['file_size']}, "
        f"total size {info['total_size']})",
        f"free memory     {info['free_memory']} bytes in {info['free_blocks']} free block(s)",
        f"allocated       {info['allocated_bytes']} bytes in {info['allocated_blocks']} block(s)",
        "consistency     ok (blocks, free tree and named index walked)",
        "named objects   " + ", ".join(f"{k!r} @ {v['value_offset']} ({v['value_bytes']} B)"
                                       for k, v in info["named_objects"].items()),
    ]
    ctrl = info.get("ipc_control")
    if ctrl:
        lines.append(f"ipc control     handle {ctrl['handle']} stub_health={int(ctrl['stub_health'])}"
                     f" uses_env={int(ctrl['uses_env'])} decoupled={int(ctrl['decoupled'])}")
        for qn, q in ctrl["queues"].items():
            if "error" in q:
                lines.append(f"  {qn:<30s} handle {q['handle']}: {q['error']}")
            else:
                lines.append(f"  {qn:<30s} handle {q['handle']:<7d} {q['fill']}/{q['capacity']}"
                             f" queued (head {q['head']}, tail {q['tail']}, refs {q['ref_count']})")
    else:
        lines.append("ipc control     not found (pass --control HANDLE, the stub's argv[7])")
    if show_blocks:
        lines.append("blocks (offset units state [ref count])")
        for b in info["blocks"]:
            state = "used" if b["allocated"] else "FREE"
            extra = ""
            if b.get("named"):
                extra = " named"
            elif "ref_count" in b:
                extra = f" refs={b['ref_count']}"
            lines.append(f"  {b['offset']:>10d} {b['units']:>8d} {state}{extra}")
    return "\n".join(lines)


def list_regions(prefix: str = "") -> List[str]:
    """Names in /dev/shm starting with ``prefix``, sorted."""
    try:
        names = sorted(os.listdir(SHM_DIR))
    except FileNotFoundError:
        return []
    return [n for n in names if n.startswith(prefix)]


__all__ = ["inspect_region", "format_text", "list_regions", "NotASegment"]
