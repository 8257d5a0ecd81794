"""AgentService: one kept `procs.agent.service --serve` process, as the loop holds it.

    python -m procs.agent.service --serve --workspace WS --timeout-s T --sandbox MODE \
        [--sandbox-role ROLE] [--profile NAME [--profiles FILE]] \
        [--model-url URL --model NAME --model-api KIND] -- AGENT COMMAND...

With an AgentModel, the service writes the agent's model config itself (for opencode,
opencode.json in a private HOME); its key travels in $FACTORY_MODEL_TOKEN, never on argv.

The service starts the agent once and answers one JSON turn request per line (the wire
is in procs/agent/serve.py); the agent kind is reached as a process, never imported.
This side is synchronous, as the loop is, and every wait is bounded by a deadline
(monotonic): the start until the service says ready, each write of a request, each
read of its answer. The service runs in the loop's process group (a killpg of the loop
takes it; its agent, in a group of its own, then reads EOF and is closed by it).

Memory: with a ledger (ipc.ledger), the agent's expected RSS is reserved as "ram" before
the service starts, waiting at most `ram_wait_s`, and held for as long as the service
(and so its agent) lives: `stop()` gives it back once the process has exited. The
reservation is held by this (the loop's) process with SEM_UNDO, so a SIGKILLed loop's
RAM comes back too.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from ipc.ledger import ResourceError, Ticket, TicketLedger

MAX_LINE_BYTES = 64 * 1024 * 1024  # a turn's line: its record less the raw updates
MAX_STDERR_CHARS = 2000
SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the tree holding procs/ and ipc/
CLOSE_GRACE_S = 15.0  # the service closes its agent: up to ~8 s (AcpAgent.close)


MODEL_TOKEN_ENV = "FACTORY_MODEL_TOKEN"  # procs.agent.model_setup reads the key there


@dataclass(frozen=True)
class AgentModel:
    """Where the agent's model calls go (the gateway, or the upstream when unmetered),
    the model's name, its API kind and the key (the gateway's token) they carry."""

    url: str
    name: str
    api: str = "openai"
    key: str = field(default="", repr=False)

    def argv(self) -> list[str]:
        return ["--model-url", self.url, "--model", self.name, "--model-api", self.api]

    def env(self) -> dict[str, str]:
        return {MODEL_TOKEN_ENV: self.key} if self.key else {}


class ServiceFailed(RuntimeError):
    """The service could not be started or stopped answering; the message says why."""


class ServiceGone(ServiceFailed):
    """The service's stdout reached EOF (it exited) before the line we waited for, or
    its agent died as it started: killed or crashed, not a refusal."""


@dataclass(frozen=True)
class ServiceSettings:
    """How to start the service: the agent command and the service's options."""

    agent_command: tuple[str, ...]
    python: str
    env: Mapping[str, str]
    timeout_s: float
    start_timeout_s: float
    idle_timeout_s: float
    cancel_grace_s: float
    sandbox_mode: str
    may_execute: bool = False
    model: AgentModel | None = None
    sandbox_role: str | None = None  # the agent process itself in that role's sandbox
    profile: str | None = None  # the agent's profile (None: by the command's basename)
    profiles_file: Path | None = None  # the operator's profiles, besides the built-ins

    def service_env(self) -> dict[str, str]:
        """`env`, with the tree that holds `procs` first on PYTHONPATH: the service runs
        in the workspace, where `python -m procs.agent.service` would not find it."""
        env = dict(self.env)
        env.pop(MODEL_TOKEN_ENV, None)  # only this model's key, if any
        if self.model is not None:
            env.update(self.model.env())
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(SOURCE_ROOT), env.get("PYTHONPATH", "")) if p
        )
        return env

    def argv(self, workspace: Path) -> list[str]:
        return [
            self.python, "-m", "procs.agent.service", "--serve",
            "--workspace", str(workspace), "--timeout-s", str(self.timeout_s),
            "--start-timeout-s", str(self.start_timeout_s),
            "--idle-timeout-s", str(self.idle_timeout_s),
            "--cancel-grace-s", str(self.cancel_grace_s), "--sandbox", self.sandbox_mode,
            *(["--may-execute"] if self.may_execute else []),
            *(["--sandbox-role", self.sandbox_role] if self.sandbox_role else []),
            *(["--profile", self.profile] if self.profile else []),
            *(["--profiles", str(self.profiles_file)] if self.profiles_file else []),
            *(self.model.argv() if self.model is not None else []), "--", *self.agent_command,
        ]  # fmt: skip


class _Lines:
    """Lines from a pipe, read without blocking past a deadline."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self.fd = pipe.fileno()
        os.set_blocking(self.fd, False)
        self._buffer = bytearray()
        self._eof = False
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.fd, selectors.EVENT_READ)

    def readline(self, deadline: float) -> bytes:
        """The next whole line (without its newline), or b"" at EOF. Raises TimeoutError
        at `deadline`, ServiceFailed for a line past MAX_LINE_BYTES."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line
            if len(self._buffer) > MAX_LINE_BYTES:
                raise ServiceFailed(f"the agent service wrote a line past {MAX_LINE_BYTES} bytes")
            if self._eof:
                return b""
            left = max(0.0, deadline - time.monotonic())  # 0: a poll of what is there
            if not self._selector.select(min(left, 3600.0)):
                if time.monotonic() >= deadline:
                    raise TimeoutError
                continue
            try:
                chunk = os.read(self.fd, 1 << 20)
            except BlockingIOError:
                continue
            if not chunk:
                self._eof = True
            self._buffer += chunk

    def close(self) -> None:
        self._selector.close()


class AgentService:
    """One running service and the RAM it holds; `stop()` ends both (idempotent)."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        stderr: IO[bytes],
        ticket: Ticket | None,
        ledger: TicketLedger | None,
        workspace: Path,
    ) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self.workspace = workspace
        self._stderr = stderr
        self._ticket = ticket
        self._ledger = ledger
        self._lines = _Lines(process.stdout)
        self._ids = 0
        self.agent_pid: int | None = None
        self.sandbox: dict[str, Any] | None = None  # its ready line's: role, network, ...
        self.start_s = 0.0
        self.turns = 0
        self.stray_lines = 0  # lines that answered nothing we waited for

    @classmethod
    def start(
        cls,
        settings: ServiceSettings,
        workspace: Path,
        *,
        ledger: TicketLedger | None = None,
        ram_mb: int = 0,
        ram_wait_s: float = 60.0,
        label: str = "",
    ) -> AgentService:
        """Reserve the RAM, start the service in `workspace`, wait until it says ready
        (at most start_timeout_s + 10 s). Raises ServiceFailed naming why (the RAM,
        the agent's failure to start, the service's exit)."""
        ticket = None
        if ledger is not None:
            try:
                ticket = ledger.acquire({"ram": ram_mb}, label=label, timeout=ram_wait_s)
            except ResourceError as exc:
                raise ServiceFailed(
                    f"could not reserve {ram_mb} MB of RAM for the agent within {ram_wait_s} s: "
                    f"{exc}"
                ) from None
        stderr = tempfile.TemporaryFile(prefix="factory-agent-service-")  # noqa: SIM115 - kept by the service, closed by stop()
        try:
            process = subprocess.Popen(
                settings.argv(workspace), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=stderr, env=settings.service_env(), cwd=workspace,
            )  # fmt: skip
        except OSError as exc:
            stderr.close()
            if ticket is not None and ledger is not None:
                ledger.release(ticket)
            raise ServiceFailed(f"could not start the agent service: {exc}") from None
        service = cls(process, stderr, ticket, ledger, workspace)
        began = time.monotonic()
        try:
            hello = service._read_event(began + settings.start_timeout_s + 10.0)
        except (TimeoutError, ServiceFailed) as exc:
            service.stop()
            why = "did not say ready in time" if isinstance(exc, TimeoutError) else str(exc)
            gone = ServiceGone if isinstance(exc, ServiceGone) else ServiceFailed  # killed
            raise gone(f"agent service {why}{service.stderr_tail()}") from None
        if hello.get("event") != "ready":
            service.stop()
            died = ServiceGone if hello.get("error") == "AgentDied" else ServiceFailed
            raise died(f"agent did not start: {hello.get('error')}: {hello.get('message')}")
        service.agent_pid = hello.get("agent_pid")
        service.sandbox = hello.get("sandbox")
        service.start_s = time.monotonic() - began
        return service

    def alive(self) -> bool:
        """Whether the service still runs and has not said that its agent is gone."""
        if self.process.poll() is not None:
            return False
        try:
            line = self._lines.readline(time.monotonic())  # only what is already there
        except TimeoutError:
            return True
        if line:
            self.stray_lines += 1  # an event between turns: agent_exited, idle_timeout
        return False

    def request(self, payload: dict[str, Any], deadline: float) -> dict[str, Any]:
        """Send one turn request; its answer (the "turn" line with its id), or the
        "agent_exited" event when the agent was gone before the turn began. Raises
        ServiceGone when the service exited without answering, TimeoutError at
        `deadline`, ServiceFailed for an unreadable answer."""
        self._ids += 1
        request_id = self._ids
        self.turns += 1
        try:
            self._write(orjson.dumps({**payload, "id": request_id}) + b"\n", deadline)
        except ServiceGone:  # it may have said why before it went: agent_exited
            message = self._read_event(deadline)
            if message.get("event") == "agent_exited":
                return message
            raise
        while True:
            message = self._read_event(deadline)
            if message.get("event") == "agent_exited":
                return message
            if message.get("event") == "turn" and message.get("id") == request_id:
                return message
            self.stray_lines += 1

    def _write(self, data: bytes, deadline: float) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        fd = stdin.fileno()
        os.set_blocking(fd, False)
        view = memoryview(data)
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_WRITE)
            while view:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                if not selector.select(left):
                    continue
                try:
                    view = view[os.write(fd, view) :]
                except BlockingIOError:
                    continue
                except BrokenPipeError:
                    raise ServiceGone("the agent service exited (its stdin is closed)") from None

    def _read_event(self, deadline: float) -> dict[str, Any]:
        line = self._lines.readline(deadline)
        if not line:
            self.process.poll()
            raise ServiceGone(
                f"the agent service exited (status {self.process.returncode})" + self.stderr_tail()
            )
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ServiceFailed(f"the agent service wrote a line that is not JSON: {exc}") from None
        if not isinstance(message, dict):
            raise ServiceFailed("the agent service wrote a line that is not a JSON object")
        return message

    def stderr_tail(self) -> str:
        """'; stderr ends: ...' (its last lines), or '' when it wrote nothing."""
        with contextlib.suppress(OSError, ValueError):
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - MAX_STDERR_CHARS))
            text = self._stderr.read().decode(errors="replace").strip()
            if text:
                return f"; stderr ends: {text.splitlines()[-1]}"
        return ""

    def stop(self, *, timeout_s: float = CLOSE_GRACE_S) -> int | None:
        """End the service and give its RAM back. Stdin EOF first (it closes its agent
        and exits), then SIGTERM after `timeout_s`, then SIGKILL (and SIGKILL to the
        agent's group, which a killed service could not close). Blocks at most about
        `timeout_s` + 7 s. Returns the exit status."""
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        killed = False
        for sig, wait_s in ((None, timeout_s), (signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
            if sig is not None:
                killed = sig == signal.SIGKILL
                with contextlib.suppress(ProcessLookupError):
                    self.process.send_signal(sig)
            try:
                self.process.wait(wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        if killed and self.agent_pid is not None:  # the service could not close its agent
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.agent_pid, signal.SIGKILL)
        self._lines.close()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr.close()
        if self._ticket is not None and self._ledger is not None:
            self._ledger.release(self._ticket)  # a second release is a no-op
            self._ticket = None
        return self.process.returncode

    @property
    def holds_ram(self) -> bool:
        return self._ticket is not None
