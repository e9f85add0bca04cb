"""error_text(): pybind11 2.10 error_already_set::what() texts (protocol notes §4.4)."""
import abc
import os
import shutil
import subprocess
import sys
import sysconfig

import numpy as np
import pytest

from tritonstub.testing.pytest_plugin import missing_reference

from tritonstub.stub import c_python_backend_utils as pb
from tritonstub.stub.exc_text import (
    call_user,
    error_text,
    exception_type_name,
    is_internal_code,
    register_boundary,
)

HERE = os.path.abspath(__file__)
if HERE.endswith((".pyc", ".pyo")):  # pragma: no cover
    HERE = HERE[:-1]


def line_of(marker):
    with open(HERE) as f:
        for number, text in enumerate(f, 1):
            if text.rstrip().endswith("# <" + marker + ">"):
                return number
    raise AssertionError("marker %s not found" % marker)


def at(*frames):
    """The ``At:`` block for (marker, function name) pairs, deepest first."""
    code_file = _raise_simple.__code__.co_filename
    return "\n\nAt:\n" + "".join("  %s(%d): %s\n" % (code_file, line_of(m), fn) for m, fn in frames)


def text_of(fn, *args):
    try:
        call_user(fn, *args)
    except BaseException as exc:  # noqa: BLE001
        return error_text(exc)
    raise AssertionError("no exception")


# --- model-like functions --------------------------------------------------------------------


def _raise_simple():
    raise ValueError("boom from probe")  # <simple>


def _helper_raise():
    raise KeyError("nested key")  # <helper>


def _execute_nested():
    _helper_raise()  # <nested-call>


def _empty_message():
    raise RuntimeError()  # <empty>


def _with_finally():
    try:
        raise ValueError("f")
    finally:
        x = 1  # noqa: F841
        x = 2  # <finally-last>


class _Meta(abc.ABCMeta):
    pass


class _WithMeta(Exception, metaclass=_Meta):
    pass


def _raise_with_meta():
    raise _WithMeta("m")  # <meta>


class _Renamed(Exception):
    pass


_Renamed.__name__ = "OtherName"


def _raise_renamed():
    raise _Renamed("r")  # <renamed>


class _BadStr(Exception):
    def __str__(self):
        raise TypeError("no str")  # <badstr-inner>


def _raise_bad_str():
    raise _BadStr()  # <badstr>


def _chained():
    try:
        raise ValueError("first")
    except ValueError:
        raise TypeError("second")  # <chained>


def _reraise_elsewhere():
    try:
        _helper_raise()  # <reraise-call>
    except KeyError as exc:
        err = exc
    y = 1  # noqa: F841
    raise err


def _surface_error():
    pb.Tensor("", np.zeros(2))  # <surface>


class _BadDevice:
    def __dlpack__(self, stream=None):
        raise AssertionError("not reached")

    def __dlpack_device__(self):
        raise OSError("device query failed")  # <callback>


def _surface_calls_user():
    pb.Tensor.from_dlpack("x", _BadDevice())  # <surface-call>


def _outer_caller():
    return text_of(_raise_simple)


# --- tests --------------------------------------------------------------------------------------


def test_simple():
    assert text_of(_raise_simple) == "ValueError: boom from probe" + at(("simple", "_raise_simple"))


def test_nested_deepest_first():
    assert text_of(_execute_nested) == "KeyError: 'nested key'" + at(
        ("helper", "_helper_raise"), ("nested-call", "_execute_nested")
    )


def test_empty_message():
    assert text_of(_empty_message) == "RuntimeError: <EMPTY MESSAGE>" + at(("empty", "_empty_message"))


def test_frame_line_is_current_line_not_tb_line():
    # pybind11 prints PyFrame_GetLineNumber: the last line the frame ran (the finally block).
    assert text_of(_with_finally) == "ValueError: f" + at(("finally-last", "_with_finally"))


def test_metaclass_name_is_printed():
    assert text_of(_raise_with_meta) == "_Meta: m" + at(("meta", "_raise_with_meta"))


def test_tp_name_follows_renamed_class():
    assert text_of(_raise_renamed) == "OtherName: r" + at(("renamed", "_raise_renamed"))


def test_str_failure():
    expected = (
        "_BadStr: <MESSAGE UNAVAILABLE DUE TO ANOTHER EXCEPTION>"
        + at(("badstr", "_raise_bad_str"))
        + "\nMESSAGE UNAVAILABLE DUE TO EXCEPTION: TypeError: no str"
        + at(("badstr-inner", "__str__"))
    )
    assert text_of(_raise_bad_str) == expected


def test_no_chain_shown():
    assert text_of(_chained) == "TypeError: second" + at(("chained", "_chained"))


def test_walk_follows_f_back_of_deepest_frame():
    # The exception was caught in _reraise_elsewhere and raised again from there: the deepest
    # traceback frame is _helper_raise, whose f_back is _reraise_elsewhere at its current line.
    raise_line = line_of("reraise-call") + 4
    code_file = _raise_simple.__code__.co_filename
    assert text_of(_reraise_elsewhere) == (
        "KeyError: 'nested key'\n\nAt:\n"
        + "  %s(%d): _helper_raise\n" % (code_file, line_of("helper"))
        + "  %s(%d): _reraise_elsewhere\n" % (code_file, raise_line)
    )


def test_no_traceback_no_at_block():
    assert error_text(ValueError("x")) == "ValueError: x"
    assert error_text(KeyError()) == "KeyError: <EMPTY MESSAGE>"


def test_internal_frames_hidden_at_the_deep_end():
    # TritonModelException raised inside our surface: like C++, the deepest frame shown is the
    # model frame that called into the surface.
    assert text_of(_surface_error) == "TritonModelException: Tensor name cannot be an empty string." + at(
        ("surface", "_surface_error")
    )


def test_internal_frames_hidden_in_the_middle():
    assert text_of(_surface_calls_user) == "OSError: device query failed" + at(
        ("callback", "__dlpack_device__"), ("surface-call", "_surface_calls_user")
    )


def test_call_user_is_a_boundary():
    # _outer_caller is outward of the boundary and must not appear.
    assert _outer_caller() == "ValueError: boom from probe" + at(("simple", "_raise_simple"))


def test_explicit_stop_and_hide():
    try:
        _execute_nested()
    except KeyError as exc:
        everything = error_text(exc, stop=lambda f: False, hide=lambda f: False)
        codes = error_text(exc, stop=[_execute_nested.__code__])
    assert everything.startswith("KeyError: 'nested key'" + at(("helper", "_helper_raise"), ("nested-call", "_execute_nested")))
    assert "test_explicit_stop_and_hide" in everything
    assert codes == "KeyError: 'nested key'" + at(("helper", "_helper_raise"))


def test_register_boundary():
    @register_boundary
    def dispatcher(fn):
        try:
            fn()
        except Exception as exc:  # noqa: BLE001
            return error_text(exc)

    assert dispatcher(_raise_simple) == "ValueError: boom from probe" + at(("simple", "_raise_simple"))


def test_exception_type_names():
    assert exception_type_name(ValueError) == "ValueError"
    assert exception_type_name(pb.TritonModelException) == "TritonModelException"
    assert exception_type_name(_WithMeta) == "_Meta"
    # a static C type keeps its dotted tp_name
    assert exception_type_name(np.ndarray) == "numpy.ndarray"


def test_internal_code_detection():
    assert is_internal_code(pb.Tensor.__init__.__code__)
    assert not is_internal_code(_raise_simple.__code__)
    from tritonstub.stub.tpbu_fallback import triton_python_backend_utils as fallback

    assert not is_internal_code(fallback.ModelConfig.set_max_batch_size.__code__)


def test_triton_model_exception_text_in_user_code():
    def model():
        raise pb.TritonModelException("tme raised")

    text = text_of(model)
    assert text.startswith("TritonModelException: tme raised\n\nAt:\n")
    assert text.endswith("): model\n")


# --- model import (the stub imports "<version>.model" through __import__) ---------------------


@pytest.fixture
def model_repo(tmp_path, monkeypatch):
    """A model directory on sys.path; yields a function writing <name>/1/model.py."""
    monkeypatch.syspath_prepend(str(tmp_path))
    created = []

    def write(package, source):
        version = tmp_path / package
        version.mkdir()
        (version / "model.py").write_text(source)
        created.append(package)
        return str(version / "model.py")

    yield write
    for package in created:
        for name in list(sys.modules):
            if name == package or name.startswith(package + "."):
                del sys.modules[name]


def _import(name):
    return text_of(__import__, name, None, None, ["__doc__"], 0)


def test_import_syntax_error_has_no_at_block(model_repo):
    model_repo("pkg_syntax", "def f(:\n    pass\n")
    text = _import("pkg_syntax.model")
    assert text.startswith("SyntaxError: ")
    assert "(model.py, line 1)" in text
    assert "At:" not in text


def test_import_missing_module_has_no_at_block():
    assert _import("tritonstub_no_such_module_xyz") == "ModuleNotFoundError: No module named 'tritonstub_no_such_module_xyz'"


def test_import_error_inside_model(model_repo):
    path = model_repo("pkg_raise", "import os\nraise ValueError('at import')\n")
    text = _import("pkg_raise.model")
    lines = text.split("\n")
    assert lines[0] == "ValueError: at import"
    assert lines[3] == "  %s(2): <module>" % path
    assert "<frozen importlib._bootstrap>" in lines[4] and lines[4].endswith("): _call_with_frames_removed")
    assert lines[-2].endswith("): _find_and_load")  # the walk ends where __import__ (C) was called
    assert "call_user" not in text and "text_of" not in text


def test_error_from_stub_code_only_has_no_at_block():
    def internal_failure():
        pb.Tensor("x", [1])  # raises inside tritonstub code, called from tritonstub code

    assert "At:" not in text_of(pb.Tensor, "", np.zeros(1))
    assert text_of(internal_failure).startswith("TypeError: __init__(): incompatible constructor arguments.")


# --- optional: compare with a real pybind11 2.10 build -----------------------------------------

_CASES = [
    _raise_simple,
    _execute_nested,
    _empty_message,
    _with_finally,
    _raise_with_meta,
    _raise_renamed,
    _chained,
    _reraise_elsewhere,
]


#: pybind11 releases whose error_already_set::what() matches the C++ stub of r24.10: 2.10.3 changed
#: obj_class_name() to print an exception class's own name when it has a metaclass, where the real
#: stub prints the metaclass's (_raise_with_meta; seen under tritonserver 2.51).
_ORACLE_PYBIND11 = ("2.10.0", "2.10.1", "2.10.2")


def _pybind11_include():
    """pybind11 2.10.0-2.10.2's headers: TRITONSTUB_PYBIND11_210_INCLUDE, else the pybind11 the
    test extras install (``pip install -e '.[test]'``)."""
    path = os.environ.get("TRITONSTUB_PYBIND11_210_INCLUDE", "")
    if path:
        if not os.path.exists(os.path.join(path, "pybind11", "pybind11.h")):
            pytest.fail(f"TRITONSTUB_PYBIND11_210_INCLUDE={path} has no pybind11/pybind11.h", pytrace=False)
        return path
    try:
        import pybind11
    except ImportError:
        return None
    if pybind11.__version__ not in _ORACLE_PYBIND11:
        pytest.fail(f"pybind11 {pybind11.__version__} is installed, the oracle needs one of {_ORACLE_PYBIND11} "
                    "(the test extras pin it; or set TRITONSTUB_PYBIND11_210_INCLUDE)", pytrace=False)
    return pybind11.get_include()


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    include = _pybind11_include()
    compiler = shutil.which("g++")
    py_include = sysconfig.get_paths().get("include")
    missing = [what for what, ok in (("pybind11 2.10.0-2.10.2 headers (pip install -e '.[test]')", include),
                                     ("g++", compiler),
                                     (f"Python.h in {py_include}",
                                      py_include and os.path.exists(os.path.join(py_include, "Python.h"))))
               if not ok]
    if missing:
        missing_reference("the pybind11 oracle needs " + ", ".join(missing))
    build = tmp_path_factory.mktemp("pb210oracle")
    source = build / "pb210oracle.cpp"
    source.write_text(
        "#include <pybind11/pybind11.h>\n"
        "namespace py = pybind11;\n"
        "static std::string what(py::object fn) {\n"
        "  try { fn(); } catch (py::error_already_set &e) { return std::string(e.what()); }\n"
        "  return std::string();\n"
        "}\n"
        "PYBIND11_MODULE(pb210oracle, m) { m.def(\"what\", &what); }\n"
    )
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    target = build / ("pb210oracle" + suffix)
    result = subprocess.run(
        [compiler, "-O1", "-shared", "-fPIC", "-std=c++14", "-I" + include, "-I" + py_include,
         str(source), "-o", str(target)],
        capture_output=True, text=True,
    )
    if result.returncode != 0:  # everything it needs is there: a failed build is a failure
        pytest.fail("could not build the pybind11 oracle: " + result.stderr[-2000:], pytrace=False)
    sys.path.insert(0, str(build))
    try:
        import pb210oracle  # noqa: F401
    finally:
        sys.path.remove(str(build))
    return sys.modules["pb210oracle"]


def _oracle_text(oracle_module, fn):
    return oracle_module.what(fn)


def _ours(fn):
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001
        return error_text(exc, stop=[_ours.__code__], hide=lambda f: False)


def test_import_matches_pybind11_oracle(oracle, model_repo):
    import functools

    model_repo("pkg_oracle", "x = 1\n\n\ndef helper():\n    raise KeyError('k')\n\n\nhelper()\n")
    theirs = _oracle_text(oracle, functools.partial(__import__, "pkg_oracle.model", None, None, ["__doc__"], 0))
    for name in [n for n in sys.modules if n.startswith("pkg_oracle")]:
        del sys.modules[name]
    marker = "): _oracle_text\n"
    cut = theirs.index(marker)
    theirs = theirs[: theirs.rindex("\n", 0, cut) + 1]
    assert _import("pkg_oracle.model") == theirs


@pytest.mark.parametrize("fn", _CASES, ids=[f.__name__ for f in _CASES])
def test_matches_pybind11_oracle(oracle, fn):
    theirs = _oracle_text(oracle, fn)
    # The oracle's walk continues into this test's frames; cut at the caller of the oracle.
    marker = "): _oracle_text\n"
    cut = theirs.index(marker)
    theirs = theirs[: theirs.rindex("\n", 0, cut) + 1]
    assert _ours(fn) == theirs


def test_thread_tracebacks_show_model_frames_only(tmp_path):
    """An uncaught exception in a model's thread prints without our surface's frames (pybind11
    functions leave none under the C++ stub); a hook the model installs is left alone."""
    script = tmp_path / "model_thread.py"
    script.write_text(
        "import sys, threading\n"
        "from tritonstub.stub.exc_text import install_thread_excepthook\n"
        "from tritonstub.stub import c_python_backend_utils as pb\n"
        "install_thread_excepthook()\n"
        "def stream():\n"
        "    request = pb.InferenceRequest(model_name='m', inputs=[], requested_output_names=[])\n"
        "    request.get_response_sender().send(flags=1)\n"
        "t = threading.Thread(target=stream); t.start(); t.join()\n"
        "threading.excepthook = lambda args: print('own hook', args.exc_type.__name__, file=sys.stderr)\n"
        "install_thread_excepthook()\n"
        "t = threading.Thread(target=stream); t.start(); t.join()\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    err = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                         timeout=60).stderr
    assert 'model_thread.py", line 7, in stream' in err, err
    assert "c_python_backend_utils" + os.sep not in err, err     # the model API's own frames
    assert err.rstrip().endswith("own hook TritonModelException"), err
    assert ("c_python_backend_utils.TritonModelException: Unable to send response. Response sender "
            "has no reference to the decoupled state of the model.") in err, err
