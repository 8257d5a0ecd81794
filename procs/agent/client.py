"""Our side of ACP: the handlers an agent calls (permissions, fs/*, terminal/*, updates).

`FactoryClient` implements acp's Client protocol for one agent process working in one
workspace. The role is a property of the session, not of the agent (sessions.py): each
session is opened with its role's policy, and every permission request, fs/* call and
terminal is judged by the policy of the session it names; a request for a session that
is not open (never opened, or its turn has ended) is refused as invalid params naming it.
A permission request is judged on the whole tool call: what it leaves out (kind,
locations, rawInput) is filled from the session/updates of the same toolCallId.
Every refusal is a JSON-RPC error whose message says why, so the
agent (and its model) can read it; every decision is also kept in the session's turn
record.
Elicitations (questions for a person) are declined: nobody answers them mid-turn.
Terminals run in the sandbox with the role's locked paths read-only (locked_paths.py);
where the sandbox cannot run they are refused with its reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from acp import RequestError
from acp.schema import (
    AllowedOutcome,
    CreateElicitationResponse,
    CreateTerminalResponse,
    DeclineElicitationResponse,
    DeniedOutcome,
    ElicitationMode,
    EnvVariable,
    KillTerminalResponse,
    PermissionOption,
    ReadTextFileResponse,
    ReleaseTerminalResponse,
    RequestPermissionResponse,
    TerminalExitStatus,
    TerminalOutputResponse,
    ToolCallUpdate,
    WaitForTerminalExitResponse,
    WriteTextFileResponse,
)
from pydantic import BaseModel

from procs.agent import files
from procs.agent.locked_paths import TooManyPaths
from procs.agent.permissions import (
    Decision,
    decide,
    merged_tool_call,
    paths_named,
    pick_option,
)
from procs.agent.record import FileRecord, PermissionRecord, RecordLimits, TurnRecord
from procs.agent.roles import PathRefused, RolePolicy
from procs.agent.sessions import AgentSession, Sessions, UnknownSession, role_locked_paths
from procs.agent.terminals import (
    DEFAULT_MAX_KEPT_TERMINALS,
    DEFAULT_MAX_TERMINALS,
    TerminalLimit,
    TerminalNotFound,
    Terminals,
)
from procs.sandbox import DEFAULT_MEMORY_MB, SandboxUnavailable

FORBIDDEN = -32003  # our refusal code: the request was understood and not allowed
NOT_FOUND = -32002  # as acp's RequestError.resource_not_found
LIMIT_REACHED = -32004  # our code: allowed, but the session holds as much as it may

# A second look at a decision (an operator, a test): gets the tool call and the policy's
# decision, returns the final one. Bounded by permission_timeout_s and by session/cancel.
Review = Callable[[dict[str, Any], Decision], Awaitable[Decision]]
# Requests waiting for a review at once: each holds a coroutine for up to
# permission_timeout_s, so an agent that asks without end is refused past this many.
DEFAULT_MAX_PENDING_PERMISSIONS = 16


def _dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


class FactoryClient:
    def __init__(
        self,
        workspace: Path,
        policy: RolePolicy | None = None,
        *,
        may_execute: bool | None = None,
        review: Review | None = None,
        permission_timeout_s: float = 300.0,
        command_timeout_s: float = 600.0,
        max_write_bytes: int = files.MAX_WRITE_BYTES,
        max_read_bytes: int = files.MAX_READ_BYTES,
        record_limits: RecordLimits | None = None,
        max_terminals: int = DEFAULT_MAX_TERMINALS,
        max_kept_terminals: int = DEFAULT_MAX_KEPT_TERMINALS,
        max_pending_permissions: int = DEFAULT_MAX_PENDING_PERMISSIONS,
        sandbox_mode: str = "bwrap",
        command_memory_mb: int = DEFAULT_MEMORY_MB,
        read_text_file: bool = True,
        missing_file_reads_empty: bool = False,
    ) -> None:
        """`policy`: the policy of sessions opened without one (None: each session must
        name its own). `may_execute`: whether the agent is told that it may use terminals
        at all (default: `policy`'s); each session's own policy still decides.
        `read_text_file`: whether fs/read_text_file is offered; `missing_file_reads_empty`:
        a missing file reads as "" (Gemini CLI takes "not found" for a hard failure)."""
        if isinstance(max_pending_permissions, bool) or not (
            isinstance(max_pending_permissions, int) and max_pending_permissions >= 1
        ):
            raise ValueError(
                f"max_pending_permissions must be an integer >= 1, got {max_pending_permissions!r}"
            )
        self.max_pending_permissions = max_pending_permissions
        self.workspace = workspace
        self.policy = policy
        self.may_execute = (
            may_execute if may_execute is not None else bool(policy and policy.may_execute)
        )
        self.review = review
        self.permission_timeout_s = permission_timeout_s
        self.max_write_bytes = max_write_bytes
        self.max_read_bytes = max_read_bytes
        self.read_text_file_offered = read_text_file
        self.missing_file_reads_empty = missing_file_reads_empty
        self.record_limits = record_limits or RecordLimits()

        def terminals_for(session_policy: RolePolicy) -> Terminals:
            return Terminals(
                workspace, command_timeout_s=command_timeout_s, max_terminals=max_terminals,
                max_kept_terminals=max_kept_terminals, sandbox_mode=sandbox_mode,
                locked=role_locked_paths(session_policy, workspace),
                memory_mb=command_memory_mb,
            )  # fmt: skip

        # Each session gets Terminals of its own (its role's read-only paths); one built
        # here checks the terminal limits before anything is spawned.
        terminals_for(policy or RolePolicy.for_role("reviewer"))
        self.sessions = Sessions(workspace, self.record_limits, terminals_for)
        self.pending_permissions = 0
        self.updates_for_unknown_sessions = 0

    def open_session(self, session_id: str, policy: RolePolicy | None = None) -> AgentSession:
        """Judge `session_id`'s requests by `policy` (default: the client's) from now on.
        Raises ValueError when there is no policy, or the id is already open."""
        policy = policy or self.policy
        if policy is None:
            raise ValueError(f"session {session_id!r} needs a role policy (the client has none)")
        if policy.may_execute and not self.may_execute:
            raise ValueError(
                f"role {policy.role.value} may run commands, but the agent was not offered "
                "terminals (start it with may_execute)"
            )
        return self.sessions.open(session_id, policy)

    async def end_session(self, session_id: str) -> None:
        """No request naming `session_id` is served any more (see Sessions.end)."""
        await self.sessions.end(session_id)

    async def close(self) -> None:
        """End every session (their terminals are killed and reaped)."""
        await self.sessions.end_all()

    @property
    def session_ids(self) -> set[str]:
        """The ids of the open sessions."""
        return self.sessions.ids()

    @property
    def record(self) -> TurnRecord:
        """The record of the last session opened (its current turn)."""
        latest = self.sessions.latest
        return latest.record if latest is not None else self.new_record()

    def statistics(self) -> dict[str, int]:
        return {
            **{f"sessions_{k}": v for k, v in self.sessions.statistics().items()},
            "pending_permissions": self.pending_permissions,
            "updates_for_unknown_sessions": self.updates_for_unknown_sessions,
        }

    def new_record(self) -> TurnRecord:
        """An empty record for the next turn, bounded by `record_limits`."""
        return TurnRecord(self.record_limits)

    def on_connect(self, conn: Any) -> None:
        return

    def _session(self, session_id: str) -> AgentSession:
        try:
            return self.sessions.get(session_id)
        except UnknownSession as exc:
            raise RequestError.invalid_params(
                {"sessionId": session_id, "details": str(exc.args[0])}
            ) from None

    # session/update -------------------------------------------------------------------

    async def session_update(self, session_id: str, update: Any, **kwargs: Any) -> None:
        if session_id in self.sessions:
            session, data = self.sessions.get(session_id), _dump(update)
            session.record.add_update(data)
            if data.get("sessionUpdate") in ("tool_call", "tool_call_update"):
                session.note_tool_call(data)
            elif data.get("sessionUpdate") == "current_mode_update":
                session.note_mode(data)
        else:  # a notification has nobody to answer: counted
            self.updates_for_unknown_sessions += 1

    # session/request_permission --------------------------------------------------------

    async def request_permission(
        self, session_id: str, tool_call: ToolCallUpdate, options: list[PermissionOption],
        **kwargs: Any,
    ) -> RequestPermissionResponse:  # fmt: skip
        session = self._session(session_id)
        call = merged_tool_call(session.tool_calls.get(tool_call.tool_call_id), _dump(tool_call))
        decision = decide(session.policy, self.workspace, call)
        outcome = "allowed" if decision.allow else "refused"
        if session.cancelled.is_set():  # the turn is being cancelled: nothing more runs
            outcome, decision = "cancelled", Decision(False, "turn cancelled")
        elif self.review is not None and self.pending_permissions >= self.max_pending_permissions:
            outcome = "refused"
            decision = Decision(
                False,
                f"{self.pending_permissions} permission requests are already waiting for "
                f"review (max_pending_permissions={self.max_pending_permissions}); "
                "ask again once they are answered",
            )
        elif self.review is not None:
            self.pending_permissions += 1
            try:
                reviewed = await self._reviewed(call, decision, session.cancelled)
            finally:
                self.pending_permissions -= 1
            if reviewed is None:
                outcome, decision = "cancelled", Decision(False, "turn cancelled")
            else:
                decision = reviewed
                outcome = "allowed" if decision.allow else "refused"
        option = None if outcome == "cancelled" else pick_option(
            [_dump(o) for o in options], decision.allow
        )  # fmt: skip
        if option is None and outcome != "cancelled":
            outcome = "cancelled"  # no matching option offered: cancelling is the safe answer
        session.record.add_permission(
            PermissionRecord(
                tool_call_id=tool_call.tool_call_id, kind=call.get("kind", "other"),
                paths=paths_named(call), outcome=outcome, reason=decision.reason,
            )
        )  # fmt: skip
        if outcome == "cancelled" or option is None:
            return RequestPermissionResponse(outcome=DeniedOutcome(outcome="cancelled"))
        return RequestPermissionResponse(
            outcome=AllowedOutcome(outcome="selected", option_id=option)
        )

    async def _reviewed(
        self, call: dict[str, Any], decision: Decision, cancelled: asyncio.Event
    ) -> Decision | None:
        """The review's answer; None when the turn is cancelled first."""
        assert self.review is not None
        review = asyncio.ensure_future(self.review(call, decision))
        cancel = asyncio.ensure_future(cancelled.wait())
        try:
            done, _ = await asyncio.wait(
                {review, cancel}, timeout=self.permission_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )  # fmt: skip
        finally:
            for task in (review, cancel):
                if not task.done():
                    task.cancel()
        if review in done:
            return review.result()
        if cancel in done:
            return None
        return Decision(False, f"no answer to the permission within {self.permission_timeout_s}s")

    # fs/* ------------------------------------------------------------------------------

    async def read_text_file(
        self, session_id: str, path: str, line: int | None = None, limit: int | None = None,
        **kwargs: Any,
    ) -> ReadTextFileResponse:  # fmt: skip
        record = self._session(session_id).record
        try:
            content = files.read_text_file(
                self.workspace, path, line=line, limit=limit, max_bytes=self.max_read_bytes
            )
        except PathRefused as exc:
            record.add_file(FileRecord("read", path, False, str(exc), refused=True))
            raise RequestError(FORBIDDEN, f"read refused: {exc}", {"path": path}) from None
        except FileNotFoundError:
            if self.missing_file_reads_empty:
                record.add_file(FileRecord("read", path, True, "not found: read as empty"))
                return ReadTextFileResponse(content="")
            record.add_file(FileRecord("read", path, False, "not found"))
            raise RequestError(NOT_FOUND, f"no such file: {path}", {"path": path}) from None
        except (OSError, ValueError) as exc:
            record.add_file(FileRecord("read", path, False, str(exc)))
            raise RequestError.invalid_params({"path": path, "details": str(exc)}) from None
        record.add_file(FileRecord("read", path, True, f"{len(content)} chars"))
        return ReadTextFileResponse(content=content)

    async def write_text_file(
        self, session_id: str, path: str, content: str, **kwargs: Any
    ) -> WriteTextFileResponse:
        session = self._session(session_id)
        record = session.record
        try:
            files.write_text_file(
                session.policy, self.workspace, path, content, max_bytes=self.max_write_bytes
            )
        except PathRefused as exc:
            record.add_file(FileRecord("write", path, False, str(exc), refused=True))
            raise RequestError(FORBIDDEN, f"write refused: {exc}", {"path": path}) from None
        except (OSError, ValueError, TypeError) as exc:
            record.add_file(FileRecord("write", path, False, str(exc)))
            raise RequestError.invalid_params({"path": path, "details": str(exc)}) from None
        record.add_file(FileRecord("write", path, True, f"{len(content)} chars"))
        return WriteTextFileResponse()

    # terminal/* ------------------------------------------------------------------------

    async def create_terminal(  # noqa: PLR0917 - the signature is acp.Client's
        self, session_id: str, command: str, args: list[str] | None = None,
        env: list[EnvVariable] | None = None, cwd: str | None = None,
        output_byte_limit: int | None = None, **kwargs: Any,
    ) -> CreateTerminalResponse:  # fmt: skip
        session = self._session(session_id)
        if not session.policy.may_execute:
            raise RequestError(FORBIDDEN, f"role {session.policy.role.value} may not run commands")
        try:
            terminal_id = await session.terminals.create(
                command, args, env={v.name: v.value for v in env or []}, cwd=cwd,
                output_byte_limit=output_byte_limit,
            )  # fmt: skip
        except (PathRefused, SandboxUnavailable, TooManyPaths) as exc:
            raise RequestError(FORBIDDEN, f"terminal refused: {exc}") from None
        except TerminalLimit as exc:
            raise RequestError(
                LIMIT_REACHED, f"terminal refused: {exc}", {exc.limit: exc.value}
            ) from None
        except (OSError, ValueError) as exc:
            raise RequestError.invalid_params({"command": command, "details": str(exc)}) from None
        return CreateTerminalResponse(terminal_id=terminal_id)

    async def terminal_output(
        self, session_id: str, terminal_id: str, **kwargs: Any
    ) -> TerminalOutputResponse:
        terminal = self._terminal(self._session(session_id), terminal_id)
        status = terminal.exit_status()
        return TerminalOutputResponse(
            output=terminal.text(), truncated=terminal.truncated,
            exit_status=TerminalExitStatus.model_validate(status) if status else None,
        )  # fmt: skip

    async def wait_for_terminal_exit(
        self, session_id: str, terminal_id: str, **kwargs: Any
    ) -> WaitForTerminalExitResponse:
        session = self._session(session_id)
        self._terminal(session, terminal_id)
        # Bounded: the terminal's watchdog kills the command at command_timeout_s.
        limit = session.terminals.command_timeout_s + 10.0
        try:
            terminal = await session.terminals.wait_for_exit(terminal_id, timeout=limit)
        except TimeoutError:
            raise RequestError.internal_error({"details": "command did not exit"}) from None
        return WaitForTerminalExitResponse.model_validate(terminal.exit_status() or {})

    async def kill_terminal(
        self, session_id: str, terminal_id: str, **kwargs: Any
    ) -> KillTerminalResponse:
        session = self._session(session_id)
        self._terminal(session, terminal_id)
        session.terminals.kill(terminal_id)
        return KillTerminalResponse()

    async def release_terminal(
        self, session_id: str, terminal_id: str, **kwargs: Any
    ) -> ReleaseTerminalResponse:
        session = self._session(session_id)
        self._terminal(session, terminal_id)
        await session.terminals.release(terminal_id)
        return ReleaseTerminalResponse()

    def _terminal(self, session: AgentSession, terminal_id: str) -> Any:
        try:
            return session.terminals.get(terminal_id)
        except TerminalNotFound as exc:
            raise RequestError(NOT_FOUND, str(exc.args[0]), {"terminalId": terminal_id}) from None

    # elicitation/* ---------------------------------------------------------------------

    async def create_elicitation(
        self, message: str, mode: ElicitationMode, **kwargs: Any
    ) -> CreateElicitationResponse:
        """Declined: an elicitation asks a person for input, and no person answers during a
        factory turn (the agent must go on without it). acp 0.12 refuses the method before
        it reaches us unless the unstable protocol is switched on."""
        return DeclineElicitationResponse(
            action="decline",
            field_meta={"reason": "no person answers elicitations during a factory turn"},
        )

    async def complete_elicitation(self, elicitation_id: str, **kwargs: Any) -> None:
        """Nothing to do: we never accept an elicitation, so none completes."""
        return

    # extensions ------------------------------------------------------------------------

    async def ext_method(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        raise RequestError.method_not_found(method)

    async def ext_notification(self, method: str, params: dict[str, Any]) -> None:
        return
