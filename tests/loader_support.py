"""Run tritonstub.loader.load_model in a fresh interpreter, as the stub would, and report.

The loader changes ``sys.path`` and ``sys.modules`` (that is its job), so every case runs in its
own process: :func:`run_loader` returns what it loaded (or the error text the client would get)
and every log line it emitted.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]

RUNNER = textwrap.dedent("""
    import json, sys
    args = json.loads(sys.argv[1])
    sys.argv[:] = [""]
    from tritonstub.errors import TritonStubError
    from tritonstub.loader import load_model
    from tritonstub.loader.default import ModelContext, split_model_path
    from tritonstub.stub import pysetup
    from tritonstub.stub.exc_text import error_text, register_boundary

    tokens = split_model_path(args["model_path"])
    ctx = ModelContext(args["model_path"], args["python_lib"], args["runtime_dir"], tokens[-2])

    class FakeStub:
        pass
    fake = FakeStub()
    fake.ctx = ctx
    lines = []
    out = {}

    def prepare():
        pysetup.inject(fake, pysetup._import_tpbu(ctx), pysetup.c_utils())

    @register_boundary
    def run():
        try:
            obj = load_model(ctx, stub_name=args["name"], stub_kind=args["kind"],
                             config_json=args["config"], emit=lambda l, m: lines.append([l, m]),
                             prepare=prepare)
        except BaseException as e:
            out["ok"] = False
            out["error"] = str(e) if isinstance(e, TritonStubError) else error_text(e)
            out["type"] = type(e).__name__
            return
        out["ok"] = True
        out["module"] = getattr(obj, "__name__", None)
        out["file"] = getattr(obj, "__file__", None)
        out["class"] = obj.TritonPythonModel.__qualname__
        out["resolved"] = ctx.python_model_path()
        instance = obj.TritonPythonModel()
        out["probe"] = instance.probe() if hasattr(instance, "probe") else None

    run()
    out["log"] = lines
    out["sys_path"] = sys.path
    exec(args.get("after", ""))
    print("LOADER-RESULT " + json.dumps(out))
""")


@dataclass
class LoaderRun:
    ok: bool
    raw: dict
    stderr: str

    @property
    def error(self) -> str:
        return self.raw.get("error", "")

    @property
    def log(self) -> List[Tuple[int, str]]:
        return [(level, msg) for level, msg in self.raw["log"]]

    def log_text(self) -> str:
        return "\n".join(msg for _, msg in self.log)

    def __getitem__(self, key):
        return self.raw[key]


def model_dir(root: Path, name: str = "m", model_py: Optional[str] = None, version: str = "1",
              files: Optional[Mapping[str, str]] = None) -> Path:
    """<root>/<name>/<version>/model.py (only if model_py is given) and extra files."""
    d = root / name
    (d / version).mkdir(parents=True, exist_ok=True)
    if model_py is not None:
        (d / version / "model.py").write_text(textwrap.dedent(model_py))
    for rel, text in (files or {}).items():
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return d


def config_with(parameters: Optional[Mapping[str, str]] = None, name: str = "m") -> str:
    cfg: Dict[str, object] = {"name": name, "backend": "python"}
    if parameters:
        cfg["parameters"] = {k: {"string_value": v} for k, v in parameters.items()}
    return json.dumps(cfg)


def run_loader(model_path: Path, *, python_lib: Path, runtime_dir: str = "DEFAULT",
               parameters: Optional[Mapping[str, str]] = None, env: Optional[Mapping[str, str]] = None,
               kind: str = "instance", name: str = "m_0_0", after: str = "",
               cwd: Optional[Path] = None, timeout: float = 60.0) -> LoaderRun:
    args = {"model_path": str(model_path), "python_lib": str(python_lib), "runtime_dir": runtime_dir,
            "config": config_with(parameters), "kind": kind, "name": name, "after": after}
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TRITONSTUB_")}
    full_env["PYTHONPATH"] = str(ROOT)
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(args)], capture_output=True,
                          text=True, timeout=timeout, env=full_env, cwd=str(cwd or python_lib))
    for line in proc.stdout.splitlines():
        if line.startswith("LOADER-RESULT "):
            raw = json.loads(line[len("LOADER-RESULT "):])
            return LoaderRun(raw["ok"], raw, proc.stderr)
    raise AssertionError(f"the loader runner printed no result (exit {proc.returncode}):\n"
                         f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


class DapClient:
    """The smallest Debug Adapter Protocol client: what an IDE sends to attach to debugpy."""

    def __init__(self, host: str, port: int, timeout: float = 20.0):
        import socket
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.file = self.sock.makefile("rb")
        self.seq = 0
        self.seen: List[dict] = []

    def send(self, command: str, arguments: Optional[dict] = None) -> int:
        self.seq += 1
        body = json.dumps({"seq": self.seq, "type": "request", "command": command,
                           "arguments": arguments or {}}).encode()
        self.sock.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        return self.seq

    def read(self) -> dict:
        length = None
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("debug adapter closed the connection")
            line = line.strip()
            if not line:
                break
            key, _, value = line.partition(b":")
            if key.strip().lower() == b"content-length":
                length = int(value)
        message = json.loads(self.file.read(length))
        self.seen.append(message)
        return message

    def response(self, seq: int) -> dict:
        for message in self.seen:
            if message.get("type") == "response" and message.get("request_seq") == seq:
                return message
        while True:
            message = self.read()
            if message.get("type") == "response" and message.get("request_seq") == seq:
                return message

    def attach(self) -> dict:
        """initialize, attach, configurationDone: after this the debuggee's wait_for_client returns."""
        init = self.response(self.send("initialize", {"adapterID": "tritonstub-test",
                                                      "clientID": "tritonstub-test"}))
        attach_seq = self.send("attach", {"justMyCode": False})
        while not any(m.get("type") == "event" and m.get("event") == "initialized" for m in self.seen):
            self.read()
        done = self.response(self.send("configurationDone"))
        attached = self.response(attach_seq)
        return {"initialize": init, "configurationDone": done, "attach": attached}

    def close(self) -> None:
        try:
            self.send("disconnect", {"terminateDebuggee": False})
        except OSError:
            pass
        self.file.close()
        self.sock.close()
