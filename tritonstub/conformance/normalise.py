"""Normalisation: what may legitimately differ between two runs of one case, and nothing else.

Two stubs (or two servers) running the same case produce texts that differ in ways no user
cares about: the repository's path, the model's served name (the differential Python cases serve
``<base>_cpp`` and ``<base>_ours`` side by side), the standard library's location and line
numbers (the C++ stub embeds Debian's Python, ours runs the venv's), object addresses, and the
timestamp and pid of a log line. :class:`Normaliser` rewrites exactly those; a case file may add
rules of its own (``"normalise": [[regex, replacement], ...]``).
"""
from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path
from typing import Iterable, List, Optional, Tuple, Union


def _stdlib_roots() -> List[str]:
    """Standard-library directories of the interpreters the two stubs run.

    Ours runs this interpreter (install_our_stub's default); the C++ stub embeds the system
    libpython3.11 and finds its stdlib under /usr/lib/python3.11.
    """
    roots = {sysconfig.get_path("stdlib"), sysconfig.get_path("platstdlib"),
             f"/usr/lib/python{sys.version_info.major}.{sys.version_info.minor}",
             "/usr/lib/python3.11", "/usr/local/lib/python3.11"}
    return sorted({str(Path(r)) for r in roots if r}, key=len, reverse=True)


#: A frame line of pybind11's ``At:`` block: ``  <co_filename>(<lineno>): <co_name>``.
_AT_FRAME = re.compile(r"^(?P<indent>  )(?P<file>\S.*?)\((?P<line>\d+)\): (?P<func>.*)$", re.MULTILINE)
#: A frame line of Python's own traceback format: ``  File "<path>", line <n>, in <func>``.
_PY_FRAME = re.compile(r'^(?P<indent>\s*)File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>.*)$',
                       re.MULTILINE)
#: The core's log prefix: ``<L><MMDD> <HH:MM:SS.uuuuuu> <pid> <file>:<line>] ``.
_LOG_PREFIX = re.compile(r"^(?P<level>[IWEV])\d{4} \d{2}:\d{2}:\d{2}\.\d{6} +\d+ (?P<where>\S+?:\d+)\] ?")


class Normaliser:
    """Makes texts from ``<base>_cpp`` and ``<base>_ours`` comparable; changes nothing else.

    What it rewrites, and why each is legitimate:

    1. **Model and instance names.** ``<base>_cpp`` and ``<base>_ours`` (for the module's bases
       only, as whole names: also inside instance names ``<base>_cpp_0``, paths
       ``…/<base>_cpp/1/model.py`` and quoted names) become ``<base>_<stub>``.
    2. **Repository roots.** The main and quarantine repository paths become ``<repo>``
       (quarantined ``_cpp`` models live in another directory).
    3. **Standard-library frames in tracebacks**, in both pybind11's ``At:`` format
       (``  <file>(<line>): <func>``) and Python's (``File "<file>", line <n>, in <func>``):
       the C++ stub embeds Debian's Python 3.11.2 (stdlib in /usr/lib/python3.11) while ours
       runs the venv's 3.11.7 (another prefix), so a stdlib frame's directory becomes
       ``<stdlib>`` and its line number ``#``; ``<frozen …>`` frames keep their module name and
       lose only the line number. The frame itself, its file name below the stdlib root, its
       function and the order of all frames are kept, and frames of model code,
       triton_python_backend_utils.py and anything else are left untouched.

    Timestamps and pids are dropped from log lines by :meth:`log_line`, keeping the level letter,
    ``file:line`` and the message.
    """

    def __init__(self, bases: Iterable[str], repo_roots: Iterable[Union[str, Path]] = ()):
        bases = sorted(set(bases), key=len, reverse=True)
        alternatives = "|".join(re.escape(b) for b in bases) or r"(?!)"
        # A whole name: not preceded by a name character, not followed by one except "_" (which
        # starts an instance suffix such as _0_0).
        self._names = re.compile(rf"(?<![A-Za-z0-9_])({alternatives})_(?:cpp|ours)(?![A-Za-z0-9])")
        self._repos = [str(Path(r)) for r in repo_roots]
        self._stdlib = _stdlib_roots()

    def _frame_file(self, path: str) -> Tuple[str, bool]:
        """(normalised path, True if it is a stdlib or frozen frame whose line number goes)."""
        if path.startswith("<frozen ") and path.endswith(">"):
            return path, True
        for root in self._stdlib:
            if path.startswith(root + "/"):
                rest = path[len(root) + 1:]
                if not rest.startswith(("site-packages/", "dist-packages/")):
                    return "<stdlib>/" + rest, True
        return path, False

    def _at_frame(self, m: re.Match) -> str:
        path, drop = self._frame_file(m.group("file"))
        return f"{m.group('indent')}{path}({'#' if drop else m.group('line')}): {m.group('func')}"

    def _py_frame(self, m: re.Match) -> str:
        path, drop = self._frame_file(m.group("file"))
        return f'{m.group("indent")}File "{path}", line {"#" if drop else m.group("line")}, in {m.group("func")}'

    def text(self, text: Optional[str]) -> Optional[str]:
        if text is None:
            return None
        text = _AT_FRAME.sub(self._at_frame, text)
        text = _PY_FRAME.sub(self._py_frame, text)
        for root in self._repos:
            text = text.replace(root + "/", "<repo>/")
        return self._names.sub(r"\1_<stub>", text)

    def value(self, value):
        """Normalise every string inside a JSON-like value (dict keys included)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.value(v) for v in value)
        if isinstance(value, dict):
            return {self.value(k): self.value(v) for k, v in value.items()}
        return value

    def log_line(self, line: str) -> str:
        """``I1121 06:11:11.415474 15542 model.py:17] "msg"`` -> ``I model.py:17] "msg"``."""
        m = _LOG_PREFIX.match(line)
        if m:
            line = f"{m.group('level')} {m.group('where')}] {line[m.end():]}"
        return self.text(line)


_ADDRESS = re.compile(r" at 0x[0-9a-f]+>")


def mask_addresses(text: str) -> str:
    """Object reprs carry addresses that differ per run and per stub: `` at 0x…>`` for all."""
    return _ADDRESS.sub(" at 0x…>", text)
