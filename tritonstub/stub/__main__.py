"""`triton_python_backend_stub` / `python -m tritonstub.stub`.

The python backend runs the stub with no arguments before every launch and chmods it to 0100
unless the exit status is 1, so that path must stay fast: nothing is imported before the
argument check.
"""
import sys


def main(argv=None) -> int:
    argv = sys.argv if argv is None else argv
    if len(argv) < 9:
        from .log import INFO, SITE_ARGC, stub_log
        stub_log(INFO, f"Expected 9 arguments, found {len(argv)} arguments.", line=SITE_ARGC)
        return 1
    from .stub import main as stub_main
    import os
    out = os.environ.get("TRITONSTUB_PROFILE")
    if out:
        # Developer aid: profile the whole stub; the stats land in <out>.<pid> at exit.
        # TRITONSTUB_PROFILE_CLOCK=cpu times the calls in thread CPU instead of wall time (a
        # wait, or a post that lets the parent run first, then costs what it costs in CPU).
        import cProfile
        import time
        cpu = os.environ.get("TRITONSTUB_PROFILE_CLOCK") == "cpu"
        prof = cProfile.Profile(time.thread_time_ns, 1e-9) if cpu else cProfile.Profile()
        try:
            return prof.runcall(stub_main, list(argv))
        finally:
            prof.dump_stats(f"{out}.{os.getpid()}")
    return stub_main(list(argv))


if __name__ == "__main__":
    sys.exit(main())
