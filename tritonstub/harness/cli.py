"""`tritonstub check | config | infer`: one model directory through the harness, no tritonserver.

Each command is a thin layer over :class:`~tritonstub.harness.engine.Engine`: it loads the one
model (auto-complete, one stub per instance, initialize), does its job, and unloads it (finalize),
so every exit leaves no process and no region behind. Exit status: 0 success, 1 the model failed
(load error, inference error: Triton's text on stderr), 2 a usage error.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np

from ..errors import TritonStubError


def add_commands(sub) -> None:
    """Add check, config and infer to the `tritonstub` parser's subcommands."""
    def common(p):
        p.add_argument("model_dir", help="the model's directory (config.pbtxt and 1/model.py)")
        p.add_argument("--stub", default="ours",
                       help="'ours' (tritonstub, default), 'cpp' (the reference C++ stub) or the "
                            "path of any stub executable")
        p.add_argument("--debugpy", metavar="HOST:PORT", default=None,
                       help="start debugpy in the stub before model.py is imported "
                            "(loopback only); attach your IDE there")
        p.add_argument("--log-verbose", type=int, default=0, metavar="N",
                       help="verbose server log lines (as tritonserver --log-verbose)")
        p.add_argument("--load-timeout", type=float, default=300.0, metavar="SECONDS",
                       help="auto_complete_config and initialize must finish within this "
                            "(default %(default)s)")
        p.add_argument("--repository", default=None,
                       help="a model repository for BLS and model control (default: the model "
                            "directory's parent)")

    check = sub.add_parser(
        "check", help="load a model as Triton would (auto-complete, initialize, finalize)",
        description="Load MODEL_DIR through the harness: auto_complete_config, one stub per "
                    "instance, initialize, then finalize. Exit 0 when it loads; otherwise print "
                    "Triton's load error and exit 1.")
    common(check)
    check.set_defaults(func=_cmd_check)

    cfg = sub.add_parser(
        "config", help="print the model config Triton would use (after auto-complete)",
        description="Print the completed model config: config.pbtxt read and completed as "
                    "tritonserver 2.51 does, after the model's auto_complete_config.")
    common(cfg)
    cfg.add_argument("--json", action="store_true",
                     help="the JSON the stub receives (default: protobuf text, as config.pbtxt)")
    cfg.add_argument("--no-auto-complete", action="store_true",
                     help="do not run auto_complete_config (as --disable-auto-complete-config)")
    cfg.set_defaults(func=_cmd_config)

    inf = sub.add_parser(
        "infer", help="run one request through a model",
        description="Load MODEL_DIR, send one request, print the responses, unload. Inputs: "
                    "-i NAME=@file.npy (a numpy file) or -i NAME='[1, 2, 3]' (JSON; the dtype "
                    "comes from the model config). With --stub ours the stub gets this terminal: "
                    "breakpoint() in model.py works.")
    common(inf)
    inf.add_argument("-i", "--input", action="append", default=[], metavar="NAME=VALUE",
                     help="an input tensor: NAME=@file.npy or NAME=<JSON array>")
    inf.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                     help="a request parameter (int, true/false or string)")
    inf.add_argument("--request-id", default="")
    inf.add_argument("--output-name", action="append", default=None, metavar="NAME",
                     help="request only these outputs")
    inf.add_argument("--stream", action="store_true",
                     help="print each response as it comes (decoupled models)")
    inf.add_argument("--output", choices=("json", "npz"), default="json",
                     help="json (default) on stdout, or npz into --out")
    inf.add_argument("--out", default=None, help="file for --output npz")
    inf.add_argument("--timeout", type=float, default=300.0,
                     help="seconds to wait for the final response (default %(default)s)")
    inf.set_defaults(func=_cmd_infer)


# ------------------------------------------------------------------ helpers
def _engine(args, interactive: bool = False, auto_complete: bool = True):
    from .engine import Engine
    model_dir = Path(args.model_dir).resolve()
    if not (model_dir / "config.pbtxt").exists() and not any(model_dir.glob("*/model.py")):
        raise TritonStubError(f"{model_dir} is not a model directory: it has no config.pbtxt "
                              f"and no <version>/model.py")
    repository = Path(args.repository).resolve() if args.repository else model_dir.parent
    env = {}
    if args.debugpy:
        env["TRITONSTUB_DEBUGPY"] = args.debugpy
        env["TRITONSTUB_DEBUGPY_WAIT"] = "yes"
    engine = Engine(repository, stub=args.stub, model_control="explicit",
                    log_verbose=args.log_verbose, log_stream=sys.stderr,
                    interactive=interactive, env=env, auto_complete=auto_complete,
                    load_timeout_s=args.load_timeout, load_on_demand=True)
    name = engine.add_model_dir(model_dir)
    return engine, name


def _load(engine, name) -> bool:
    from .types import InferError
    try:
        engine.load(name)
        return True
    except InferError as e:
        print(f"tritonstub: {e.message}", file=sys.stderr)
        return False


def _cmd_check(args) -> int:
    engine, name = _engine(args)
    try:
        if not _load(engine, name):
            return 1
        model = engine.model(name)
        print(f"{name}: READY ({len(model.instances)} instance(s), "
              f"{'decoupled' if model.decoupled else 'default'} transaction policy, "
              f"stub {engine.stub.label})")
        return 0
    finally:
        engine.close()


def _cmd_config(args) -> int:
    engine, name = _engine(args, auto_complete=not args.no_auto_complete)
    try:
        if not _load(engine, name):
            return 1
        config = engine.model(name).config
        if args.json:
            print(json.dumps(config, indent=2, ensure_ascii=False))
        else:
            from google.protobuf import text_format
            from . import config as configs
            print(text_format.MessageToString(configs.from_json(json.dumps(config)),
                                              as_utf8=True), end="")
        return 0
    finally:
        engine.close()


def _parse_value(text: str):
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return int(text)
    except ValueError:
        return text


def _inputs(args, config: dict) -> Dict[str, object]:
    from .types import DATATYPES, InferTensor
    from .validate import datatype
    types = {i["name"]: datatype(i.get("data_type", "")) for i in config.get("input", [])}
    out: Dict[str, object] = {}
    for item in args.input:
        if "=" not in item:
            raise TritonStubError(f"-i {item!r}: expected NAME=@file.npy or NAME=<JSON array>")
        name, value = item.split("=", 1)
        if value.startswith("@"):
            array = np.load(value[1:], allow_pickle=False)
        else:
            try:
                data = json.loads(value)
            except ValueError as e:
                raise TritonStubError(f"-i {name}: not JSON ({e}); quote the array, "
                                      f"e.g. -i {name}='[1, 2]'") from None
            dt = types.get(name)
            if dt == "BYTES":
                array = np.array(data, dtype=object)
            else:
                array = np.array(data, dtype=DATATYPES[dt] if dt else None)
        out[name] = InferTensor.of(name, array, types.get(name))
    return out


def _to_json(resp) -> dict:
    body: dict = {"model_name": resp.model_name, "model_version": resp.model_version,
                  "final": resp.final}
    if resp.request_id:
        body["id"] = resp.request_id
    if resp.error is not None:
        body["error"] = {"code": resp.error.code, "message": resp.error.message}
        return body
    outs = []
    for t in resp.outputs:
        data = t.array.reshape(-1)
        if t.datatype == "BYTES":
            values = [v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else str(v)
                      for v in data]
        else:
            values = data.tolist()
        outs.append({"name": t.name, "datatype": t.datatype, "shape": t.shape, "data": values})
    body["outputs"] = outs
    return body


def _cmd_infer(args) -> int:
    from .types import InferRequest
    if args.output == "npz" and not args.out:
        raise TritonStubError("--output npz needs --out FILE.npz")
    engine, name = _engine(args, interactive=sys.stdin.isatty())
    try:
        if not _load(engine, name):
            return 1
        model = engine.model(name)
        params = dict(p.split("=", 1) for p in args.param if "=" in p)
        request = InferRequest.make(name, _inputs(args, model.config), request_id=args.request_id,
                                    parameters={k: _parse_value(v) for k, v in params.items()},
                                    requested_outputs=args.output_name)
        responses: List = []

        def show(resp):
            if args.stream and args.output == "json":
                print(json.dumps(_to_json(resp), ensure_ascii=False), flush=True)
        call = engine.submit(request, show)
        if not call.wait(args.timeout):
            call.cancel()
            print(f"tritonstub: no final response within {args.timeout:g} s", file=sys.stderr)
            return 1
        responses = call.responses
        if args.output == "npz":
            arrays = {}
            for i, resp in enumerate(responses):
                for t in resp.outputs:
                    key = t.name if len(responses) == 1 else f"{i}/{t.name}"
                    arrays[key] = t.array
            np.savez(args.out, **arrays)
        elif not args.stream:
            body = [_to_json(r) for r in responses]
            print(json.dumps(body[0] if len(body) == 1 else body, indent=2, ensure_ascii=False))
        return 1 if any(r.error is not None for r in responses) else 0
    finally:
        engine.close()
