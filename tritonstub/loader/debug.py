"""Attach an IDE to a model running inside real Triton: debugpy, started before the import.

``TRITONSTUB_DEBUGPY=5678`` makes the stub call ``debugpy.listen(("127.0.0.1", 5678))`` before
model.py is imported, so breakpoints in model.py (import time included, with
``TRITONSTUB_DEBUGPY_WAIT``) are hit. Only loopback addresses are accepted: debugpy runs any code
a client sends. debugpy is optional (``pip install 'tritonstub[debug]'``); asking for it when it is
not installed is a load error that says so.
"""
from __future__ import annotations

import sys
import threading

from ..errors import LoaderError
from .api import INFO, VERBOSE, Log
from .settings import Settings


def maybe_start(settings: Settings, stub_kind: str, log: Log) -> bool:
    """Start debugpy if the settings ask for it in this kind of stub; True if it listens."""
    address = settings["TRITONSTUB_DEBUGPY"]
    if address is None:
        return False
    which = settings["TRITONSTUB_DEBUGPY_STUB"]
    if which != "all" and which != stub_kind:
        log(VERBOSE, f"debugpy: not started in the {stub_kind} stub (TRITONSTUB_DEBUGPY_STUB={which})")
        return False
    try:
        import debugpy
    except ImportError as e:
        raise LoaderError(
            f"tritonstub: TRITONSTUB_DEBUGPY={settings.raw['TRITONSTUB_DEBUGPY']} asks for debugpy, "
            f"but it cannot be imported by {sys.executable} ({e}). Install it into that "
            f"environment: pip install 'tritonstub[debug]' (or pip install debugpy), or remove "
            f"TRITONSTUB_DEBUGPY.") from None
    # Children the model starts are not debugged: the stub's environment stays as it is.
    debugpy.configure(subProcess=False)
    try:
        debugpy.listen((address.host, address.port))
    except Exception as e:  # noqa: BLE001 - debugpy raises RuntimeError/OSError for a busy port
        raise LoaderError(
            f"tritonstub: debugpy could not listen on {address}: {e}. Another process (or another "
            f"instance of this model) may hold the port: give the model one instance "
            f"(instance_group count: 1) while debugging, or pick another port.") from None
    log(INFO, f"debugpy is listening on {address}: attach a debugger ('attach' to "
              f"{address.host}:{address.port})")
    wait = settings["TRITONSTUB_DEBUGPY_WAIT"]
    if wait is None:
        return True
    limit = "" if wait == float("inf") else f" (at most {wait:g} s)"
    log(INFO, f"debugpy: waiting for a debugger to attach to {address} before importing the "
              f"model{limit}")
    timer = None
    if wait != float("inf"):
        timer = threading.Timer(wait, debugpy.wait_for_client.cancel)
        timer.daemon = True
        timer.start()
    try:
        debugpy.wait_for_client()
    finally:
        if timer is not None:
            timer.cancel()
    if debugpy.is_client_connected():
        log(INFO, "debugpy: a debugger is attached; importing the model")
    else:
        log(INFO, f"debugpy: no debugger attached within {wait:g} s; importing the model anyway")
    return True
