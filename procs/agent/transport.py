"""The agent's stdio as an ACP message transport that reports bad input instead of hiding it.

Newline-delimited JSON-RPC 2.0 (ACP v1). The library's own stdio transport logs and skips
a line that is not JSON; this one also records why (`violations`), so a session can tell
its caller "the agent sent garbage" rather than just going quiet. Lines are capped
(`max_line_bytes`); an over-long line is discarded up to its newline and reported. A line
dropped that way, or one orjson refuses (an escaped lone surrogate), is still answered
when its bounded prefix shows a readable id (rpc_header): a request of the agent's gets a
JSON-RPC error -32600 with that id, and a reply to a request of ours is handed on as that
error, so neither side waits for an answer that cannot come. A notification the library
could not dispatch is dropped, counted and sampled here (notifications.py), never handed
on to be logged with a traceback. Every send is bounded by
`send_timeout_s` (an agent that stops reading cannot block us).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from procs.agent.notifications import BadNotifications, problem
from procs.agent.rpc_header import PREFIX_BYTES, read_header

MAX_LINE_BYTES = 16 * 1024 * 1024
INVALID_REQUEST = -32600


class AgentTransport:
    """Implements acp's Transport protocol (send / receive / close) over process pipes."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        max_line_bytes: int = MAX_LINE_BYTES,
        send_timeout_s: float = 30.0,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.max_line_bytes = max_line_bytes
        self.send_timeout_s = send_timeout_s
        self.violations: list[str] = []
        self.received = 0
        self.sent = 0
        self.undelivered_replies = 0
        self.peer_gone: str | None = None  # why we stopped writing, once the agent's stdin went
        self.bad_notifications = BadNotifications()

    async def send(self, message: dict[str, Any]) -> None:
        """Write one message, waiting up to send_timeout_s for the agent to take it.

        The agent's death is an expected event, not an error of ours. Once its stdin is
        gone (EPIPE, reset), or it stops reading, our own requests and notifications
        raise ConnectionError (the session turns that into AgentDied), while a reply to
        one of its requests is dropped and counted (`undelivered_replies`): nobody waits
        for it, and the exit itself is reported where a call waits on the agent.
        """
        is_reply = "method" not in message
        if self.peer_gone is None:
            try:
                self._writer.write(orjson.dumps(message) + b"\n")
                await asyncio.wait_for(self._writer.drain(), self.send_timeout_s)
            except TimeoutError:
                why = f"agent did not read its stdin for {self.send_timeout_s}s"
                if not is_reply:
                    raise ConnectionError(why) from None
                self._violation(f"{why}; a reply to it was dropped")
                self.undelivered_replies += 1
                return
            except ConnectionError as exc:  # BrokenPipeError, ConnectionResetError
                self.peer_gone = f"agent's stdin is closed ({type(exc).__name__}: {exc})"
            else:
                self.sent += 1
                return
        if not is_reply:
            raise ConnectionError(self.peer_gone)
        self.undelivered_replies += 1

    async def receive(self) -> dict[str, Any] | None:
        while True:
            read = await self._read_line()
            if read is None:
                return None
            line, too_long = read
            if too_long is not None:
                self._violation(too_long)
                message = await self._undecodable(line, too_long)
            else:
                line = line.strip()
                if not line:
                    continue
                message = await self._decode(line)
            if message is None:
                continue
            if "id" not in message and (why := problem(message)) is not None:
                self._violation(self.bad_notifications.add(why))
                continue
            self.received += 1
            return message

    @property
    def malformed_notifications(self) -> int:
        """Notifications dropped because the library could not dispatch them."""
        return self.bad_notifications.count

    async def _read_line(self) -> tuple[bytes, str | None] | None:
        """(the line, None), or (its first PREFIX_BYTES, why) when it is over the limit;
        None at EOF."""
        try:
            line = await self._reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            return (exc.partial, None) if exc.partial else None
        except asyncio.LimitOverrunError:
            prefix = await self._discard_to_newline()
            return prefix, f"agent sent a line longer than {self.max_line_bytes} bytes"
        if len(line) > self.max_line_bytes:
            return line[:PREFIX_BYTES], f"agent sent a line of {len(line)} bytes"
        return line, None

    async def _discard_to_newline(self) -> bytes:
        """Skip the rest of an over-long line; returns its first PREFIX_BYTES."""
        prefix = b""
        while True:
            try:
                tail = await self._reader.readuntil(b"\n")
            except asyncio.LimitOverrunError as exc:
                chunk = await self._reader.readexactly(exc.consumed)
            except asyncio.IncompleteReadError as exc:
                return (prefix + exc.partial)[:PREFIX_BYTES]
            else:
                return (prefix + tail)[:PREFIX_BYTES]
            if len(prefix) < PREFIX_BYTES:
                prefix += chunk[: PREFIX_BYTES - len(prefix)]

    async def _decode(self, line: bytes) -> dict[str, Any] | None:
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            why = f"agent sent a line that is not JSON ({exc}): {line[:120]!r}"
            self._violation(why)
            return await self._undecodable(line, why)
        if not isinstance(message, dict):
            self._violation(f"agent sent JSON that is not an object: {line[:120]!r}")
            return None
        if message.get("jsonrpc") != "2.0" or not ("method" in message or "id" in message):
            self._violation(f"agent sent an object that is not JSON-RPC 2.0: {line[:120]!r}")
            return None
        return message

    async def _undecodable(self, line: bytes, why: str) -> dict[str, Any] | None:
        """Answer what a line we cannot decode asked, when its prefix names an id: the
        agent's request gets error -32600 (sent now); a reply to ours becomes that error
        (returned, for the connection to hand to the waiting call). Else None."""
        header = read_header(line)
        if header.request_id is None:
            return None
        error = {"code": INVALID_REQUEST, "message": "Invalid request", "data": {"details": why}}
        if header.is_response:
            return {"jsonrpc": "2.0", "id": header.request_id, "error": error}
        await self.send({"jsonrpc": "2.0", "id": header.request_id, "error": error})
        return None

    def _violation(self, what: str) -> None:
        if len(self.violations) < 100:
            self.violations.append(what)

    async def close(self) -> None:
        if not self._writer.is_closing():
            self._writer.close()
