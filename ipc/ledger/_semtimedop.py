"""SysV semaphores through ctypes: semget, semctl, and semtimedop with real timeouts.

Why not a package: the PyPI `sysv_ipc` wheel has no timed acquire (a timed acquire
blocks forever), and multiprocessing locks are not released when their holder is
SIGKILLed. `semtimedop` with SEM_UNDO gives both: the kernel undoes a dead holder's
operations, and a wait ends at its timeout (EAGAIN). Linux x86-64/aarch64 layouts.
"""

from __future__ import annotations

import ctypes
import errno
import math
import os
import time
from typing import NamedTuple, NoReturn

IPC_PRIVATE = 0
IPC_CREAT = 0o1000
IPC_EXCL = 0o2000
IPC_NOWAIT = 0o4000
IPC_RMID = 0
GETPID = 11
GETVAL = 12
GETALL = 13
GETNCNT = 14
SETVAL = 16
SETALL = 17
SEM_UNDO = 0x1000
SEMVMX = 32767  # the kernel's largest semaphore value
# A wait this long (136 years) is a wait forever: timespec's tv_sec is a signed 64-bit
# long, and int(1e19) wraps to a negative one (EINVAL, read as "set removed") while
# int(sys.float_info.max) wraps to 0 (an instant timeout).
FOREVER_S = float(2**32)


class sembuf(ctypes.Structure):  # the C name
    _fields_ = (
        ("sem_num", ctypes.c_ushort),
        ("sem_op", ctypes.c_short),
        ("sem_flg", ctypes.c_short),
    )


class timespec(ctypes.Structure):  # the C name
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


_libc = ctypes.CDLL(None, use_errno=True)
_semget = _libc.semget
_semget.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int)
_semget.restype = ctypes.c_int
# semtimedop(int, struct sembuf *, size_t, const struct timespec *) is called without
# argtypes: the ledger's hot path pays ~1 µs per call for ctypes' argument checks. Every
# call site passes exactly (int, sembuf array, c_size_t, byref(timespec) or None), which
# is what an Ops value and the wrappers below guarantee.
_semtimedop = _libc.semtimedop
_semtimedop.restype = ctypes.c_int
_semctl = _libc.semctl
_semctl.restype = ctypes.c_int


class SemaphoreTimeout(Exception):
    """The operation could not complete before its timeout (or at once, with IPC_NOWAIT)."""


class SemaphoreGone(OSError):
    """The semaphore set was removed (EIDRM/EINVAL): its ledger no longer exists."""


def _raise_errno(what: str) -> NoReturn:
    err = ctypes.get_errno()
    if err in (errno.EIDRM, errno.EINVAL):
        raise SemaphoreGone(err, f"{what}: semaphore set is gone ({os.strerror(err)})")
    raise OSError(err, f"{what}: {os.strerror(err)}")


def semget(key: int, nsems: int, flags: int) -> int:
    semid: int = _semget(key, nsems, flags)
    if semid < 0:
        _raise_errno("semget")
    return semid


class Ops(NamedTuple):
    """A reusable sembuf array and its length, ready for semtimedop."""

    array: ctypes.Array[sembuf]
    nsops: ctypes.c_size_t  # (not `count`: that would hide tuple.count)


def make_ops(ops: list[tuple[int, int, int]]) -> Ops:
    """Build reusable operations from (sem_num, sem_op, sem_flg) triples."""
    if not ops:
        raise ValueError("a semaphore operation needs at least one sembuf")
    array = (sembuf * len(ops))()
    for i, (num, op, flg) in enumerate(ops):
        array[i].sem_num, array[i].sem_op, array[i].sem_flg = num, op, flg
    return Ops(array, ctypes.c_size_t(len(ops)))


def semop(semid: int, ops: Ops, timeout: float) -> None:
    """Apply all `ops` atomically, waiting at most `timeout` seconds (>= FOREVER_S: forever).

    Raises SemaphoreTimeout when the wait ends first (or at once when an op has
    IPC_NOWAIT), SemaphoreGone when the set was removed. A signal handler that returns
    normally does not end the wait early: EINTR restarts it with the time left.
    """
    if timeout >= FOREVER_S:
        ts_ptr = None
        deadline = math.inf
    else:
        deadline = time.monotonic() + max(timeout, 0.0)
    while True:
        if deadline != math.inf:
            left = max(deadline - time.monotonic(), 0.0)
            ts = timespec(int(left), int((left - int(left)) * 1e9))
            ts_ptr = ctypes.byref(ts)
        if _semtimedop(semid, ops.array, ops.nsops, ts_ptr) == 0:
            return
        err = ctypes.get_errno()
        if err == errno.EAGAIN:
            raise SemaphoreTimeout("semaphore operation timed out")
        if err != errno.EINTR:
            _raise_errno("semtimedop")


def semop_nowait(semid: int, ops: Ops) -> bool:
    """Apply `ops` (which must carry IPC_NOWAIT) at once; False when it would block."""
    if _semtimedop(semid, ops.array, ops.nsops, None) == 0:
        return True
    err = ctypes.get_errno()
    if err == errno.EAGAIN:
        return False
    _raise_errno("semtimedop")


def getval(semid: int, num: int) -> int:
    value = _semctl(ctypes.c_int(semid), ctypes.c_int(num), ctypes.c_int(GETVAL))
    if value < 0:
        _raise_errno("semctl(GETVAL)")
    return int(value)


def getall(semid: int, nsems: int) -> list[int]:
    values = (ctypes.c_ushort * nsems)()
    if _semctl(ctypes.c_int(semid), ctypes.c_int(0), ctypes.c_int(GETALL), values) < 0:
        _raise_errno("semctl(GETALL)")
    return list(values)


def getncnt(semid: int, num: int) -> int:
    """How many processes wait for semaphore `num` to grow."""
    value = _semctl(ctypes.c_int(semid), ctypes.c_int(num), ctypes.c_int(GETNCNT))
    if value < 0:
        _raise_errno("semctl(GETNCNT)")
    return int(value)


def setall(semid: int, values: list[int]) -> None:
    array = (ctypes.c_ushort * len(values))(*values)
    if _semctl(ctypes.c_int(semid), ctypes.c_int(0), ctypes.c_int(SETALL), array) < 0:
        _raise_errno("semctl(SETALL)")


def remove(semid: int) -> None:
    """IPC_RMID: wakes every waiter with EIDRM. Removing a set already gone is a no-op."""
    if _semctl(ctypes.c_int(semid), ctypes.c_int(0), ctypes.c_int(IPC_RMID)) < 0:
        err = ctypes.get_errno()
        if err not in (errno.EIDRM, errno.EINVAL):
            _raise_errno("semctl(IPC_RMID)")
