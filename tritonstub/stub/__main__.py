"""`triton_python_backend_stub` / `python -m tritonstub.stub`.

The python backend runs the stub with no arguments before every launch and chmods it to 0100
unless the exit status is 1, so that path must stay fast: nothing is imported before the
argument check.
"""
import sys


def main(argv=None) -> int:
    argv = sys.argv if argv is None else argv
    if len(argv) < 9:
        from .log import SITE_ARGC, stub_log
        stub_log("I", f"Expected 9 arguments, found {len(argv)} arguments.", line=SITE_ARGC)
        return 1
    from .stub import main as stub_main
    return stub_main(list(argv))


if __name__ == "__main__":
    sys.exit(main())
