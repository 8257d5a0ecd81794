"""terminal/* for agents: commands run inside the workspace, bounded in time and output.

Each command runs in the sandbox (procs.sandbox: bubblewrap, the workspace read-write,
the role's `locked` paths read-only, no network, a memory limit of `memory_mb`), is its
own process group (killed as a group; the sandbox's PID namespace takes whatever the
command left behind), starts in the workspace (or a directory inside it), gets the
agent's env additions on top of a trimmed environment, and is killed when it outlives
`command_timeout_s`. Without a usable bwrap, create() refuses with SandboxUnavailable
unless `sandbox_mode` is "none" (the operator's choice). A command killed by a signal
inside bwrap is reported as that signal (bwrap itself exits 128 + the signal number).
Output (stdout and stderr together) keeps the last `output_byte_limit` bytes, cut on a
character boundary, and says when it was cut.

A session holds a bounded number of terminals: at most `max_terminals` commands running at
once (a place is freed when the command exits or is released), and at most
`max_kept_terminals` not yet released (an exited terminal keeps its output, up to 4 MiB,
until terminal/release). Beyond either, create() raises TerminalLimit naming the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from procs.agent.exits import WatchedProcess, signal_name, spawn
from procs.agent.roles import PathRefused, resolve_in_workspace
from procs.sandbox import DEFAULT_MEMORY_MB, SANDBOX_MODES, SandboxPolicy, command_prefix

DEFAULT_OUTPUT_LIMIT = 256 * 1024
MAX_OUTPUT_LIMIT = 16 * DEFAULT_OUTPUT_LIMIT
DEFAULT_MAX_TERMINALS = 8
DEFAULT_MAX_KEPT_TERMINALS = 32
BASE_ENV_KEYS = ("PATH", "LANG", "LC_ALL", "TERM", "TMPDIR")


class TerminalNotFound(KeyError):
    """No terminal with that id in this session (never created, or released)."""


class TerminalLimit(Exception):
    """terminal/create refused: the session already holds as many terminals as it may."""

    def __init__(self, message: str, *, limit: str, value: int) -> None:
        super().__init__(message)
        self.limit = limit
        self.value = value


@dataclass
class Terminal:
    terminal_id: str
    process: WatchedProcess
    limit: int
    output: bytearray = field(default_factory=bytearray)
    truncated: bool = False
    timed_out: bool = False
    pump: asyncio.Task[None] | None = None
    watchdog: asyncio.Task[None] | None = None
    sandboxed: bool = False  # under bwrap, which exits 128 + N for a command killed by N

    @property
    def exited(self) -> asyncio.Event:
        return self.process.exited

    def append(self, chunk: bytes) -> None:
        self.output += chunk
        if len(self.output) > self.limit:
            del self.output[: len(self.output) - self.limit]
            # Drop continuation bytes so the text starts on a character boundary.
            while self.output and (self.output[0] & 0xC0) == 0x80:
                del self.output[0]
            self.truncated = True

    def text(self) -> str:
        return self.output.decode("utf-8", errors="replace")

    def exit_status(self) -> dict[str, object] | None:
        code = self.process.returncode
        if code is None:
            return None
        if code < 0:
            return {"exitCode": None, "signal": signal_name(-code)}
        if self.sandboxed and 128 < code <= 128 + signal.SIGRTMAX:
            return {"exitCode": None, "signal": signal_name(code - 128)}
        return {"exitCode": code, "signal": None}


class Terminals:
    """The terminals of one agent session."""

    def __init__(
        self,
        workspace: Path,
        *,
        command_timeout_s: float = 600.0,
        max_terminals: int = DEFAULT_MAX_TERMINALS,
        max_kept_terminals: int = DEFAULT_MAX_KEPT_TERMINALS,
        pipe_grace_s: float = 5.0,
        sandbox_mode: str = "bwrap",
        locked: Callable[[], Sequence[Path]] | None = None,
        memory_mb: int = DEFAULT_MEMORY_MB,
    ) -> None:
        """`pipe_grace_s`: how long, once a command exited and its group was killed, its
        output pipe may stay open (held by a process that left the group) before we stop
        waiting for the rest of its output and close our end. `locked`: the paths inside
        the workspace each command sees read-only, asked again at every create (the
        workspace changes); `sandbox_mode` "bwrap" or "none"; `memory_mb` each command's
        address-space limit."""
        for name, value in (("max_terminals", max_terminals),
                            ("max_kept_terminals", max_kept_terminals)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if sandbox_mode not in SANDBOX_MODES:
            raise ValueError(f"sandbox_mode must be one of {SANDBOX_MODES}, got {sandbox_mode!r}")
        self.sandbox_mode = sandbox_mode
        self.locked = locked or (lambda: ())
        self.memory_mb = memory_mb
        self.workspace = workspace
        self.command_timeout_s = command_timeout_s
        self.max_terminals = max_terminals
        self.max_kept_terminals = max_kept_terminals
        self.pipe_grace_s = pipe_grace_s
        self._ids = itertools.count(1)
        self._terminals: dict[str, Terminal] = {}
        self._starting = 0  # creates between their check and their registration

    def running(self) -> int:
        """Commands running now (and being started), which max_terminals bounds."""
        return self._starting + sum(not t.exited.is_set() for t in self._terminals.values())

    def statistics(self) -> dict[str, int]:
        return {
            "running": self.running(), "kept": len(self._terminals) + self._starting,
            "max_terminals": self.max_terminals, "max_kept_terminals": self.max_kept_terminals,
        }  # fmt: skip

    def _check_room(self) -> None:
        running, kept = self.running(), len(self._terminals) + self._starting
        if running >= self.max_terminals:
            raise TerminalLimit(
                f"{running} commands are already running in this session "
                f"(max_terminals={self.max_terminals}); wait for one to exit or kill it",
                limit="max_terminals", value=self.max_terminals,
            )  # fmt: skip
        if kept >= self.max_kept_terminals:
            raise TerminalLimit(
                f"{kept} terminals are not yet released in this session "
                f"(max_kept_terminals={self.max_kept_terminals}); release one with "
                "terminal/release",
                limit="max_kept_terminals", value=self.max_kept_terminals,
            )  # fmt: skip

    async def create(
        self,
        command: str,
        args: list[str] | None = None,
        *,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        output_byte_limit: int | None = None,
    ) -> str:
        """Start `command args...` in the sandbox; returns the terminal id. Raises
        PathRefused for a cwd outside the workspace, FileNotFoundError for a missing
        command, TerminalLimit when the session has no room for another terminal,
        SandboxUnavailable when the sandbox cannot run here, TooManyPaths (a ValueError)
        when the role's read-only paths cannot be listed."""
        self._check_room()
        directory = self.workspace.resolve()
        if cwd is not None and not _names_workspace(self.workspace, cwd):
            directory = resolve_in_workspace(self.workspace, cwd).real
            if not directory.is_dir():
                raise PathRefused(f"cwd {cwd!r} is not a directory in the workspace")
        limit = DEFAULT_OUTPUT_LIMIT if output_byte_limit is None else output_byte_limit
        if limit < 0:
            raise ValueError(f"output_byte_limit must be >= 0, got {limit}")
        limit = min(limit, MAX_OUTPUT_LIMIT)
        full_env = {k: os.environ[k] for k in BASE_ENV_KEYS if k in os.environ}
        full_env.update(env or {})
        self._starting += 1  # holds the place while we await: creates run concurrently
        try:
            # In a thread: the role's paths are a walk of the workspace, the first bwrap
            # use a probe of it (bounded: locked_paths' limits, the probe's timeout).
            prefix = await asyncio.to_thread(self._sandbox_prefix)
            _check_command(command, full_env, directory)
            process = await spawn(
                *prefix, command, *(args or []),
                cwd=directory, env=full_env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                process_group=0,
            )  # fmt: skip
        finally:
            self._starting -= 1
        terminal = Terminal(
            f"term-{next(self._ids)}", process, limit, sandboxed=self.sandbox_mode == "bwrap"
        )
        terminal.pump = asyncio.create_task(self._pump(terminal))
        terminal.watchdog = asyncio.create_task(self._watchdog(terminal))
        self._terminals[terminal.terminal_id] = terminal
        return terminal.terminal_id

    def _sandbox_prefix(self) -> list[str]:
        policy = SandboxPolicy(
            self.workspace.absolute(), readonly_paths=tuple(self.locked()),
            timeout_s=self.command_timeout_s, memory_mb=self.memory_mb, mode=self.sandbox_mode,
        )  # fmt: skip
        return command_prefix(policy)

    async def _pump(self, terminal: Terminal) -> None:
        assert terminal.process.stdout is not None
        while chunk := await terminal.process.stdout.read(65536):
            terminal.append(chunk)

    async def _watchdog(self, terminal: Terminal) -> None:
        try:
            await asyncio.wait_for(terminal.exited.wait(), self.command_timeout_s)
        except TimeoutError:
            terminal.timed_out = True
            _kill_group(terminal.process)
        else:  # what the command left running in its group goes with it
            _kill_group(terminal.process, leftovers=True)

    def get(self, terminal_id: str) -> Terminal:
        try:
            return self._terminals[terminal_id]
        except KeyError:
            raise TerminalNotFound(f"no terminal {terminal_id!r} in this session") from None

    async def wait_for_exit(self, terminal_id: str, *, timeout: float) -> Terminal:
        """Wait for the command (the watchdog kills it at command_timeout_s anyway), then
        up to pipe_grace_s for the rest of its output. Raises TimeoutError when the command
        is still running after `timeout` s."""
        terminal = self.get(terminal_id)
        await asyncio.wait_for(terminal.exited.wait(), timeout)
        _kill_group(terminal.process, leftovers=True)  # free the output pipe they may hold
        if terminal.pump is not None:  # not cancelled if it outlasts the grace
            await asyncio.wait({terminal.pump}, timeout=self.pipe_grace_s)
        return terminal

    def kill(self, terminal_id: str) -> None:
        _kill_group(self.get(terminal_id).process)

    async def release(self, terminal_id: str) -> None:
        terminal = self._terminals.pop(terminal_id, None)
        if terminal is None:
            raise TerminalNotFound(f"no terminal {terminal_id!r} in this session")
        await _reap(terminal, self.pipe_grace_s)

    async def close(self) -> None:
        """Kill and reap every terminal (session end), all at once: about pipe_grace_s at
        most, however many there are."""
        terminals, self._terminals = list(self._terminals.values()), {}
        await asyncio.gather(*(_reap(t, self.pipe_grace_s) for t in terminals))


async def _reap(terminal: Terminal, pipe_grace_s: float) -> None:
    _kill_group(terminal.process, leftovers=True)
    await terminal.process.close(timeout=pipe_grace_s)  # the pump reads what was left to EOF
    for task in (terminal.pump, terminal.watchdog):
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _check_command(command: str, env: dict[str, str], directory: Path) -> None:
    """FileNotFoundError for a command that does not exist, found as exec would find it
    (the sandbox sees the same files): else bwrap would start and fail inside."""
    if "/" in command:
        found = (directory / command).is_file()
    else:
        found = shutil.which(command, path=env.get("PATH", os.defpath)) is not None
    if not found:
        raise FileNotFoundError(f"no such command: {command!r}")


def _names_workspace(workspace: Path, cwd: object) -> bool:
    """Whether `cwd` is the workspace itself (as agents pass their session's cwd), which
    resolve_in_workspace refuses because it names no file. No '..' way round counts."""
    if not isinstance(cwd, str) or "\x00" in cwd or ".." in PurePosixPath(cwd).parts:
        return False
    spelled = os.path.normpath(workspace.resolve() / cwd)
    return spelled in (str(workspace.resolve()), os.path.normpath(workspace.absolute()))


def _kill_group(process: asyncio.subprocess.Process, *, leftovers: bool = False) -> None:
    """SIGKILL the command's group; `leftovers` also after the leader exited (its
    background children may still run in the group)."""
    if process.returncode is None or leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
