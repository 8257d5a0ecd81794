"""The agent's stdio as an ACP message transport that reports bad input instead of hiding it.

Newline-delimited JSON-RPC 2.0 (ACP v1). The library's own stdio transport logs and skips
a line that is not JSON; this one also records why (`violations`), so a session can tell
its caller "the agent sent garbage" rather than just going quiet. Lines are capped
(`max_line_bytes`); an over-long line is discarded up to its newline and reported. Every
send is bounded by `send_timeout_s` (an agent that stops reading cannot block us).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

MAX_LINE_BYTES = 16 * 1024 * 1024


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

    async def send(self, message: dict[str, Any]) -> None:
        self._writer.write(orjson.dumps(message) + b"\n")
        try:
            await asyncio.wait_for(self._writer.drain(), self.send_timeout_s)
        except TimeoutError:
            raise ConnectionError(
                f"agent did not read its stdin for {self.send_timeout_s}s"
            ) from None
        self.sent += 1

    async def receive(self) -> dict[str, Any] | None:
        while True:
            line = await self._read_line()
            if line is None:
                return None
            line = line.strip()
            if not line:
                continue
            message = self._decode(line)
            if message is not None:
                self.received += 1
                return message

    async def _read_line(self) -> bytes | None:
        try:
            line = await self._reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            return exc.partial or None
        except asyncio.LimitOverrunError:
            await self._discard_to_newline()
            self._violation(f"agent sent a line longer than {self.max_line_bytes} bytes")
            return b""
        if len(line) > self.max_line_bytes:
            self._violation(f"agent sent a line of {len(line)} bytes")
            return b""
        return line

    async def _discard_to_newline(self) -> None:
        while True:
            try:
                await self._reader.readuntil(b"\n")
                return
            except asyncio.LimitOverrunError as exc:
                await self._reader.readexactly(exc.consumed)
            except asyncio.IncompleteReadError:
                return

    def _decode(self, line: bytes) -> dict[str, Any] | None:
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            self._violation(f"agent sent a line that is not JSON ({exc}): {line[:120]!r}")
            return None
        if not isinstance(message, dict):
            self._violation(f"agent sent JSON that is not an object: {line[:120]!r}")
            return None
        if message.get("jsonrpc") != "2.0" or not ("method" in message or "id" in message):
            self._violation(f"agent sent an object that is not JSON-RPC 2.0: {line[:120]!r}")
            return None
        return message

    def _violation(self, what: str) -> None:
        if len(self.violations) < 100:
            self.violations.append(what)

    async def close(self) -> None:
        if not self._writer.is_closing():
            self._writer.close()
