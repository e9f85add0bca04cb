"""The thin OS layer for synchronisation: glibc pthread and semaphore calls through ctypes.

Boost.Interprocess 1.79 on Linux builds its primitives directly on glibc objects placed in the
shared segment (interprocess_mutex = pthread_mutex_t, interprocess_condition = pthread_cond_t,
interprocess_semaphore = sem_t). We call the same functions on the same addresses, so C++ and
Python lock each other out exactly.

The GIL. A ctypes function of a ``CDLL`` releases the GIL around the call, so a thread blocked
in ``sem_wait`` does not stop the others; but taking the GIL back costs a hand-off when another
thread holds it, and a thread that asks for it waits up to a whole switch interval (5 ms) while
the holder runs Python. With several model threads sending responses, every unlock, post and
notify of a handshake paid that wait: a GIL convoy. The calls that cannot block (try-lock,
unlock, semaphore try-wait and post, condition signal and broadcast: at most a futex wake) are
therefore bound a second time through ``PyDLL``, which keeps the GIL across the call; only the
calls that may wait (lock, timed lock, waits) let it go.

On PyPy the same functions are bound through cffi, which PyPy ships (ABI mode: no compiler,
and pointers passed as the integer addresses everything here uses). PyPy's ctypes takes about
1.3 µs a call, where its JIT makes a cffi call about 15 ns: with ctypes a decoupled send cost
8x the C++ stub's on PyPy, against 3x on CPython. CPython keeps ctypes (cffi is no dependency).

Only this module (and region.py for mmap addresses) touches ctypes.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import math
import sys
import time

_libc = ctypes.CDLL("libc.so.6", use_errno=True)
try:  # glibc < 2.34 keeps the pthread functions in libpthread
    _libc.pthread_mutexattr_setrobust
    _pthread = _libc
    _pthread_name = "libc.so.6"
except AttributeError:  # pragma: no cover - old glibc only
    _pthread_name = ctypes.util.find_library("pthread") or "libpthread.so.0"
    _pthread = ctypes.CDLL(_pthread_name, use_errno=True)
# The same library, for the calls that never block: the GIL stays held (see the docstring).
# PyPy's ctypes has no PyDLL (and its own GIL handling): plain bindings there.
_nonblocking = getattr(ctypes, "PyDLL", ctypes.CDLL)(_pthread_name, use_errno=True)

PTHREAD_PROCESS_SHARED = 1
PTHREAD_MUTEX_ROBUST = 1

MUTEX_SIZE = 40
COND_SIZE = 48
SEM_SIZE = 32
_ATTR_SIZE = 16   # pthread_mutexattr_t / pthread_condattr_t are 4 bytes on x86_64 glibc


class timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def deadline(timeout_s: float):
    """An absolute CLOCK_REALTIME deadline, as Boost's timed calls use (a ctypes timespec, or
    cffi's on PyPy)."""
    t = time.time() + max(0.0, timeout_s)
    frac, whole = math.modf(t)
    if _ffi is not None:
        return _ffi.new("struct timespec *", (int(whole), int(frac * 1e9)))
    return timespec(int(whole), int(frac * 1e9))


def _proto(lib, name, *args):
    fn = getattr(lib, name)
    fn.argtypes = list(args)
    fn.restype = ctypes.c_int
    return fn


_vp = ctypes.c_void_p
_tsp = ctypes.POINTER(timespec)

pthread_mutexattr_init = _proto(_pthread, "pthread_mutexattr_init", _vp)
pthread_mutexattr_setpshared = _proto(_pthread, "pthread_mutexattr_setpshared", _vp, ctypes.c_int)
pthread_mutexattr_setrobust = _proto(_pthread, "pthread_mutexattr_setrobust", _vp, ctypes.c_int)
pthread_mutexattr_destroy = _proto(_pthread, "pthread_mutexattr_destroy", _vp)
pthread_mutex_init = _proto(_pthread, "pthread_mutex_init", _vp, _vp)
pthread_mutex_lock = _proto(_pthread, "pthread_mutex_lock", _vp)
pthread_mutex_trylock = _proto(_nonblocking, "pthread_mutex_trylock", _vp)
pthread_mutex_timedlock = _proto(_pthread, "pthread_mutex_timedlock", _vp, _tsp)
pthread_mutex_unlock = _proto(_nonblocking, "pthread_mutex_unlock", _vp)
pthread_mutex_consistent = _proto(_nonblocking, "pthread_mutex_consistent", _vp)

pthread_condattr_init = _proto(_pthread, "pthread_condattr_init", _vp)
pthread_condattr_setpshared = _proto(_pthread, "pthread_condattr_setpshared", _vp, ctypes.c_int)
pthread_condattr_destroy = _proto(_pthread, "pthread_condattr_destroy", _vp)
pthread_cond_init = _proto(_pthread, "pthread_cond_init", _vp, _vp)
pthread_cond_wait = _proto(_pthread, "pthread_cond_wait", _vp, _vp)
pthread_cond_timedwait = _proto(_pthread, "pthread_cond_timedwait", _vp, _vp, _tsp)
pthread_cond_signal = _proto(_nonblocking, "pthread_cond_signal", _vp)
pthread_cond_broadcast = _proto(_nonblocking, "pthread_cond_broadcast", _vp)

sem_init = _proto(_pthread, "sem_init", _vp, ctypes.c_int, ctypes.c_uint)
sem_wait = _proto(_pthread, "sem_wait", _vp)
sem_trywait = _proto(_nonblocking, "sem_trywait", _vp)
sem_timedwait = _proto(_pthread, "sem_timedwait", _vp, _tsp)
sem_post = _proto(_nonblocking, "sem_post", _vp)
_sem_getvalue = _proto(_nonblocking, "sem_getvalue", _vp, ctypes.POINTER(ctypes.c_int))


def sem_value(addr: int) -> int:
    if _ffi is not None:
        v = _ffi.new("int *")
        _C.sem_getvalue(addr, v)
        return v[0]
    c = ctypes.c_int()
    _sem_getvalue(addr, ctypes.byref(c))
    return c.value


def get_errno() -> int:
    """errno after a failed call, from the binding that made it."""
    return _ffi.errno if _ffi is not None else ctypes.get_errno()


_cffi = _ffi = None
if sys.implementation.name == "pypy":
    try:
        import cffi as _cffi
    except ImportError:  # pragma: no cover - a PyPy without its cffi: ctypes, slowly
        _cffi = None
if _cffi is not None:  # pragma: no cover - PyPy only
    # Every pointer is declared uintptr_t (the same register on x86_64 and aarch64), so the
    # integer addresses of the callers pass as they are; a deadline is cffi's own timespec.
    _ffi = _cffi.FFI()
    _ffi.cdef("""
        struct timespec { long tv_sec; long tv_nsec; };
        int pthread_mutexattr_init(uintptr_t); int pthread_mutexattr_destroy(uintptr_t);
        int pthread_mutexattr_setpshared(uintptr_t, int);
        int pthread_mutexattr_setrobust(uintptr_t, int);
        int pthread_mutex_init(uintptr_t, uintptr_t); int pthread_mutex_lock(uintptr_t);
        int pthread_mutex_trylock(uintptr_t); int pthread_mutex_unlock(uintptr_t);
        int pthread_mutex_timedlock(uintptr_t, struct timespec *);
        int pthread_mutex_consistent(uintptr_t);
        int pthread_condattr_init(uintptr_t); int pthread_condattr_destroy(uintptr_t);
        int pthread_condattr_setpshared(uintptr_t, int);
        int pthread_cond_init(uintptr_t, uintptr_t); int pthread_cond_wait(uintptr_t, uintptr_t);
        int pthread_cond_timedwait(uintptr_t, uintptr_t, struct timespec *);
        int pthread_cond_signal(uintptr_t); int pthread_cond_broadcast(uintptr_t);
        int sem_init(uintptr_t, int, unsigned int); int sem_wait(uintptr_t);
        int sem_trywait(uintptr_t); int sem_timedwait(uintptr_t, struct timespec *);
        int sem_post(uintptr_t); int sem_getvalue(uintptr_t, int *);
    """)
    _C = _ffi.dlopen(_pthread_name)
    for _name in ("pthread_mutexattr_init", "pthread_mutexattr_setpshared",
                  "pthread_mutexattr_setrobust", "pthread_mutexattr_destroy",
                  "pthread_mutex_init", "pthread_mutex_lock", "pthread_mutex_trylock",
                  "pthread_mutex_timedlock", "pthread_mutex_unlock", "pthread_mutex_consistent",
                  "pthread_condattr_init", "pthread_condattr_setpshared",
                  "pthread_condattr_destroy", "pthread_cond_init", "pthread_cond_wait",
                  "pthread_cond_timedwait", "pthread_cond_signal", "pthread_cond_broadcast",
                  "sem_init", "sem_wait", "sem_trywait", "sem_timedwait", "sem_post"):
        globals()[_name] = getattr(_C, _name)


# A freshly initialised pshared object is plain bytes (glibc keeps no state elsewhere until it
# is first locked or waited on), so after one real initialisation into a private buffer the
# next ones copy that image: one memmove instead of five foreign calls per message.
_IMAGES: dict = {}


def _from_image(size: int, init) -> "ctypes.Array":
    image = _IMAGES.get(init)
    if image is None:
        image = ctypes.create_string_buffer(size)
        init(ctypes.addressof(image))
        _IMAGES[init] = image
    return image


def init_mutex(addr: int) -> None:
    """pthread_mutex_init with Boost's interprocess_mutex attributes (pshared + robust)."""
    ctypes.memmove(addr, _from_image(MUTEX_SIZE, _init_mutex), MUTEX_SIZE)


def init_cond(addr: int) -> None:
    """pthread_cond_init with Boost's interprocess_condition attributes (pshared)."""
    ctypes.memmove(addr, _from_image(COND_SIZE, _init_cond), COND_SIZE)


def _init_mutex(addr: int) -> None:
    buf = ctypes.create_string_buffer(_ATTR_SIZE)
    attr = ctypes.addressof(buf)
    _check(pthread_mutexattr_init(attr), "pthread_mutexattr_init")
    try:
        _check(pthread_mutexattr_setpshared(attr, PTHREAD_PROCESS_SHARED),
               "pthread_mutexattr_setpshared")
        _check(pthread_mutexattr_setrobust(attr, PTHREAD_MUTEX_ROBUST),
               "pthread_mutexattr_setrobust")
        _check(pthread_mutex_init(addr, attr), "pthread_mutex_init")
    finally:
        pthread_mutexattr_destroy(attr)


def _init_cond(addr: int) -> None:
    buf = ctypes.create_string_buffer(_ATTR_SIZE)
    attr = ctypes.addressof(buf)
    _check(pthread_condattr_init(attr), "pthread_condattr_init")
    try:
        _check(pthread_condattr_setpshared(attr, PTHREAD_PROCESS_SHARED),
               "pthread_condattr_setpshared")
        _check(pthread_cond_init(addr, attr), "pthread_cond_init")
    finally:
        pthread_condattr_destroy(attr)


def init_sem(addr: int, value: int) -> None:
    """sem_init(pshared=1) as interprocess_semaphore does."""
    if sem_init(addr, 1, value) != 0:
        _raise_errno("sem_init")


def _check(rc: int, what: str) -> None:
    if rc != 0:
        from ..errors import SyncError
        raise SyncError(f"{what} failed: {errno.errorcode.get(rc, rc)}")


def _raise_errno(what: str) -> None:
    from ..errors import SyncError
    e = get_errno()
    raise SyncError(f"{what} failed: {errno.errorcode.get(e, e)}")
