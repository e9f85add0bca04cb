"""`tritonstub serve`: the gRPC and HTTP front ends over one engine, started and stopped together.

``Server(engine, ...)`` takes an engine that is already started (the CLI and tests own its
lifetime); :func:`serve` is what the CLI runs: build the engine from a repository, start both
front ends, print where to connect, wait for SIGINT/SIGTERM, stop the front ends (no new
requests; in-flight ones get ``grace_s`` to finish), then close the engine (every model
finalized, no stub process or region left).
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import Callable, Optional, TextIO

from . import grpc_server
from .http_server import HttpFrontEnd

log = logging.getLogger("tritonstub.serve")


class Server:
    """Both front ends over ``engine``. ``grpc_port``/``http_port``: 0 = the OS picks; None =
    that front end is off."""

    def __init__(self, engine, *, host: str = "127.0.0.1", grpc_port: Optional[int] = 0,
                 http_port: Optional[int] = 0, grpc_workers: int = grpc_server.DEFAULT_WORKERS):
        self.engine = engine
        self.host = host
        self._grpc_port_wanted = grpc_port
        self._http_port_wanted = http_port
        self._grpc_workers = grpc_workers
        self.grpc = None
        self.grpc_port: Optional[int] = None
        self.http: Optional[HttpFrontEnd] = None
        self.http_port: Optional[int] = None
        self._live = True

    def live(self) -> bool:
        return self._live

    def start(self) -> "Server":
        try:
            if self._grpc_port_wanted is not None:
                self.grpc, self.grpc_port = grpc_server.start(
                    self.engine, self.host, self._grpc_port_wanted,
                    workers=self._grpc_workers, live=self.live)
            if self._http_port_wanted is not None:
                self.http = HttpFrontEnd(self.engine, self.host, self._http_port_wanted,
                                         live=self.live).start()
                self.http_port = self.http.port
        except BaseException:
            self.stop(grace_s=0)
            raise
        return self

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop taking requests; in-flight gRPC calls get ``grace_s`` seconds."""
        self._live = False
        if self.grpc is not None:
            self.grpc.stop(grace_s).wait(grace_s + 5.0)
            self.grpc = None
        if self.http is not None:
            self.http.stop()
            self.http = None

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def describe(engine) -> str:
    """``add_sub(1) READY, bad(1) UNAVAILABLE`` for the startup line."""
    parts = []
    for e in engine.index():
        label = f"{e.name}({e.version})" if e.version else e.name
        parts.append(f"{label} {e.state or 'NOT LOADED'}")
    return ", ".join(parts) or "no models"


def serve(repository, *, host: str = "127.0.0.1", grpc_port: Optional[int] = 8001,
          http_port: Optional[int] = 8000, stub: str = "ours", model_control: str = "none",
          models=(), log_verbose: int = 0, out: TextIO = sys.stdout,
          engine_factory: Optional[Callable] = None,
          stop_event: Optional[threading.Event] = None, close_timeout_s: float = 60.0) -> int:
    """Run until SIGINT/SIGTERM (or ``stop_event``); returns the exit status."""
    if engine_factory is None:
        from ..harness import Engine
        engine_factory = Engine
    stop = stop_event or threading.Event()
    previous = {}

    def on_signal(signum, frame):
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    engine = engine_factory(repository, stub=stub, model_control=model_control,
                            models=tuple(models), log_verbose=log_verbose)
    try:
        engine.start()
        if stop.is_set():
            return 0
        server = Server(engine, host=host, grpc_port=grpc_port, http_port=http_port).start()
        try:
            where = []
            if server.grpc_port is not None:
                print(f"Started GRPCInferenceService at {server.grpc_url}", file=sys.stderr)
                where.append(f"grpc={server.grpc_url}")
            if server.http_port is not None:
                print(f"Started HTTPService at {server.http_url}", file=sys.stderr)
                where.append(f"http={server.http_url}")
            print(f"tritonstub serve: {describe(engine)}; {' '.join(where)}", file=out, flush=True)
            while not stop.wait(0.5):
                pass
            print("tritonstub serve: stopping (SIGINT/SIGTERM): no new requests, finalizing "
                  "the models", file=sys.stderr, flush=True)
        finally:
            server.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        closer = threading.Thread(target=engine.close, name="tritonstub-close", daemon=True)
        closer.start()
        closer.join(close_timeout_s)
        if closer.is_alive():
            # A model that never finishes its requests or its finalize must not keep the
            # server up forever; the stubs see the server gone and remove their regions.
            print(f"tritonstub serve: the models did not finalize within {close_timeout_s:g} s; "
                  "exiting anyway", file=sys.stderr, flush=True)
            sys.stdout.flush()
            os._exit(1)
        print("tritonstub serve: stopped", file=sys.stderr, flush=True)
    return 0
