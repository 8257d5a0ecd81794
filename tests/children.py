"""Child behaviours for supervisor tests, run as Python targets ("tests.children:NAME").

Each records what happens to it in a journal file (args[0]) as lines "EVENT ID PID", so
a test can wait on the file instead of sleeping.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

if os.environ.get("CHILDREN_IMPORT_WAITS_ON"):  # a slow import: done once the FIFO is written
    with open(os.environ["CHILDREN_IMPORT_WAITS_ON"]) as _fifo:
        _fifo.read()


def _record(path: str, event: str) -> None:
    with open(path, "a") as f:
        f.write(f"{event} {os.environ.get('FACTORY_CHILD_ID', '?')} {os.getpid()}\n")


def serve(args: list[str]) -> int:
    """Run until SIGTERM; record start and stop. args: JOURNAL [--quiet: no start record]"""
    if "--quiet" not in args:
        _record(args[0], "start")
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    signal.sigwait({signal.SIGTERM})
    print(f"{os.environ.get('FACTORY_CHILD_ID')} got SIGTERM, last words", flush=True)
    _record(args[0], "stop")
    return 0


def stubborn(args: list[str]) -> int:
    """Record SIGTERM but keep running (only the shutdown timeout's SIGKILL ends it).
    args: JOURNAL"""
    signal.signal(signal.SIGTERM, lambda *_: _record(args[0], "term"))
    _record(args[0], "start")
    while True:
        signal.pause()


def exit_with(args: list[str]) -> int:
    """Record start, then exit at once with code args[1]. args: JOURNAL CODE"""
    _record(args[0], "start")
    return int(args[1])


def exit_on_usr1(args: list[str]) -> int:
    """Run until SIGUSR1, then exit with code args[1]. args: JOURNAL CODE"""
    _record(args[0], "start")
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGTERM})
    got = signal.sigwait({signal.SIGUSR1, signal.SIGTERM})
    _record(args[0], "stop" if got == signal.SIGTERM else "exit")
    return 0 if got == signal.SIGTERM else int(args[1])


def ready_from_group(args: list[str]) -> int:
    """A subprocess of our group sends READY=1 (as a wrapper script's worker would) and
    stays until we end; once its datagram is in factoryd's queue we record "spoke"; then
    serve until SIGTERM. args: JOURNAL"""
    _record(args[0], "start")
    speaker = (
        "import os, socket, sys\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
        "s.sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])\n"
        "print('sent', flush=True)\n"
        "sys.stdin.read()\n"
    )
    helper = subprocess.Popen(
        [sys.executable, "-c", speaker], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    helper.stdout.readline()  # type: ignore[union-attr]
    _record(args[0], "spoke")
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    signal.sigwait({signal.SIGTERM})
    helper.stdin.close()  # type: ignore[union-attr]
    helper.wait(timeout=10)
    return 0


def ready_at_once(args: list[str]) -> int:
    """Send READY=1 first thing (before factoryd may know our pid), then serve until
    SIGTERM. args: JOURNAL"""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
    return serve(args)


def chatter(args: list[str]) -> int:
    """Print args[1] lines of 8,000 characters (a full log ring), record start, then serve
    until SIGTERM. args: JOURNAL LINES"""
    for n in range(int(args[1])):
        print(f"{n:06d} " + "x" * 7993, flush=True)
    return serve(args[:1])


def say_on_usr1(args: list[str]) -> int:
    """Print "said N" (N from 1) on every SIGUSR1, and args[1] lines at once on SIGUSR2;
    run until SIGTERM. args: JOURNAL BURST"""
    _record(args[0], "start")
    wanted = {signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
    said = 0
    while (got := signal.sigwait(wanted)) != signal.SIGTERM:
        for _ in range(1 if got == signal.SIGUSR1 else int(args[1])):
            said += 1
            print(f"said {said}", flush=True)
    return 0


def with_grandchild(args: list[str]) -> int:
    """Start a grandchild in our process group that ignores SIGTERM, then serve.
    args: JOURNAL  (the grandchild's pid is recorded as "grandchild ID PID")"""
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); signal.pause()",
        ]
    )
    with open(args[0], "a") as f:
        f.write(f"grandchild {os.environ.get('FACTORY_CHILD_ID')} {child.pid}\n")
    return serve(args)


def orphan_maker(args: list[str]) -> int:
    """Leave an orphan in a new session (outside our group) that exits when FIFO
    args[1] is written, then exit 0. args: JOURNAL FIFO"""
    child = subprocess.Popen(
        [sys.executable, "-c", f"open({args[1]!r}).read()"], start_new_session=True
    )
    with open(args[0], "a") as f:
        f.write(f"orphan {os.environ.get('FACTORY_CHILD_ID')} {child.pid}\n")
    _record(args[0], "start")
    return 0


def ready_after_fifo(args: list[str]) -> int:
    """Say READY=1 (sd_notify) once FIFO args[1] is written, then serve.
    args: JOURNAL FIFO"""
    from ipc.sd_notify import notify_ready

    _record(args[0], "start")
    with open(args[1]) as fifo:
        fifo.read()
    _record(args[0], "ready")
    notify_ready("serving 42 requests")
    return serve([args[0], "--quiet"])


def never_ready(args: list[str]) -> int:
    """Start but never say READY=1. args: JOURNAL"""
    _record(args[0], "start")
    while True:
        signal.pause()


def write_to_closed_socket(args: list[str]) -> int:
    """Write to a socket whose peer is closed, as a service replying to a client that
    gave up: a Python process gets BrokenPipeError ("epipe"), not death by SIGPIPE.
    args: JOURNAL"""
    import socket

    _record(args[0], "start")
    ours, theirs = socket.socketpair()
    theirs.close()
    try:
        ours.sendall(b"reply")
    except BrokenPipeError:
        _record(args[0], "epipe")
    return serve([args[0], "--quiet"])


def record_fds(args: list[str]) -> int:
    """Write the fds >= 3 this process started with (one "FD TARGET" line each) to
    file args[0], then serve. args: FILE"""
    lines = []
    for name in sorted(os.listdir("/proc/self/fd"), key=int):
        fd = int(name)
        try:
            os.fstat(fd)  # the listing's own directory fd is closed by now
            lines.append(f"{fd} {os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            continue
    with open(args[0] + ".tmp", "w") as f:
        f.write("".join(f"{line}\n" for line in lines if int(line.split()[0]) >= 3))
    os.rename(args[0] + ".tmp", args[0])
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    signal.sigwait({signal.SIGTERM})
    return 0


def dump_env(args: list[str]) -> int:
    """Write the environment the child got to args[0] as NAME=VALUE lines (renamed into
    place, so a test sees the whole file or none), then exit 0."""
    tmp = f"{args[0]}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(f"{name}={value}\n" for name, value in os.environ.items())
    os.rename(tmp, args[0])
    return 0
