"""The Python side of the stub's set-up (Stub::StubSetup, AutoCompleteModelConfig, Initialize).

``c_python_backend_utils`` is our pure-Python module registered under that name in
``sys.modules`` (in the C++ stub it is a pybind11 embedded module). The stock
``triton_python_backend_utils.py`` is imported from argv[6] exactly as the C++ stub imports it;
when that file does not exist we register our own compatible module under its name. Then the
same attributes as pb_stub.cc are injected into it (TritonError … is_model_ready,
get_model_dir).

One deliberate difference: the C++ stub imports model.py first and injects the attributes
afterwards, so a model that touches e.g. ``pb_utils.Tensor`` at import time fails there with an
AttributeError; we inject first, so it works.

Which file is imported, and how, is tritonstub.loader's job (docs/loader.md): by default it
imports argv[1] or argv[9]/model.py exactly as the C++ stub does, and logs what it tried.
"""
from __future__ import annotations

import json
import os
import sys
from types import ModuleType
from typing import Dict, Optional

from ..errors import TritonStubError
from ..loader.default import ModelContext

TPBU = "triton_python_backend_utils"
CPBU = "c_python_backend_utils"



def install_runtime(runtime) -> None:
    from . import runtime as rt_mod
    rt_mod.set_runtime(runtime)


def c_utils() -> ModuleType:
    mod = sys.modules.get(CPBU)
    if mod is None:
        from . import c_python_backend_utils as mod
        sys.modules[CPBU] = mod
    return mod


def _import_tpbu(ctx: ModelContext) -> ModuleType:
    """Import the stock pb_utils from argv[6] by name, as C++ does.

    It is imported before model.py (see the module docstring), when the loader has not yet
    appended argv[6]; it is put on ``sys.path`` for this import only, so that ``sys.path`` ends
    exactly as the loader's rule builds it.
    """
    mod = sys.modules.get(TPBU)
    if mod is not None:
        return mod
    stock = os.path.join(ctx.python_lib, TPBU + ".py")
    if not os.path.exists(stock):
        from .tpbu_fallback import triton_python_backend_utils as mod
        sys.modules[TPBU] = mod
        return mod
    import importlib
    sys.path.append(ctx.python_lib)
    try:
        return importlib.import_module(TPBU)
    finally:
        del sys.path[len(sys.path) - 1 - sys.path[::-1].index(ctx.python_lib)]


def inject(stub, tpbu: ModuleType, cpbu: ModuleType) -> None:
    ctx = stub.ctx
    cpbu._inject_into_pb_utils(tpbu, get_model_dir=ctx.get_model_dir)


def setup_and_import(stub, config_json: Optional[str] = None,
                     stub_kind: str = "instance") -> ModuleType:  # loader.STUB_INSTANCE
    """Paths, pb_utils and the import of the model (StubSetup), through tritonstub.loader.

    ``config_json`` is the model config Triton sent (the AutoCompleteRequest's config, or
    Initialize's ``model_config``): its ``TRITONSTUB_*`` parameters configure the loader.
    ``stub_kind`` is ``loader.STUB_AUTO_COMPLETE`` or ``loader.STUB_INSTANCE``. Returns the object holding
    ``TritonPythonModel`` (the model module for the built-in loaders).

    Where the loader's log lines go: the auto-complete stub writes them to stderr (the parent
    reads no log messages from that stub); an instance stub sends them to the Triton log
    (LogRequest on stub_to_parent_mq, which the parent serves from before the launch) as they
    happen, before the stub->parent worker starts.
    """
    from .. import loader
    ctx = stub.ctx
    cpbu = c_utils()

    def prepare() -> None:
        inject(stub, _import_tpbu(ctx), cpbu)

    if stub_kind == loader.STUB_INSTANCE and stub.runtime is not None:
        sink = _ParentLog(stub.runtime.messenger)
    else:
        sink = _stderr_log
    try:
        return loader.load_model(ctx, stub_name=stub.name, stub_kind=stub_kind,
                                 config_json=config_json, emit=sink, prepare=prepare,
                                 notes=_era_notes(stub))
    finally:
        if isinstance(sink, _ParentLog):
            sink.close()


LOG_FILE = "tritonstub.loader"


def _era_notes(stub):
    """The protocol decision and its evidence (and any disagreement) for the loader's log."""
    from ..loader import INFO, WARNING
    decision = stub.era
    if decision is None:
        return ()
    return [(INFO, decision.summary())] + [(WARNING, w) for w in decision.warnings]


def _stderr_log(level: int, message: str) -> None:
    from .log import stub_log
    stub_log(level, message, LOG_FILE)


class _ParentLog:
    """The loader's lines to the Triton log, sent by a helper thread so the import never waits.

    :meth:`close` waits (at most ``timeout`` s) until every line is out, so they come before the
    stub's reply; lines the parent did not take by then go to stderr instead.
    """

    def __init__(self, messenger, timeout: float = 5.0):
        import queue
        import threading
        self.messenger = messenger
        self.timeout = timeout
        self.q: "queue.Queue" = queue.Queue()
        self.done = threading.Condition()
        self.pending = 0
        self.failed = False
        self.thread = threading.Thread(target=self._run, name="tritonstub-loader-log", daemon=True)
        self.thread.start()

    def __call__(self, level: int, message: str) -> None:
        if self.failed:
            _stderr_log(level, message)
            return
        with self.done:
            self.pending += 1
        self.q.put((level, message))

    def _run(self) -> None:
        while True:
            item = self.q.get()
            if item is None:
                return
            level, message = item
            if not self.failed:
                try:
                    self.messenger.send_log(LOG_FILE, 0, level, message)
                except Exception:  # noqa: BLE001 - parent gone or queue trouble: use stderr
                    self.failed = True
            if self.failed:
                _stderr_log(level, message)
            with self.done:
                self.pending -= 1
                self.done.notify_all()

    def close(self) -> None:
        import queue
        with self.done:
            self.done.wait_for(lambda: self.pending == 0, self.timeout)
            stuck = self.pending != 0
        if stuck:
            self.failed = True
            while True:
                try:
                    item = self.q.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    _stderr_log(*item)
        self.q.put(None)


def auto_complete(stub, module: ModuleType, config_json: str) -> str:
    """AutoCompleteModelConfig: returns the JSON the parent gets back."""
    from .exc_text import call_user
    tpbu = sys.modules[TPBU]
    cfg = call_user(tpbu.ModelConfig, config_json)
    cls = module.TritonPythonModel
    if hasattr(cls, "auto_complete_config"):
        cfg = call_user(cls.auto_complete_config, cfg)
    if not isinstance(cfg, tpbu.ModelConfig):
        raise TritonStubError(f"auto_complete_config function in model '{stub.name}' must "
                              "return a valid pb.ModelConfig object.")
    return json.dumps(cfg._model_config)


def initialize(stub, module: ModuleType, params: Dict[str, str]) -> None:
    """Stub::Initialize after the import: instance, workers, ``initialize(args)``."""
    from .exc_text import call_user
    cls = module.TritonPythonModel
    stub.model_instance = call_user(cls)
    stub.runtime.start_workers()
    init = getattr(stub.model_instance, "initialize", None)
    if init is not None:
        call_user(init, dict(params))
