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
``r24_10``     the tables of one era (one module per era; a new era is a new table plus a diff).
``current()``  the tables of the era this process speaks. **The only place that picks a version**:
               code outside this package asks ``current()`` instead of importing an era module.
``select()``   picks the era once, at start-up, before the codecs bind their precompiled structs.

The codecs (``scalars``, ``tensors``, ``requests``, ``responses``, ``control``, ``dtypes``) bind
their structs to ``current()`` when they are imported, which is what keeps the per-request fast
path one ``struct`` call per object. That is why the era is chosen once, before any of them is
imported, and cannot change afterwards.
"""
from __future__ import annotations

import importlib
import threading
from types import ModuleType
from typing import Dict, Optional

#: era name -> module holding its layout tables
TABLES: Dict[str, str] = {"r24.10": "r24_10"}
DEFAULT_ERA = "r24.10"

_lock = threading.Lock()
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
