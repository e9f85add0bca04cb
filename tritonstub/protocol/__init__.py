"""The python backend's stub <-> parent protocol, sans I/O.

``eras``: which python_backend releases speak which wire ("eras"), how a parent's era is told
from its ``libtriton_python.so``, and which eras tritonstub speaks.

Theory of operation
-------------------
Everything that crosses the shared-memory boundary is decided in this package, and nothing in
it does I/O: no mmap, no process, no pthread call. Functions take a *heap* (a buffer plus an
allocator: the stub's mapped ``ipc.region.Region`` in production, ``ipc.heap.Heap`` over a
``bytearray`` in the unit tests) and handles, and return plain values (or objects built by the
factories a caller passes in). Each codec is written for both roles: the stub's readers of the
parent's messages and writers of its own, and the reverse, for a harness that plays the parent.

``layout``     the table machinery: a C++ struct as (field, type, offset), checked at import.
``r24_10``     the tables of one era. Each later or earlier era is a module that imports its
``r25_02`` ... neighbour's tables and redefines only what changed (a new era is a table plus a
               diff); :data:`TABLES` maps era names to them.
``current()``  the tables of the era this process speaks. **The only place that picks a version**:
               code outside this package asks ``current()`` instead of importing an era module.
``select()``   picks that era once, at start-up, before the codecs bind their precompiled structs.
``common()``   the tables every era shares (:data:`COMMON`: the control block's queue fields,
               the queues, IPCMessageShm, strings, maps, the start-up replies), for code that
               runs before the era is known (the region, the queues, the stub's first contact).
``codecs(e)``  the codec modules bound to era ``e``, for a process that plays more than one era
               (a harness parent, the tests) or that must read before it has chosen (the stub).

The codecs (``scalars``, ``tensors``, ``requests``, ``responses``, ``control``) bind their
structs to ``current()`` when they are imported, which is what keeps the per-request fast path
one ``struct`` call per object. So the module-level codecs speak one era, chosen once, before
any of them is imported, and it cannot change afterwards. Where an era changed behaviour rather
than a layout (a field that exists only from r25.02 on, a command appended in r25.04), the codec
asks its tables (``"parameters" in ResponseShm.fields``), so one codec source serves every era.

``codecs(e)`` for another era loads the same codec sources a second time as the modules of a
private package, ``tritonstub._protocol_<era>``, whose ``current()`` returns ``e``'s tables;
``layout``, ``dtypes``, ``eras`` and the table modules are shared, not reloaded. A codec module
is thus written once and bound once per era that the process uses, and the era-free modules
(and the module-level API of the selected era) stay what they were.
"""
from __future__ import annotations

import importlib
import sys
import threading
from types import ModuleType, SimpleNamespace
from typing import Dict, Optional

#: era name -> module holding its layout tables
TABLES: Dict[str, str] = {"r23.07": "r23_07", "r23.10": "r23_10", "r23.12": "r23_12", "r24.03": "r24_03", "r24.04": "r24_04", "r24.06": "r24_06", "r24.08": "r24_08", "r24.10": "r24_10", "r25.02": "r25_02", "r25.04": "r25_04",
                          "r26.03": "r26_03"}
DEFAULT_ERA = "r24.10"

#: The tables every era in TABLES shares byte for byte (fields, offsets and size; a later era
#: may only add a field in what was padding, as r26.03 does in IPCControlShm), so that code
#: which runs before the era is known may use them through :func:`common`.
COMMON = ("AllocatedShmOwnership", "IPCControlShm", "MessageQueueShm", "IPCMessageShm",
          "StringShm", "DictShm", "PairShm", "InitializeResponseShm",
          "AutoCompleteResponseShm", "SendMessageBase", "LogSendMessage")

#: The modules that bind tables at import (loaded once per era by :func:`codecs`), in the order
#: they import each other.
CODEC_MODULES = ("scalars", "tensors", "requests", "responses", "control")
#: Modules of this package a codec imports that hold no era (shared by every era's codecs).
_SHARED = ("layout", "dtypes", "eras")

_lock = threading.RLock()
_current: Optional[ModuleType] = None


def select(era: str) -> ModuleType:
    """Pick the era this process speaks; returns its table module.

    Selecting the era already in use is a no-op. Once ``current()`` has been asked (a codec
    bound its structs to it), another era cannot be selected.
    """
    global _current
    if era not in TABLES:
        from ..errors import ProtocolError
        raise ProtocolError(f"no layout tables for protocol era {era!r}; "
                            f"tritonstub has tables for {sorted(TABLES)}")
    with _lock:
        module = importlib.import_module(f"{__name__}.{TABLES[era]}")
        if _current is not None and _current is not module:
            from ..errors import ProtocolError
            raise ProtocolError(f"protocol era {_current.VERSION} is already in use; select "
                                f"{era} before the codecs are imported")
        _current = module
        return module


def current() -> ModuleType:
    """The layout tables of the era this process speaks (the default era if none was picked)."""
    if _current is None:
        return select(DEFAULT_ERA)
    return _current


def selected() -> Optional[str]:
    """The era the module-level codecs speak, or None while none was picked."""
    return None if _current is None else _current.VERSION


def tables(era: str) -> ModuleType:
    """The layout tables of one era, without selecting it."""
    if era not in TABLES:
        from ..errors import ProtocolError
        raise ProtocolError(f"no layout tables for protocol era {era!r}; "
                            f"tritonstub has tables for {sorted(TABLES)}")
    return importlib.import_module(f"{__name__}.{TABLES[era]}")


def common() -> ModuleType:
    """Tables for the structs of :data:`COMMON` only, whatever era the parent speaks; selects
    nothing. (They are the default era's tables; tests/protocol checks every era agrees.)"""
    return tables(DEFAULT_ERA)


_codecs: Dict[str, SimpleNamespace] = {}


def first_contact() -> SimpleNamespace:
    """The codecs for the parent's first command and our reply to it, before the era is known.

    Every era reads these alike (IPCMessageShm, the InitializeRequest map, the auto-complete
    config string, the start-up replies: :data:`COMMON`), so they are the default era's codecs;
    they never select an era, so the stub can still choose one after reading."""
    return codecs(DEFAULT_ERA)


def codecs(era: str) -> SimpleNamespace:
    """The codecs of one era: a namespace with ``era``, ``tables`` (its table module) and one
    attribute per module of :data:`CODEC_MODULES` (``.responses.write_response`` ...).

    For the selected era these are the module-level codecs themselves; for any other era, the
    same sources loaded under ``tritonstub._protocol_<era>`` and bound to that era's tables.
    Selects nothing."""
    t = tables(era)
    with _lock:
        if _current is t:
            mods = {m: importlib.import_module(f"{__name__}.{m}") for m in CODEC_MODULES}
            return SimpleNamespace(era=era, tables=t, **mods)
        ns = _codecs.get(era)
        if ns is not None:
            return ns
        root = __name__.rsplit(".", 1)[0]
        pkg_name = f"{root}._protocol_{TABLES[era]}"
        pkg = ModuleType(pkg_name, f"The codecs of tritonstub.protocol bound to era {era}.")
        pkg.__path__ = list(__path__)
        pkg.__package__ = pkg_name
        pkg.current = lambda: t
        pkg.select = select
        pkg.TABLES = TABLES
        pkg.DEFAULT_ERA = DEFAULT_ERA
        sys.modules[pkg_name] = pkg
        for m in _SHARED:
            sys.modules[f"{pkg_name}.{m}"] = importlib.import_module(f"{__name__}.{m}")
        for m in TABLES.values():
            sys.modules[f"{pkg_name}.{m}"] = importlib.import_module(f"{__name__}.{m}")
        mods = {m: importlib.import_module(f"{pkg_name}.{m}") for m in CODEC_MODULES}
        ns = _codecs[era] = SimpleNamespace(era=era, tables=t, **mods)
        return ns
