"""Serve the bundled add_sub example with the real tritonserver through a chosen stub, infer once.

``python -m tritonstub.testing.demo [--stub ours|cpp]`` (what ``scripts/bootstrap.sh demo`` runs):

1. copy ``examples/model_repository/add_sub`` into a temporary repository;
2. install the stub into the model directory (``ours``: ``python -m tritonstub install-stub``;
   ``cpp``: the reference C++ stub), which the python backend then uses for this model;
3. start tritonserver on loopback, send one HTTP inference with tritonclient, print the result;
4. stop the server and check that no process or shm region was left behind.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from tritonstub.testing.reference import ReferenceUnavailable, provision
from tritonstub.testing.tritonserver import (
    StubInstallError,
    TritonServer,
    TritonServerError,
    check_stopped,
    make_model_repository,
)

MODEL = "add_sub"
STUB_LABELS = {"ours": "tritonstub's stub", "cpp": "Triton's C++ stub"}


def example_repository() -> Path:
    """The source tree's ``examples/model_repository`` (needs a source checkout or editable install)."""
    path = Path(__file__).resolve().parents[2] / "examples" / "model_repository"
    if not (path / MODEL / "config.pbtxt").is_file():
        raise FileNotFoundError(f"the bundled example repository is not at {path}; run from a source "
                                f"checkout (pip install -e .)")
    return path


def run_demo(stub: str = "ours", *, keep: bool = False, startup_timeout: float = 60.0) -> int:
    """Run the demo; return a process exit status (0 = the right answer and a clean stop)."""
    try:
        reference = provision()
    except ReferenceUnavailable as exc:
        print(f"demo: ERROR: {exc}", file=sys.stderr)
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="tritonstub-demo-"))
    try:
        repo = make_model_repository(workdir / "model_repository", {MODEL: example_repository() / MODEL},
                                     stub=stub, reference=reference)
    except StubInstallError as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        hint = "\n(tritonstub's stub is not installable yet; `--stub cpp` runs the demo with Triton's C++ stub)"
        print(f"demo: ERROR: could not install {STUB_LABELS[stub]}: {exc}{hint if stub == 'ours' else ''}",
              file=sys.stderr)
        return 1
    ok = False
    try:
        ok = _serve_and_infer(repo, stub, reference, workdir, startup_timeout)
    finally:
        if ok and not keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"demo: repository and server log kept in {workdir}")
    return 0 if ok else 1


def _serve_and_infer(repo: Path, stub: str, reference, workdir: Path, startup_timeout: float) -> bool:
    import tritonclient.http as httpclient

    server = TritonServer(repo, reference=reference, log_verbose=1, log_dir=workdir / "logs",
                          models=[MODEL], startup_timeout=startup_timeout)
    try:
        server.start()
    except TritonServerError as exc:
        print(f"demo: ERROR: tritonserver did not get {MODEL} ready:\n{exc}", file=sys.stderr)
        return False
    try:
        version = server.metadata().get("version", "?")
        stubs = {argv[0] for argv in server.stub_launches() if argv}
        print(f"demo: tritonserver {version} (pid {server.pid}) is serving '{MODEL}' on {server.http_url} "
              f"through {STUB_LABELS[stub]}: {', '.join(sorted(stubs)) or '?'}")
        in0 = np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32)
        in1 = np.array([0.5, 0.25, 2.0, 8.0], dtype=np.float32)
        inputs = []
        for name, value in (("INPUT0", in0), ("INPUT1", in1)):
            tensor = httpclient.InferInput(name, list(value.shape), "FP32")
            tensor.set_data_from_numpy(value)
            inputs.append(tensor)
        result = server.http_client().infer(MODEL, inputs)
        out0, out1 = result.as_numpy("OUTPUT0"), result.as_numpy("OUTPUT1")
        print(f"demo: INPUT0  = {in0}")
        print(f"demo: INPUT1  = {in1}")
        print(f"demo: OUTPUT0 = {out0}   (INPUT0 + INPUT1)")
        print(f"demo: OUTPUT1 = {out1}   (INPUT0 - INPUT1)")
        correct = np.array_equal(out0, in0 + in1) and np.array_equal(out1, in0 - in1)
        if not correct:
            print("demo: ERROR: wrong answer", file=sys.stderr)
    except Exception as exc:
        print(f"demo: ERROR: inference failed: {exc}\n{server.log_tail(40)}", file=sys.stderr)
        correct = False
    began = time.monotonic()
    server.stop()
    problems = "\n".join(check_stopped(server))
    if problems:
        print(f"demo: ERROR: the server did not stop cleanly:\n{problems}", file=sys.stderr)
        return False
    print(f"demo: server stopped (exit status {server.returncode}) in {time.monotonic() - began:.1f}s; "
          f"no stub processes or shm regions left behind")
    return correct


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tritonstub.testing.demo",
        description="Serve examples/model_repository/add_sub with the real tritonserver through a stub "
                    "and run one inference.")
    parser.add_argument("--stub", choices=sorted(STUB_LABELS), default="ours",
                        help="which stub runs the model: ours (tritonstub, default) or cpp (Triton's C++ stub)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary repository and server log")
    parser.add_argument("--startup-timeout", type=float, default=60.0, metavar="S",
                        help="seconds to wait for the model to be ready (default 60)")
    args = parser.parse_args(argv)
    return run_demo(args.stub, keep=args.keep, startup_timeout=args.startup_timeout)


if __name__ == "__main__":
    sys.exit(main())
