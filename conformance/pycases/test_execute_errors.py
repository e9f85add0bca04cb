"""Errors raised or returned by execute, as the client sees them through both stubs.

The texts follow pybind11's ``error_already_set::what()`` (``<type>: <message>\\n\\nAt:\\n`` and one
``  <file>(<line>): <function>`` per frame, innermost first) behind the python backend's
``Failed to process the request(s) for model '<instance>', message: `` prefix.
"""
from __future__ import annotations

import numpy as np
import pytest

from difftools import DiffModel, Outcome, Target, line_of

DIFF_MODELS = [DiffModel("exec_errors"), DiffModel("noexec"), DiffModel("exec_exit")]

IN = np.array([1.0, 2.0], dtype=np.float32)
PREFIX = "Failed to process the request(s) for model 'exec_errors_<stub>_0', message: "
MODEL_PY = "<repo>/exec_errors_<stub>/1/model.py"


def _mode(mode: str, **params):
    def case(target: Target) -> Outcome:
        return target.infer({"IN": IN}, parameters={"mode": mode, **params})
    return case


def _frame(text: str, function: str, file: str = "exec_errors/1/model.py") -> str:
    path = "<repo>/exec_errors_<stub>/1/" + file.rsplit("/", 1)[-1]
    return f"  {path}({line_of(file, text)}): {function}\n"


def _still_serving(pair):
    out = pair.run("exec_errors", _mode("ok"), key="after").require_ok()
    np.testing.assert_array_equal(out.array("OUT"), IN)


def test_exception_in_execute(pair):
    out = pair.run("exec_errors", _mode("raise")).require_error()
    assert out.error == (PREFIX + "ValueError: boom from exec_errors\n\nAt:\n"
                         + _frame('raise ValueError("boom from exec_errors")', "execute"))
    assert out.status == "500"
    _still_serving(pair)


def test_execute_error_is_logged_by_the_stub(pair):
    """Besides the client's error, the stub has the parent log the same text at ERROR level."""
    def case(target: Target) -> Outcome:
        out, lines = target.log_during(lambda: target.infer({"IN": IN}, parameters={"mode": "raise"}))
        logged = [target.normaliser.log_line(line) for line in lines
                  if "Failed to process the request(s)" in line and target.name in line]
        return Outcome("value", value=(out.error, tuple(logged)))

    error, logged = pair.run("exec_errors", case).value
    assert logged == ('E pb_stub.cc:714] "' + error.replace("\n", "\\n") + '"',)


def test_nested_raise_lists_frames_innermost_first(pair):
    out = pair.run("exec_errors", _mode("nested")).require_error()
    assert out.error == (PREFIX + "ValueError: raised two frames down\n\nAt:\n"
                         + _frame('raise ValueError("raised two frames down")', "level_two")
                         + _frame("    level_two()", "level_one")
                         + _frame("        level_one()", "execute"))


def test_raise_from_a_helper_module(pair):
    out = pair.run("exec_errors", _mode("helper_module")).require_error()
    assert out.error == (PREFIX + "KeyError: 'nested key'\n\nAt:\n"
                         + _frame("return table[key]", "lookup", "exec_errors/1/error_helpers.py")
                         + _frame('return lookup({}, "nested key")', "raise_from_helper",
                                  "exec_errors/1/error_helpers.py")
                         + _frame("            raise_from_helper()", "execute"))


@pytest.mark.parametrize("mode,head", [
    ("tme", "TritonModelException: tme raised"),
    ("custom_class", "ModelSpecificError: a model-defined exception class"),
    ("empty_message", "RuntimeError: <EMPTY MESSAGE>"),
    ("unicode_message", "ValueError: naïve ✓ \"quoted\" 'single'\nsecond line\ttab"),
    # pybind11 shows the last exception only: no chained cause or context.
    ("chained", "RuntimeError: wrapped the KeyError"),
    ("during_handling", "LookupError: raised while handling another"),
])
def test_exception_type_and_message(pair, mode, head):
    out = pair.run("exec_errors", _mode(mode)).require_error()
    assert out.error.startswith(PREFIX + head + "\n\nAt:\n  " + MODEL_PY + "("), out.error
    assert out.error.count("\n\nAt:\n") == 1 and "ZeroDivisionError" not in out.error
    assert "The above exception" not in out.error and "During handling" not in out.error


def test_frames_inside_the_standard_library(pair):
    """json's own frames: the C++ stub's stdlib is Debian's 3.11.2, ours the venv's (normalised)."""
    out = pair.run("exec_errors", _mode("stdlib_frames")).require_error()
    assert out.error == (PREFIX + "JSONDecodeError: Expecting property name enclosed in double quotes: "
                         "line 1 column 2 (char 1)\n\nAt:\n"
                         "  <stdlib>/json/decoder.py(#): raw_decode\n"
                         "  <stdlib>/json/decoder.py(#): decode\n"
                         "  <stdlib>/json/__init__.py(#): loads\n"
                         + _frame('json.loads("{not json")', "execute"))


@pytest.mark.parametrize("mode,head", [
    # An exception type from a C extension module: the bare name, without "struct.".
    ("c_type_name", "error: unpack requires a buffer of 4 bytes"),
    ("non_str_argument", "ValueError: (42, 'two args')"),
])
def test_exception_type_name_and_str(pair, mode, head):
    out = pair.run("exec_errors", _mode(mode)).require_error()
    assert out.error.startswith(PREFIX + head + "\n\nAt:\n"), out.error


def test_exception_whose_str_fails(pair):
    out = pair.run("exec_errors", _mode("unprintable")).require_error()
    assert out.error.startswith(PREFIX), out.error
    _still_serving(pair)


def test_frame_of_a_comprehension(pair):
    out = pair.run("exec_errors", _mode("comprehension")).require_error()
    needle = "[1 / (len(requests) - 1) for _ in requests]"
    assert out.error == (PREFIX + "ZeroDivisionError: division by zero\n\nAt:\n"
                         + _frame(needle, "<listcomp>") + _frame(needle, "execute"))


def test_error_api_of_triton_error(pair):
    out = pair.run("exec_errors", _mode("error_api")).require_error()
    assert out.error.startswith(PREFIX + 'ValueError: {"message": "inspect me", "code": 2, '
                                '"code_repr": "<__ErrorCode.NOT_FOUND: 2>", '
                                '"class": "c_python_backend_utils.TritonError"}\n\nAt:\n')


@pytest.mark.parametrize("mode,message", [
    ("wrong_type", "Expected a list in the execute return, found type '<class 'str'>'."),
    ("tuple", "Expected a list in the execute return, found type '<class 'tuple'>'."),
    ("wrong_length", "Number of InferenceResponse objects do not match the number of InferenceRequest "
                     "objects. InferenceRequest(s) size is:1, and InferenceResponse(s) size is:0\n"),
    ("too_many", "Number of InferenceResponse objects do not match the number of InferenceRequest "
                 "objects. InferenceRequest(s) size is:1, and InferenceResponse(s) size is:2\n"),
    ("element_type", "Expected an 'InferenceResponse' object in the execute function return list, "
                     "found type '<class 'int'>'."),
])
def test_malformed_return_value(pair, mode, message):
    out = pair.run("exec_errors", _mode(mode)).require_error()
    assert out.error == PREFIX + message
    _still_serving(pair)


@pytest.mark.parametrize("mode,head", [
    ("empty_tensor_name", "TritonModelException: Tensor name cannot be an empty string."),
    ("unicode_array", "TritonModelException: NumPy dtype is not supported."),
    ("none_tensor", "TritonModelException: Output tensor for inference response should not be empty."),
    ("list_not_array", "TypeError: __init__(): incompatible constructor arguments."),
    ("triton_error_none", "TypeError: __init__(): incompatible constructor arguments."),
    ("missing_input", "AttributeError: 'NoneType' object has no attribute 'as_numpy'"),
    ("numpy_error", "ValueError: buffer size must be a multiple of element size"),
])
def test_api_misuse_errors(pair, mode, head):
    out = pair.run("exec_errors", _mode(mode)).require_error()
    assert out.error.startswith(PREFIX + head), out.error
    assert f"\n\nAt:\n" in out.error


@pytest.mark.parametrize("code,http_status,grpc_status", [
    ("UNKNOWN", "400", "StatusCode.UNKNOWN"),
    ("INTERNAL", "500", "StatusCode.INTERNAL"),
    ("NOT_FOUND", "404", "StatusCode.NOT_FOUND"),
    ("INVALID_ARG", "400", "StatusCode.INVALID_ARGUMENT"),
    ("UNAVAILABLE", "503", "StatusCode.UNAVAILABLE"),
    ("UNSUPPORTED", "501", "StatusCode.UNIMPLEMENTED"),
    ("ALREADY_EXISTS", "400", "StatusCode.ALREADY_EXISTS"),
    ("CANCELLED", "400", "StatusCode.CANCELLED"),
])
def test_error_response_keeps_the_code(pair, code, http_status, grpc_status):
    message = f"per-request {code} error ✓"

    def case(target: Target) -> Outcome:
        params = {"mode": "error_response", "code": code, "message": message}
        return Outcome("value", value=(target.infer({"IN": IN}, parameters=params),
                                       target.infer_grpc({"IN": IN}, parameters=params)))

    http, grpc = pair.run("exec_errors", case).value
    assert http.require_error().error == message
    assert grpc.require_error().error == message
    assert (http.status, grpc.status) == (http_status, grpc_status)


@pytest.mark.parametrize("mode,message", [
    ("error_response_default_code", "error with the default code"),
    ("error_response_with_outputs", "error and outputs"),
])
def test_error_response_variants(pair, mode, message):
    out = pair.run("exec_errors", _mode(mode)).require_error()
    assert (out.error, out.status) == (message, "500")


def test_missing_execute_method(pair):
    out = pair.run("noexec", lambda t: t.infer({"IN": IN})).require_error()
    assert out.error == ("Failed to process the request(s) for model 'noexec_<stub>_0', message: "
                         "Python model <repo>/noexec_<stub>/1/model.py does not implement `execute` method.")


@pytest.mark.parametrize("mode,head", [
    ("system_exit", "SystemExit: 3"),
    ("sys_exit", "SystemExit: exiting from execute"),
    ("keyboard_interrupt", "KeyboardInterrupt: <EMPTY MESSAGE>"),
])
def test_base_exceptions_do_not_end_the_stub(pair, mode, head):
    def case(target: Target) -> Outcome:
        failed = target.infer({"IN": IN}, parameters={"mode": mode})
        after = target.infer({"IN": IN}, parameters={"mode": "ok"})
        return Outcome("value", value=(failed, after))

    failed, after = pair.run("exec_exit", case).value
    assert failed.require_error().error.startswith(
        f"Failed to process the request(s) for model 'exec_exit_<stub>_0', message: {head}\n\nAt:\n")
    np.testing.assert_array_equal(after.require_ok().array("OUT"), IN)
