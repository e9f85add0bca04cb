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
"""
from __future__ import annotations

import json
import os
import sys
from types import ModuleType
from typing import Dict

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
    mod = sys.modules.get(TPBU)
    if mod is not None:
        return mod
    stock = os.path.join(ctx.python_lib, TPBU + ".py")
    if not os.path.exists(stock):
        from .tpbu_fallback import triton_python_backend_utils as mod
        sys.modules[TPBU] = mod
        return mod
    import importlib
    return importlib.import_module(TPBU)


def inject(stub, tpbu: ModuleType, cpbu: ModuleType) -> None:
    ctx = stub.ctx
    cpbu._inject_into_pb_utils(tpbu, get_model_dir=ctx.get_model_dir)


def setup_and_import(stub) -> ModuleType:
    """Paths, pb_utils and the import of model.py, as ModelContext::StubSetup does."""
    from ..loader import default as loader
    from .exc_text import call_user
    ctx = stub.ctx
    stem = ctx.module_stem()
    cpbu = c_utils()
    if ctx.is_default:
        sys.path.append(ctx.version_dir)
        sys.path.append(ctx.model_dir)
        sys.path.append(ctx.python_lib)
        module_name = f"{ctx.version}.{stem}"
    else:
        sys.path.append(ctx.runtime_modeldir)
        sys.path.append(ctx.python_lib)
        module_name = stem
    tpbu = _import_tpbu(ctx)
    inject(stub, tpbu, cpbu)
    # PyImport_ImportModule goes through __import__ with a non-empty fromlist.
    call_user(__import__, module_name, None, None, ["__doc__"], 0)
    return sys.modules[module_name]


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
