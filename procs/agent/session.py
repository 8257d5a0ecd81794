"""AcpAgent: one ACP agent process (e.g. `opencode acp --pure`) driven from our side.

Lifecycle: `start()` spawns the command in the workspace, in its own process group, and
runs `initialize`; `new_session(policy=...)` runs session/new and judges that session by
the given role's policy (one agent serves turns of different roles, a session each);
`prompt()` runs session/prompt and returns a TurnResult with the session/updates of the
turn (bounded: see record.py) and its outcome (completed, refused, cancelled, timed_out);
`end_session()` stops serving a session's requests (and asks the agent to close it where
it can); `cancel()` sends session/cancel and answers pending permission requests
"cancelled"; `close()` ends the process group (stdin EOF, then SIGTERM, then SIGKILL). Every wait is
bounded: a call that outlives its timeout raises AgentTimeout, an agent that exits while
we wait raises AgentDied (exit status + its last stderr lines), a malformed reply raises
AgentProtocolError. A crash of ours leaves the agent's group to the supervisor, which
kills children's groups.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import acp
from acp import RequestError
from acp.schema import (
    ClientCapabilities,
    FileSystemCapabilities,
    Implementation,
    NewSessionResponse,
)
from pydantic import ValidationError

from procs.agent.agent_sandbox import AgentSandbox
from procs.agent.client import DEFAULT_MAX_PENDING_PERMISSIONS, FactoryClient, Review
from procs.agent.exits import WatchedProcess, signal_name, spawn
from procs.agent.modes import ModePin, NoAskingMode
from procs.agent.profiles import AgentProfile
from procs.agent.record import RecordLimits
from procs.agent.result import TurnResult
from procs.agent.roles import RolePolicy
from procs.agent.terminals import DEFAULT_MAX_KEPT_TERMINALS, DEFAULT_MAX_TERMINALS
from procs.agent.transport import MAX_LINE_BYTES, AgentTransport

T = TypeVar("T")
STDERR_TAIL_BYTES = 16 * 1024


class AgentError(Exception):
    """Base of the failures of an agent process."""


class AgentDied(AgentError):
    """The agent process exited while a call was waiting for it."""


class AgentTimeout(AgentError):
    """The agent did not answer a call in time."""


class AgentProtocolError(AgentError):
    """The agent answered with an error or with something that is not valid ACP."""


class UnsafeMode(AgentError):
    """The session cannot run in, or left, a mode that asks before every edit and
    command (procs.agent.modes); the message says which modes it has. The agent lives."""


class _Stopped(Exception):
    """The caller's stop event was set while a call waited (prompt() cancels the turn)."""


class AcpAgent:
    def __init__(
        self,
        command: Sequence[str],
        process: WatchedProcess,
        transport: AgentTransport,
        client: FactoryClient,
    ) -> None:
        self.command = list(command)
        self.process = process
        self.transport = transport
        self.client = client
        self.conn = acp.connect_to_agent(client, transport)
        self.session_id: str | None = None
        self.mode_pin: ModePin | None = None
        self.sandbox_role: RolePolicy | None = None  # the one role a sandboxed agent serves
        self.sandbox: AgentSandbox | None = None  # its sandbox (and model bridge), if any
        # A session/new (and its pinned mode) started ahead of its turn (prepare_session).
        self._prepared: asyncio.Future[tuple[NewSessionResponse, str | None]] | None = None
        self.agent_info: dict[str, Any] = {}
        self.capabilities: dict[str, Any] = {}
        self._stderr = bytearray()
        # The agent's own exit (exits.spawn); process.wait() would also wait for pipes that
        # a child the agent left behind may hold open.
        self._exit = asyncio.ensure_future(process.exited.wait())
        self._stderr_pump = asyncio.ensure_future(self._pump_stderr())

    @classmethod
    async def start(
        cls,
        command: Sequence[str],
        *,
        workspace: Path,
        policy: RolePolicy | None = None,
        may_execute: bool | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 60.0,
        review: Review | None = None,
        permission_timeout_s: float = 300.0,
        command_timeout_s: float = 600.0,
        record_limits: RecordLimits | None = None,
        max_terminals: int = DEFAULT_MAX_TERMINALS,
        max_kept_terminals: int = DEFAULT_MAX_KEPT_TERMINALS,
        max_pending_permissions: int = DEFAULT_MAX_PENDING_PERMISSIONS,
        sandbox_mode: str = "bwrap",
        profile: AgentProfile | None = None,
        sandbox_role: RolePolicy | None = None,
        model_url: str | None = None,
    ) -> AcpAgent:
        """Spawn `command` in `workspace` and complete `initialize` within `timeout` s.

        `policy`: the role of sessions opened without one (None: new_session must name
        it). `may_execute`: offer terminals to the agent at all (default: `policy`'s);
        a session's terminals are still its own role's to allow.
        `env` replaces the environment entirely (pass what the agent needs, e.g. PATH and
        an isolated HOME). `record_limits` bound what a turn's record keeps;
        `max_terminals` / `max_kept_terminals` bound the session's terminals (running /
        not yet released); `max_pending_permissions` how many permission requests may
        wait for `review` at once (more are refused); `sandbox_mode` how terminal/*
        commands run ("bwrap", or "none" where the operator chose no isolation; without a
        usable bwrap they are refused). `profile` (procs.agent.profiles): the fs
        capabilities offered and the session modes turns may run in (every session is
        pinned to one; None: all fs offered, no pinning). `sandbox_role`: run the agent
        process itself under bwrap (`sandbox_mode`) with that role's locks
        (procs.agent.agent_sandbox; its HOME, env["HOME"], bound read-write): it then
        serves sessions of that role only; `model_url` (the one its config names) is
        then the only address its network reaches where that can be isolated
        (`agent.sandbox.status()` says which). Raises SandboxUnavailable, TooManyPaths
        (before anything is spawned), ValueError for a bad limit
        (before anything is spawned), FileNotFoundError for a missing command,
        AgentDied, AgentTimeout, AgentProtocolError.
        """
        if not command:
            raise ValueError("agent command is empty")
        workspace = workspace.resolve()
        if not workspace.is_dir():
            raise FileNotFoundError(f"workspace {workspace} is not a directory")
        client = FactoryClient(
            workspace, policy, may_execute=may_execute, review=review,
            permission_timeout_s=permission_timeout_s,
            command_timeout_s=command_timeout_s, record_limits=record_limits,
            max_terminals=max_terminals, max_kept_terminals=max_kept_terminals,
            max_pending_permissions=max_pending_permissions, sandbox_mode=sandbox_mode,
            read_text_file=profile.read_text_file if profile else True,
            missing_file_reads_empty=profile.missing_file_reads_empty if profile else False,
        )  # fmt: skip
        argv = list(command)
        sandbox = None
        if sandbox_role is not None:
            home = Path(env["HOME"]) if env is not None and "HOME" in env else None
            sandbox = AgentSandbox.open(
                argv, workspace=workspace, policy=sandbox_role, home=home, mode=sandbox_mode,
                model_url=model_url,
            )  # fmt: skip
            argv = sandbox.argv
        try:
            process = await spawn(
                *argv,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, cwd=workspace,
                env=dict(env) if env is not None else None,
                process_group=0, limit=MAX_LINE_BYTES,
            )  # fmt: skip
        except BaseException:
            if sandbox is not None:
                sandbox.close()
            raise
        assert process.stdout is not None and process.stdin is not None
        transport = AgentTransport(process.stdout, process.stdin)
        agent = cls(command, process, transport, client)
        agent.sandbox_role, agent.sandbox = sandbox_role, sandbox
        if profile is not None:
            agent.mode_pin = ModePin(profile.ask_modes, profile.require_mode)
        try:
            await agent._initialize(timeout)
        except BaseException:
            await agent.close()
            raise
        return agent

    async def _initialize(self, timeout: float) -> None:
        capabilities = ClientCapabilities(
            fs=FileSystemCapabilities(
                read_text_file=self.client.read_text_file_offered, write_text_file=True
            ),
            terminal=self.client.may_execute,
        )
        reply = await self._call(
            "initialize",
            self.conn.initialize(
                protocol_version=acp.PROTOCOL_VERSION, client_capabilities=capabilities,
                client_info=Implementation(name="factory", title="Factory", version="0.1.0"),
            ),
            timeout,
        )  # fmt: skip
        data = reply.model_dump(mode="json", by_alias=True, exclude_none=True)
        if data.get("protocolVersion") != acp.PROTOCOL_VERSION:
            raise AgentProtocolError(
                f"agent speaks ACP v{data.get('protocolVersion')}, we speak v{acp.PROTOCOL_VERSION}"
            )
        self.agent_info = data.get("agentInfo") or {}
        self.capabilities = data.get("agentCapabilities") or {}

    async def new_session(self, *, timeout: float = 60.0, policy: RolePolicy | None = None) -> str:
        """session/new in the workspace (no MCP servers); returns the id and makes it the
        current session (the one prompt() uses). Its requests are judged by `policy`
        (default: the agent's). Sessions opened before stay open until end_session().
        Raises ValueError (before any call) when there is no policy, AgentProtocolError
        when the agent hands out an id that is already open, UnsafeMode when the session
        cannot be pinned to a mode that asks (procs.agent.modes)."""
        role_policy = policy or self.client.policy
        if role_policy is None:
            raise ValueError("new_session needs a role policy (the agent was started without)")
        if self.sandbox_role is not None and role_policy.role != self.sandbox_role.role:
            raise ValueError(
                f"this agent runs in the sandbox of role {self.sandbox_role.role.value}; "
                f"a {role_policy.role.value} session needs an agent of its own"
            )
        if self._prepared is not None:  # bounded by prepare_session's own timeout
            prepared, self._prepared = self._prepared, None
            reply, mode = await prepared
        else:
            reply, mode = await self._session_new(timeout)
        started_in = reply.modes.current_mode_id if reply.modes else None
        try:
            session = self.client.open_session(reply.session_id, policy)
        except ValueError as exc:
            raise AgentProtocolError(f"session/new: {exc}") from None
        session.mode_pin, session.mode, session.started_in = self.mode_pin, mode, started_in
        self.session_id = reply.session_id
        return reply.session_id

    def prepare_session(self, *, timeout: float = 60.0) -> None:
        """Start a session/new now, in the background, for the next new_session() to
        take: a turn then starts without waiting for the agent (opencode: 20-60 ms a
        session, 1.2 s for its first). Until new_session() gives it a policy, the client
        knows nothing of it, so every request naming it is refused as unknown. A failure
        (AgentDied, AgentTimeout after `timeout` s...) is raised by that new_session().
        No-op while one is already prepared."""
        if self._prepared is None:
            self._prepared = asyncio.ensure_future(self._session_new(timeout))

    async def _session_new(self, timeout: float) -> tuple[NewSessionResponse, str | None]:
        """session/new, then session/set_mode to the pinned mode where it is not current;
        the reply and the mode the session runs in (None: the agent has no modes)."""
        reply = await self._call(
            "session/new",
            self.conn.new_session(cwd=str(self.client.workspace), mcp_servers=[]),
            timeout,
        )
        if self.mode_pin is None:
            return reply, None
        modes = reply.modes.model_dump(mode="json", by_alias=True) if reply.modes else None
        try:
            mode, must_set = self.mode_pin.pin(modes)
        except NoAskingMode as exc:
            raise UnsafeMode(f"session {reply.session_id}: {exc}") from None
        if must_set and mode is not None:
            await self._call(
                "session/set_mode",
                self.conn.set_session_mode(mode_id=mode, session_id=reply.session_id),
                timeout,
            )
        return reply, mode

    async def end_session(self, session_id: str | None = None, *, timeout: float = 5.0) -> None:
        """Stop serving `session_id` (default: the current one): later requests naming it
        are refused, its terminals are reaped (Sessions.end). Where the agent offers
        session/close, it is asked to close it too (best effort, at most `timeout` s: an
        agent that does not answer is not waited for)."""
        session_id = session_id or self.session_id
        if session_id is None:
            return
        if self.session_id == session_id:
            self.session_id = None
        await self.client.end_session(session_id)
        closes = (self.capabilities.get("sessionCapabilities") or {}).get("close") is not None
        if closes and self.process.returncode is None:
            with contextlib.suppress(AgentError):
                await self._call(
                    "session/close", self.conn.close_session(session_id=session_id), timeout
                )

    async def prompt(
        self,
        text: str,
        *,
        timeout: float,
        cancel_grace_s: float = 10.0,
        stop: asyncio.Event | None = None,
    ) -> TurnResult:
        """One turn, cancelled (session/cancel) at `timeout` s or as soon as `stop` is set.

        Either way the agent must then end the turn within `cancel_grace_s` s, or
        AgentTimeout; the result says timed_out=True when the timeout cancelled it (its stop
        reason is the agent's, normally "cancelled"). A switch to a mode outside the pin
        (current_mode_update) cancels the turn the same way and raises UnsafeMode once
        it has ended. Blocks at most about `timeout` + `cancel_grace_s` + 5 s (the
        cancel's own send). Raises AgentDied, AgentTimeout, AgentProtocolError, UnsafeMode.
        """
        if self.session_id is None:
            raise AgentProtocolError("prompt before new_session()")
        session = self.client.sessions.get(self.session_id)
        session.record = record = self.client.new_record()
        session.cancelled.clear()
        seen_violations = len(self.transport.violations)
        seen_malformed = self.transport.malformed_notifications
        began = time.monotonic()
        turn = asyncio.ensure_future(
            self.conn.prompt(session_id=self.session_id, prompt=[acp.text_block(text)])
        )
        timed_out = stopped = False
        halt = asyncio.Event()  # the caller's stop, or the agent leaving the pinned mode
        relays = [asyncio.ensure_future(_relay(event, halt))
                  for event in (stop, session.left_pin) if event is not None]  # fmt: skip
        try:
            try:
                reply = await self._call(
                    "session/prompt", turn, timeout, keep_on_timeout=True, stop=halt
                )
            except (AgentTimeout, _Stopped) as exc:
                timed_out = isinstance(exc, AgentTimeout)
                stopped = not timed_out
                await self.cancel()
                try:
                    reply = await self._call("session/prompt (after cancel)", turn, cancel_grace_s)
                except AgentTimeout:
                    raise AgentTimeout(
                        f"agent did not end the turn within {cancel_grace_s}s of session/cancel"
                    ) from None
        finally:  # cancelled from outside: the request is not left behind in the connection
            turn.cancel()
            for relay in relays:
                relay.cancel()
        if session.unsafe_mode is not None:
            raise UnsafeMode(session.unsafe_mode)
        usage = reply.usage.model_dump(mode="json", by_alias=True, exclude_none=True) if (
            reply.usage
        ) else {}  # fmt: skip
        return TurnResult(
            stop_reason=str(reply.stop_reason), record=record,
            wall_s=time.monotonic() - began, usage=usage, timed_out=timed_out,
            protocol_violations=self.transport.violations[seen_violations:],
            malformed_notifications=self.transport.malformed_notifications - seen_malformed,
            stopped=stopped,
        )  # fmt: skip

    async def cancel(self) -> None:
        """session/cancel of the current session; its pending permission requests are
        answered "cancelled"."""
        if self.session_id is None:
            return
        if self.session_id in self.client.sessions:
            self.client.sessions.get(self.session_id).cancelled.set()
        if self.process.returncode is None:
            with contextlib.suppress(ConnectionError):
                await asyncio.wait_for(self.conn.cancel(session_id=self.session_id), 5.0)

    async def _call(
        self,
        what: str,
        call: Awaitable[T],
        timeout: float,
        *,
        keep_on_timeout: bool = False,
        stop: asyncio.Event | None = None,
    ) -> T:
        task = asyncio.ensure_future(call)
        stopping = asyncio.ensure_future(stop.wait()) if stop is not None else None
        try:
            done, _ = await asyncio.wait(
                {task, self._exit} | ({stopping} if stopping else set()),
                timeout=timeout, return_when=asyncio.FIRST_COMPLETED,
            )  # fmt: skip
        finally:
            if stopping is not None:
                stopping.cancel()
        if task not in done and self._exit in done:
            # The reply may have been written just before the exit: give it a moment.
            done, _ = await asyncio.wait({task}, timeout=0.5)
        if task not in done:
            if self._exit.done():
                task.cancel()
                raise await self._died(what)
            if stopping is not None and stopping in done:
                raise _Stopped(what)  # the task is kept: the caller cancels the turn
            if not keep_on_timeout:
                task.cancel()
            raise AgentTimeout(f"agent did not answer {what} within {timeout}s")
        try:
            return task.result()
        except ConnectionError:
            await asyncio.wait({self._exit}, timeout=2.0)
            raise await self._died(what) from None
        except RequestError as exc:
            raise AgentProtocolError(f"agent refused {what}: {exc} ({exc.data})") from None
        except ValidationError as exc:
            raise AgentProtocolError(f"agent's reply to {what} is not valid ACP: {exc}") from None

    async def _died(self, what: str) -> AgentDied:
        """AgentDied naming the exit status and the last of stderr (read to its end)."""
        await asyncio.wait({self._stderr_pump}, timeout=1.0)
        code = self.process.returncode
        how = (
            "is gone (pipe closed)" if code is None
            else f"was killed by {signal_name(-code)}" if code < 0
            else f"exited with status {code}"
        )  # fmt: skip
        tail = self.stderr_tail(1000).strip() or "(nothing on stderr)"
        return AgentDied(
            f"agent {self.command[0]} (pid {self.process.pid}) {how} during {what}; "
            f"stderr ends: {tail}"
        )

    async def _pump_stderr(self) -> None:
        assert self.process.stderr is not None
        while chunk := await self.process.stderr.read(65536):
            self._stderr += chunk
            del self._stderr[:-STDERR_TAIL_BYTES]

    def statistics(self) -> dict[str, Any]:
        return {
            "pid": self.process.pid, "returncode": self.process.returncode,
            "session_id": self.session_id, "sent": self.transport.sent,
            "received": self.transport.received,
            "undelivered_replies": self.transport.undelivered_replies,
            "protocol_violations": len(self.transport.violations),
            "malformed_notifications": self.transport.malformed_notifications,
            **self.client.statistics(),
        }  # fmt: skip

    def stderr_tail(self, limit: int = STDERR_TAIL_BYTES) -> str:
        return bytes(self._stderr[-limit:]).decode("utf-8", errors="replace")

    async def close(self, *, timeout: float = 5.0) -> int | None:
        """End the agent and its whole process group; returns its exit status.

        Stdin EOF first (up to 1 s: opencode exits on it), then SIGTERM to the group, then
        SIGKILL; then its pipes and transport are closed (after up to 1 s more for them to
        reach EOF). At most about `timeout` + 3 s in all.
        """
        if self._prepared is not None:
            self._prepared.cancel()
            with contextlib.suppress(asyncio.CancelledError, AgentError):
                await self._prepared  # its exception retrieved, not logged at collection
            self._prepared = None
        await self.client.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.conn.close(), 2.0)
        grace = {None: min(1.0, timeout / 3), signal.SIGTERM: timeout / 2, signal.SIGKILL: 2.0}
        for sig, wait_s in grace.items():
            if sig is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._exit), wait_s)
            if self._exit.done():
                break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # leftovers of the group
        await self.process.close(timeout=1.0)  # the stderr pump reads to EOF meanwhile
        self._stderr_pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._stderr_pump
        if self.sandbox is not None:
            self.sandbox.close()  # its model bridge: the agent is gone
        return self.process.returncode

    async def __aenter__(self) -> AcpAgent:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def _relay(event: asyncio.Event, to: asyncio.Event) -> None:
    await event.wait()
    to.set()
