"""The stub process: lifecycle and command loop (pb_stub.cc ``main`` / ``Stub``), in Python.

Theory of operation
-------------------
The parent (libtriton_python.so) creates the region, the IPC control block and five message
queues, then launches us with ten arguments (see ``StubArgs``). We open the region, take a
reference on each queue like ``Stub::Instantiate``, fork the heartbeat helper (heartbeat.py) and
push one freshly Construct'ed IPCMessageShm on parent_message_queue: "health thread started".
The parent pops that handle without reading it.

Then the main loop pops ``stub_message_queue`` with one-second timed pops and dispatches:

- AutoCompleteRequest / InitializeRequest / ExecuteRequest follow pattern R: we build the reply,
  push its handle on parent_message_queue, then block until the parent pushes the release 0 on
  stub_message_queue; only then do we drop the objects the reply references.
- FinalizeRequest: the same handle goes back with command FinalizeResponse, and we leave the
  loop, call the model's ``finalize()``, stop the workers, unlink the region and exit 0.

After an auto-complete or initialize failure the stub exits 0 without unlinking (the parent
owns the region then). Exit 1: bad arguments, region problems before the handshake, parent
death (handled by the heartbeat helper).

Where the C++ stub would leave the server hanging (model file missing → it exits before the
handshake; ``return None`` from a non-decoupled execute), we answer through the protocol with a
clear error instead.
"""
from __future__ import annotations

import os
import signal
import sys
import traceback
from dataclasses import dataclass
from typing import List, Optional

from ..errors import BadHandle, ShmError, TritonStubError
from .. import protocol
from ..ipc import handshake
from ..ipc.handshake import PeerGone
from ..ipc.message_queue import MessageQueue
from ..ipc.region import Region
from ..loader import STUB_AUTO_COMPLETE, STUB_INSTANCE
from ..loader.default import ModelContext, split_model_path
from ..protocol import eras
from . import heartbeat, salvage
from .exc_text import error_text, register_boundary
from . import log as sites
from .log import ERROR, INFO, WARNING, stub_log

# Until the parent's first command tells us its era, only what every era shares: the control
# block, the queues, the start-up messages (protocol.COMMON). The era's own tables and codecs
# come with the decision (Stub.check_era).
L = protocol.common()

C = L.PYTHONSTUB_CommandType
#: AutoCompleteRequest's number in every era's command enum (protocol/eras.py).
_AUTO_COMPLETE_REQUESTS = frozenset(e.auto_complete_request for e in eras.ERAS)
_EXECUTE = int(C.ExecuteRequest)


@dataclass
class StubArgs:
    """The stub's argv (stub_launcher.cc): 10 entries, argv[0] included."""
    model_path: str
    region_name: str
    shm_default_size: int
    shm_growth_size: int
    parent_pid: int
    python_lib: str
    ipc_control_handle: int
    name: str
    runtime_modeldir: str

    @classmethod
    def parse(cls, argv: List[str]) -> "StubArgs":
        return cls(argv[1], argv[2], int(argv[3]), int(argv[4]), int(argv[5]), argv[6],
                   int(argv[7]), argv[8], runtime_modeldir(argv[9] if len(argv) > 9 else "",
                                                           argv[6]))


def runtime_modeldir(arg9: str, python_lib: str) -> str:
    """argv[9] as the runtime model directory of r23.10+ (``DEFAULT`` or a directory).

    Before r23.10 it was the model config's ``platform``, ``NONE`` for none; the C++ stub then
    ran ``<argv[6]>/platform_handlers/<platform>/model.py`` if that file exists, else the
    model file (argv[1]) with a warning. Neither a platform name nor NONE contains a '/', and
    r23.10+ passes DEFAULT or an absolute path, so the value says which it is."""
    if arg9 in ("", "DEFAULT", "NONE"):
        return "DEFAULT"
    if "/" not in arg9:
        handler = os.path.join(python_lib, "platform_handlers", arg9)
        if os.path.isfile(os.path.join(handler, "model.py")):
            return handler
        stub_log(WARNING, f"Unable to find model(handler) '{handler}/model.py' for platform "
                          f"field '{arg9}'", filename="tritonstub")
        return "DEFAULT"
    return arg9


class StubExit(Exception):
    def __init__(self, code: int):
        self.code = code


class Stub:
    def __init__(self, args: StubArgs, ctx: ModelContext):
        self.args = args
        self.ctx = ctx
        self.name = args.name
        self.region: Region
        self.control = 0
        self.queues: dict = {}
        self.heartbeat_pid = 0
        # The response factories the parent expects us to release (salvage.py): the heartbeat
        # helper releases them if we die.
        self.board = salvage.Board()
        self.initialized = False
        self.finalizing = False
        self.model_module = None
        self.model_instance = None
        self.delete_region = True
        self.loop = None             # the asyncio loop, created on first coroutine
        # Set when a FINAL sent from inside execute deleted a response factory: the failed
        # batch's ExecuteResponse then tells the parent not to delete it again.
        self.factory_deleted_in_execute = False
        self.runtime = None          # ShmRuntime, built in _setup_python
        self._process_requests = None  # execute.process_requests, from the first execute
        self.era: Optional[eras.Decision] = None   # decided on the parent's first command
        # The codecs we read and answer with: until the decision, those of the first contact
        # (what every era reads alike); then the module-level codecs of the era we speak.
        self.wire = protocol.first_contact()
        self.C = C
        # What requests keep to read the model's decoupled flag when they send (C++ keeps a
        # pointer to IPCControlShm.decoupled).
        self.is_decoupled = lambda: self.decoupled

    # ------------------------------------------------------------------ start-up
    def instantiate(self) -> None:
        """Stub::Instantiate: region, control block, queues, LD_LIBRARY_PATH fix-up."""
        a = self.args
        self.region = Region.open(a.region_name, growth=a.shm_growth_size)
        if os.environ.get("TRITONSTUB_BLOCK_REUSE", "").lower() in ("1", "yes", "true"):
            # Opt-in: faster small requests, but free memory only returns to its idle value
            # after one idle second, which upstream leak probes read as a leak.
            self.region.enable_block_reuse()
        # C++: Load<IPCControlShm> (ref +1) then dropped at the end of Instantiate: net zero.
        self.control = self.region.payload(a.ipc_control_handle)
        self.region.ensure_mapped(self.control, L.IPCControlShm.size)
        buf = self.region.buf
        for f in L.QUEUE_FIELDS:
            self.queues[f] = MessageQueue(self.region, L.IPCControlShm.get(buf, self.control, f))
        if L.IPCControlShm.get(buf, self.control, "uses_env"):
            ld = os.environ.get("LD_LIBRARY_PATH")
            if ld is None:
                raise TritonStubError("When using an execution environment, LD_LIBRARY_PATH "
                                      "variable cannot be empty.")
            if ":" not in ld:
                raise TritonStubError("LD_LIBRARY_PATH must contain a colon when passing an "
                                      "execution environment.")
            os.environ["LD_LIBRARY_PATH"] = ld[ld.index(":") + 1:]

    @property
    def stub_mq(self) -> MessageQueue:
        return self.queues["stub_message_queue"]

    @property
    def parent_mq(self) -> MessageQueue:
        return self.queues["parent_message_queue"]

    @property
    def decoupled(self) -> bool:
        return bool(self.region.buf[self.control + L.IPCControlShm.decoupled])

    def parent_alive(self) -> bool:
        return heartbeat.pid_alive(self.args.parent_pid)

    def start(self) -> None:
        board = self.board
        self.heartbeat_pid = heartbeat.start(
            self.region, self.control, self.args.parent_pid,
            lambda stub_pid: salvage.after_stub_death(self, board, stub_pid))
        board.private_in_forked_children()
        # "health thread started": a fresh IPCMessageShm the parent pops and never reads.
        h = self.wire.control.write_blank_message(self.region)
        self.send_to_parent_mq(h)
        self.region.release(h)

    # ------------------------------------------------------------------ queue helpers
    def send_to_parent_mq(self, handle: int) -> None:
        """SendIPCMessage: 1 s timed pushes until one succeeds (bounded by parent liveness)."""
        try:
            handshake.push(self.parent_mq, handle, self.parent_alive)
        except PeerGone:
            raise StubExit(1) from None

    def wait_release(self) -> None:
        """The blocking Pop of stub_message_queue after a reply: the parent's release 0."""
        while True:
            v = self.stub_mq.pop(L.QUEUE_POLL_S)
            if v is not None:
                return
            if not self.parent_alive():
                raise StubExit(1)

    def pop_command(self) -> int:
        while True:
            v = self.stub_mq.pop(L.QUEUE_POLL_S)
            if v is not None:
                return v
            # One idle second: give the blocks kept for reuse back to the allocator.
            self.region.flush_block_cache()
            if self.runtime is not None:
                self.runtime.release_kept()
            if not self.parent_alive():
                raise StubExit(1)

    # ------------------------------------------------------------------ main loop
    def run(self) -> int:
        finalize = False
        while not finalize:
            finalize = self.run_command()
        self.finalize()
        return 0

    def run_command(self) -> bool:
        handle = self.pop_command()
        if handle == L.DUMMY_MESSAGE:
            return False
        try:
            cmd, args = self.wire.control.read_command(self.region, handle)
        except ShmError as e:
            # Nothing to answer: we cannot tell what the parent asked. Stop (the parent sees
            # the stub gone) rather than leave it waiting for an answer that never comes.
            stub_log(ERROR, f"tritonstub: the server's command message {handle} is malformed: "
                            f"{e}. The stub stops; the server reports it as not healthy.",
                     filename="tritonstub")
            raise StubExit(1) from None
        if self.era is None:
            refused = self.check_era(cmd, args)
            if refused is not None:
                return refused
        if cmd == _EXECUTE:
            self.handle_execute(args)
            return False
        C = self.C
        if cmd == C.AutoCompleteRequest:
            return self.handle_auto_complete(args, response_command=int(C.AutoCompleteResponse))
        if cmd == C.InitializeRequest:
            return self.handle_initialize(args)
        if cmd == C.FinalizeRequest:
            # We write our answer into the parent's message: it must be a whole one.
            self.region.object_payload(handle, self.wire.tables.IPCMessageShm.size)
            self.board.set_finalizing()       # the parent owns every factory from here on
            if self.runtime is not None:
                self.runtime.clear_response_iterators()
            self.wire.control.set_command(self.region, handle, C.FinalizeResponse)
            self.send_to_parent_mq(handle)
            return True
        if cmd == C.LoadGPUBuffers:
            self.log(2, "An error occurred while trying to load GPU buffers in the Python "
                        "backend stub: GPU tensors are not supported by tritonstub yet",
                     line=sites.SITE_GPU_BUFFERS)
            self.send_to_parent_mq(L.DUMMY_MESSAGE)
            return False
        return False  # unknown commands are ignored, as in C++

    # ------------------------------------------------------------------ protocol era
    def check_era(self, cmd: int, args: int) -> Optional[bool]:
        """Decide the parent's era on its first command; refuse one we do not speak.

        The first command is AutoCompleteRequest or InitializeRequest, read the same way in every
        era (protocol/eras.py), and so is our error reply to it: the model then fails to load with
        the refusal as its error and the server stays up. Returns None to go on, else what
        run_command returns."""
        from . import era_check
        config_json = None
        try:
            if cmd == C.InitializeRequest:
                config_json = self.wire.control.read_initialize_request(self.region, args) \
                    .get("model_config")
            elif cmd in _AUTO_COMPLETE_REQUESTS:
                config_json = self.wire.control.read_auto_complete_request(self.region, args)
        except ShmError:
            # Decided without the config; the request's handler reads it again and answers
            # with the error.
            config_json = None
        self.era = era_check.decide(config_json, self.args.parent_pid, self.args.python_lib)
        if self.era.supported:
            # The one place a version is chosen: the tables of the era we speak. Nothing has
            # imported the module-level codecs yet (we read the first command through the
            # first-contact ones), so they bind to this era when the execute path imports them.
            protocol.select(self.era.era.name)
            self.wire = protocol.codecs(self.era.era.name)
            self.board.set_era(self.era.era.name)      # for the heartbeat helper (salvage.py)
            self.C = self.wire.tables.PYTHONSTUB_CommandType
            return None
        text = self.era.refusal()
        if cmd == C.InitializeRequest:
            return self.handle_initialize(args, refusal=text)
        if cmd in _AUTO_COMPLETE_REQUESTS:
            # The first command is AutoCompleteRequest or InitializeRequest, so its number says
            # which enum the parent uses, whatever era an override claims: answer in that one.
            return self.handle_auto_complete(args, refusal=text, response_command=cmd + 1)
        stub_log(ERROR, text, filename="tritonstub")
        raise StubExit(1)

    # ------------------------------------------------------------------ python set-up
    def _setup_python(self, config_json: Optional[str] = None, kind: str = STUB_INSTANCE):
        """StubSetup: import the model, inject the pb_utils attributes. Returns the module.

        ``config_json`` (the model config) configures tritonstub.loader; ``kind`` is
        STUB_AUTO_COMPLETE or STUB_INSTANCE."""
        from . import pysetup
        if self.runtime is None:
            from .shm_runtime import ShmRuntime
            self.runtime = ShmRuntime(self)
            pysetup.install_runtime(self.runtime)
        if self.model_module is None:
            self.model_module = pysetup.setup_and_import(self, config_json, kind)
        return self.model_module

    def error_text(self, exc: BaseException) -> str:
        """The text the C++ stub would report (call inside the ``except`` block)."""
        if isinstance(exc, TritonStubError):
            return str(exc)
        return error_text(exc)

    # ------------------------------------------------------------------ start-up requests
    def handle_auto_complete(self, args_handle: int, refusal: Optional[str] = None,
                             response_command: int = int(C.AutoCompleteResponse)) -> bool:
        """AutoCompleteRequest: import the model, let it complete its config, answer (with the
        ``refusal`` as the error when the parent's era is one we do not speak)."""
        def run():
            if refusal is not None:
                raise TritonStubError(refusal)
            config_json = self.wire.control.read_auto_complete_request(self.region, args_handle)
            module = self._setup_python(config_json, STUB_AUTO_COMPLETE)
            from . import pysetup
            return pysetup.auto_complete(self, module, config_json)

        def failed(text: str) -> None:
            stub_log(INFO, f"Failed to initialize Python stub for auto-complete: {text}",
                     line=sites.SITE_AUTO_COMPLETE_FAILED)

        def reply(owned, result, error):
            return self.wire.control.write_auto_complete_response(self.region, owned, config=result,
                                                        error=error, command=response_command)
        # The parent waits for this answer with no health check: should we die before it is
        # sent, the heartbeat helper answers for us (salvage.py).
        self.board.begin_auto_complete(response_command)
        return self._start_up_request(run, failed, reply, sent=self.board.end_auto_complete)

    def handle_initialize(self, args_handle: int, refusal: Optional[str] = None) -> bool:
        """InitializeRequest: import the model, run its ``initialize``, answer."""
        def run():
            if refusal is not None:
                raise TritonStubError(refusal)
            params = self.wire.control.read_initialize_request(self.region, args_handle)
            module = self._setup_python(params.get("model_config"), STUB_INSTANCE)
            from . import pysetup
            pysetup.initialize(self, module, params)
            if "stub_has_user_model_readiness_fn" in self.wire.tables.IPCControlShm.fields:
                # r26.03+: the parent asks for the model's readiness only when this is set.
                self.wire.control.set_user_model_readiness_fn(
                    self.region, self.control, hasattr(self.model_instance, "is_ready"))
            self.initialized = True

        def failed(text: str) -> None:
            self.log(0, f"Failed to initialize Python stub: {text}",
                     line=sites.SITE_INITIALIZE_FAILED)

        def reply(owned, result, error):
            return self.wire.control.write_initialize_response(self.region, owned, error=error)
        return self._start_up_request(run, failed, reply)

    def _start_up_request(self, run, failed, reply, sent=None) -> bool:
        """Pattern R for the two start-up requests. Returns True when the stub must stop: a
        failure is reported to the parent, which then owns (and removes) the region."""
        result = error = None
        try:
            result = run()
        except StubExit:
            raise
        except BaseException as e:  # noqa: BLE001 - report every failure to the parent
            error = self.error_text(e)
            self.delete_region = False
            failed(error)
        owned = self.wire.scalars.Owned()
        self.send_to_parent_mq(reply(owned, result, error))
        if sent is not None:
            sent()
        self.wait_release()
        owned.release(self.region)
        return error is not None

    # ------------------------------------------------------------------ execute
    def handle_execute(self, batch_handle: int) -> None:
        process = self._process_requests
        if process is None:            # imported once the model is loaded (it imports numpy)
            from . import execute
            process = self._process_requests = execute.process_requests
        owned = self.wire.scalars.Owned()
        reply = process(self, batch_handle, owned)
        self.send_to_parent_mq(reply)
        self.wait_release()
        owned.release(self.region)

    # ------------------------------------------------------------------ logging
    def log(self, level: int, message: str, filename: str = sites.CPP, line: int = 0) -> None:
        if self.runtime is not None and self.runtime.worker_running():
            self.runtime.log(filename, line, level, message)
        else:
            stub_log(level, message, filename, line)

    # ------------------------------------------------------------------ shutdown
    def finalize(self) -> None:
        self.finalizing = True
        if self.initialized:
            if self.loop is not None:
                self.loop.call_soon_threadsafe(self.loop.stop)
            fin = getattr(self.model_instance, "finalize", None)
            if fin is not None:
                try:
                    fin()
                except BaseException as e:  # noqa: BLE001
                    self.log(0, self.error_text(e), line=sites.SITE_FINALIZE_EXCEPTION)
        if self.runtime is not None:
            self.runtime.stop_workers()

    def shutdown(self, unlink: bool, unmap: bool = True) -> None:
        """Drop queue references, stop the heartbeat, unmap; unlink if we own the name.

        ``unmap=False`` after a failure: our threads (the parent->stub monitor, the worker, a
        model's) may still be inside a pthread call on the region, and unmapping it under them
        is a SIGSEGV; the process is about to exit, which unmaps it anyway."""
        if self.heartbeat_pid:
            heartbeat.stop(self.heartbeat_pid)
            self.heartbeat_pid = 0
        region = getattr(self, "region", None)
        if region is None:
            return
        if not unmap:
            if unlink:
                region.unlink()
            return
        for q in self.queues.values():
            try:
                q.close()
            except Exception:
                pass
        region.close(unlink=unlink)


@register_boundary
def main(argv: List[str]) -> int:
    """Entry point once argv has been checked for the no-argument probe."""
    # The C++ stub installs no-op handlers (not SIG_IGN): survive SIGINT/SIGTERM, and children
    # we spawn get default dispositions after exec.
    signal.signal(signal.SIGINT, _noop)
    signal.signal(signal.SIGTERM, _noop)
    os.register_at_fork(after_in_child=_default_signals_in_child)
    from .exc_text import install_thread_excepthook
    install_thread_excepthook()
    tokens = split_model_path(argv[1])
    if len(tokens) < 2:
        stub_log(INFO, f"Model path does not look right: {argv[1]}", line=sites.SITE_BAD_PATH)
        return 1
    try:
        args = StubArgs.parse(argv)
    except (ValueError, IndexError) as e:
        stub_log(INFO, f"Failed to preinitialize Python stub: bad argument: {e}",
                 line=sites.SITE_PREINIT)
        return 1
    ctx = ModelContext(args.model_path, args.python_lib, args.runtime_modeldir, tokens[-2])
    stub = Stub(args, ctx)
    # A missing model file is the loader's to report (C++ exits here and the server waits
    # forever): its rules may find the model elsewhere, and its error lists what it tried.
    # Match the embedded interpreter the C++ stub runs: sys.argv == [''], sys.path[0] == '',
    # and an empty __main__ (no __file__, __spec__ None), which multiprocessing relies on.
    sys.argv[:] = [""]
    if sys.path and sys.path[0] != "":
        sys.path[0] = ""
    import types
    main_module = types.ModuleType("__main__")
    main_module.__builtins__ = __builtins__
    sys.modules["__main__"] = main_module
    code = 0
    try:
        stub.instantiate()
    except TritonStubError as e:
        stub_log(INFO, f"Failed to preinitialize Python stub: {e}", line=sites.SITE_PREINIT)
        stub.shutdown(unlink=False)
        return 1
    try:
        stub.start()
        code = stub.run()
    except StubExit as e:
        code = e.code
    except ShmError as e:
        # A handle, offset or length from the server that does not fit the region (or the
        # region itself failing), where no answer can carry the error: say so and stop,
        # releasing what we held (below).
        what = ("a message from the server is malformed" if isinstance(e, BadHandle)
                else "the shared-memory region failed")
        stub_log(ERROR, f"tritonstub: {what}: {e}. The stub stops; the server reports it as "
                        "not healthy.", filename="tritonstub")
        code = 1
        stub.heartbeat_pid = 0
    except BaseException:  # noqa: BLE001 - a bug of ours: say so, do not hang the parent
        stub_log(ERROR, "tritonstub internal error:\n" + traceback.format_exc(), filename="tritonstub")
        code = 1
        # The heartbeat helper outlives us and releases the response factories we held, so
        # that the model can still be unloaded (salvage.py).
        stub.heartbeat_pid = 0
    # With the parent gone nobody else will unlink the region (the C++ stub unlinks it on parent
    # death too): our heartbeat helper would, but we may notice first and stop the helper.
    parent_gone = not stub.parent_alive()
    stub.shutdown(unlink=(stub.delete_region and code == 0) or parent_gone,
                  unmap=code == 0 or stub.runtime is None)
    return code


def _default_signals_in_child() -> None:
    """A process the model forks (a multiprocessing worker, say) is not the stub: it gets
    Python's default SIGINT/SIGTERM handling back. With the stub's no-op handlers a Pool worker
    ignores the SIGTERM of ``Pool.terminate()``, which then waits for it forever (a worker
    blocked on the task queue's lock exits only that way). The heartbeat helper sets its own."""
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    except (ValueError, OSError):
        pass


def _noop(signum, frame) -> None:
    pass
