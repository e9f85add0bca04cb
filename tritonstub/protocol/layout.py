"""The machinery of the layout tables: a C++ struct as a table of (field, type, offset).

Each era module (``r24_10`` ...) declares every struct that crosses the shared-memory boundary as a
:class:`StructLayout` table (field name, type, offset), named after the C++ struct, plus the
command enum. Nothing else in tritonstub may hard-code an offset: code asks the table.

A table is checked when it is built: fields may not overlap, must be aligned to their type
and must fit in the declared size. That catches a typo in an offset at import time.
"""
from __future__ import annotations

import struct
from operator import itemgetter
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Tuple

# name -> (struct format or None for opaque bytes, size, alignment)
FIELD_TYPES: Dict[str, Tuple[Optional[str], int, int]] = {
    "bool": ("<?", 1, 1),
    "u8": ("<B", 1, 1),
    "u16": ("<H", 2, 2),
    "i32": ("<i", 4, 4),
    "u32": ("<I", 4, 4),
    "enum": ("<i", 4, 4),       # C++ enums are int-sized
    "i64": ("<q", 8, 8),
    "u64": ("<Q", 8, 8),
    "handle": ("<q", 8, 8),     # bi::managed_external_buffer::handle_t (ptrdiff_t)
    "intptr": ("<Q", 8, 8),     # a raw pointer of the peer, passed back opaque
    "f64": ("<d", 8, 8),
    "mutex": (None, 40, 8),     # pthread_mutex_t (boost::interprocess::interprocess_mutex)
    "cond": (None, 48, 8),      # pthread_cond_t (interprocess_condition)
    "sem": (None, 32, 8),       # sem_t (interprocess_semaphore)
    "cuda_ipc": (None, 64, 1),  # cudaIpcMemHandle_t
}


_SCALARS: Dict[str, struct.Struct] = {}


def scalar(type_name: str) -> struct.Struct:
    """The codec of one field type (``"handle"``, ``"u32"`` ...), for a lone value such as a
    ring element of a message queue or the segment's ``"total size"``."""
    st = _SCALARS.get(type_name)
    if st is None:
        fmt = FIELD_TYPES[type_name][0]
        if fmt is None:
            raise KeyError(f"{type_name} is opaque: it has no scalar codec")
        st = _SCALARS[type_name] = struct.Struct(fmt)
    return st


class Field(NamedTuple):
    name: str
    type: str
    offset: int
    size: int
    codec: Optional[struct.Struct]


class StructLayout:
    """A C++ struct as a table of (field, type, offset).

    Attribute access gives the offset: ``IPCControlShm.stub_health`` is 0. ``get``/``set``
    read and write one scalar field of the struct placed at ``base`` in ``buf``.
    """

    def __init__(self, name: str, size: int, fields: Iterable[Tuple[str, str, int]]):
        self.name = name
        self.size = size
        self.fields: Dict[str, Field] = {}
        spans: List[Tuple[int, int, str]] = []
        for fname, ftype, off in fields:
            fmt, fsize, falign = FIELD_TYPES[ftype]
            if off % falign:
                raise ValueError(f"{name}.{fname}: offset {off} is not aligned to {falign}")
            if off + fsize > size:
                raise ValueError(f"{name}.{fname}: ends at {off + fsize}, past size {size}")
            for start, end, other in spans:
                if off < end and start < off + fsize:
                    raise ValueError(f"{name}.{fname} overlaps {other}")
            spans.append((off, off + fsize, fname))
            self.fields[fname] = Field(fname, ftype, off, fsize,
                                       struct.Struct(fmt) if fmt else None)
        # One precompiled struct over the whole object: scalar fields in offset order, with
        # pad bytes for gaps and opaque members, so read()/pack() are one C call each.
        fmt, pos, names = "<", 0, []
        for f in sorted(self.fields.values(), key=lambda f: f.offset):
            if f.offset > pos:
                fmt += f"{f.offset - pos}x"
            if f.codec is None:
                fmt += f"{f.size}x"
            else:
                fmt += f.codec.format.lstrip("<")
                names.append(f.name)
            pos = f.offset + f.size
        if size > pos:
            fmt += f"{size - pos}x"
        #: the whole object as one struct.Struct (little-endian, padding and opaque members as pad
        #: bytes); ``names`` lists its values in order. Codecs compose these into larger structs.
        self.struct = struct.Struct(fmt)
        self.names = tuple(names)
        self._defaults = {n: (False if self.fields[n].type == "bool" else 0) for n in names}
        self._packers: Dict[Tuple[str, ...], Callable[..., None]] = {}
        # Offsets as plain attributes: ``__getattr__`` (below) runs only after a failed
        # lookup, which costs more than the lookup (the decoupled flag is read so per send). A
        # field named like an attribute or method (MessageQueueShm.size) stays behind it.
        for fname, f in self.fields.items():
            if fname not in self.__dict__ and not hasattr(type(self), fname):
                self.__dict__[fname] = f.offset
        assert self.struct.size == size, (name, self.struct.size, size)

    def __getattr__(self, item: str) -> int:
        try:
            return self.__dict__["fields"][item].offset
        except KeyError:
            raise AttributeError(f"{self.__dict__.get('name')} has no field {item!r}") from None

    def __repr__(self) -> str:
        return f"<StructLayout {self.name} size={self.size}>"

    def get(self, buf, base: int, field: str):
        f = self.fields[field]
        return f.codec.unpack_from(buf, base + f.offset)[0]

    def set(self, buf, base: int, field: str, value) -> None:
        f = self.fields[field]
        f.codec.pack_into(buf, base + f.offset, value)

    def read(self, buf, base: int) -> Dict[str, object]:
        """All scalar fields as a dict (opaque fields such as mutexes are skipped)."""
        return dict(zip(self.names, self.struct.unpack_from(buf, base)))

    def pack(self, buf, base: int, **values) -> None:
        """Write the WHOLE struct: the given fields, every other scalar 0/False, padding and
        opaque members (mutexes…) zero. For building a fresh object in one call."""
        self.packer(*values)(buf, base, *values.values())

    def packer(self, *names: str) -> Callable[..., None]:
        """:meth:`pack` for these fields, in this order, as a function ``f(buf, base, *values)``.

        The fields' places in the struct are worked out once per list of names (and kept), so
        a call is one tuple, one ``itemgetter`` and one ``pack_into`` (the given values followed
        by the defaults of the others, picked in the struct's order), with the bytes of
        :meth:`pack`. A hot path calls it with positional values."""
        f = self._packers.get(names)
        if f is None:
            f = self._packers[names] = self._make_packer(names)
        return f

    def _make_packer(self, names: Tuple[str, ...]) -> Callable[..., None]:
        unknown = set(names) - self._defaults.keys()
        if unknown:
            raise KeyError(f"{self.name} has no field(s) {sorted(unknown)}")
        if len(set(names)) != len(names):
            raise KeyError(f"{self.name}: a field is named twice in {names}")
        others = [n for n in self.names if n not in names]
        where = {n: i for i, n in enumerate(names + tuple(others))}
        rest = tuple(self._defaults[n] for n in others)
        order = [where[n] for n in self.names]
        pack_into = self.struct.pack_into
        count = len(names)
        if len(order) == 1:
            pick1 = itemgetter(order[0])
            pick = lambda values: (pick1(values),)    # noqa: E731 - itemgetter(i) is no tuple
        elif order:
            pick = itemgetter(*order)
        else:
            pick = lambda values: ()                  # noqa: E731

        def pack(buf, base: int, *values) -> None:
            if len(values) != count:
                raise TypeError(f"{self.name}: {count} values expected ({', '.join(names)}), "
                                f"got {len(values)}")
            pack_into(buf, base, *pick(values + rest))
        return pack

    def write(self, buf, base: int, **values) -> None:
        for k, v in values.items():
            self.set(buf, base, k, v)

    @property
    def body(self) -> str:
        """The struct format without its byte-order prefix, for concatenating layouts."""
        return self.struct.format.lstrip("<")

    def table(self) -> str:
        """The layout as text, for docs and `tritonstub shm inspect --layouts`."""
        rows = [f"{self.name} ({self.size} bytes)"]
        for f in sorted(self.fields.values(), key=lambda f: f.offset):
            rows.append(f"  @{f.offset:<4d} {f.type:<8s} {f.name}")
        return "\n".join(rows)
