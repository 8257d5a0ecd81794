"""What runs in a child of the zygote, from its fork to exec or its target's call.

A child is first made clean (`become_clean`): its own process group, PR_SET_PDEATHSIG
(SIGKILL) so that it dies with the zygote, default signal dispositions and an empty
mask, stdin on /dev/null, and none of the zygote's descriptors but those it is told to
keep. None of that needs the spawn request, so a spare does it before the request
comes (`serve_as_spare`). `start` then carries the request out: the log pipe becomes
stdout and stderr, the environment is set (secrets only where pass_env lists them),
the cwd, then exec or the target's import and call. A command gets its environment as
a plain dict at exec (`Inherited`: the zygote's, split into what every child gets and
the secrets, plus what the request adds), which costs far less than os.environ's
putenv() per variable; a target gets it in os.environ. A spare reads `Inherited`
before its request comes.

Whatever stops a start before exec or before the target's import returned is written
to the error pipe, which is close-on-exec: the zygote reads EOF with nothing written
as "started". Everything here runs in the child; nothing returns to the zygote's loop
(the caller `os._exit`s with the code returned).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import socket
import sys
import traceback
from dataclasses import dataclass
from typing import Any

import orjson

from supervisor.prctl import PR_SET_PDEATHSIG, prctl
from supervisor.spec import is_secret_env

MAX_PACKET = 1 << 20  # the largest message read on the zygote's channels
# systemd's words to factoryd, not to its children
_NOT_INHERITED = ("WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")


def become_clean(zygote_pid: int, keep: tuple[int, ...]) -> bool:
    """Leave the zygote's process group, signals and descriptors behind (all but `keep`).

    Returns False when the zygote is gone already (it died before PR_SET_PDEATHSIG was
    set, so no signal will come): the child must exit.
    """
    os.setpgid(0, 0)
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != zygote_pid:
        return False
    signal.set_wakeup_fd(-1)
    # SIGPIPE and SIGXFSZ too: Python ignores them, and SIG_IGN survives exec.
    for sig in (
        signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE,
        signal.SIGXFSZ,
    ):  # fmt: skip
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    devnull = os.open(os.devnull, os.O_RDONLY)
    if devnull != 0:
        os.dup2(devnull, 0)
        os.close(devnull)
    # Nothing the zygote holds (its channel, epoll fd, fds factoryd inherited) reaches
    # a child, a Python target as much as an exec'd command.
    low = 3
    for fd in sorted(k for k in keep if k > 2):  # stdio is set above, not kept
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))
    return True


@dataclass(frozen=True)
class Inherited:
    """The zygote's environment as children inherit it: `common` goes to every child,
    each of `secrets` only to one whose spec lists it in pass_env."""

    common: dict[str, str]
    secrets: dict[str, str]

    @classmethod
    def from_environ(cls) -> Inherited:
        common: dict[str, str] = {}
        secrets: dict[str, str] = {}
        for name, value in os.environ.items():
            if name not in _NOT_INHERITED:
                (secrets if is_secret_env(name) else common)[name] = value
        return cls(common, secrets)

    def for_child(self, msg: dict[str, Any]) -> dict[str, str]:
        """The environment of the child `msg` asks for. Raises ValueError for a name
        or value the kernel cannot take (os.putenv's words)."""
        env = dict(self.common)
        for name in msg.get("pass_env") or ():
            if name in self.secrets:
                env[name] = self.secrets[name]
        for name, value in (msg.get("env") or {}).items():
            if not name or "=" in name:
                raise ValueError("illegal environment variable name")
            if "\0" in name or "\0" in value:
                raise ValueError("embedded null byte")
            env[name] = value
        env["FACTORY_CHILD_ID"] = msg["id"]
        return env


def serve_as_spare(channel: socket.socket, err_w: int) -> int:
    """A spare: wait for one spawn request (a message and its log fd) from the zygote,
    then become that child. EOF (the zygote dropped this spare) ends it quietly.

    Blocks until the request or EOF; the zygote dying ends it by PR_SET_PDEATHSIG.
    """
    inherited = Inherited.from_environ()
    try:
        data, fds, _flags, _addr = socket.recv_fds(channel, MAX_PACKET, 4)
    except OSError:
        return 0
    channel.close()
    if not data or len(fds) != 1:
        return 0
    return start(orjson.loads(data), fds[0], err_w, inherited)


def start(msg: dict[str, Any], log_fd: int, err_w: int, inherited: Inherited | None = None) -> int:
    """Become the child `msg` asks for (after `become_clean`); returns an exit code
    only when that fails (after saying why on `err_w`) or when a target returns."""
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    if log_fd > 2:
        os.close(log_fd)
    try:
        env = (inherited or Inherited.from_environ()).for_child(msg)
        if msg.get("cwd"):
            os.chdir(msg["cwd"])
    except (OSError, ValueError) as exc:  # ValueError: a bad env name, a NUL byte
        os.write(err_w, f"cannot prepare {msg['id']}: {exc}".encode())
        return 127
    if msg.get("command"):
        argv = msg["command"]
        try:
            os.execvpe(argv[0], argv, env)
        except (OSError, ValueError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else exc
            os.write(err_w, f"cannot exec {argv[0]!r}: {why}".encode())
            return 127
    _set_environ(env)
    return _run_target(msg, err_w)


def _set_environ(env: dict[str, str]) -> None:
    """Make os.environ (and the C environ a target's libraries read) `env`."""
    for name in [n for n in os.environ if n not in env]:
        del os.environ[name]  # API keys and tokens only where the spec passes them
    for name, value in env.items():
        if os.environ.get(name) != value:
            os.environ[name] = value


def _run_target(msg: dict[str, Any], err_w: int) -> int:
    # The dispositions a fresh python3 has: a write to a closed socket raises
    # BrokenPipeError instead of killing the service with SIGPIPE.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    module_name, _, func_name = msg["target"].partition(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except Exception as exc:  # noqa: BLE001 - any import error is a failed start
        os.write(err_w, f"cannot load target {msg['target']!r}: {exc!r}".encode())
        return 1
    os.close(err_w)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    try:
        result = func(list(msg.get("args") or []))
    except SystemExit as exc:
        result = exc.code
    except BaseException:  # noqa: BLE001 - report the crash in the child's log, then exit 1
        traceback.print_exc()
        result = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
    if result is None:
        return 0
    return result if isinstance(result, int) else 1
