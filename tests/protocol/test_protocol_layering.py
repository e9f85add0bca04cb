"""The wire lives in ``tritonstub/protocol``: no other module names a protocol era or packs
bytes by hand.

Outside the package, code asks ``protocol.current()`` for the tables and calls the codecs; it
does not import an era module (``r24_10`` ...) and does not use the ``struct`` module (a byte
format written by hand is a layout the tables do not know about).
"""
from __future__ import annotations

import ast
from pathlib import Path

import tritonstub
from tritonstub import protocol

ROOT = Path(tritonstub.__file__).resolve().parent
ERA_MODULES = set(protocol.TABLES.values())

#: Modules outside protocol/ that may use ``struct``, and why.
STRUCT_ALLOWED = {
    # A stand-in for the stock triton_python_backend_utils.py that model.py imports when the
    # backend's copy is missing: it reproduces the stock BYTES helpers, errors included, and
    # must not depend on tritonstub internals.
    "stub/tpbu_fallback/triton_python_backend_utils.py",
}


def outside_protocol():
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if not rel.startswith("protocol/"):
            yield rel, ast.parse(path.read_text(), rel)


def test_no_module_outside_protocol_imports_an_era():
    offenders = []
    for rel, tree in outside_protocol():
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [a.name for a in node.names]
            if any(part in ERA_MODULES for n in names for part in n.split(".")):
                offenders.append(f"{rel}:{node.lineno}")
    assert offenders == []


def test_no_module_outside_protocol_uses_struct():
    offenders = []
    for rel, tree in outside_protocol():
        if rel in STRUCT_ALLOWED:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(a.name == "struct" for a in node.names):
                offenders.append(f"{rel}:{node.lineno}")
            elif isinstance(node, ast.ImportFrom) and node.module == "struct":
                offenders.append(f"{rel}:{node.lineno}")
    assert offenders == []


def test_the_allow_list_is_still_needed():
    for rel in STRUCT_ALLOWED:
        assert "import struct" in (ROOT / rel).read_text(), f"{rel} no longer needs its exemption"


def test_one_era_is_selected_and_it_cannot_change_under_the_codecs():
    import pytest
    from tritonstub.errors import ProtocolError
    assert protocol.select(protocol.DEFAULT_ERA) is protocol.current()
    with pytest.raises(ProtocolError, match="no layout tables"):
        protocol.select("r99.99")


def test_every_era_we_speak_has_its_tables():
    from tritonstub.protocol import eras
    assert set(eras.SUPPORTED) <= set(protocol.TABLES)
    for name in eras.SUPPORTED:
        assert protocol.codecs(name).tables is protocol.tables(name)
        assert protocol.tables(name).VERSION == name
