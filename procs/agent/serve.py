"""A kept agent: one agent process serving many role turns, a new session per turn.

    python -m procs.agent.service --serve --workspace WS [--may-execute] [--timeout-s T] \
        [--start-timeout-s S] [--idle-timeout-s I] [--sandbox MODE] [--sandbox-role ROLE] \
        [--model-url URL --model NAME ...] -- opencode acp --pure

(the model options and the agent's environment they make: procs.agent.service and
procs.agent.model_setup; `args.agent_env`, None for ours.)

The wire is one JSON object per line. On stdout, first:

    {"event": "ready", "agent_pid": 123, "agent": {...agentInfo}, "start_s": 2.1,
     "sandbox": null | {"role": "implementer", "mode": "bwrap", "network": "...",
                        "not_isolated": [...]}}   (procs.agent.agent_sandbox: status())
    {"event": "failed", "error": "AgentDied", "message": "..."}         (then exit 3)

then, on stdin, a turn request per line, each answered by one line on stdout:

    {"id": 7, "role": "implementer", "prompt": "...", "timeout_s": 600}
        (or "prompt_file": "/abs/path"; "id" is any JSON scalar, echoed; "timeout_s"
        defaults to --timeout-s)
    {"event": "turn", "id": 7, "ok": true, "outcome": "refused", "session_s": 0.002,
     "prompt_sent_at": 1234.5, "result": {TurnResult.to_dict() less the raw updates}}
        (session_s: from the request to its session; prompt_sent_at: time.monotonic()
        when session/prompt went out, for benches)
    {"event": "turn", "id": 7, "ok": false, "error": "bad_request", "message": "...",
     "agent_alive": true}

Each turn opens a session judged by its role's policy (procs.agent.sessions), prompts,
and ends the session; the next session is opened ahead of its turn (prepare_session),
so a turn after the first starts without waiting for the agent. Errors: "bad_request"
(not JSON, not an object, unknown role, a role other than --sandbox-role's, no prompt,
a bad timeout: the process goes on),
"agent_died", "agent_timeout" (no answer to session/new, or the cancel ignored),
"agent_protocol", "unsafe_mode" (the session offers no mode that asks before every edit
and command, or the agent left it mid-turn: procs.agent.modes; the agent lives on).
After agent_died or agent_timeout ("agent_alive": false) the agent is
closed and this process exits 3: whoever started it starts a new one for the next turn.
The agent dying between turns is reported at once, `{"event": "agent_exited", ...}`,
and the process exits 3; a request read as it died is not started (that event is its
answer). Bounded: every agent call has its timeout (the turn's
timeout_s, then --cancel-grace-s for the cancel; --start-timeout-s for the start and
session/new), an idle wait ends after --idle-timeout-s (exit 0, "idle_timeout"), and a
request line longer than MAX_REQUEST_BYTES is a bad request. Stdin EOF or SIGTERM while
idle: the agent is closed, exit 0; SIGTERM during a turn cancels it first (its result,
"cancelled", is written).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from procs.agent.record import RecordLimits
from procs.agent.result import TurnResult
from procs.agent.roles import RolePolicy
from procs.agent.session import AcpAgent, AgentDied, AgentError, AgentTimeout, UnsafeMode

MAX_REQUEST_BYTES = 8 * 1024 * 1024
MAX_PROMPT_FILE_BYTES = 8 * 1024 * 1024
EXIT_AGENT_FAILED = 3
# Raw and per-chunk copies of what the record also has whole; left out of a turn's line.
BULKY_RECORD_KEYS = ("updates", "message_chunks", "thought_chunks")

Write = Callable[[dict[str, Any]], None]


class BadRequest(ValueError):
    """A request line that cannot be served; the message says why."""


@dataclass(frozen=True)
class TurnRequest:
    request_id: Any
    role: str
    prompt: str
    timeout_s: float


def parse_request(line: bytes, *, default_timeout_s: float) -> TurnRequest:
    """One request line, checked. Raises BadRequest naming what is wrong (its `args[1]`
    is the request's id when one could be read, else None)."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request is not JSON: {exc}", None) from None
    if not isinstance(data, dict):
        raise BadRequest(f"request is not a JSON object: {line[:80]!r}", None)
    request_id = data.get("id")
    if isinstance(request_id, (dict, list)):
        raise BadRequest("request id must be a string, a number or null", None)

    def bad(why: str) -> BadRequest:
        return BadRequest(why, request_id)

    role = data.get("role")
    try:
        RolePolicy.for_role(role if isinstance(role, str) else repr(role))
    except ValueError as exc:
        raise bad(str(exc)) from None
    assert isinstance(role, str)
    timeout_s = data.get("timeout_s", default_timeout_s)
    if (
        isinstance(timeout_s, bool)
        or not isinstance(timeout_s, (int, float))
        or not (0 < timeout_s < math.inf)
    ):
        raise bad(f"timeout_s must be a positive number of seconds, got {timeout_s!r:.40}")
    if "prompt" in data and "prompt_file" in data:
        raise bad("give prompt or prompt_file, not both")
    if isinstance(data.get("prompt"), str):
        return TurnRequest(request_id, role, data["prompt"], float(timeout_s))
    path = data.get("prompt_file")
    if not isinstance(path, str) or not Path(path).is_absolute():
        raise bad("a request needs prompt (a string) or prompt_file (an absolute path)")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_PROMPT_FILE_BYTES + 1)
    except OSError as exc:
        raise bad(f"prompt_file unreadable: {exc}") from None
    if len(raw) > MAX_PROMPT_FILE_BYTES:
        raise bad(f"prompt_file is longer than {MAX_PROMPT_FILE_BYTES} bytes")
    return TurnRequest(request_id, role, raw.decode(errors="replace"), float(timeout_s))


def compact(result: TurnResult) -> dict[str, Any]:
    """The result for the wire: whole, less the raw updates and the per-chunk copies."""
    data = result.to_dict()
    data["record"] = {
        k: v for k, v in data["record"].items() if k not in BULKY_RECORD_KEYS
    }  # fmt: skip
    return data


def stdout_writer() -> Write:
    def write(message: dict[str, Any]) -> None:
        sys.stdout.buffer.write(orjson.dumps(message) + b"\n")
        sys.stdout.buffer.flush()

    return write


async def stdin_reader() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_REQUEST_BYTES)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


class KeptAgent:
    """The serve loop around one AcpAgent (see the module docstring for the wire)."""

    def __init__(self, args: argparse.Namespace, write: Write) -> None:
        self.args = args
        self.write = write
        self.stop = asyncio.Event()
        self.agent: AcpAgent | None = None
        self.turns = 0
        self.bad_requests = 0
        role = getattr(args, "sandbox_role", None)
        self.sandbox_role = (
            RolePolicy.for_role(role, may_execute=args.may_execute) if role else None
        )

    async def start(self) -> bool:
        """Start the agent and say ready (or failed); False if it could not start."""
        args = self.args
        limits = RecordLimits(
            max_updates=args.max_turn_updates, max_update_bytes=args.max_turn_update_bytes
        )
        began = time.monotonic()
        try:
            self.agent = await AcpAgent.start(
                args.command, workspace=args.workspace, may_execute=args.may_execute,
                env=getattr(args, "agent_env", None), timeout=args.start_timeout_s,
                record_limits=limits,
                max_terminals=args.max_terminals, sandbox_mode=args.sandbox,
                profile=getattr(args, "profile", None), sandbox_role=self.sandbox_role,
                model_url=getattr(args, "model_url", None),
            )  # fmt: skip
        except (AgentError, OSError, ValueError) as exc:
            self.write({"event": "failed", "error": type(exc).__name__, "message": str(exc)})
            return False
        self.agent.prepare_session(timeout=args.start_timeout_s)
        sandbox = None if self.sandbox_role is None else {
            "role": self.sandbox_role.role.value, "mode": args.sandbox,
            **(self.agent.sandbox.status() if self.agent.sandbox else {}),
        }  # fmt: skip
        self.write({
            "event": "ready", "agent_pid": self.agent.process.pid,
            "agent": self.agent.agent_info, "start_s": round(time.monotonic() - began, 6),
            "sandbox": sandbox,
        })  # fmt: skip
        return True

    async def serve(self, reader: asyncio.StreamReader) -> int:
        """Answer requests until EOF, a stop, the idle timeout or the agent's end."""
        assert self.agent is not None
        agent = self.agent
        exited = asyncio.ensure_future(agent.process.exited.wait())
        stopping = asyncio.ensure_future(self.stop.wait())
        try:
            while True:
                reading = asyncio.ensure_future(reader.readline())
                timeout = None if math.isinf(self.args.idle_timeout_s) else (
                    self.args.idle_timeout_s
                )  # fmt: skip
                done, _ = await asyncio.wait(
                    {reading, exited, stopping}, timeout=timeout,
                    return_when=asyncio.FIRST_COMPLETED,
                )  # fmt: skip
                if exited in done or agent.process.exited.is_set():
                    # Before any turn began (a request read with it is not started: the
                    # answer to it is this event, and its sender may retry elsewhere).
                    reading.cancel()
                    self.write({"event": "agent_exited",
                                "message": self._gone("between turns")})  # fmt: skip
                    return EXIT_AGENT_FAILED
                if reading not in done:
                    reading.cancel()
                    if not done:
                        self.write({"event": "idle_timeout",
                                    "idle_timeout_s": self.args.idle_timeout_s})  # fmt: skip
                    return 0
                try:
                    line = reading.result()
                except ValueError:  # past the reader's limit; the rest reads as a new line
                    self._bad(BadRequest(f"request line longer than {MAX_REQUEST_BYTES} bytes"))
                    continue
                if not line:
                    return 0  # EOF: whoever started us is done
                if not line.strip():
                    continue
                try:
                    request = parse_request(line, default_timeout_s=self.args.timeout_s)
                    self._check_role(request)
                except BadRequest as exc:
                    self._bad(exc)
                    continue
                if not await self._turn(request):
                    return EXIT_AGENT_FAILED
                if self.stop.is_set():
                    return 0
        finally:
            for task in (exited, stopping):
                task.cancel()

    def _check_role(self, request: TurnRequest) -> None:
        """A sandboxed agent serves its sandbox's role only (its locks are that role's)."""
        if self.sandbox_role is not None and request.role != self.sandbox_role.role.value:
            raise BadRequest(
                f"this agent runs in the sandbox of role {self.sandbox_role.role.value}; "
                f"a {request.role} turn needs an agent of its own", request.request_id,
            )  # fmt: skip

    def _bad(self, exc: BadRequest) -> None:
        self.bad_requests += 1
        request_id = exc.args[1] if len(exc.args) > 1 else None
        self.write({"event": "turn", "id": request_id, "ok": False, "error": "bad_request",
                    "message": str(exc.args[0]), "agent_alive": True})  # fmt: skip

    async def _turn(self, request: TurnRequest) -> bool:
        """Run one turn and write its line; False when the agent is gone for good."""
        assert self.agent is not None
        agent, args = self.agent, self.args
        began = time.monotonic()
        policy = RolePolicy.for_role(request.role, may_execute=args.may_execute)
        self.turns += 1
        try:
            session_id = await agent.new_session(timeout=args.start_timeout_s, policy=policy)
            session_s = time.monotonic() - began
            prompt_sent_at = time.monotonic()  # CLOCK_MONOTONIC: comparable across processes
            try:
                result = await agent.prompt(
                    request.prompt, timeout=request.timeout_s,
                    cancel_grace_s=args.cancel_grace_s, stop=self.stop,
                )  # fmt: skip
            finally:  # nothing is served for it from here on (the agent's close: below)
                await agent.client.end_session(session_id)
        except AgentError as exc:
            alive = not isinstance(exc, (AgentDied, AgentTimeout)) and (
                agent.process.returncode is None
            )  # fmt: skip
            error = {
                AgentDied: "agent_died", AgentTimeout: "agent_timeout", UnsafeMode: "unsafe_mode"
            }.get(type(exc), "agent_protocol")  # fmt: skip
            self.write({"event": "turn", "id": request.request_id, "ok": False, "error": error,
                        "message": str(exc), "agent_alive": alive})  # fmt: skip
            if alive:
                agent.prepare_session(timeout=args.start_timeout_s)
            return alive
        self.write({"event": "turn", "id": request.request_id, "ok": True,
                    "outcome": result.outcome, "session_s": round(session_s, 6),
                    "prompt_sent_at": prompt_sent_at, "result": compact(result)})  # fmt: skip
        # After the answer, off the turn's path: the agent closes the session (bounded),
        # and the next turn's session is opened ahead of it.
        await agent.end_session(session_id)
        if not self.stop.is_set():
            agent.prepare_session(timeout=args.start_timeout_s)
        return True

    def _gone(self, when: str) -> str:
        assert self.agent is not None
        code = self.agent.process.returncode
        tail = self.agent.stderr_tail(1000).strip() or "(nothing on stderr)"
        return f"agent (pid {self.agent.process.pid}) exited {when} with status {code}; " + (
            f"stderr ends: {tail}"
        )

    async def close(self) -> None:
        if self.agent is not None:
            await self.agent.close()


async def serve(args: argparse.Namespace, write: Write | None = None) -> int:
    """The --serve main: start the agent, answer turn requests on stdin; the exit status
    (0 done, 3 the agent failed or is gone)."""
    kept = KeptAgent(args, write or stdout_writer())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, kept.stop.set)
    try:
        if not await kept.start():
            return EXIT_AGENT_FAILED
        return await kept.serve(await stdin_reader())
    finally:
        await kept.close()
