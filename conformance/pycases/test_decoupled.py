"""Decoupled models and the response sender, over gRPC streams, through both stubs.

The dec_async, nondec_sender and nondec_async cases are data (conformance/cases/decoupled.json).
These need what data cases cannot have yet: the quarantine server (dec_modes' C++ variant
sometimes cannot unload), several streams in one case, and the hazards of solo.py.

``dec_modes`` (decoupled) sends through ``request.get_response_sender()`` as its MODE input
says: N responses then FINAL, FINAL on the last response, FINAL alone, from another thread after
execute returned, error responses (final and not), sends after FINAL, bad flags, exceptions after
some sends. ``dec_async`` has ``async def execute`` (run in the background by both stubs),
``nondec_sender`` uses the sender in a non-decoupled model (one response + FINAL, return None),
``nondec_async`` is a non-decoupled ``async def execute``. Notes that a model kept (errors raised
when nothing reaches the client any more) are compared through its "report" mode.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from difftools import DiffModel, Outcome, Target, line_of, mask_addresses
from solo import run_hazard, solo  # noqa: F401 - solo is a fixture
from streams import notes, stream_infer

#: Items of the conformance checklist these cases cover (conformance/CASES.md).
COVERS = ["response sender", "response flags", "decoupled stream", "async execute"]

DIFF_MODELS = [
    # Its C++ variant sometimes cannot unload at the end of the module (seen in 2 of 2 parallel CI
    # runs: "dec_modes_cpp v1: UNLOADING" until the exit timeout), which would fail whichever
    # test ends the module; ours must still unload cleanly on the main server.
    DiffModel("dec_modes", quarantine_cpp=True),
    # Cases that break the server they run in (see solo.py): the C++ side on the quarantine
    # server, ours on a server of its own.
    DiffModel("nondec_hazard", source="nondec_sender", quarantine_cpp=True),
    DiffModel("dec_async_raise", source="dec_async", quarantine_cpp=True),
]
SOLO_MODELS = [
    DiffModel("nondec_hazard", source="nondec_sender"),
    DiffModel("dec_async_raise", source="dec_async"),
]
#: A log record of the core, wherever it starts: two threads' records can share a line.
_RECORD = re.compile(r"[IWEV]\d{4} \d{2}:\d{2}:\d{2}\.\d{6} +\d+ \S+?:\d+\] .*")


def _logged(t: Target, lines, needle: str):
    """The normalised log records among ``lines`` that contain ``needle``."""
    found = []
    for line in lines:
        for m in _RECORD.finditer(line):
            if needle in m.group(0):
                found.append(t.normaliser.log_line(m.group(0)))
    return tuple(found)


def _inputs(mode: str, n: int = 0):
    return {"MODE": np.array([mode.encode()], dtype=object), "N": np.array([n], dtype=np.int32)}


def _stream(mode: str, n: int = 0, **kwargs):
    return lambda t: stream_infer(t, _inputs(mode, n), **kwargs)


def _kept(raw) -> tuple:
    return tuple((label, mask_addresses(text)) for label, text in raw)


def _with_notes(mode: str, n: int = 0):
    """The stream of one request, then the notes the model kept meanwhile."""
    def case(t: Target) -> Outcome:
        first = stream_infer(t, _inputs(mode, n)).value
        return Outcome("value", value=(first, _kept(notes(t))))
    return case


# ---- normal use -------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 5])
def test_n_responses_then_final_flag_alone(pair, n):
    result = pair.run("dec_modes", _stream("repeat", n)).value
    assert result.end == "final"
    assert result.values() == list(range(n))
    assert len(result.msgs) == n + 1 and result.msgs[-1].outputs == () and result.msgs[-1].final


def test_final_flag_on_the_last_response(pair):
    result = pair.run("dec_modes", _stream("final_with_last", 3)).value
    assert result.end == "final" and result.values() == [0, 1, 2]
    assert [m.final for m in result.msgs] == [False, False, True]


def test_final_flag_without_any_response(pair):
    result = pair.run("dec_modes", _stream("final_only")).value
    assert result.end == "final" and len(result.msgs) == 1 and result.msgs[0].outputs == ()


def test_get_response_sender_returns_the_same_object(pair):
    result = pair.run("dec_modes", _stream("same_sender")).value
    assert result.responses[0].scalar("NOTE") == "same sender object: True"


def test_sends_from_another_thread_after_execute_returned(pair):
    result = pair.run("dec_modes", _stream("thread", 4)).value
    assert result.end == "final" and result.values() == [0, 1, 2, 3]
    assert {m.scalar("NOTE") for m in result.responses} == {"sender-thread"}


def test_is_cancelled_on_the_sender_and_the_request(pair):
    result = pair.run("dec_modes", _stream("is_cancelled")).value
    assert result.responses[0].scalar("NOTE") == "sender False, request False"


def test_requests_in_a_row_on_one_instance(pair):
    def case(t: Target) -> Outcome:
        return Outcome("value", value=tuple(stream_infer(t, _inputs("repeat", k)).value for k in (2, 0, 3)))
    results = pair.run("dec_modes", case).value
    assert [r.values() for r in results] == [[0, 1], [], [0, 1, 2]]


# ---- errors -----------------------------------------------------------------------------------


def test_error_response_with_the_final_flag(pair):
    result = pair.run("dec_modes", _stream("error_final", 2)).value
    assert result.values() == [0, 1]
    assert result.errors == ("decoupled failure",)
    assert result.end == "error"


def test_error_response_without_the_final_flag_then_more(pair):
    result = pair.run("dec_modes", _stream("error_then_more")).value
    assert result.errors == ("not final yet",)
    assert result.values() == [1] and result.end == "final"


def test_sending_after_final(pair):
    first, kept = pair.run("dec_modes", _with_notes("after_final")).value
    assert first.values() == [0] and first.end == "final"
    assert kept == (
        ("response after FINAL", "TritonModelException: Unable to send response. Response sender has been closed."),
        ("FINAL after FINAL", "TritonModelException: Unable to send response. Response sender has been closed."),
    )


def test_bad_send_arguments(pair):
    first, kept = pair.run("dec_modes", _with_notes("bad_sends")).value
    assert first.values() == [0]
    labels = [k[0] for k in kept]
    assert labels == ["flags=2", "no response, flags 0", "not a response", "negative flags"]
    assert kept[0][1] == "TritonModelException: Unable to send response. Unsupported flag provided."
    assert kept[1][1] == ("TritonModelException: Inference Response object must be provided when the "
                          "response flags is set to zero.")
    assert kept[2][1].startswith("TypeError: send(): incompatible function arguments.")


def test_exception_after_final_is_logged(pair):
    def case(t: Target) -> Outcome:
        result, lines = t.log_during(lambda: stream_infer(t, _inputs("raise_after_final")).value)
        return Outcome("value", value=(result, _logged(t, lines, "Failed to process")))
    result, logged = pair.run("dec_modes", case).value
    assert result.values() == [0] and result.end == "final"
    line = line_of("dec_modes/1/model.py", "# raises: the sender is closed")
    call = line_of("dec_modes/1/model.py", "result = getattr(self")
    assert logged == ((
        "E pb_stub.cc:714] \"Failed to process the request(s) for model 'dec_modes_<stub>_0_0', message: "
        "TritonModelException: Unable to send response. Response sender has been closed.\\n\\nAt:\\n"
        f"  <repo>/dec_modes_<stub>/1/model.py({line}): mode_raise_after_final\\n"
        f"  <repo>/dec_modes_<stub>/1/model.py({call}): execute\\n\""),)


def test_exception_after_some_sends(pair):
    """The responses sent before the exception arrive, then the execute error (FINAL)."""
    result = pair.run("dec_modes", _stream("raise_after_sends", 2)).value
    assert result.values() == [0, 1]
    raise_line = line_of("dec_modes/1/model.py", 'raise ValueError("failed after')
    call_line = line_of("dec_modes/1/model.py", "result = getattr(self")
    assert result.errors == (
        "Failed to process the request(s) for model 'dec_modes_<stub>_0_0', message: ValueError: failed after 2 "
        f"sends\n\nAt:\n  <repo>/dec_modes_<stub>/1/model.py({raise_line}): mode_raise_after_sends\n"
        f"  <repo>/dec_modes_<stub>/1/model.py({call_line}): execute\n",)


def test_decoupled_execute_returning_a_list(pair):
    result = pair.run("dec_modes", _stream("return_list")).value
    assert result.values() == []
    assert result.errors == ("Failed to process the request(s) for model 'dec_modes_<stub>_0_0', message: "
                             "Python model 'dec_modes_<stub>_0_0' is using the decoupled mode and the execute "
                             "function must return None.",)


def test_model_still_serves_after_the_errors(pair):
    def case(t: Target) -> Outcome:
        for mode in ("raise_after_sends", "return_list", "raise_after_final"):
            stream_infer(t, _inputs(mode, 1))
        return stream_infer(t, _inputs("repeat", 2))
    assert pair.run("dec_modes", case).value.values() == [0, 1]


# ---- hazards: each stub on a server where its failure harms nothing else ------------------------


def test_async_decoupled_execute_raising(pair, solo):
    """A background coroutine (decoupled ``async def execute``) fails after one send.

    Both stubs log its traceback (pb_stub.cc:945). C++: nothing more is sent, FINAL never comes,
    and the model can never unload (tritonserver waits for the request's FINAL), so it runs on the
    quarantine server. Ours (deliberate difference) must end every request the coroutine left open
    with the execute error as a FINAL error response, like a failing synchronous execute does, so
    that the client is answered and the model can unload (the solo server must stop cleanly)."""
    def case(t: Target) -> Outcome:
        result, lines = t.log_during(lambda: stream_infer(t, _inputs("raise"), timeout_s=1.0 if t.stub == "cpp"
                                                          else 5.0).value)
        return Outcome("value", value=(result, _logged(t, lines, "async decoupled failure")))
    result, logged = run_hazard(pair, solo, "dec_async_raise", case, compare=False).value
    line = line_of("dec_async/1/model.py", 'raise ValueError("async decoupled failure")')
    assert logged == (
        'E pb_stub.cc:945] "Traceback (most recent call last):\\n  File '
        '\\"<repo>/dec_async_raise_<stub>/1/model.py\\", '
        f'line {line}, in execute\\n    raise ValueError(\\"async decoupled failure\\")\\nValueError: async '
        'decoupled failure\\n"',), logged
    assert result.values() == [0]
    if pair.is_cpp:
        assert result.end == "timeout", result
    else:
        assert result.errors == (
            "Failed to process the request(s) for model 'dec_async_raise_<stub>_0_0', message: ValueError: async "
            f"decoupled failure\n\nAt:\n  <repo>/dec_async_raise_<stub>/1/model.py({line}): execute\n",), result


def test_non_decoupled_send_and_also_return(pair, solo):
    """The sent response reaches the client; the returned one fails execute (logged as a C++-side
    error: no exception type). The C++ stub marks the response factory as already deleted; a stub
    that does not makes the parent delete it a second time (heap corruption in tritonserver)."""
    def case(t: Target) -> Outcome:
        out, lines = t.log_during(lambda: t.infer(_inputs("send_and_return", 5)))
        after = t.infer(_inputs("return", 6))
        return Outcome("value", value=(out, _logged(t, lines, "Failed to process"), after))
    out, logged, after = run_hazard(pair, solo, "nondec_hazard", case).value
    assert out.require_ok().array("OUT").tolist() == [5]
    assert logged == ('E pb_stub.cc:714] "Failed to process the request(s) for model \'nondec_hazard_<stub>_0_0\', '
                      'message: Unable to send response. Non-decoupled model cannot send more than one response."',)
    assert after.require_ok().array("OUT").tolist() == [6]


def test_non_decoupled_exception_after_the_final_send(pair, solo):
    """The client has its response; the execute error only reaches the log. The C++ stub then lets
    the parent delete the (already deleted) response factory again (tritonserver dies of SIGSEGV
    in TRITONBACKEND_ResponseFactoryDelete): it runs on a server of its own. Ours must tell the
    parent the factory is gone (the solo server must stop cleanly)."""
    def case(t: Target) -> Outcome:
        out, lines = t.log_during(lambda: t.infer(_inputs("send_final_then_raise", 9)))
        return Outcome("value", value=(out, _logged(t, lines, "Failed to process")))
    out, logged = run_hazard(pair, solo, "nondec_hazard", case, cpp_alone=True).value
    assert out.require_ok().array("OUT").tolist() == [9]
    assert len(logged) == 1 and "ValueError: raised after the response was sent" in logged[0], logged
