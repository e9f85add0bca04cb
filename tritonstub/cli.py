"""The `tritonstub` command line."""
from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional


def _cmd_shm_inspect(args: argparse.Namespace) -> int:
    from .ipc.inspect import format_text, inspect_region
    info = inspect_region(args.region, control_handle=args.control)
    if args.json:
        print(json.dumps(info, indent=2 if args.pretty else None))
    else:
        print(format_text(info, show_blocks=not args.summary))
    return 0


def _cmd_shm_list(args: argparse.Namespace) -> int:
    from .ipc.inspect import list_regions
    for name in list_regions(args.prefix):
        print(name)
    return 0


def _cmd_install_stub(args: argparse.Namespace) -> int:
    from .stub.install import install_stub
    path = install_stub(args.model_dir, backend_dir=args.backend_dir, python=args.python)
    print(path)
    return 0


def _cmd_conformance(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from .conformance import cases as C
    from .conformance import columns, report, runner
    from .errors import TritonStubError

    suite = Path(args.suite) if args.suite else C.default_suite_dir()
    if suite is None:
        raise TritonStubError("no conformance suite found next to this tritonstub; give --suite DIR "
                              "(the conformance/ directory of a tritonstub checkout)")
    if args.catalogue:
        Path(args.catalogue).write_text(C.catalogue(suite), encoding="utf-8")
        print(args.catalogue)
        return 0
    groups = C.load_groups(suite, args.cases or ())
    if args.list:
        for g in groups:
            for c in g.cases:
                print(f"{c.full_id}\t{c.doc}")
        return 0
    if not groups:
        raise TritonStubError(f"no case matches {args.cases}")
    reference = columns.find_reference()
    servers = args.server or ["triton", "harness"]
    stubs = args.stub or (["cpp", "ours"] if reference is not None else ["ours"])
    workdir = Path(tempfile.mkdtemp(prefix="tritonstub-conformance-"))
    say = (lambda msg: print(msg, file=sys.stderr)) if args.verbose else None
    cells, skipped = [], []
    try:
        for name in servers:
            column = columns.make_column(name, reference, args.triton)
            why = column.unavailable()
            if why:
                skipped.append(f"server {name}: {why}")
                continue
            for spec in stubs:
                try:
                    stub = columns.resolve_stub(spec, workdir, reference)
                except ValueError as exc:
                    skipped.append(f"stub {spec}: {exc}")
                    continue
                cells.append(runner.Cell(column, stub))
        for line in skipped:
            print(f"tritonstub conformance: skipped {line}", file=sys.stderr)
        if not cells:
            raise TritonStubError("no cell of the matrix can run here: " + "; ".join(skipped))
        matrix = runner.run_matrix(groups, cells, suite, jobs=args.jobs, workdir=workdir / "runs",
                                   record_expectations=args.record, progress=say)
    finally:
        if not args.keep:
            import shutil
            shutil.rmtree(workdir, ignore_errors=True)
    matrix.notes += [f"not run: {line}" for line in skipped]
    for path in args.report or []:
        report.write(matrix, path)
    if not args.quiet:
        print(report.markdown(matrix))
    return 0 if matrix.ok else 1


def _port(text: str) -> Optional[int]:
    if text.lower() in ("off", "none", "-1"):
        return None
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is not in 0..65535")
    return value


def _cmd_serve(args: argparse.Namespace) -> int:
    from .serve import serve
    stub = args.stub
    return serve(args.repository, host=args.host, grpc_port=args.grpc_port,
                 http_port=args.http_port, stub=stub, model_control=args.model_control_mode,
                 models=args.load_model or (), log_verbose=args.log_verbose)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tritonstub",
        description="A pure-Python triton_python_backend_stub, and tools to debug and test "
                    "Triton python models.")
    from . import __version__
    p.add_argument("--version", action="version", version=f"tritonstub {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    from .harness.cli import add_commands as add_harness_commands
    add_harness_commands(sub)

    shm = sub.add_parser("shm", help="inspect python-backend shared-memory regions")
    shm_sub = shm.add_subparsers(dest="shm_command", metavar="SUBCOMMAND")
    shm_sub.required = True
    ins = shm_sub.add_parser(
        "inspect", help="decode a region (live or left over in /dev/shm), read-only",
        description="Decode a python-backend region read-only: size, free memory, allocated "
                    "blocks with their ref counts, named objects and the message queues' "
                    "fill levels. The region is read as a snapshot; nothing is written.")
    ins.add_argument("region", help="region name as in /dev/shm (e.g. "
                                    "triton_python_backend_shm_region_<uuid>) or a file path")
    ins.add_argument("--json", action="store_true", help="print JSON instead of text")
    ins.add_argument("--pretty", action="store_true", help="indent the JSON")
    ins.add_argument("--summary", action="store_true", help="omit the block list")
    ins.add_argument("--control", type=int, default=None, metavar="HANDLE",
                     help="IPC control block handle (the stub's argv[7]); found automatically "
                          "when omitted")
    ins.set_defaults(func=_cmd_shm_inspect)
    ls = shm_sub.add_parser("list", help="list regions in /dev/shm")
    ls.add_argument("--prefix", default="triton_python_backend_shm_region_",
                    help="name prefix to match (default: %(default)s; '' for all)")
    ls.set_defaults(func=_cmd_shm_list)

    inst = sub.add_parser(
        "install-stub", help="put our stub in a model directory (or a backend directory)",
        description="Write MODEL_DIR/triton_python_backend_stub, a launcher that execs this "
                    "Python interpreter with tritonstub. Triton's python backend uses that "
                    "file instead of its own stub for this model.")
    inst.add_argument("model_dir", nargs="?", help="the model's directory (holds config.pbtxt)")
    inst.add_argument("--backend-dir", default=None,
                      help="replace the backend-wide stub in this python backend directory "
                           "instead (the original is kept as triton_python_backend_stub.orig)")
    inst.add_argument("--python", default=None,
                      help="interpreter the launcher runs (default: this one)")
    inst.set_defaults(func=_cmd_install_stub)

    conf = sub.add_parser(
        "conformance", help="run the python-backend conformance suite on servers x stubs",
        description="Run the conformance cases (conformance/cases/*.json) in every cell of the "
                    "matrix {server} x {stub} and print a Markdown report. The reference cell is "
                    "(triton, cpp); a case passes in a cell when its outcome equals the reference's, "
                    "or the expectation recorded in the case file when the reference does not run. "
                    "Exit status 0 when no case differs unexpectedly or errs, 1 otherwise.")
    conf.add_argument("--server", action="append", choices=["triton", "harness"],
                      help="a server column (repeatable; default: every one available: tritonserver "
                           "from the reference install, and `tritonstub serve`)")
    conf.add_argument("--stub", action="append", metavar="ours|cpp|PATH",
                      help="a stub column (repeatable; default: cpp and ours, or ours alone without the "
                           "reference install); PATH is any stub executable")
    conf.add_argument("--triton", metavar="PATH", default=None,
                      help="the tritonserver binary to run (default: the reference install's)")
    conf.add_argument("--cases", action="append", metavar="GLOB",
                      help="run only cases whose GROUP/ID or group matches (repeatable)")
    conf.add_argument("--report", action="append", metavar="FILE",
                      help="also write the report to FILE: .md, .json or .xml (JUnit); repeatable")
    conf.add_argument("--jobs", type=int, default=2, help="servers running at once (default: %(default)s)")
    conf.add_argument("--record", action="store_true",
                      help="write the reference cell's outcomes into the case files as expectations")
    conf.add_argument("--suite", default=None, metavar="DIR",
                      help="the suite directory (default: conformance/ of this checkout)")
    conf.add_argument("--list", action="store_true", help="list the selected cases and exit")
    conf.add_argument("--catalogue", metavar="FILE", default=None,
                      help="write the case catalogue (conformance/CASES.md) and exit")
    conf.add_argument("--keep", action="store_true", help="keep the work directory (repositories, logs)")
    conf.add_argument("--quiet", action="store_true", help="do not print the report")
    conf.add_argument("-v", "--verbose", action="store_true", help="say when each case is done")
    conf.set_defaults(func=_cmd_conformance)
    srv = sub.add_parser(
        "serve", help="serve a model repository over Triton's gRPC and HTTP API (no tritonserver)",
        description="Serve the python models of REPOSITORY with Triton's KServe v2 gRPC and "
                    "HTTP/REST API, so tritonclient, perf tools and curl talk to them as to "
                    "tritonserver. Each model instance runs in a stub process (ours or the C++ "
                    "one) over a shared-memory region, as under Triton. Prints one line with "
                    "the models' states and the bound addresses when ready; SIGINT or SIGTERM "
                    "finalizes every model and exits. docs/serve.md")
    srv.add_argument("repository", help="the model repository (a directory of model directories)")
    srv.add_argument("--host", default="127.0.0.1",
                     help="address to bind (default: %(default)s; 0.0.0.0 for every interface)")
    srv.add_argument("--grpc-port", type=_port, default=8001, metavar="N",
                     help="gRPC port; 0: the OS picks one; 'off': no gRPC (default: %(default)s)")
    srv.add_argument("--http-port", type=_port, default=8000, metavar="N",
                     help="HTTP port; 0: the OS picks one; 'off': no HTTP (default: %(default)s)")
    srv.add_argument("--stub", default="ours", metavar="ours|cpp|PATH",
                     help="the stub each model instance runs: ours (tritonstub), cpp (the C++ "
                          "triton_python_backend_stub of nvidia-pytriton) or an executable "
                          "(default: %(default)s)")
    srv.add_argument("--model-control-mode", choices=("none", "explicit"), default="none",
                     help="none: load every model at start, no load/unload API; explicit: load "
                          "only --load-model models, load/unload by API (default: %(default)s)")
    srv.add_argument("--load-model", action="append", metavar="NAME",
                     help="with --model-control-mode explicit: load this model at start "
                          "(repeat for more)")
    srv.add_argument("--log-verbose", type=int, default=0, metavar="N",
                     help="Triton's verbose log level for the server log (default: %(default)s)")
    srv.set_defaults(func=_cmd_serve)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    from .errors import TritonStubError
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TritonStubError as e:
        print(f"tritonstub: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
